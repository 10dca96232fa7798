//! Chunk I/O inside a sync dir: positional reads and writes, in-place verification, mtimes,
//! and a walk that does not follow symlinks.
//!
//! Peers write verified chunks straight into their final files at the chunk's offset (files
//! are pre-sized to their final length), so a sync needs no second copy of the data and a
//! `kill -9` leaves only files whose verified chunks are re-found by hashing on restart.
//! Everything here is blocking std I/O; the engines call it from `spawn_blocking`.
//! Positional I/O (`pread`/`pwrite`, `seek_read`/`seek_write` on Windows) lets many chunk
//! writes to one file proceed without sharing a cursor.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::manifest::ChunkHash;

#[cfg(unix)]
fn pread_exact(f: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn pread_exact(f: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, offset)? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than expected")),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn pwrite_all(f: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(buf, offset)
}

#[cfg(windows)]
fn pwrite_all(f: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_write(buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Read `size` bytes at `offset`.
pub fn read_at(path: &Path, offset: u64, size: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let len = usize::try_from(size).map_err(|_| io::Error::other("chunk too large"))?;
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    // read_to_end into reserved capacity skips zero-filling the buffer first (that memset was
    // ~6 % of a serving peer's CPU in the LAN bench).
    let mut buf = Vec::with_capacity(len);
    f.take(size).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("file ends before byte {}", offset + size)));
    }
    Ok(buf)
}

/// Read a chunk and return it only if its content hashes to `hash`.
pub fn read_verified(path: &Path, offset: u64, size: u64, hash: &ChunkHash) -> io::Result<Option<Vec<u8>>> {
    let data = read_at(path, offset, size)?;
    Ok((ChunkHash::of(&data) == *hash).then_some(data))
}

/// Write `data` at `offset` into an existing (pre-sized) file.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    pwrite_all(&f, data, offset)
}

/// Hash of the `size` bytes at `offset`, or `None` if the file is too short or unreadable.
pub fn hash_range(f: &File, offset: u64, size: u64, buf: &mut Vec<u8>) -> Option<ChunkHash> {
    buf.resize(usize::try_from(size).ok()?, 0);
    pread_exact(f, buf, offset).ok()?;
    Some(ChunkHash::of(buf))
}

/// Create or resize a file to `size` bytes without touching the bytes it already has.
pub fn ensure_size(path: &Path, size: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    if f.metadata()?.len() != size {
        f.set_len(size)?;
    }
    Ok(())
}

/// Set a file's modification time (seconds + nanoseconds since the Unix epoch; negative seconds
/// are before 1970).
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) -> io::Result<()> {
    let t = system_time(secs, nanos);
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_times(std::fs::FileTimes::new().set_modified(t))
}

pub fn system_time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos as u64)
    }
}

/// Modification time as (secs, nanos) since the epoch.
pub fn mtime_of(meta: &std::fs::Metadata) -> Option<(i64, u32)> {
    let t = meta.modified().ok()?;
    Some(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            if d.subsec_nanos() == 0 {
                (-(d.as_secs() as i64), 0)
            } else {
                (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    })
}

/// Kind of a directory entry, from `symlink_metadata` (symlinks are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// Symlink, fifo, socket, device: never part of a synced tree.
    Other,
}

/// One entry found under a root.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    pub abs: PathBuf,
    /// Relative path with `/`, or `None` if the name is not valid UTF-8 (never in a manifest).
    pub rel: Option<String>,
    pub kind: EntryKind,
}

/// Every entry under `root` (not `root` itself), parents before children. Unreadable
/// directories are an error: a peer must not believe a tree is clean when it could not look.
pub fn walk(root: &Path) -> io::Result<Vec<WalkEntry>> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, Option<String>)> = vec![(root.to_path_buf(), Some(String::new()))];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            let name = entry.file_name();
            let child_rel = match (&rel, name.to_str()) {
                (Some(r), Some(n)) if r.is_empty() => Some(n.to_string()),
                (Some(r), Some(n)) => Some(format!("{r}/{n}")),
                _ => None,
            };
            let abs = entry.path();
            if kind == EntryKind::Dir {
                stack.push((abs.clone(), child_rel.clone()));
            }
            out.push(WalkEntry { abs, rel: child_rel, kind });
        }
    }
    out.sort_by(|a, b| a.abs.cmp(&b.abs));
    Ok(out)
}

/// Remove a file, symlink or whole directory tree without following symlinks.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// True for "no space left on device" / "disk quota exceeded" style errors.
pub fn is_disk_full(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::StorageFull {
        return true;
    }
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
        return true;
    }
    #[cfg(windows)]
    if matches!(e.raw_os_error(), Some(112) | Some(39)) {
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_write_read_hash_and_mtime() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        ensure_size(&p, 10).unwrap();
        write_at(&p, 4, b"abc").unwrap();
        assert_eq!(read_at(&p, 3, 5).unwrap(), b"\0abc\0");
        let h = ChunkHash::of(b"abc");
        assert!(read_verified(&p, 4, 3, &h).unwrap().is_some());
        assert!(read_verified(&p, 3, 3, &h).unwrap().is_none());
        let f = File::open(&p).unwrap();
        assert_eq!(hash_range(&f, 4, 3, &mut Vec::new()), Some(h));
        assert_eq!(hash_range(&f, 8, 3, &mut Vec::new()), None, "past EOF");
        ensure_size(&p, 7).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 7);
        set_mtime(&p, 1_500_000_000, 123_000_000).unwrap();
        assert_eq!(mtime_of(&std::fs::metadata(&p).unwrap()), Some((1_500_000_000, 123_000_000)));
    }

    #[test]
    fn walk_lists_relative_paths_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/ü.txt"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).unwrap();
        let w = walk(d.path()).unwrap();
        let rels: Vec<_> = w.iter().map(|e| (e.rel.clone().unwrap(), e.kind)).collect();
        assert!(rels.contains(&("a".into(), EntryKind::Dir)));
        assert!(rels.contains(&("a/b/ü.txt".into(), EntryKind::File)));
        #[cfg(unix)]
        {
            assert!(rels.contains(&("link".into(), EntryKind::Other)));
            remove_any(&d.path().join("link")).unwrap();
            assert!(d.path().join("a/b/ü.txt").exists(), "removing a link keeps its target");
        }
    }
}
