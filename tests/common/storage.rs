//! A storage middleware for fault tests: the real disk with knobs for a full disk, a slow disk,
//! failing writes and a node that serves corrupt bytes, all through the engines' storage seam
//! (`lanscatter::storage::Storage`), so these tests need neither root nor a tmpfs.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lanscatter::manifest::{ChunkHash, Mtime};
use lanscatter::storage::{Disk, EntryKind, Storage};

#[derive(Debug)]
pub struct FaultyDisk {
    /// Bytes chunk writes may still add; past it a write fails as "no space left".
    pub space: AtomicU64,
    /// Writes fail with an I/O error while set.
    pub fail_writes: AtomicBool,
    /// Each chunk write takes at least this long.
    pub write_delay: Duration,
    /// Uploads are served with flipped bits (after the node's own check): a lying node.
    pub corrupt_uploads: bool,
    /// Bytes written so far.
    pub written: AtomicU64,
}

impl Default for FaultyDisk {
    fn default() -> Self {
        FaultyDisk {
            space: AtomicU64::new(u64::MAX),
            fail_writes: AtomicBool::new(false),
            write_delay: Duration::ZERO,
            corrupt_uploads: false,
            written: AtomicU64::new(0),
        }
    }
}

impl FaultyDisk {
    pub fn with_space(bytes: u64) -> Self {
        FaultyDisk { space: AtomicU64::new(bytes), ..Default::default() }
    }

    /// "Free some space": writes fit again.
    pub fn make_room(&self) {
        self.space.store(u64::MAX, Ordering::SeqCst);
    }
}

impl Storage for FaultyDisk {
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        Disk.read_at(path, offset, len)
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        if !self.write_delay.is_zero() {
            std::thread::sleep(self.write_delay); // models the device: the caller is a blocking task
        }
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write error (test)"));
        }
        let len = data.len() as u64;
        let fits = self.space.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(len)).is_ok();
        if !fits {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        self.written.fetch_add(len, Ordering::SeqCst);
        Disk.write_at(path, offset, data)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        Disk.set_len(path, len)
    }
    fn set_mtime(&self, path: &Path, mtime: Mtime) -> io::Result<()> {
        Disk.set_mtime(path, mtime)
    }
    fn mtime(&self, path: &Path) -> io::Result<Mtime> {
        Disk.mtime(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        Disk.kind(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        Disk.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        Disk.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        Disk.remove(path)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        Disk.sync(path)
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        Ok(Disk.free_space(path)?.min(self.space.load(Ordering::SeqCst)))
    }

    fn read_for_upload(&self, path: &Path, offset: u64, len: u64, hash: &ChunkHash) -> io::Result<Option<Vec<u8>>> {
        let Some(mut data) = lanscatter::storage::read_verified(self, path, offset, len, hash)? else {
            return Ok(None);
        };
        if self.corrupt_uploads {
            for b in data.iter_mut().step_by(997) {
                *b ^= 0x5a;
            }
            if data.is_empty() {
                data.push(0);
            }
        }
        Ok(Some(data))
    }
}
