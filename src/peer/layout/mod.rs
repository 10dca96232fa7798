//! The peer's folder measured against one manifest: what is verified, what is still missing,
//! where each chunk goes.
//!
//! [`Layout::prepare`] (blocking) makes the folder's *structure* match the manifest and finds
//! what content is already right:
//! 1. scan the folder with the manifest's chunk rule (hash cache: finished files cost nothing;
//!    pre-sized partial files from a killed run are re-hashed and their verified chunks count);
//! 2. `manifest::diff` gives, per target file, which chunks are already in place;
//! 3. remove what stands in the way (a dir where a file goes and vice versa) and everything that
//!    is not a plain file or dir (symlinks, special files, non-UTF-8 names); other leftovers the
//!    manifest lacks stay until step 6, as sources;
//! 4. create dirs, create or resize files to their final size (chunks in place survive a resize:
//!    they lie inside the final length by construction); a missing file whose exact content is a
//!    leftover (renamed or moved on the master) is *moved* into place instead: no copy, no
//!    download, no extra disk space;
//! 5. copy chunks whose content is already verified somewhere else in the folder (dedup,
//!    identical files, pieces of leftovers), reading and re-verifying the source first;
//! 6. remove the leftovers.
//!
//! Content that only exists in files about to be rewritten in place is fetched rather than
//! staged, which keeps the procedure simple and never needs a second copy on disk; the planner
//! usually gets it from a peer.
//!
//! After that, [`write_chunk`] puts verified chunk bytes at every place that needs them and
//! sets a file's mtime once its last chunk is in. Nothing unverified is ever written: chunks
//! come from the network already checked, or from a local read that is re-hashed.
//!
//! Durable before done: a file counts as done (its mtime is set to the master's, the state a
//! later scan trusts, and its hashes may be cached) only after its data is on the disk. When
//! its last chunk is in, the file is fsynced once (`Storage::sync`, not per chunk), then each
//! directory above it that got a new entry in this layout (created files and dirs, renames) is
//! synced once (`Storage::sync_dir`). A file whose mtime already is the master's was finished
//! that way by an earlier run and costs nothing. Files a layout wrote to but did not finish are
//! fsynced before the next layout's scan may cache their hashes ([`Layout::sync_unfinished`]).
//! Not covered: empty directories (recreated by the next layout if a power loss takes them),
//! and the content a killed run left in the page cache, which a restart's scan hashes before
//! the kernel has written it back.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::manifest::diff::ChunkSource as DiffSource;
use crate::manifest::{CacheMode, ChunkHash, FileWork, Manifest, Mtime, ScanOptions, Scanned};
use crate::storage::{self, EntryKind, Storage};

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot index the destination folder: {0}")]
    Scan(#[from] crate::manifest::ScanError),
    #[error(
        "disk full writing {}: {}free some space; lanscatter keeps what it verified and resumes by itself",
        path.display(),
        space_note(*free, *needed)
    )]
    DiskFull {
        path: PathBuf,
        /// Bytes the file system still had for us when the write failed, if it would say.
        free: Option<u64>,
        /// Bytes still to write for the current manifest, when known.
        needed: Option<u64>,
    },
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot read {path} in the destination folder ({reason}); fix its permissions, lanscatter retries")]
    Unreadable { path: String, reason: String },
    #[error("{}", super::names::locked_message(path))]
    Locked { path: PathBuf },
}

fn io_err(path: &Path, source: io::Error) -> LayoutError {
    if storage::is_disk_full(&source) {
        LayoutError::DiskFull { path: path.to_path_buf(), free: None, needed: None }
    } else if storage::is_locked(&source) {
        LayoutError::Locked { path: path.to_path_buf() }
    } else {
        LayoutError::Io { path: path.to_path_buf(), source }
    }
}

/// "free 12 KiB, needs at least 2 MiB more; " for a full disk's message (empty when unknown), so the
/// user knows how much to clear rather than only that something is full.
fn space_note(free: Option<u64>, needed: Option<u64>) -> String {
    use crate::units::human_size;
    match (free, needed) {
        (Some(f), Some(n)) => format!("free {}, needs at least {} more; ", human_size(f), human_size(n)),
        (Some(f), None) => format!("free {}; ", human_size(f)),
        (None, Some(n)) => format!("needs at least {} more; ", human_size(n)),
        (None, None) => String::new(),
    }
}

