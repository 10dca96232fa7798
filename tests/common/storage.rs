//! Storage middlewares for fault tests, all through the engines' storage seam
//! (`lanscatter::storage::Storage`), so these tests need neither root nor a tmpfs: [`FaultyDisk`],
//! the real disk with knobs for a full disk, a slow disk, failing writes and a node that serves
//! corrupt bytes; [`PowerLossDisk`], the real disk whose unsynced changes a "power loss" undoes.

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
    /// With n > 0, only uploads of chunks whose hash's first byte is a multiple of n are served
    /// corrupt (about one in n): a node that lies about some chunks of every batch.
    pub corrupt_one_in: u8,
    /// Bytes written so far.
    pub written: AtomicU64,
    /// How many more file fsyncs ([`Storage::sync`]) fail with an I/O error.
    pub fail_syncs: AtomicU64,
}

impl Default for FaultyDisk {
    fn default() -> Self {
        FaultyDisk {
            space: AtomicU64::new(u64::MAX),
            fail_writes: AtomicBool::new(false),
            write_delay: Duration::ZERO,
            corrupt_uploads: false,
            corrupt_one_in: 0,
            written: AtomicU64::new(0),
            fail_syncs: AtomicU64::new(0),
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
        let fail = self.fail_syncs.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if fail {
            return Err(io::Error::other("injected fsync error (test)"));
        }
        Disk.sync(path)
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        Ok(Disk.free_space(path)?.min(self.space.load(Ordering::SeqCst)))
    }

    fn read_for_upload(&self, path: &Path, offset: u64, len: u64, hash: &ChunkHash) -> io::Result<Option<Vec<u8>>> {
        let Some(mut data) = lanscatter::storage::read_verified(self, path, offset, len, hash)? else {
            return Ok(None);
        };
        let picked = self.corrupt_one_in > 0 && hash.0[0].is_multiple_of(self.corrupt_one_in);
        if self.corrupt_uploads || picked {
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

/// The real disk with a volatile layer, for power-loss tests: every change reaches the files at
/// once (the "page cache" scans and reads see), and is recorded as undoable until it is made
/// durable: file data and sizes by [`Storage::sync`] of that file, new directory entries
/// (created files and dirs, renames) by [`Storage::sync_dir`] of their directory. [`cut`]
/// stops the disk (every later call fails, as on a machine without power), and [`lose_unsynced`]
/// then undoes, newest first, what never became durable, which is what a power loss does.
/// Deletions are not modelled (a deleted leftover that comes back is only removed again).
///
/// [`cut`]: PowerLossDisk::cut
/// [`lose_unsynced`]: PowerLossDisk::lose_unsynced
#[derive(Debug, Default)]
pub struct PowerLossDisk {
    /// Undo records, oldest first; the lock also orders every operation against [`Self::cut`].
    undo: std::sync::Mutex<Vec<Undo>>,
    off: AtomicBool,
    /// Each chunk write takes at least this long (keeps a sync part-way for a while).
    pub write_delay: Duration,
}

#[derive(Debug)]
enum Undo {
    /// Bytes at `offset` before a write (exactly the written length: writes stay inside files).
    Data {
        path: std::path::PathBuf,
        offset: u64,
        old: Vec<u8>,
    },
    /// A file's length before `set_len`.
    Len {
        path: std::path::PathBuf,
        old: u64,
    },
    /// A file's mtime before `set_mtime`.
    Mtime {
        path: std::path::PathBuf,
        old: Mtime,
    },
    /// A new entry (file or dir): gone after a power loss unless its directory was synced.
    Created {
        path: std::path::PathBuf,
    },
    Renamed {
        from: std::path::PathBuf,
        to: std::path::PathBuf,
    },
}

impl Undo {
    /// The file whose `sync` makes this durable, or the directory whose `sync_dir` does.
    fn covered_by_sync(&self, file: &Path) -> bool {
        matches!(self, Undo::Data { path, .. } | Undo::Len { path, .. } | Undo::Mtime { path, .. } if path == file)
    }
    fn covered_by_sync_dir(&self, dir: &Path) -> bool {
        match self {
            Undo::Created { path } => path.parent() == Some(dir),
            Undo::Renamed { to, .. } => to.parent() == Some(dir),
            _ => false,
        }
    }
}

fn powered_off() -> io::Error {
    io::Error::other("the power is off (test)")
}

impl PowerLossDisk {
    pub fn with_write_delay(write_delay: Duration) -> Self {
        PowerLossDisk { write_delay, ..Default::default() }
    }

    /// Run `op` unless the power is off, recording `undo` (computed before `op`) if it succeeds.
    fn change<T>(&self, undo: impl FnOnce() -> Vec<Undo>, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let mut log = self.undo.lock().unwrap();
        if self.off.load(Ordering::SeqCst) {
            return Err(powered_off());
        }
        let records = undo();
        let out = op()?;
        log.extend(records);
        Ok(out)
    }

    fn check_on(&self) -> io::Result<()> {
        match self.off.load(Ordering::SeqCst) {
            true => Err(powered_off()),
            false => Ok(()),
        }
    }

    /// Data bytes written and not synced yet (what a power loss now would take).
    pub fn unsynced_bytes(&self) -> u64 {
        let log = self.undo.lock().unwrap();
        log.iter().map(|u| if let Undo::Data { old, .. } = u { old.len() as u64 } else { 0 }).sum()
    }

    /// Cut the power: from now on every call fails and nothing more changes on the disk.
    pub fn cut(&self) {
        let _log = self.undo.lock().unwrap();
        self.off.store(true, Ordering::SeqCst);
    }

    /// After [`Self::cut`]: undo every change that was not durable, newest first. Returns the
    /// number of data bytes written but lost.
    pub fn lose_unsynced(&self) -> u64 {
        assert!(self.off.load(Ordering::SeqCst), "cut the power first");
        let mut lost = 0;
        for u in std::mem::take(&mut *self.undo.lock().unwrap()).into_iter().rev() {
            match u {
                Undo::Data { path, offset, old } => {
                    if Disk.write_at(&path, offset, &old).is_ok() {
                        lost += old.len() as u64;
                    }
                }
                Undo::Len { path, old } => {
                    let _ = Disk.set_len(&path, old);
                }
                Undo::Mtime { path, old } => {
                    let _ = Disk.set_mtime(&path, old);
                }
                Undo::Created { path } => {
                    let _ = Disk.remove(&path);
                }
                Undo::Renamed { from, to } => {
                    let _ = std::fs::rename(&to, &from);
                }
            }
        }
        lost
    }
}

/// The entries `create_dir_all(dir)` creates, outermost first.
fn missing_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> =
        dir.ancestors().take_while(|a| std::fs::symlink_metadata(a).is_err()).map(Path::to_path_buf).collect();
    v.reverse();
    v
}

impl Storage for PowerLossDisk {
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        self.check_on()?;
        Disk.read_at(path, offset, len)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        if !self.write_delay.is_zero() {
            std::thread::sleep(self.write_delay); // models the device: the caller is a blocking task
        }
        let old = || {
            vec![Undo::Data {
                path: path.into(),
                offset,
                old: Disk.read_at(path, offset, data.len() as u64).unwrap_or_else(|_| vec![0; data.len()]),
            }]
        };
        self.change(old, || Disk.write_at(path, offset, data))
    }
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let undo = || match std::fs::symlink_metadata(path) {
            Ok(m) => vec![Undo::Len { path: path.into(), old: m.len() }],
            Err(_) => vec![Undo::Created { path: path.into() }],
        };
        self.change(undo, || Disk.set_len(path, len))
    }
    fn set_mtime(&self, path: &Path, mtime: Mtime) -> io::Result<()> {
        let undo = || Disk.mtime(path).map(|old| vec![Undo::Mtime { path: path.into(), old }]).unwrap_or_default();
        self.change(undo, || Disk.set_mtime(path, mtime))
    }
    fn mtime(&self, path: &Path) -> io::Result<Mtime> {
        self.check_on()?;
        Disk.mtime(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        self.check_on()?;
        Disk.kind(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let undo = || missing_dirs(path).into_iter().map(|path| Undo::Created { path }).collect();
        self.change(undo, || Disk.create_dir_all(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change(|| vec![Undo::Renamed { from: from.into(), to: to.into() }], || Disk.rename(from, to))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.change(Vec::new, || Disk.remove(path))
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut log = self.undo.lock().unwrap();
        self.check_on()?;
        log.retain(|u| !u.covered_by_sync(path));
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut log = self.undo.lock().unwrap();
        self.check_on()?;
        log.retain(|u| !u.covered_by_sync_dir(path));
        Ok(())
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        self.check_on()?;
        Disk.free_space(path)
    }
}
