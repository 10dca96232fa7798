//! Names a peer's folder treats differently from the master's: case-insensitive destinations
//! (NTFS, APFS, FAT) and files another program holds locked.
//!
//! Why a module of its own: [`super::layout`] decides what goes where; this decides which
//! spellings the destination can hold. On a case-insensitive folder `Readme.txt` and
//! `README.txt` are one file, so the layout must neither delete the "leftover" of a case-only
//! rename (it is the renamed file) nor sync two master paths that differ only by case (they
//! would overwrite each other forever). Everything here goes through the peer's `Storage`,
//! so tests model such a file system with a middleware.
//!
//! Detection: the folder is probed on every preparation by creating [`CASE_PROBE`] in it and
//! asking for the same name in lower case. That answers for the folder itself (a case-folding
//! mount or an ext4 `+F` directory inside a case-sensitive tree), which comparing the parent's
//! metadata would not. The probe is removed at once; a kill in between leaves a file the next
//! preparation removes as not on the master.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;

use crate::manifest::Manifest;
use crate::paths::{case_fold_key, to_local};
use crate::storage::Storage;

/// Mixed-case name created for a moment in the destination to learn whether it folds case.
pub const CASE_PROBE: &str = ".lanscatter-CaseProbe.tmp";

/// True when the destination folder `root` treats names differing only by case as one.
pub fn is_case_insensitive(root: &Path, storage: &dyn Storage) -> io::Result<bool> {
    let probe = root.join(CASE_PROBE);
    storage.set_len(&probe, 0)?;
    let folded = storage.kind(&root.join(CASE_PROBE.to_lowercase()));
    storage.remove(&probe)?;
    Ok(folded?.is_some())
}

/// Files of `manifest` a case-insensitive folder cannot hold, with one message per group of
/// colliding names naming all of them. Only groups that hold a file are refused: dirs whose
/// names differ by case merge into one dir, and the files in them do not collide.
pub fn case_collisions(manifest: &Manifest, needed: &HashSet<&str>) -> (HashSet<String>, Vec<String>) {
    let files = manifest.files.iter().map(|f| (f.path.as_str(), true));
    let mut groups: HashMap<String, Vec<(&str, bool)>> = HashMap::new();
    for (path, is_file) in files.chain(needed.iter().map(|d| (*d, false))) {
        groups.entry(case_fold_key(path)).or_default().push((path, is_file));
    }
    let mut refused = HashSet::new();
    let mut messages = Vec::new();
    for group in groups.into_values().filter(|g| g.len() > 1 && g.iter().any(|(_, f)| *f)) {
        let mut names: Vec<&str> = group.iter().map(|(p, _)| *p).collect();
        names.sort_unstable();
        refused.extend(group.iter().filter(|(_, f)| *f).map(|(p, _)| p.to_string()));
        messages.push(format!(
            "{}: these names differ only in letter case and this folder's file system ignores case, so it \
             can hold only one; none of them is synced here; rename all but one on the master",
            names.join(" and ")
        ));
    }
    messages.sort();
    (refused, messages)
}

/// Give every local file and dir whose path differs from one in the manifest only by letter
/// case the manifest's spelling: a case-only rename on the master becomes a rename here, not a
/// fetch plus the removal of a "leftover" that is the same file. `local` (the scan of the
/// folder) is updated to the new names. Returns how many entries were renamed.
pub fn match_case(
    root: &Path,
    manifest: &Manifest,
    needed: &HashSet<&str>,
    local: &mut Manifest,
    storage: &dyn Storage,
) -> Result<u64, (std::path::PathBuf, io::Error)> {
    let mut wanted: HashMap<String, &str> = HashMap::new();
    let mut ambiguous: HashSet<String> = HashSet::new();
    for p in manifest.files.iter().map(|f| f.path.as_str()).chain(needed.iter().copied()) {
        let key = case_fold_key(p);
        match wanted.get(&key) {
            Some(have) if *have != p => drop(ambiguous.insert(key)),
            Some(_) => {}
            None => drop(wanted.insert(key, p)),
        }
    }
    let mut order: HashSet<String> = local.dirs.iter().map(|d| d.path.clone()).collect();
    for f in &local.files {
        order.extend(f.path.match_indices('/').map(|(i, _)| f.path[..i].to_string()));
        order.insert(f.path.clone());
    }
    let mut order: Vec<String> = order.into_iter().collect();
    // Parents first: a renamed dir changes the names of everything below it.
    order.sort_by_key(|p| (p.matches('/').count(), p.clone()));
    let mut renames: Vec<(String, String)> = Vec::new();
    for p in order {
        let now = renamed(&renames, &p);
        let key = case_fold_key(&now);
        let Some(target) = wanted.get(&key).filter(|t| **t != now && !ambiguous.contains(&key)) else { continue };
        let (Ok(from), Ok(to)) = (to_local(root, &now), to_local(root, target)) else { continue };
        storage.rename(&from, &to).map_err(|e| (from.clone(), e))?;
        tracing::info!("renamed {now} to {target} (only its letter case changed on the master)");
        renames.push((now, target.to_string()));
    }
    for f in &mut local.files {
        f.path = renamed(&renames, &f.path);
    }
    for d in &mut local.dirs {
        d.path = renamed(&renames, &d.path);
    }
    local.files.sort_by(|a, b| a.path.cmp(&b.path));
    local.dirs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(renames.len() as u64)
}

/// `path` after the renames done so far, applied in order (each is spelled in the names the
/// ones before it produced).
fn renamed(renames: &[(String, String)], path: &str) -> String {
    let mut p = path.to_string();
    for (old, new) in renames {
        if p == *old {
            p = new.clone();
        } else if let Some(rest) = p.strip_prefix(old.as_str()).filter(|r| r.starts_with('/')) {
            p = format!("{new}{rest}");
        }
    }
    p
}

/// The message for a file another program holds locked.
pub fn locked_message(path: &Path) -> String {
    format!(
        "skipped {}: another program has it open and locked; lanscatter retries it by itself (close that program to \
         finish sooner)",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_apply_to_children_in_order() {
        let r = vec![("Docs".to_string(), "docs".to_string()), ("docs/A.txt".to_string(), "docs/a.txt".to_string())];
        assert_eq!(renamed(&r, "Docs/A.txt"), "docs/a.txt");
        assert_eq!(renamed(&r, "Docs/B.txt"), "docs/B.txt");
        assert_eq!(renamed(&r, "Docsx/B.txt"), "Docsx/B.txt", "a prefix of a name is not a parent");
    }

    #[test]
    fn a_case_sensitive_folder_is_detected_and_left_clean() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        // Linux tmp dirs are case-sensitive; elsewhere this only checks the probe is gone.
        let insensitive = is_case_insensitive(&root, &crate::storage::Disk).unwrap();
        #[cfg(target_os = "linux")]
        assert!(!insensitive);
        let _ = insensitive;
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "the probe is removed");
    }
}