impl LayoutError {
    /// Fill a full disk's free space (asked of `storage` at `path`'s file system) and the bytes
    /// still needed; other errors pass unchanged.
    pub fn with_space(self, storage: &dyn Storage, needed: Option<u64>) -> LayoutError {
        match self {
            LayoutError::DiskFull { path, free, needed: was } => {
                let free = free.or_else(|| path.ancestors().find_map(|a| storage.free_space(a).ok()));
                LayoutError::DiskFull { path, free, needed: needed.or(was) }
            }
            other => other,
        }
    }
}

/// The folder's state relative to one manifest.
pub struct Layout {
    pub manifest_id: u64,
    /// Every byte this layout writes goes through it.
    storage: Arc<dyn Storage>,
    pub manifest: Arc<Manifest>,
    /// Local path of each manifest file (`None`: this OS cannot create the name).
    paths: Vec<Option<PathBuf>>,
    pub unique: Vec<(ChunkHash, u64)>,
    pub index: HashMap<ChunkHash, usize>,
    /// Places still to be written, per chunk: (file index, offset).
    pending: HashMap<ChunkHash, Vec<(usize, u64)>>,
    /// One verified place per chunk held: (file index, offset, size).
    held: HashMap<ChunkHash, (usize, u64, u64)>,
    /// Chunks still to write per file.
    file_pending: Vec<u32>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Names this OS cannot create, with the reason (reported to the user).
    pub unsyncable: Vec<String>,
    /// Chunks found stale (changed on disk) since the last report.
    pub lost: Vec<ChunkHash>,
    /// Chunks copied or moved locally in `prepare` (not downloaded).
    pub local_copies: u64,
    /// Files skipped because another program holds them locked (retried by a new layout).
    pub locked: Vec<PathBuf>,
    /// How many of `locked` the session has reported.
    locked_reported: usize,
    /// Directories that got an entry (created, renamed in) not yet synced to the disk.
    unsynced_dirs: HashSet<PathBuf>,
    /// Files written to and not finished yet (their data may still be only in memory).
    written: HashSet<usize>,
    /// Files whose last chunk is in, to be fsynced by [`write_chunk`] outside the layout lock,
    /// and how many it is syncing now: neither counts as complete yet.
    to_finish: Vec<usize>,
    syncing: usize,
    /// A write met a symlink planted in the folder: this layout no longer describes the folder,
    /// and the next manifest (even the same one) rebuilds it, removing the link.
    pub foreign: bool,
}

/// What stays in the folder that the manifest lacks, kept until the end of `prepare` because
/// its content may be reused: whole files by content (for moves) and single chunks (pieces).
#[derive(Default)]
struct Leftovers {
    paths: HashSet<PathBuf>,
    files: HashMap<ChunkHash, PathBuf>,
    chunks: HashMap<ChunkHash, (PathBuf, u64, u64)>,
}

impl Leftovers {
    fn holds(&self, p: &Path) -> bool {
        under(&self.paths, p)
    }

    /// The local path of a wire path, if it lies in a leftover.
    fn local(&self, root: &Path, wire: &str) -> Option<PathBuf> {
        crate::paths::to_local(root, wire).ok().filter(|a| self.holds(a))
    }
}

/// The local path of a manifest entry; the peer's own state dir is never one.
fn local_path(root: &Path, wire: &str) -> Result<PathBuf, String> {
    if crate::paths::in_state_dir(wire) {
        return Err(format!("the name {} is reserved for lanscatter's own state", crate::paths::STATE_DIR));
    }
    crate::paths::to_local(root, wire).map_err(|e| e.to_string())
}

/// The directories that get a new entry when `dir` is created: the parent of each missing
/// ancestor (`dir` included).
fn new_dir_parents(storage: &dyn Storage, dir: &Path) -> Vec<PathBuf> {
    let missing = |a: &Path| storage.kind(a).is_ok_and(|k| k.is_none());
    dir.ancestors().take_while(|a| missing(a)).filter_map(|a| a.parent()).map(Path::to_path_buf).collect()
}

fn under(set: &HashSet<PathBuf>, p: &Path) -> bool {
    p.ancestors().any(|a| set.contains(a))
}

/// Directories the manifest needs: its own list plus every file's ancestors.
fn needed_dirs(manifest: &Manifest) -> HashSet<&str> {
    let mut needed: HashSet<&str> = manifest.dirs.iter().map(|d| d.path.as_str()).collect();
    for f in &manifest.files {
        let mut p = f.path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            needed.insert(p);
        }
    }
    needed
}

