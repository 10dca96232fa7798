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

/// The real disk seen as NTFS or APFS see it: names are looked up ignoring letter case and
/// created with the case given (case-preserving), below `root` only. `rename` onto a name that
/// is the same entry modulo case changes its spelling, as a case-only rename on Windows does.
/// The folder scan reads the real names, as it would on those systems.
#[derive(Debug)]
pub struct CaseFoldingDisk {
    pub root: std::path::PathBuf,
}

impl CaseFoldingDisk {
    pub fn new(root: &Path) -> Self {
        let _ = std::fs::create_dir_all(root);
        CaseFoldingDisk { root: std::fs::canonicalize(root).expect("canonical root") }
    }

    /// `path` with every existing component below the root spelled as it is on disk.
    fn resolve(&self, path: &Path) -> std::path::PathBuf {
        let Ok(rel) = path.strip_prefix(&self.root) else { return path.to_path_buf() };
        let mut real = self.root.clone();
        let mut found = true;
        for comp in rel.components() {
            let name = comp.as_os_str();
            let want = name.to_string_lossy().to_lowercase();
            let hit = found.then(|| std::fs::read_dir(&real).ok()).flatten().and_then(|rd| {
                rd.flatten().map(|e| e.file_name()).find(|n| n.to_string_lossy().to_lowercase() == want)
            });
            found = hit.is_some();
            real.push(hit.as_deref().unwrap_or(name));
        }
        real
    }
}

impl Storage for CaseFoldingDisk {
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        Disk.read_at(&self.resolve(path), offset, len)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        Disk.write_at(&self.resolve(path), offset, data)
    }
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        Disk.set_len(&self.resolve(path), len)
    }
    fn set_mtime(&self, path: &Path, mtime: Mtime) -> io::Result<()> {
        Disk.set_mtime(&self.resolve(path), mtime)
    }
    fn mtime(&self, path: &Path) -> io::Result<Mtime> {
        Disk.mtime(&self.resolve(path))
    }
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        Disk.kind(&self.resolve(path))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        Disk.create_dir_all(&self.resolve(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, existing) = (self.resolve(from), self.resolve(to));
        let parent = existing.parent().unwrap_or(&self.root).to_path_buf();
        let target = parent.join(to.file_name().unwrap_or_default());
        // Replacing another entry whose name differs in case: one entry must remain.
        if existing != from && existing != target && Disk.kind(&existing)?.is_some() {
            Disk.remove(&existing)?;
        }
        Disk.rename(&from, &target)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        Disk.remove(&self.resolve(path))
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        Disk.sync(&self.resolve(path))
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        Disk.free_space(&self.root).or_else(|_| Disk.free_space(path))
    }
}

/// The real disk with one file held open and locked by "another program" while `locked` is
/// set: every write to a path ending in `path` fails as a sharing violation (raw OS error 32
/// on Windows, "resource busy" elsewhere). Counts the refused writes.
#[derive(Debug)]
pub struct LockingDisk {
    pub path: std::path::PathBuf,
    pub locked: AtomicBool,
    pub refused: AtomicU64,
}

impl LockingDisk {
    pub fn new(rel: &str) -> Self {
        LockingDisk { path: rel.into(), locked: AtomicBool::new(true), refused: AtomicU64::new(0) }
    }

    fn check(&self, path: &Path) -> io::Result<()> {
        if self.locked.load(Ordering::SeqCst) && path.ends_with(&self.path) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            #[cfg(windows)]
            return Err(io::Error::from_raw_os_error(32));
            #[cfg(not(windows))]
            return Err(io::Error::new(io::ErrorKind::ResourceBusy, "locked by another program (test)"));
        }
        Ok(())
    }
}

impl Storage for LockingDisk {
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        Disk.read_at(path, offset, len)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check(path)?;
        Disk.write_at(path, offset, data)
    }
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.check(path)?;
        Disk.set_len(path, len)
    }
    fn set_mtime(&self, path: &Path, mtime: Mtime) -> io::Result<()> {
        self.check(path)?;
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
        self.check(from)?;
        self.check(to)?;
        Disk.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.check(path)?;
        Disk.remove(path)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.check(path)?;
        Disk.sync(path)
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        Disk.free_space(path)
    }
}
