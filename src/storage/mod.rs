//! The storage seam: every byte an engine reads or writes in its folder for a sync goes through
//! one [`Storage`].
//!
//! Why a seam: the data-safety rules (nothing unverified is final data, nothing outside the
//! sync dir, the master never writes) are easier to see in one trait than in scattered `std::fs`
//! calls, and tests can wrap the real disk in middlewares (disk full after N bytes, slow disk,
//! failing writes, a node that serves corrupt bytes) and run as plain `cargo test`, without root
//! or a tmpfs. Production uses [`Disk`] for a peer and [`ReadOnlyDisk`] for a master.
//!
//! Paths are absolute and already validated (`crate::paths::to_local`): the seam does not
//! decide *where*, only *how*. Folder scans (`crate::manifest::scan`) read the folder directly:
//! they only read, through the hash cache, and verified chunks are what they produce.
//!
//! - [`disk`]: the real file system (positional I/O, disk-full and locked-file errors). [`Disk`]
//!   resolves every path from the file-system root and follows a symlink at none of its names
//!   ([`LinkInPath`]; on Linux one `openat2(RESOLVE_NO_SYMLINKS)`, elsewhere one name at a
//!   time), so no write ever leaves the folder through a planted link; [`ReadOnlyDisk`] only
//!   reads and follows links above the master's folder. The `_many` methods do the same for a
//!   batch of files, grouped by directory, with each directory opened once per call.

use std::fmt::Debug;
use std::io;
use std::path::Path;

use crate::manifest::{ChunkHash, Mtime};

pub mod disk;

pub use disk::{is_disk_full, is_link_in_path, is_locked, is_name_rejected, EntryKind, LinkInPath};

/// What an engine does to the files in its folder.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Read exactly `len` bytes at `offset`.
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>>;
    /// Write `data` at `offset` into an existing (pre-sized) file.
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Create the file if missing and give it `len` bytes; bytes inside `len` are kept.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    fn set_mtime(&self, path: &Path, mtime: Mtime) -> io::Result<()>;
    /// Modification time of a file (symlinks are not followed).
    fn mtime(&self, path: &Path) -> io::Result<Mtime>;
    /// What is at `path`, without following a symlink; `None` if nothing.
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file, symlink or whole tree without following symlinks; a missing path is fine.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Flush a file's data to the device.
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Flush a directory's entries (files created or renamed into it) to the device, so they
    /// survive a power loss. The default does it on the real disk (Unix; Windows' NTFS journals
    /// its entries and cannot open a directory for this, so it is a no-op there); middlewares
    /// that model directories override it.
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        disk::sync_dir(path)
    }
    /// Flush the data of `files`, then the entries of `dirs`, to the device: what `sync` and
    /// `sync_dir` do one by one (the default, [`sync_each`]), but a real disk may do it at once
    /// ([`Disk`] on Linux: one `syncfs` per file system), which for a batch of small files is
    /// one journal commit instead of one per file. An error says nothing about which of them
    /// is durable: the caller falls back to `sync` per file.
    fn sync_many(&self, files: &[&Path], dirs: &[&Path]) -> io::Result<()> {
        sync_each(self, files, dirs)
    }
    /// Bytes available to this process on the file system holding `path`.
    fn free_space(&self, path: &Path) -> io::Result<u64>;

    /// [`set_len`](Storage::set_len) for many files (a layout's preparation), per file whether
    /// it was created. The default asks [`kind`](Storage::kind) and calls `set_len` one file at
    /// a time (what middlewares see); [`Disk`] opens each directory once for the whole call
    /// and each file once. Every file is tried: one error does not stop the others.
    fn create_sized_many(&self, files: &[(&Path, u64)]) -> Vec<io::Result<bool>> {
        files
            .iter()
            .map(|&(path, len)| {
                let missing = self.kind(path)?.is_none();
                self.set_len(path, len).map(|()| missing)
            })
            .collect()
    }
    /// [`write_at`](Storage::write_at) for many (path, offset, data), per write its result;
    /// batched as [`create_sized_many`](Storage::create_sized_many) is.
    fn write_many(&self, writes: &[(&Path, u64, &[u8])]) -> Vec<io::Result<()>> {
        writes.iter().map(|&(path, offset, data)| self.write_at(path, offset, data)).collect()
    }
    /// [`mtime`](Storage::mtime) for many files, batched the same way.
    fn mtime_many(&self, paths: &[&Path]) -> Vec<io::Result<Mtime>> {
        paths.iter().map(|p| self.mtime(p)).collect()
    }
    /// [`set_mtime`](Storage::set_mtime) for many files, batched the same way.
    fn set_mtime_many(&self, files: &[(&Path, Mtime)]) -> Vec<io::Result<()>> {
        files.iter().map(|&(path, mtime)| self.set_mtime(path, mtime)).collect()
    }

    /// The bytes of a chunk this node is about to upload, only if they hash to `hash` (a file
    /// changed behind the engine's back is never served as the old content). Middlewares that
    /// model a lying node override this one.
    fn read_for_upload(&self, path: &Path, offset: u64, len: u64, hash: &ChunkHash) -> io::Result<Option<Vec<u8>>> {
        read_verified(self, path, offset, len, hash)
    }
}

