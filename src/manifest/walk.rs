//! Directory walk: lists regular files and directories, reports everything else.
//!
//! The root's `.lanscatter` entry ([`crate::paths::STATE_DIR`]) is lanscatter's own and not
//! listed at all (not even as skipped, so a peer never removes it).
//!
//! Symlinks are never followed (a link to `/` or to a parent would make the index unbounded or
//! cyclic, and a peer must never write through one); they, fifos, sockets and devices are
//! reported as warnings and left out. Names that are not UTF-8 or cannot be a wire path (e.g. a
//! Linux name containing `\`) are reported and left out, with their subtree. Directories are
//! walked in parallel (rayon), level by level, because a warm re-index is nothing but this walk
//! plus `lstat`s.
//!
//! A directory or file that disappears mid-walk is simply not listed (the folder is being
//! changed; the index reflects a state without it). One that cannot be read is an error, or a
//! warning that marks the manifest incomplete if the caller asked to skip unreadable entries.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cache::FileStamp;
use super::error::ScanError;
use super::ScanWarning;
use crate::paths::validate_wire_path;

/// A regular file found by the walk. Its absolute path is not kept ([`abs_path`] rebuilds it):
/// at 200,000 files it was ~90 bytes a file of the scan's peak, which is the master's.
#[derive(Debug, Clone)]
pub(crate) struct FoundFile {
    pub wire: String,
    pub stamp: FileStamp,
}

/// The absolute path of wire path `wire` under the walked `root`, built as the walk built it
/// (one push per name), so it names the same entry on every OS.
pub(crate) fn abs_path(root: &Path, wire: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(wire.split('/'));
    p
}

#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub files: Vec<FoundFile>,
    /// Wire paths of directories below the root (empty ones included).
    pub dirs: Vec<String>,
    pub warnings: Vec<ScanWarning>,
    /// Where the entries left out for what they are (symlinks, special files, names that cannot
    /// be wire paths) live: a peer removes them from its folder.
    pub skipped: Vec<PathBuf>,
}

impl Listing {
    fn merge(mut self, other: Listing) -> Listing {
        self.files.extend(other.files);
        self.dirs.extend(other.dirs);
        self.warnings.extend(other.warnings);
        self.skipped.extend(other.skipped);
        self
    }
}

/// One directory level read: its entries, and the subdirectories (absolute, wire) to read next.
type Level = (Listing, Vec<(PathBuf, String)>);

/// Walk `root` (a canonical directory path). The result is unsorted.
///
/// Breadth-first, one directory level at a time with the level's directories read in parallel:
/// no recursion, so a pathologically deep tree cannot overflow a worker's stack.
pub(crate) fn walk(root: &Path, skip_unreadable: bool) -> Result<Listing, ScanError> {
    let entries = fs::read_dir(root).map_err(|e| ScanError::from_io(root, e))?;
    let (mut out, mut frontier) = read_level(root, entries, "", skip_unreadable)?;
    while !frontier.is_empty() {
        let results: Vec<Result<Level, ScanError>> = frontier
            .into_par_iter()
            .map(|(abs, wire)| match fs::read_dir(&abs) {
                Ok(entries) => {
                    let (mut l, sub) = read_level(&abs, entries, &format!("{wire}/"), skip_unreadable)?;
                    l.dirs.push(wire);
                    Ok((l, sub))
                }
                // Vanished since it was listed: the index reflects a state without it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Listing::default(), Vec::new())),
                Err(e) => {
                    let mut l = Listing::default();
                    unreadable(&mut l, &abs, &wire, e, skip_unreadable)?;
                    Ok((l, Vec::new()))
                }
            })
            .collect();
        frontier = Vec::new();
        for r in results {
            let (l, sub) = r?;
            out = out.merge(l);
            frontier.extend(sub);
        }
    }
    Ok(out)
}

/// List one directory: its files and warnings, and the subdirectories to read next.
fn read_level(
    dir: &Path,
    entries: fs::ReadDir,
    prefix: &str,
    skip: bool,
) -> Result<(Listing, Vec<(PathBuf, String)>), ScanError> {
    let mut out = Listing::default();
    let mut subdirs: Vec<(PathBuf, String)> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                unreadable(&mut out, dir, prefix.trim_end_matches('/'), e, skip)?;
                continue;
            }
        };
        let abs = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            out.warnings.push(ScanWarning::NotUtf8 { path: format!("{prefix}{}", name.to_string_lossy()) });
            out.skipped.push(abs);
            continue;
        };
        if prefix.is_empty() && crate::paths::is_state_dir(name) {
            continue; // lanscatter's own state: never indexed, synced or removed
        }
        let wire = format!("{prefix}{name}");
        if let Err(e) = validate_wire_path(&wire) {
            out.warnings.push(ScanWarning::UnsupportedName { path: wire, reason: e.to_string() });
            out.skipped.push(abs);
            continue;
        }
        // lstat: never follows symlinks.
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // vanished mid-walk
            Err(e) => {
                unreadable(&mut out, &abs, &wire, e, skip)?;
                continue;
            }
        };
        let ft = meta.file_type();
        if ft.is_file() {
            out.files.push(FoundFile { wire, stamp: FileStamp::of(&meta) });
        } else if ft.is_dir() {
            subdirs.push((abs, wire));
        } else if ft.is_symlink() {
            let target = fs::read_link(&abs).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            out.warnings.push(ScanWarning::Symlink { path: wire, target });
            out.skipped.push(abs);
        } else {
            out.warnings.push(ScanWarning::SpecialFile { path: wire, file_type: special_kind(&ft).into() });
            out.skipped.push(abs);
        }
    }
    Ok((out, subdirs))
}

fn unreadable(out: &mut Listing, abs: &Path, wire: &str, e: io::Error, skip: bool) -> Result<(), ScanError> {
    if skip {
        out.warnings.push(ScanWarning::Unreadable { path: wire.to_string(), reason: e.to_string() });
        Ok(())
    } else {
        Err(ScanError::from_io(abs, e))
    }
}

fn special_kind(ft: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "fifo";
        }
        if ft.is_socket() {
            return "socket";
        }
        if ft.is_char_device() {
            return "character device";
        }
        if ft.is_block_device() {
            return "block device";
        }
    }
    let _ = ft;
    "special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_at_the_root_is_not_listed_but_deeper_ones_are() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join(".lanscatter")).unwrap();
        fs::write(d.path().join(".lanscatter/peer.txt"), b"marker").unwrap();
        fs::create_dir_all(d.path().join("sub/.lanscatter")).unwrap();
        fs::write(d.path().join("f"), b"x").unwrap();
        let l = walk(&fs::canonicalize(d.path()).unwrap(), false).unwrap();
        let mut files: Vec<&str> = l.files.iter().map(|f| f.wire.as_str()).collect();
        files.sort();
        let mut dirs = l.dirs.clone();
        dirs.sort();
        assert_eq!(files, ["f"]);
        assert_eq!(dirs, ["sub", "sub/.lanscatter"]);
        assert!(l.skipped.is_empty() && l.warnings.is_empty(), "not even reported: {:?}", l.warnings);
    }
}