/// Remove what stands in the way of the manifest (a dir where a file goes and vice versa) and
/// everything that is not a plain file or dir (symlinks, special files, non-UTF-8 names),
/// parents before children. Plain files and dirs that are merely extra are returned instead:
/// their content may be reused, and they are removed at the end.
fn clear_the_way(
    root: &Path,
    manifest: &Manifest,
    local: &Scanned,
    needed: &HashSet<&str>,
    storage: &dyn Storage,
) -> Result<HashSet<PathBuf>, LayoutError> {
    let mut removed: HashSet<PathBuf> = HashSet::new();
    let mut leftovers: HashSet<PathBuf> = HashSet::new();
    for (abs, rel, kind) in entries(root, local) {
        if under(&removed, &abs) || under(&leftovers, &abs) {
            continue;
        }
        let (keep, in_the_way) = match (rel, kind) {
            (Some(rel), EntryKind::File) => (manifest.file(rel).is_some(), needed.contains(rel)),
            (Some(rel), EntryKind::Dir) => (needed.contains(rel), manifest.file(rel).is_some()),
            _ => (false, true),
        };
        if keep {
            continue;
        }
        if in_the_way {
            tracing::info!("removing {} (not in the master's folder)", abs.display());
            storage.remove(&abs).map_err(|err| io_err(&abs, err))?;
            removed.insert(abs);
        } else {
            leftovers.insert(abs);
        }
    }
    Ok(leftovers)
}

