//! The demo's proof: every peer folder holds exactly the source's folders and files, byte for
//! byte.
//!
//! Deliberately independent of the engines' own code (its own walk, its own streaming BLAKE2b
//! over whole files, not the manifest's chunk hashes), so a bug there cannot hide itself here.
//! Symlinks and special files in a `--source` folder are counted and left out: lanscatter never
//! syncs them (README "Symlinks and special files").

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What one folder holds: relative path (with `/`) → entry.
type Tree = BTreeMap<String, Entry>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { size: u64, hash: [u8; 32] },
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path} to compare it: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// The source tree the peers were compared with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    pub files: usize,
    pub dirs: usize,
    pub bytes: u64,
    /// Symlinks and special files in the source, which are never synced.
    pub skipped: usize,
    /// One line per difference (`peer-2: missing docs/a.txt`); empty when all are identical.
    pub differences: Vec<String>,
}

/// Compare every `(name, folder)` of `peers` with `source`.
pub fn compare(source: &Path, peers: &[(String, PathBuf)]) -> Result<Verified, VerifyError> {
    let (want, skipped) = tree(source)?;
    let mut v = Verified { skipped, ..Verified::default() };
    for e in want.values() {
        match e {
            Entry::Dir => v.dirs += 1,
            Entry::File { size, .. } => {
                v.files += 1;
                v.bytes += size;
            }
        }
    }
    for (name, dir) in peers {
        let (got, extra_specials) = tree(dir)?;
        for (rel, e) in &want {
            match got.get(rel) {
                None => v.differences.push(format!("{name}: missing {rel}")),
                Some(g) if g != e => v.differences.push(format!("{name}: {rel} differs ({})", what_differs(e, g))),
                _ => {}
            }
        }
        for rel in got.keys().filter(|k| !want.contains_key(*k)) {
            v.differences.push(format!("{name}: extra {rel}"));
        }
        if extra_specials > 0 {
            v.differences.push(format!("{name}: {extra_specials} symlinks or special files"));
        }
    }
    Ok(v)
}

fn what_differs(want: &Entry, got: &Entry) -> String {
    match (want, got) {
        (Entry::File { size: a, .. }, Entry::File { size: b, .. }) if a != b => format!("{b} bytes instead of {a}"),
        (Entry::File { .. }, Entry::File { .. }) => "same size, other bytes".into(),
        (Entry::Dir, _) => "a file where a folder should be".into(),
        (_, Entry::Dir) => "a folder where a file should be".into(),
    }
}

/// Every folder and regular file under `root` (but a peer's `.lanscatter` marker folder), and
/// how many other entries it left out.
fn tree(root: &Path) -> Result<(Tree, usize), VerifyError> {
    let read_err = |path: &Path, source| VerifyError::Read { path: path.to_path_buf(), source };
    let mut out = Tree::new();
    let mut skipped = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| read_err(&dir, e))? {
            let entry = entry.map_err(|e| read_err(&dir, e))?;
            let path = entry.path();
            // A peer's own marker folder is not synced content (it is never listed or sent).
            if dir == root && crate::paths::is_state_dir(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(|e| read_err(&path, e))?;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if meta.is_dir() {
                out.insert(rel, Entry::Dir);
                dirs.push(path);
            } else if meta.is_file() {
                let hash = hash_file(&path).map_err(|e| read_err(&path, e))?;
                out.insert(rel, Entry::File { size: meta.len(), hash });
            } else {
                skipped += 1;
            }
        }
    }
    Ok((out, skipped))
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => {
                state.update(&buf[..n]);
            }
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(state.finalize().as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn identical_trees_pass_and_every_kind_of_difference_is_named() {
        let t = tempfile::tempdir().unwrap();
        let (src, same, other) = (t.path().join("src"), t.path().join("same"), t.path().join("other"));
        for root in [&src, &same, &other] {
            put(root, "a/b.txt", b"hello");
            put(root, "c.bin", b"12345678");
            put(root, "gone.txt", b"x");
            std::fs::create_dir_all(root.join("empty")).unwrap();
        }
        put(&other, "c.bin", b"12345679");
        put(&other, "a/b.txt", b"hello!");
        std::fs::remove_file(other.join("gone.txt")).unwrap();
        put(&other, "new.txt", b"");
        std::fs::remove_dir(other.join("empty")).unwrap();
        put(&other, "empty", b"");
        let v = compare(&src, &[("same".into(), same.clone())]).unwrap();
        assert!(v.differences.is_empty(), "{v:?}");
        assert_eq!((v.files, v.dirs, v.bytes), (3, 2, 14));
        let v = compare(&src, &[("same".into(), same), ("other".into(), other)]).unwrap();
        let mut d = v.differences.clone();
        d.sort();
        assert_eq!(
            d,
            [
                "other: a/b.txt differs (6 bytes instead of 5)",
                "other: c.bin differs (same size, other bytes)",
                "other: empty differs (a file where a folder should be)",
                "other: extra new.txt",
                "other: missing gone.txt",
            ]
        );
    }

    #[test]
    fn a_missing_peer_folder_is_an_error_that_names_it() {
        let t = tempfile::tempdir().unwrap();
        let err = compare(t.path(), &[("p".into(), t.path().join("nope"))]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
