//! Putting verified chunk bytes in place and finishing files: local copies during `prepare`,
//! chunks from the network through [`write_chunk`], and the fsync that must come before a
//! file counts as done.
//!
//! Part of the peer layout (`layout/mod.rs` holds the state; the durability rules are in its
//! module doc).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{io_err, Layout, LayoutError};
use crate::manifest::{ChunkHash, Mtime};
use crate::storage::{self, Storage};

impl Layout {
    /// Copy chunks whose content is already verified elsewhere in the folder (dedup, identical
    /// files), re-verifying the source first.
    pub(super) fn copy_held(&mut self) -> Result<(), LayoutError> {
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
    pub(super) fn copy_from_leftovers(
        &mut self,
        chunks: &HashMap<ChunkHash, (PathBuf, u64, u64)>,
    ) -> Result<(), LayoutError> {
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
    pub(super) fn finish_file(&mut self, fi: usize) -> Result<(), LayoutError> {
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