/// [`Storage::sync_many`] one file and one directory at a time.
pub fn sync_each<S: Storage + ?Sized>(s: &S, files: &[&Path], dirs: &[&Path]) -> io::Result<()> {
    for f in files {
        s.sync(f)?;
    }
    for d in dirs {
        s.sync_dir(d)?;
    }
    Ok(())
}

/// Read a chunk through `storage` and return it only if its content hashes to `hash`.
pub fn read_verified<S: Storage + ?Sized>(
    storage: &S,
    path: &Path,
    offset: u64,
    len: u64,
    hash: &ChunkHash,
) -> io::Result<Option<Vec<u8>>> {
    let data = storage.read_at(path, offset, len)?;
    Ok((ChunkHash::of(&data) == *hash).then_some(data))
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct Disk;

/// The real file system with every write refused: the master's view of its source folder.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadOnlyDisk;

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "the master never writes its source folder")
}

impl Storage for ReadOnlyDisk {
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        disk::following::read_at(path, offset, len)
    }
    fn write_at(&self, _: &Path, _: u64, _: &[u8]) -> io::Result<()> {
        Err(read_only())
    }
    fn set_len(&self, _: &Path, _: u64) -> io::Result<()> {
        Err(read_only())
    }
    fn set_mtime(&self, _: &Path, _: Mtime) -> io::Result<()> {
        Err(read_only())
    }
    fn mtime(&self, path: &Path) -> io::Result<Mtime> {
        disk::following::mtime(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        disk::following::kind(path)
    }
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn remove(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn sync(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        Disk.free_space(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_disk_reads_and_refuses_every_write() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let ro = ReadOnlyDisk;
        assert_eq!(ro.read_at(&p, 1, 3).unwrap(), b"ell");
        assert!(ro.read_for_upload(&p, 0, 5, &ChunkHash::of(b"hello")).unwrap().is_some());
        assert!(ro.read_for_upload(&p, 0, 5, &ChunkHash::of(b"other")).unwrap().is_none());
        assert_eq!(ro.kind(&p).unwrap(), Some(EntryKind::File));
        let denied = io::ErrorKind::PermissionDenied;
        assert_eq!(ro.write_at(&p, 0, b"x").unwrap_err().kind(), denied);
        assert_eq!(ro.set_len(&p, 1).unwrap_err().kind(), denied);
        assert_eq!(ro.remove(&p).unwrap_err().kind(), denied);
        assert_eq!(ro.rename(&p, &d.path().join("g")).unwrap_err().kind(), denied);
        assert_eq!(ro.create_dir_all(&d.path().join("x")).unwrap_err().kind(), denied);
        assert_eq!(ro.set_mtime(&p, Mtime::default()).unwrap_err().kind(), denied);
        assert_eq!(std::fs::read(&p).unwrap(), b"hello", "nothing changed");
    }
}
