//! Refusing folders that would be a disaster to sync.
//!
//! A peer makes its folder byte-identical to the master's, deleting everything else in it; one
//! wrong click in a folder dialog must not wipe a disk or a home directory. A master never writes,
//! but serving `/` or a whole home directory to the LAN leaks far more than intended. So both modes
//! refuse:
//! - relative paths (the GUI has no meaningful working directory);
//! - a file-system root: `/`, a drive root `C:\`, a UNC share root (anything without a parent);
//! - the user's home directory itself and any folder containing it (`/home`, `C:\Users`);
//!
//! and a peer additionally refuses the folder configured as this user's master folder, anything
//! inside it, and anything containing it: a peer writing there would corrupt what the master
//! serves (the master assumes its folder changes only by the user's hand).
//!
//! Paths are compared after resolving symlinks and `..` (`canonicalize` on the deepest existing
//! ancestor, since a peer's target may not exist yet), so `~/x/..` is caught as the home dir.
//! The checks take the home dir as a parameter so tests don't depend on the machine's.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FolderError {
    #[error("{} is not an absolute path; choose the folder with \"Choose folder…\"", .0.display())]
    Relative(PathBuf),
    #[error("{} is the root of a drive or file system; syncing it could overwrite or expose the whole disk. Choose or create a dedicated folder inside it", .0.display())]
    Root(PathBuf),
    #[error("{} is your home folder; a peer would delete everything in it that the master does not have. Choose or create a dedicated folder inside it", .0.display())]
    Home(PathBuf),
    #[error("{} contains your home folder ({}); choose a dedicated folder instead", .0.display(), .1.display())]
    ContainsHome(PathBuf, PathBuf),
    #[error("{} is (or overlaps) this computer's master folder {}; a peer writing there would corrupt what the master serves. Choose a different folder for the peer", .0.display(), .1.display())]
    MasterFolder(PathBuf, PathBuf),
}

/// Check a master's source folder.
pub fn check_master_folder(folder: &Path) -> Result<(), FolderError> {
    check_master_folder_with(folder, home_dir().as_deref())
}

/// Check a peer's target folder against the user's master folder (if any).
pub fn check_peer_folder(folder: &Path, master_folder: Option<&Path>) -> Result<(), FolderError> {
    check_peer_folder_with(folder, master_folder, home_dir().as_deref())
}

pub fn check_master_folder_with(folder: &Path, home: Option<&Path>) -> Result<(), FolderError> {
    check_common(folder, home).map(|_| ())
}

pub fn check_peer_folder_with(
    folder: &Path,
    master_folder: Option<&Path>,
    home: Option<&Path>,
) -> Result<(), FolderError> {
    let resolved = check_common(folder, home)?;
    if let Some(master) = master_folder.filter(|m| m.is_absolute()) {
        let master_res = resolve(master);
        if resolved.starts_with(&master_res) || master_res.starts_with(&resolved) {
            return Err(FolderError::MasterFolder(folder.to_path_buf(), master.to_path_buf()));
        }
    }
    Ok(())
}

fn check_common(folder: &Path, home: Option<&Path>) -> Result<PathBuf, FolderError> {
    if !folder.is_absolute() {
        return Err(FolderError::Relative(folder.to_path_buf()));
    }
    let resolved = resolve(folder);
    if resolved.parent().is_none() {
        return Err(FolderError::Root(folder.to_path_buf()));
    }
    if let Some(home) = home {
        let home_res = resolve(home);
        if resolved == home_res {
            return Err(FolderError::Home(folder.to_path_buf()));
        }
        if home_res.starts_with(&resolved) {
            return Err(FolderError::ContainsHome(folder.to_path_buf(), home.to_path_buf()));
        }
    }
    Ok(resolved)
}

fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
}

