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
//! synced once (`Storage::sync_dir`); a batch's files are flushed later, by the peer's
//! finisher (`peer::finisher`), with every other file completed meanwhile. A file whose mtime
//! already is the master's was finished that way by an earlier run and costs nothing. Files a
//! layout wrote to but did not finish are fsynced before the next layout's scan may cache their
//! hashes ([`Layout::sync_unfinished`]). Not covered: empty directories (recreated by the next
//! layout if a power loss takes them), and the content a killed run left in the page cache,
//! which a restart's scan hashes before the kernel has written it back.
//!
//! This file holds the layout's state and what the session asks of it; measuring the folder
//! and preparing it is in `prepare`, putting chunk bytes in place and finishing files in `write`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{ChunkHash, Manifest};
use crate::storage::{self, Storage};
use pending::Pending;

mod pending;
mod prepare;
#[cfg(test)]
mod tests;
mod write;

pub use write::{finish_pending, place_chunks, write_chunk, write_chunks};

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
    /// Places still to be written, per chunk of `unique`: (file index, offset).
    pending: Pending,
    /// One verified place per chunk held, (file index, offset), indexed like `unique`: a flat
    /// vec rather than a map by hash, so the status map every 250 ms is a scan, not 200,000
    /// hash lookups under the layout lock (8.7 % of a small-file peer's CPU), in ~24 instead of
    /// ~65 bytes per chunk.
    held: Vec<Option<(usize, u64)>>,
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
    /// Files whose last chunk is in, to be fsynced by [`write_chunk`] or [`finish_pending`]
    /// outside the layout lock, and how many are being synced now: neither counts as complete
    /// yet.
    to_finish: Vec<usize>,
    syncing: usize,
    /// A write met a symlink planted in the folder: this layout no longer describes the folder,
    /// and the next manifest (even the same one) rebuilds it, removing the link.
    pub foreign: bool,
}

impl Layout {
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

    /// Files whose last chunk is in but whose finishing failed: [`finish_pending`] is due.
    pub fn needs_finish(&self) -> bool {
        !self.to_finish.is_empty() && self.syncing == 0
    }

    /// Files whose last chunk is in, waiting to be finished (by the finisher or a retry).
    pub fn has_unfinished(&self) -> bool {
        !self.to_finish.is_empty()
    }

    pub fn has(&self, h: &ChunkHash) -> bool {
        self.held_at(h).is_some()
    }

    /// The verified place of `h` here: (file index, offset, size).
    fn held_at(&self, h: &ChunkHash) -> Option<(usize, u64, u64)> {
        let &i = self.index.get(h)?;
        let (fi, off) = self.held[i]?;
        Some((fi, off, self.unique[i].1))
    }

    /// Record `h` as verified at (`fi`, `off`), replacing an earlier place; true if it was not
    /// held before. A chunk the manifest lacks is not recorded.
    fn hold(&mut self, h: &ChunkHash, fi: usize, off: u64) -> bool {
        let Some(&i) = self.index.get(h) else { return false };
        self.held[i].replace((fi, off)).is_none()
    }

    /// Forget `h`'s place; its size if it was held.
    fn unhold(&mut self, h: &ChunkHash) -> Option<u64> {
        let &i = self.index.get(h)?;
        self.held[i].take().map(|_| self.unique[i].1)
    }

    pub fn held_chunks(&self) -> Vec<ChunkHash> {
        self.unique.iter().zip(&self.held).filter(|(_, p)| p.is_some()).map(|((h, _), _)| *h).collect()
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
        let (fi, off, size) = self.held_at(h)?;
        Some((self.paths[fi].clone()?, off, size))
    }

    /// The content at `h`'s place changed on disk: stop claiming it.
    pub fn mark_stale(&mut self, h: &ChunkHash) {
        if let Some(size) = self.unhold(h) {
            self.bytes_done -= size;
            self.lost.push(*h);
        }
    }

    /// Have-map cells for the status snapshot.
    pub fn chunk_map(&self) -> Vec<u8> {
        self.held
            .iter()
            .map(|p| if p.is_some() { crate::status::CELL_HAS } else { crate::status::CELL_MISSING })
            .collect()
    }
}
