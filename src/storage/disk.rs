//! [`Disk`], the real file system behind the [`Storage`] seam: positional reads and writes,
//! mtimes, and removal that never follows symlinks. (Folders are walked once, by the scan in
//! `crate::manifest`, which reports what it left out so a peer can remove it.)
//!
//! Peers write verified chunks straight into their final files at the chunk's offset (files
//! are pre-sized to their final length), so a sync needs no second copy of the data and a
//! `kill -9` leaves only files whose verified chunks are re-found by hashing on restart.
//! Everything here is blocking std I/O; the engines call it from `spawn_blocking`.
//! Positional I/O (`pread`/`pwrite`, `seek_read`/`seek_write` on Windows) lets many chunk
//! writes to one file proceed without sharing a cursor.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::{Disk, Storage};
use crate::manifest::Mtime;

/// Positioned read of exactly `buf.len()` bytes; `UnexpectedEof` if the file is shorter.
#[cfg(unix)]
pub fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.read_exact_at(buf, offset)
}

#[cfg(windows)]
pub fn read_exact_at(f: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than expected")),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
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

impl Storage for Disk {
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let size = usize::try_from(len).map_err(|_| io::Error::other("chunk too large"))?;
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        // read_to_end into reserved capacity skips zero-filling the buffer first (that memset
        // was ~6 % of a serving peer's CPU in the LAN bench).
        let mut buf = Vec::with_capacity(size);
        f.take(len).read_to_end(&mut buf)?;
        if buf.len() != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ends before byte {}", offset + len),
            ));
        }
        Ok(buf)
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        pwrite_all(&f, data, offset)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
        if f.metadata()?.len() != len {
            f.set_len(len)?;
        }
        Ok(())
    }

    fn set_mtime(&self, path: &Path, mtime: Mtime) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_times(std::fs::FileTimes::new().set_modified(mtime.to_system_time()))
    }

    fn mtime(&self, path: &Path) -> io::Result<Mtime> {
        Ok(Mtime::from(std::fs::symlink_metadata(path)?.modified()?))
    }

    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        match std::fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(EntryKind::of(m.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.sync_data()
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        fs4::available_space(path)
    }
}

/// Flush the entries of directory `path` (the [`Storage::sync_dir`] of the real disk).
pub fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(path)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Kind of a directory entry, from `symlink_metadata` (symlinks are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// Symlink, fifo, socket, device: never part of a synced tree.
    Other,
}

impl EntryKind {
    fn of(ft: std::fs::FileType) -> Self {
        if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        }
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
    use crate::manifest::ChunkHash;

    #[test]
    fn positional_write_read_hash_and_mtime() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        Disk.set_len(&p, 10).unwrap();
        Disk.write_at(&p, 4, b"abc").unwrap();
        assert_eq!(Disk.read_at(&p, 3, 5).unwrap(), b"\0abc\0");
        let h = ChunkHash::of(b"abc");
        assert!(super::super::read_verified(&Disk, &p, 4, 3, &h).unwrap().is_some());
        assert!(super::super::read_verified(&Disk, &p, 3, 3, &h).unwrap().is_none());
        let f = File::open(&p).unwrap();
        let mut buf = [0u8; 3];
        read_exact_at(&f, &mut buf, 4).unwrap();
        assert_eq!(&buf, b"abc");
        assert_eq!(read_exact_at(&f, &mut buf, 8).unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "past EOF");
        Disk.set_len(&p, 7).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 7);
        let m = Mtime { secs: 1_500_000_000, nanos: 123_000_000 };
        Disk.set_mtime(&p, m).unwrap();
        assert_eq!(Disk.mtime(&p).unwrap(), m);
        assert_eq!(Disk.kind(&p).unwrap(), Some(EntryKind::File));
        assert_eq!(Disk.kind(&d.path().join("none")).unwrap(), None);
        Disk.sync(&p).unwrap();
        assert!(Disk.free_space(d.path()).unwrap() > 0);
    }

    #[cfg(unix)]
    #[test]
    fn removing_a_link_keeps_its_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/ü.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).unwrap();
        assert_eq!(Disk.kind(&d.path().join("link")).unwrap(), Some(EntryKind::Other));
        Disk.remove(&d.path().join("link")).unwrap();
        assert!(d.path().join("a/b/ü.txt").exists());
        Disk.remove(&d.path().join("a")).unwrap();
        assert_eq!(Disk.kind(&d.path().join("a")).unwrap(), None, "a whole tree goes");
        Disk.remove(&d.path().join("a")).unwrap();
    }
}