/// Canonical form of `p` even if its tail does not exist: canonicalize the deepest existing
/// ancestor, then append the remaining components with `.`/`..` applied lexically.
fn resolve(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut tail: Vec<std::ffi::OsString> = Vec::new();
    let base = loop {
        if let Ok(c) = dunce_canonicalize(&existing) {
            break c;
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            // A trailing `..` has no file name: apply it lexically, then resolve what remains.
            _ => {
                let lex = lexical(p);
                if lex != p && lex.components().count() < p.components().count() {
                    return resolve(&lex);
                }
                break lex;
            }
        }
    };
    let mut out = base;
    for name in tail.into_iter().rev() {
        out.push(name);
    }
    lexical(&out)
}

/// On Windows `canonicalize` returns `\\?\C:\…`, whose `parent()` semantics differ from `C:\…`;
/// strip the verbatim prefix for plain drive paths so root detection works on both forms.
fn dunce_canonicalize(p: &Path) -> std::io::Result<PathBuf> {
    let c = std::fs::canonicalize(p)?;
    #[cfg(windows)]
    {
        let s = c.to_string_lossy();
        if let Some(rest) = s.strip_prefix(r"\\?\") {
            if rest.as_bytes().get(1) == Some(&b':') {
                return Ok(PathBuf::from(rest));
            }
        }
    }
    Ok(c)
}

fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_refused() {
        let root = if cfg!(windows) { PathBuf::from(r"C:\") } else { PathBuf::from("/") };
        assert_eq!(check_master_folder_with(&root, None), Err(FolderError::Root(root.clone())));
        assert!(matches!(check_peer_folder_with(&root, None, None), Err(FolderError::Root(_))));
        // `..` cannot sneak back to the root.
        let sneaky = root.join("tmp").join("..");
        assert!(matches!(check_peer_folder_with(&sneaky, None, None), Err(FolderError::Root(_))));
    }

    #[test]
    fn relative_refused() {
        assert!(matches!(check_peer_folder_with(Path::new("data"), None, None), Err(FolderError::Relative(_))));
    }

    #[test]
    fn home_and_its_ancestors_refused_but_inside_is_fine() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("users").join("alice");
        std::fs::create_dir_all(&home).unwrap();
        let h = Some(home.as_path());
        assert!(matches!(check_peer_folder_with(&home, None, h), Err(FolderError::Home(_))));
        assert!(matches!(check_master_folder_with(&home, h), Err(FolderError::Home(_))));
        let via_dotdot = home.join("sub").join("..");
        assert!(matches!(check_peer_folder_with(&via_dotdot, None, h), Err(FolderError::Home(_))));
        let parent = t.path().join("users");
        assert!(matches!(check_peer_folder_with(&parent, None, h), Err(FolderError::ContainsHome(..))));
        // A dedicated folder inside home, existing or not yet created, is what we want.
        assert_eq!(check_peer_folder_with(&home.join("sync"), None, h), Ok(()));
        assert_eq!(check_master_folder_with(&home.join("share").join("new"), h), Ok(()));
        let msg = check_peer_folder_with(&home, None, h).unwrap_err().to_string();
        assert!(msg.contains("home folder") && msg.contains("dedicated folder"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn home_via_symlink_refused() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("alice");
        std::fs::create_dir_all(&home).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        assert!(matches!(check_peer_folder_with(&link, None, Some(&home)), Err(FolderError::Home(_))));
    }

    #[test]
    fn master_folder_as_peer_target_refused() {
        let t = tempfile::tempdir().unwrap();
        let master = t.path().join("share");
        std::fs::create_dir_all(master.join("inner")).unwrap();
        let m = Some(master.as_path());
        for target in [master.clone(), master.join("inner"), master.join("new"), t.path().to_path_buf()] {
            let r = check_peer_folder_with(&target, m, None);
            assert!(matches!(r, Err(FolderError::MasterFolder(..))), "{target:?}: {r:?}");
        }
        assert_eq!(check_peer_folder_with(&t.path().join("mirror"), m, None), Ok(()));
        // The master itself may of course serve its own folder.
        assert_eq!(check_master_folder_with(&master, None), Ok(()));
    }
}