/// Every entry the scan of the folder found, parents before children: plain files and dirs by
/// wire path, and what it left out (symlinks, special files, unsyncable names) by place only.
fn entries<'a>(root: &Path, local: &'a Scanned) -> Vec<(PathBuf, Option<&'a str>, EntryKind)> {
    let m = &local.manifest;
    let files = m.files.iter().map(|f| (f.path.as_str(), EntryKind::File));
    let dirs = m.dirs.iter().map(|d| (d.path.as_str(), EntryKind::Dir));
    let mut out: Vec<_> = files
        .chain(dirs)
        .filter_map(|(rel, kind)| Some((crate::paths::to_local(root, rel).ok()?, Some(rel), kind)))
        .chain(local.skipped.iter().map(|abs| (abs.clone(), None, EntryKind::Other)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A folder the peer could not fully read cannot be cleaned safely: say which part.
fn refuse_unreadable(local: &Manifest) -> Result<(), LayoutError> {
    for w in &local.warnings {
        if let crate::manifest::ScanWarning::Unreadable { path, reason } = w {
            return Err(LayoutError::Unreadable { path: path.clone(), reason: reason.clone() });
        }
    }
    Ok(())
}

impl Layout {
    /// Make the folder's structure match `manifest` and find what content is already right
    /// (blocking; the steps are listed in the module doc).
    pub fn prepare(
        root: &Path,
        manifest_id: u64,
        manifest: Arc<Manifest>,
        cache: &CacheMode,
        storage: Arc<dyn Storage>,
    ) -> Result<Layout, LayoutError> {
        // The engine creates its folder only here, after the master's greeting was checked.
        let new_root = new_dir_parents(&*storage, root);
        storage.create_dir_all(root).map_err(|e| io_err(root, e))?;
        super::adopt::mark(root, &*storage).map_err(|e| io_err(root, e))?;
        let folds_case = super::names::is_case_insensitive(root, &*storage).map_err(|e| io_err(root, e))?;
        let opts = ScanOptions {
            chunk_rule: manifest.chunk_rule,
            cache: cache.clone(),
            skip_unreadable: true,
            ..Default::default()
        };
        let mut scanned = crate::manifest::scan_dir(root, &opts)?;
        refuse_unreadable(&scanned.manifest)?;
        let needed = needed_dirs(&manifest);
        if folds_case {
            super::names::match_case(root, &manifest, &needed, &mut scanned.manifest, &*storage)
                .map_err(|(p, e)| io_err(&p, e))?;
        }
        let local = &scanned.manifest;
        let plan = crate::manifest::diff(&manifest, local);
        let mut layout = Layout::empty(root, manifest_id, manifest.clone(), storage);
        if folds_case {
            layout.refuse_case_collisions(&needed);
        }
        layout.unsynced_dirs.extend(new_root);
        let leftovers = clear_the_way(root, &manifest, &scanned, &needed, &*layout.storage)?;
        let mut spare = Leftovers { paths: leftovers, ..Default::default() };
        for lf in local.files.iter().filter(|lf| lf.size > 0 && manifest.file(&lf.path).is_none()) {
            if let Some(abs) = spare.local(root, &lf.path) {
                spare.files.entry(lf.hash).or_insert(abs);
            }
        }
        layout.create_dirs(root, needed)?;
        let work: HashMap<&str, &FileWork> = plan.files.iter().map(|w| (w.path.as_str(), w)).collect();
        for fi in 0..manifest.files.len() {
            layout.size_file(root, fi, work.get(manifest.files[fi].path.as_str()).copied(), &mut spare)?;
        }
        layout.bytes_done = layout.held.keys().map(|h| layout.unique[layout.index[h]].1).sum();
        layout.copy_held()?;
        layout.copy_from_leftovers(&spare.chunks)?;
        for abs in &spare.paths {
            tracing::info!("removing {} (not in the master's folder)", abs.display());
            layout.storage.remove(abs).map_err(|e| io_err(abs, e))?;
        }
        // Files already complete (or completed by the copies above): make sure their mtime is
        // right, inline, as nothing is being downloaded yet.
        layout.to_finish.clear();
        for fi in 0..layout.manifest.files.len() {
            if layout.file_pending[fi] == 0 {
                layout.finish_file(fi)?;
            }
        }
        Ok(layout)
    }

    /// A layout that holds nothing yet, with each file's local path (or why it has none).
    fn empty(root: &Path, manifest_id: u64, manifest: Arc<Manifest>, storage: Arc<dyn Storage>) -> Layout {
        let mut unsyncable = Vec::new();
        let paths = manifest
            .files
            .iter()
            .map(|f| local_path(root, &f.path).map_err(|e| unsyncable.push(format!("{}: {e}", f.path))).ok())
            .collect();
        let unique = manifest.unique_chunks();
        let index = unique.iter().enumerate().map(|(i, (h, _))| (*h, i)).collect();
        let bytes_total = unique.iter().map(|(_, s)| s).sum();
        Layout {
            manifest_id,
            storage,
            file_pending: vec![0; manifest.files.len()],
            manifest,
            paths,
            unique,
            index,
            pending: HashMap::new(),
            held: HashMap::new(),
            bytes_done: 0,
            bytes_total,
            unsyncable,
            lost: Vec::new(),
            local_copies: 0,
            locked: Vec::new(),
            locked_reported: 0,
            unsynced_dirs: HashSet::new(),
            written: HashSet::new(),
            to_finish: Vec::new(),
            syncing: 0,
            foreign: false,
        }
    }

    /// On a case-insensitive folder, files whose paths differ only by case cannot all exist:
    /// none of them is synced, and the peer says which (see [`super::names`]).
    fn refuse_case_collisions(&mut self, needed: &HashSet<&str>) {
        let (refused, messages) = super::names::case_collisions(&self.manifest, needed);
        for (fi, f) in self.manifest.files.iter().enumerate() {
            if refused.contains(&f.path) {
                self.paths[fi] = None;
            }
        }
        self.unsyncable.extend(messages);
    }

    /// File `fi` cannot be written in this layout: its chunks stay pending (never complete)
    /// and no place of it waits for a write.
    fn never_here(&mut self, fi: usize) {
        let f = self.manifest.clone();
        for places in self.pending.values_mut() {
            places.retain(|&(i, _)| i != fi);
        }
        for c in &f.files[fi].chunks {
            self.pending.entry(c.hash).or_default();
        }
        self.file_pending[fi] = self.file_pending[fi].max(f.files[fi].chunks.len().max(1) as u32);
    }

    /// Another program holds file `fi` locked: skip it in this layout, say so, and let the
    /// session retry with a new layout (a sharing violation is not a failed sync).
    fn skip_locked(&mut self, fi: usize) {
        if let Some(p) = self.paths[fi].take() {
            tracing::warn!("{}", super::names::locked_message(&p));
            self.locked.push(p);
        }
        self.never_here(fi);
    }

    /// A write to file `fi` failed: a locked file or a name this folder's file system rejects
    /// (a Windows-hostile name on FAT or SMB) is skipped with a message; anything else fails.
    fn skip_or_fail(&mut self, fi: usize, path: &Path, e: io::Error) -> Result<(), LayoutError> {
        if storage::is_locked(&e) {
            self.skip_locked(fi);
        } else if storage::is_name_rejected(&e) {
            self.unsyncable
                .push(format!("{}: this folder's file system rejects the name ({e})", self.manifest.files[fi].path));
            self.paths[fi] = None;
            self.never_here(fi);
        } else {
            return Err(io_err(path, e));
        }
        Ok(())
    }

    /// Locked files skipped since the last call (the session reports each once).
    pub fn take_locked_news(&mut self) -> Vec<PathBuf> {
        let news = self.locked[self.locked_reported..].to_vec();
        self.locked_reported = self.locked.len();
        news
    }

    fn create_dirs(&mut self, root: &Path, needed: HashSet<&str>) -> Result<(), LayoutError> {
        let mut dirs: Vec<&str> = needed.into_iter().collect();
        dirs.sort();
        for d in dirs {
            match local_path(root, d) {
                Ok(p) => {
                    let parents = new_dir_parents(&*self.storage, &p);
                    self.storage.create_dir_all(&p).map_err(|e| io_err(&p, e))?;
                    self.unsynced_dirs.extend(parents);
                }
                Err(e) => self.unsyncable.push(format!("{d}/: {e}")),
            }
        }
        Ok(())
    }

    /// Give file `fi` its final size (moving a leftover with the same content into place when
    /// nothing of it is in place yet) and record which of its chunks are held or pending.
    fn size_file(
        &mut self,
        root: &Path,
        fi: usize,
        mut todo: Option<&FileWork>,
        spare: &mut Leftovers,
    ) -> Result<(), LayoutError> {
        let f = self.manifest.clone();
        let f = &f.files[fi];
        let Some(path) = self.paths[fi].clone() else {
            // Cannot exist here: its chunks stay pending forever and the peer reports it.
            self.never_here(fi);
            return Ok(());
        };
        if todo.is_some_and(|w| w.chunks.len() == f.chunks.len()) && self.move_spare(f, &path, spare) {
            todo = None;
        } else if todo.is_some() || f.chunks.is_empty() {
            let missing = self.storage.kind(&path).map_err(|e| io_err(&path, e))?.is_none();
            if let (true, Some(parent)) = (missing, path.parent()) {
                self.unsynced_dirs.insert(parent.to_path_buf()); // set_len creates it
            }
        }
        if let Err(e) = self.storage.set_len(&path, f.size) {
            return self.skip_or_fail(fi, &path, e);
        }
        let todo: HashMap<u64, &DiffSource> =
            todo.map(|w| w.chunks.iter().map(|c| (c.offset, &c.source)).collect()).unwrap_or_default();
        for c in &f.chunks {
            let Some(source) = todo.get(&c.offset) else {
                self.held.entry(c.hash).or_insert((fi, c.offset, u64::from(c.size)));
                continue;
            };
            self.pending.entry(c.hash).or_default().push((fi, c.offset));
            self.file_pending[fi] += 1;
            if let DiffSource::Local { path, offset, stable: false } = source {
                if let Some(abs) = spare.local(root, path) {
                    spare.chunks.entry(c.hash).or_insert((abs, *offset, u64::from(c.size)));
                }
            }
        }
        Ok(())
    }

    /// Move a leftover whose content is exactly `f`'s into place: no copy, no download, no
    /// extra disk space. Only a plain file (lstat) moves, so a symlink never enters the tree.
    fn move_spare(&mut self, f: &crate::manifest::FileEntry, path: &Path, spare: &mut Leftovers) -> bool {
        let plain = |p: &Path| self.storage.kind(p).is_ok_and(|k| k == Some(EntryKind::File));
        let Some(src) = spare.files.remove(&f.hash).filter(|s| plain(s)) else { return false };
        match self.storage.rename(&src, path) {
            Ok(()) => {
                tracing::info!("moved {} to {} (same content)", src.display(), path.display());
                self.unsynced_dirs.extend([&src, path].into_iter().filter_map(|p| p.parent()).map(Path::to_path_buf));
                self.local_copies += f.chunks.len() as u64;
                true
            }
            Err(e) => {
                tracing::warn!("cannot move {} to {}: {e}; fetching it", src.display(), path.display());
                false
            }
        }
    }

    /// Copy chunks whose content is already verified elsewhere in the folder (dedup, identical
    /// files), re-verifying the source first.
    fn copy_held(&mut self) -> Result<(), LayoutError> {
        let copyable: Vec<ChunkHash> = self
            .pending
            .iter()
            .filter(|(h, places)| !places.is_empty() && self.held.contains_key(h))
            .map(|(h, _)| *h)
            .collect();
        for h in copyable {
            let (fi, off, size) = self.held[&h];
            let Some(src) = self.paths[fi].clone() else { continue };
            match storage::read_verified(&*self.storage, &src, off, size, &h).map_err(|e| io_err(&src, e))? {
                Some(data) => {
                    self.place(&h, &data)?;
                    self.local_copies += 1;
                }
                None => {
                    // The source changed since the scan: forget it, fetch instead.
                    self.held.remove(&h);
                    self.bytes_done -= size;
                }
            }
        }
        Ok(())
    }

    /// Copy pieces of leftovers into the files that need them.
    fn copy_from_leftovers(&mut self, chunks: &HashMap<ChunkHash, (PathBuf, u64, u64)>) -> Result<(), LayoutError> {
        let wanted: Vec<ChunkHash> = self
            .pending
            .iter()
            .filter(|(h, places)| !places.is_empty() && chunks.contains_key(h))
            .map(|(h, _)| *h)
            .collect();
        for h in wanted {
            let (src, off, size) = &chunks[&h];
            // A leftover that vanished or changed is only a missed shortcut: fetch instead.
            if let Ok(Some(data)) = storage::read_verified(&*self.storage, src, *off, *size, &h) {
                self.place(&h, &data)?;
                self.local_copies += 1;
            }
        }
        Ok(())
    }

    /// Write verified `data` of chunk `h` to every place still waiting for it (blocking).
    fn place(&mut self, h: &ChunkHash, data: &[u8]) -> Result<(), LayoutError> {
        let Some(places) = self.pending.remove(h) else { return Ok(()) };
        let mut done = Vec::new();
        for (i, &(fi, off)) in places.iter().enumerate() {
            let Some(path) = self.paths[fi].clone() else { continue };
            if let Err(e) = self.storage.write_at(&path, off, data) {
                if storage::is_locked(&e) {
                    self.skip_locked(fi);
                    continue;
                }
                self.foreign |= storage::is_link_in_path(&e);
                // Keep what is not written as pending; verified places stay done.
                self.pending.insert(*h, places[i..].to_vec());
                self.mark_done(h, &done, data.len() as u64)?;
                let left = self.bytes_total.saturating_sub(self.bytes_done);
                return Err(io_err(&path, e).with_space(&*self.storage, Some(left)));
            }
            self.written.insert(fi);
            done.push((fi, off));
        }
        self.mark_done(h, &done, data.len() as u64)
    }

    fn mark_done(&mut self, h: &ChunkHash, done: &[(usize, u64)], size: u64) -> Result<(), LayoutError> {
        if let Some(&(fi, off)) = done.first() {
            if self.held.insert(*h, (fi, off, size)).is_none() {
                self.bytes_done += size;
            }
        }
        for &(fi, _) in done {
            self.file_pending[fi] = self.file_pending[fi].saturating_sub(1);
            if self.file_pending[fi] == 0 {
                self.to_finish.push(fi);
            }
        }
        Ok(())
    }

    /// The file's last chunk is in: data on the disk, then the master's mtime, then the new
    /// directory entries above it on the disk (see "Durable before done" in the module doc).
    fn finish_file(&mut self, fi: usize) -> Result<(), LayoutError> {
        let Some(path) = self.paths[fi].clone() else { return Ok(()) };
        let synced = sync_unless_finished(&*self.storage, &path, self.manifest.files[fi].mtime);
        self.finish_synced(fi, &path, synced)
    }

    /// Files whose data [`write_chunk`] syncs outside the lock: (index, path, master's mtime).
    fn take_to_finish(&mut self) -> Vec<(usize, PathBuf, Mtime)> {
        let files: Vec<_> = std::mem::take(&mut self.to_finish)
            .into_iter()
            .filter_map(|fi| Some((fi, self.paths[fi].clone()?, self.manifest.files[fi].mtime)))
            .collect();
        self.syncing += files.len();
        files
    }

    /// The second half of finishing a file, after [`sync_unless_finished`] (`Ok(true)`: it was
    /// synced now and needs the master's mtime).
    fn finish_synced(&mut self, fi: usize, path: &Path, synced: io::Result<bool>) -> Result<(), LayoutError> {
        let mtime = self.manifest.files[fi].mtime;
        let done = synced.and_then(|set| if set { self.storage.set_mtime(path, mtime) } else { Ok(()) });
        if let Err(e) = done {
            self.foreign |= storage::is_link_in_path(&e);
            return self.skip_or_fail(fi, path, e);
        }
        self.written.remove(&fi);
        for dir in path.ancestors().skip(1) {
            if self.unsynced_dirs.remove(dir) {
                self.storage.sync_dir(dir).map_err(|e| io_err(dir, e))?;
            }
        }
        Ok(())
    }

    /// Put the data of files written to but not finished on the disk, before a new layout's
    /// scan may cache their hashes (blocking; a file that cannot be synced is only logged: the
    /// scan then hashes it again, and a lost chunk is fetched again).
    pub fn sync_unfinished(&self) {
        for &fi in &self.written {
            if let Some(path) = &self.paths[fi] {
                if let Err(e) = self.storage.sync(path) {
                    tracing::warn!("cannot flush {} to the disk: {e}", path.display());
                }
            }
        }
    }

    pub fn has(&self, h: &ChunkHash) -> bool {
        self.held.contains_key(h)
    }

    pub fn held_chunks(&self) -> Vec<ChunkHash> {
        self.held.keys().copied().collect()
    }

    /// The manifest's files that are complete here: every chunk verified and written, the data
    /// synced and the master's mtime set (a proxy publishes exactly these downstream).
    pub fn complete_files(&self) -> impl Iterator<Item = &crate::manifest::FileEntry> {
        self.manifest
            .files
            .iter()
            .enumerate()
            .filter(|&(fi, _)| self.file_pending[fi] == 0 && self.paths[fi].is_some() && !self.written.contains(&fi))
            .map(|(_, f)| f)
    }

    /// True when every file is complete (and nothing is unsyncable).
    pub fn is_complete(&self) -> bool {
        self.unsyncable.is_empty()
            && self.to_finish.is_empty()
            && self.syncing == 0
            && self.file_pending.iter().all(|&n| n == 0)
    }

    pub fn chunk_size(&self, h: &ChunkHash) -> Option<u64> {
        self.index.get(h).map(|&i| self.unique[i].1)
    }

    /// Where verified content of `h` can be read.
    pub fn locate(&self, h: &ChunkHash) -> Option<(PathBuf, u64, u64)> {
        let &(fi, off, size) = self.held.get(h)?;
        Some((self.paths[fi].clone()?, off, size))
    }

    /// The content at `h`'s place changed on disk: stop claiming it.
    pub fn mark_stale(&mut self, h: &ChunkHash) {
        if let Some((_, _, size)) = self.held.remove(h) {
            self.bytes_done -= size;
            self.lost.push(*h);
        }
    }

    /// Have-map cells for the status snapshot.
    pub fn chunk_map(&self) -> Vec<u8> {
        self.unique
            .iter()
            .map(|(h, _)| if self.held.contains_key(h) { crate::status::CELL_HAS } else { crate::status::CELL_MISSING })
            .collect()
    }
}

/// Write a verified chunk into every place of the current layout that still needs it
/// (blocking). A chunk no place needs any more (already held, or not in the current manifest)
/// is dropped. A file this completes is fsynced after the layout lock is released, so other
/// chunks keep being written meanwhile.
pub fn write_chunk(layout: &Mutex<Option<Layout>>, h: &ChunkHash, data: &[u8]) -> Result<(), LayoutError> {
    // The layout lock is held during the writes: per-chunk writes are short, and the caller
    // additionally holds the engine's relayout read lock, so a new manifest waits for them and
    // for the fsyncs below.
    let lock = || layout.lock().unwrap_or_else(|p| p.into_inner());
    let (placed, storage, files) = {
        let mut guard = lock();
        let Some(l) = guard.as_mut() else { return Ok(()) };
        let placed = if l.pending.get(h).is_some_and(|p| !p.is_empty()) { l.place(h, data) } else { Ok(()) };
        (placed, l.storage.clone(), l.take_to_finish())
    };
    if files.is_empty() {
        return placed;
    }
    let synced: Vec<_> = files.into_iter().map(|(fi, p, m)| (fi, sync_unless_finished(&*storage, &p, m), p)).collect();
    let mut guard = lock();
    let Some(l) = guard.as_mut() else { return placed };
    let mut first_err = None;
    for (fi, r, path) in synced {
        l.syncing -= 1;
        if let Err(e) = l.finish_synced(fi, &path, r) {
            first_err.get_or_insert(e);
        }
    }
    placed.and(first_err.map_or(Ok(()), Err))
}

/// Put a file's data on the disk unless its mtime already is the master's (finished earlier);
/// `Ok(true)` if it was synced now.
fn sync_unless_finished(storage: &dyn Storage, path: &Path, mtime: Mtime) -> io::Result<bool> {
    if storage.mtime(path)? == mtime {
        return Ok(false);
    }
    storage.sync(path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ChunkRule;
    use crate::storage::{Disk, ReadOnlyDisk};

    const CHUNK: u64 = 4096;

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// The manifest of `src` with small fixed chunks, as a master would publish it.
    fn manifest_of(src: &Path) -> Arc<Manifest> {
        let opts = ScanOptions {
            chunk_rule: ChunkRule::Fixed(CHUNK),
            cache: CacheMode::Disabled,
            racy_window: std::time::Duration::ZERO,
            ..Default::default()
        };
        Arc::new(crate::manifest::scan(src, &opts).unwrap())
    }

    fn prepare(dst: &Path, m: &Arc<Manifest>) -> Layout {
        // As the peer does at start (`check_dst`): the storage refuses links at any component.
        let dst = std::fs::canonicalize(dst).unwrap();
        Layout::prepare(&dst, 1, m.clone(), &CacheMode::Disabled, Arc::new(Disk)).unwrap()
    }

    /// Feed every missing chunk from the source, as verified fetches would.
    fn fill(layout: Layout, src: &Path) -> Layout {
        let cell = Mutex::new(Some(layout));
        let m = cell.lock().unwrap().as_ref().unwrap().manifest.clone();
        for f in &m.files {
            let data = std::fs::read(src.join(&f.path)).unwrap();
            for c in &f.chunks {
                let bytes = &data[c.offset as usize..(c.offset + u64::from(c.size)) as usize];
                write_chunk(&cell, &c.hash, bytes).unwrap();
            }
        }
        cell.into_inner().unwrap().unwrap()
    }

    #[test]
    fn an_empty_folder_gets_the_structure_then_the_verified_content() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(src.path(), "a/b/big.bin", &pattern(3 * CHUNK as usize + 5, 1));
        write(src.path(), "empty.txt", b"");
        std::fs::create_dir_all(src.path().join("empty dir")).unwrap();
        let m = manifest_of(src.path());
        let l = prepare(dst.path(), &m);
        assert_eq!((l.bytes_done, l.is_complete()), (0, false));
        assert_eq!(std::fs::metadata(dst.path().join("a/b/big.bin")).unwrap().len(), 3 * CHUNK + 5, "pre-sized");
        assert!(dst.path().join("empty dir").is_dir());
        let l = fill(l, src.path());
        assert!(l.is_complete());
        assert_eq!(l.bytes_done, l.bytes_total);
        assert_eq!(manifest_of(dst.path()).files, m.files, "same content and mtimes");
    }

    #[test]
    fn a_renamed_file_is_moved_and_extra_entries_are_removed() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let content = pattern(2 * CHUNK as usize, 7);
        write(src.path(), "new/name.bin", &content);
        write(dst.path(), "old/name.bin", &content);
        write(dst.path(), "junk.txt", b"not on the master");
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "keep.txt", b"outside the sync dir");
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), dst.path().join("link")).unwrap();
        let m = manifest_of(src.path());
        let l = prepare(dst.path(), &m);
        assert!(l.is_complete(), "the moved file needs nothing fetched");
        assert_eq!(l.local_copies, 2);
        assert_eq!(std::fs::read(dst.path().join("new/name.bin")).unwrap(), content);
        for gone in ["old", "junk.txt", "link"] {
            assert!(std::fs::symlink_metadata(dst.path().join(gone)).is_err(), "{gone} removed");
        }
        assert!(outside.path().join("keep.txt").exists(), "a symlink's target is never touched");
    }

    #[test]
    fn identical_chunks_are_copied_locally_and_a_changed_place_is_re_fetched() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let content = pattern(CHUNK as usize, 3);
        write(src.path(), "one.bin", &content);
        write(src.path(), "two.bin", &content);
        write(dst.path(), "one.bin", &content);
        let m = manifest_of(src.path());
        let mut l = prepare(dst.path(), &m);
        assert!(l.is_complete(), "two.bin was copied from one.bin");
        assert_eq!(std::fs::read(dst.path().join("two.bin")).unwrap(), content);
        let h = m.files[0].chunks[0].hash;
        l.mark_stale(&h);
        assert_eq!(l.lost, vec![h]);
        assert!(!l.has(&h), "a stale chunk is no longer claimed");
    }

    #[test]
    fn a_read_only_storage_cannot_prepare_anything() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(src.path(), "f.bin", b"data");
        let m = manifest_of(src.path());
        let err = Layout::prepare(dst.path(), 1, m, &CacheMode::Disabled, Arc::new(ReadOnlyDisk)).err();
        assert!(matches!(err, Some(LayoutError::Io { .. })), "{err:?}");
        assert!(!dst.path().join("f.bin").exists());
    }
}
