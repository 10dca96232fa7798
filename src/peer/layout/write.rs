//! Putting verified chunk bytes in place and finishing files: local copies during `prepare`,
//! chunks from the network through [`write_chunk`] or a batch of them through
//! [`write_chunks`], and the fsync that must come before a file counts as done.
//!
//! Durable before done, for many files at once: the files a call completes are flushed
//! together (`Storage::sync_many`: on Linux one `syncfs` for all of them instead of one
//! `fsync` each, which for tiny files was the cost of a file), then each gets the master's
//! mtime, then the new directory entries above all of them are flushed together, and only
//! then does any of them count as done. A file is never marked done before its data is on the
//! disk; if the shared flush fails, each file is synced on its own, so one bad file does not
//! hold the others back.
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

    /// Finish files whose last chunk is in, inline (blocking: `prepare`, before anything is
    /// downloaded), all together as [`write_chunks`] does.
    pub(super) fn finish_files(&mut self, fis: &[usize]) -> Result<(), LayoutError> {
        let files: Vec<_> =
            fis.iter().filter_map(|&fi| Some((fi, self.paths[fi].clone()?, self.manifest.files[fi].mtime))).collect();
        let synced = sync_unless_finished(&*self.storage, &files);
        self.finish_synced(files, synced)
    }

    /// Files whose data [`write_chunks`] syncs outside the lock: (index, path, master's mtime).
    fn take_to_finish(&mut self) -> Vec<(usize, PathBuf, Mtime)> {
        let files: Vec<_> = std::mem::take(&mut self.to_finish)
            .into_iter()
            .filter_map(|fi| Some((fi, self.paths[fi].clone()?, self.manifest.files[fi].mtime)))
            .collect();
        self.syncing += files.len();
        files
    }

    /// The second half of finishing files, after [`sync_unless_finished`] (`Ok(true)`: synced
    /// now, needs the master's mtime): mtimes, then the new directory entries above them on
    /// the disk (one flush for all), then they count as done. A file whose finishing failed
    /// for a reason that may pass (an fsync error, say) is not complete: it goes back on
    /// `to_finish` for [`retry_finish`] (a lost fsync must not leave a file counted as done
    /// that never reached the disk).
    fn finish_synced(
        &mut self,
        files: Vec<(usize, PathBuf, Mtime)>,
        synced: Vec<io::Result<bool>>,
    ) -> Result<(), LayoutError> {
        let mut first_err = None;
        let mut ok = Vec::with_capacity(files.len());
        for ((fi, path, mtime), r) in files.into_iter().zip(synced) {
            match r.and_then(|set| if set { self.storage.set_mtime(&path, mtime) } else { Ok(()) }) {
                Ok(()) => ok.push((fi, path)),
                Err(e) => {
                    self.foreign |= storage::is_link_in_path(&e);
                    let refused = storage::is_locked(&e) || storage::is_name_rejected(&e) || self.foreign;
                    if !refused {
                        self.to_finish.push(fi);
                    }
                    if let Err(e) = self.skip_or_fail(fi, &path, e) {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, path) in &ok {
            dirs.extend(path.ancestors().skip(1).filter(|d| self.unsynced_dirs.remove(*d)).map(Path::to_path_buf));
        }
        if !dirs.is_empty() {
            let list: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
            if let Err(e) = self.storage.sync_many(&[], &list) {
                let err = io_err(&dirs[0], e);
                self.unsynced_dirs.extend(dirs);
                // Their data and mtimes are in: a retry finds them finished and flushes the
                // directories again.
                self.to_finish.extend(ok.into_iter().map(|(fi, _)| fi));
                return Err(first_err.unwrap_or(err));
            }
        }
        for (fi, _) in ok {
            self.written.remove(&fi);
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Write a verified chunk into every place of the current layout that still needs it
/// (blocking). A chunk no place needs any more (already held, or not in the current manifest)
/// is dropped. A file this completes is fsynced after the layout lock is released, so other
/// chunks keep being written meanwhile.
pub fn write_chunk(layout: &Mutex<Option<Layout>>, h: &ChunkHash, data: &[u8]) -> Result<(), LayoutError> {
    write_chunks(layout, &[(*h, data)])
}

/// [`write_chunk`] for a batch of verified chunks: all placed under one lock, the files they
/// complete made durable together (see the module doc). On a write error the chunks before it
/// are kept, the rest stay pending.
pub fn write_chunks<D: AsRef<[u8]>>(
    layout: &Mutex<Option<Layout>>,
    chunks: &[(ChunkHash, D)],
) -> Result<(), LayoutError> {
    // The layout lock is held during the writes: per-chunk writes are short, and the caller
    // additionally holds the engine's relayout read lock, so a new manifest waits for them and
    // for the fsyncs below.
    let (placed, storage, files) = {
        let mut guard = lock(layout);
        let Some(l) = guard.as_mut() else { return Ok(()) };
        let mut placed = Ok(());
        for (h, data) in chunks {
            if l.pending.get(h).is_some_and(|p| !p.is_empty()) {
                placed = l.place(h, data.as_ref());
                if placed.is_err() {
                    break;
                }
            }
        }
        (placed, l.storage.clone(), l.take_to_finish())
    };
    let finished = finish_files(layout, &*storage, files);
    placed.and(finished)
}

/// Finish again the files whose finishing failed (an fsync or mtime error), blocking; the
/// session calls it now and then until none is left ([`Layout::needs_finish`]).
pub fn retry_finish(layout: &Mutex<Option<Layout>>) -> Result<(), LayoutError> {
    let (storage, files) = {
        let mut guard = lock(layout);
        let Some(l) = guard.as_mut() else { return Ok(()) };
        (l.storage.clone(), l.take_to_finish())
    };
    finish_files(layout, &*storage, files)
}

fn lock(layout: &Mutex<Option<Layout>>) -> std::sync::MutexGuard<'_, Option<Layout>> {
    layout.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sync `files` (taken by [`Layout::take_to_finish`]) outside the lock, then finish them.
fn finish_files(
    layout: &Mutex<Option<Layout>>,
    storage: &dyn Storage,
    files: Vec<(usize, PathBuf, Mtime)>,
) -> Result<(), LayoutError> {
    if files.is_empty() {
        return Ok(());
    }
    let synced = sync_unless_finished(storage, &files);
    let mut guard = lock(layout);
    let Some(l) = guard.as_mut() else { return Ok(()) };
    l.syncing -= files.len();
    l.finish_synced(files, synced)
}

/// Put the data of files on the disk unless their mtime already is the master's (finished
/// earlier): per file `Ok(true)` if it was synced now. Together when there are several.
fn sync_unless_finished(storage: &dyn Storage, files: &[(usize, PathBuf, Mtime)]) -> Vec<io::Result<bool>> {
    let mut out: Vec<io::Result<bool>> = files.iter().map(|(_, p, m)| storage.mtime(p).map(|t| t != *m)).collect();
    let todo: Vec<&Path> =
        files.iter().zip(&out).filter(|(_, r)| matches!(r, Ok(true))).map(|(f, _)| f.1.as_path()).collect();
    if todo.len() > 1 && storage.sync_many(&todo, &[]).is_ok() {
        return out;
    }
    for ((_, path, _), r) in files.iter().zip(out.iter_mut()) {
        if matches!(r, Ok(true)) {
            if let Err(e) = storage.sync(path) {
                *r = Err(e);
            }
        }
    }
    out
}
