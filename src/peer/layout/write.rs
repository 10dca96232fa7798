//! Putting verified chunk bytes in place and finishing files: local copies during `prepare`,
//! chunks from the network through [`write_chunk`] or a batch of them through
//! [`write_chunks`], and the fsync that must come before a file counts as done.
//!
//! Durable before done, for many files at once: the files a call completes are flushed
//! together with the new directory entries above them (`Storage::sync_many`: on Linux one
//! `syncfs` for all of them instead of one `fsync` each, which for tiny files was the cost of
//! a file), then each gets the master's mtime, and only then does any of them count as done.
//! A file is never marked done before its data and its entry are on the disk; if the shared
//! flush fails, each file and directory is synced on its own, so one bad file does not hold
//! the others back. The writes, mtimes and flushes of a batch go through the seam's `_many`
//! methods, which walk each directory once per batch, not each file 4-5 times.
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
        let copyable: Vec<ChunkHash> =
            self.pending.waiting().filter(|&u| self.held[u].is_some()).map(|u| self.unique[u].0).collect();
        for h in copyable {
            let Some((fi, off, size)) = self.held_at(&h) else { continue };
            let Some(src) = self.paths[fi].clone() else { continue };
            match storage::read_verified(&*self.storage, &src, off, size, &h).map_err(|e| io_err(&src, e))? {
                Some(data) => {
                    self.place(&h, &data)?;
                    self.local_copies += 1;
                }
                None => {
                    // The source changed since the scan: forget it, fetch instead.
                    self.unhold(&h);
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
        let wanted: Vec<ChunkHash> =
            self.pending.waiting().map(|u| self.unique[u].0).filter(|h| chunks.contains_key(h)).collect();
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
        self.place_many(&[(*h, data)])
    }

    /// Write verified chunks to every place still waiting for them (blocking), all of them in
    /// one [`Storage::write_many`] (each directory walked once, not each file). A locked file
    /// is skipped; after any other error the places not yet counted stay pending (a place
    /// written anyway is written again later, with the same verified bytes) and the error is
    /// returned once the places before it are counted.
    fn place_many<D: AsRef<[u8]>>(&mut self, chunks: &[(ChunkHash, D)]) -> Result<(), LayoutError> {
        let mut jobs: Vec<(usize, usize, Vec<Place>)> = Vec::new();
        for (ci, (h, _)) in chunks.iter().enumerate() {
            let Some(&u) = self.index.get(h) else { continue };
            let places = self.pending.take(u);
            if !places.is_empty() {
                jobs.push((ci, u, places.into_iter().map(|(fi, off)| (fi, off, self.paths[fi].is_some())).collect()));
            }
        }
        let results = {
            let paths = &self.paths;
            let writes: Vec<(&Path, u64, &[u8])> = jobs
                .iter()
                .flat_map(|(ci, _, places)| {
                    let data = chunks[*ci].1.as_ref();
                    places.iter().filter_map(move |&(fi, off, _)| Some((paths[fi].as_deref()?, off, data)))
                })
                .collect();
            self.storage.write_many(&writes)
        };
        let mut results = results.into_iter();
        let mut failed = None;
        for (ci, u, places) in jobs {
            let (h, data) = &chunks[ci];
            let (mut done, mut keep) = (Vec::new(), Vec::new());
            for (fi, off, wrote) in places {
                if !wrote {
                    continue;
                }
                let r = results.next().unwrap_or_else(|| Err(io::Error::other("a write of the batch was not done")));
                if r.is_ok() {
                    self.written.insert(fi);
                }
                // Skipped (locked) by an earlier place of this batch: no longer part of it.
                let Some(path) = self.paths[fi].clone() else { continue };
                match r {
                    _ if failed.is_some() => keep.push((fi, off)),
                    Ok(()) => done.push((fi, off)),
                    Err(e) if storage::is_locked(&e) => self.skip_locked(fi),
                    Err(e) => {
                        self.foreign |= storage::is_link_in_path(&e);
                        keep.push((fi, off));
                        let left = self.bytes_total.saturating_sub(self.bytes_done);
                        failed = Some(io_err(&path, e).with_space(&*self.storage, Some(left)));
                    }
                }
            }
            for (fi, off) in keep {
                self.pending.push(u, fi, off);
            }
            self.mark_done(h, &done, data.as_ref().len() as u64)?;
        }
        failed.map_or(Ok(()), Err)
    }

    fn mark_done(&mut self, h: &ChunkHash, done: &[(usize, u64)], size: u64) -> Result<(), LayoutError> {
        if let Some(&(fi, off)) = done.first() {
            if self.hold(h, fi, off) {
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
    pub(super) fn finish_files(&mut self, fis: Vec<usize>) -> Result<(), LayoutError> {
        let fin = self.take_finishing(fis);
        let results = make_durable(&*self.storage, &fin);
        self.record_finished(fin, results)
    }

    /// Take files `fis` to be finished outside the lock, with the directories above them whose
    /// new entries are not on the disk yet; they count as being synced until
    /// [`Self::record_finished`].
    fn take_finishing(&mut self, fis: Vec<usize>) -> Finishing {
        let files: Vec<_> = fis
            .into_iter()
            .filter_map(|fi| {
                let path = self.paths[fi].clone()?;
                Some((fi, path, self.manifest.files[fi].mtime, self.written.contains(&fi)))
            })
            .collect();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, path, _, _) in &files {
            dirs.extend(path.ancestors().skip(1).filter(|d| self.unsynced_dirs.remove(*d)).map(Path::to_path_buf));
        }
        self.syncing += files.len();
        Finishing { files, dirs }
    }

    /// The second half of finishing files, after [`make_durable`]: the files it finished
    /// count as done. A file whose finishing failed for a reason that may pass (an fsync
    /// error, say) is not complete: it goes back on `to_finish` for [`finish_pending`] (a lost
    /// fsync must not leave a file counted as done that never reached the disk); so do all of
    /// them if their directories could not be flushed.
    fn record_finished(&mut self, fin: Finishing, results: Durable) -> Result<(), LayoutError> {
        let Finishing { files, dirs } = fin;
        let (file_results, dirs_result) = results;
        self.syncing -= files.len();
        let mut first_err = None;
        let mut ok = Vec::with_capacity(files.len());
        for ((fi, path, _, _), r) in files.into_iter().zip(file_results) {
            match r {
                Ok(()) => ok.push(fi),
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
        if let (Err(e), Some(first)) = (dirs_result, dirs.first()) {
            let err = io_err(first, e);
            self.unsynced_dirs.extend(dirs);
            // Their data and mtimes are in: a retry syncs them and the directories again.
            self.to_finish.extend(ok);
            return Err(first_err.unwrap_or(err));
        }
        for fi in ok {
            self.written.remove(&fi);
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// A place a chunk of a batch goes: (file index, offset, whether the file has a path here,
/// and so a write in the batch).
type Place = (usize, u64, bool);

/// Files being finished outside the layout lock: (index, path, master's mtime, written by
/// this layout, so certainly not finished yet), and the directories with new entries above
/// them.
pub(super) struct Finishing {
    files: Vec<(usize, PathBuf, Mtime, bool)>,
    dirs: Vec<PathBuf>,
}

/// What [`make_durable`] did: per file `Ok` once it is finished, and whether the directories'
/// entries are on the disk.
type Durable = (Vec<io::Result<()>>, io::Result<()>);

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
    let (placed, storage, fin) = {
        let mut guard = lock(layout);
        let Some(l) = guard.as_mut() else { return Ok(()) };
        let placed = l.place_many(chunks);
        let fis = std::mem::take(&mut l.to_finish);
        (placed, l.storage.clone(), l.take_finishing(fis))
    };
    let finished = finish_taken(layout, &*storage, fin);
    placed.and(finished)
}

/// Place a batch of verified chunks as [`write_chunks`] does, but leave the files they
/// complete on `to_finish` for [`finish_pending`] (the peer's finisher, `peer::finisher`), so
/// the caller does not wait for the disk flush.
pub fn place_chunks<D: AsRef<[u8]>>(
    layout: &Mutex<Option<Layout>>,
    chunks: &[(ChunkHash, D)],
) -> Result<(), LayoutError> {
    let mut guard = lock(layout);
    let Some(l) = guard.as_mut() else { return Ok(()) };
    l.place_many(chunks)
}

/// Finish the files whose last chunk is in (blocking): those [`place_chunks`] left, and again
/// those whose finishing failed (an fsync or mtime error); the session also calls it now and
/// then until none is left ([`Layout::needs_finish`]).
pub fn finish_pending(layout: &Mutex<Option<Layout>>) -> Result<(), LayoutError> {
    let (storage, fin) = {
        let mut guard = lock(layout);
        let Some(l) = guard.as_mut() else { return Ok(()) };
        let fis = std::mem::take(&mut l.to_finish);
        (l.storage.clone(), l.take_finishing(fis))
    };
    finish_taken(layout, &*storage, fin)
}

fn lock(layout: &Mutex<Option<Layout>>) -> std::sync::MutexGuard<'_, Option<Layout>> {
    layout.lock().unwrap_or_else(|p| p.into_inner())
}

/// Make the taken files durable outside the lock, then record them.
fn finish_taken(layout: &Mutex<Option<Layout>>, storage: &dyn Storage, fin: Finishing) -> Result<(), LayoutError> {
    if fin.files.is_empty() {
        return Ok(());
    }
    let results = make_durable(storage, &fin);
    let mut guard = lock(layout);
    let Some(l) = guard.as_mut() else { return Ok(()) };
    l.record_finished(fin, results)
}

/// Put the data of the files and the new entries of the directories above them on the disk,
/// then give each file the master's mtime (blocking, outside the lock). A file whose mtime
/// already is the master's (and that this layout did not write) was finished earlier and is
/// left as it is. Together when there are several (one `sync_many`); if that fails, one by
/// one, so one bad file does not hold the others back.
fn make_durable(storage: &dyn Storage, fin: &Finishing) -> Durable {
    let unknown: Vec<&Path> = fin.files.iter().filter(|f| !f.3).map(|f| f.1.as_path()).collect();
    let mut mtimes = storage.mtime_many(&unknown).into_iter();
    let mut out: Vec<io::Result<bool>> = fin
        .files
        .iter()
        .map(|(_, _, master, written)| match written {
            true => Ok(true),
            false => mtimes.next().unwrap_or_else(|| Err(io::Error::other("no mtime read"))).map(|t| t != *master),
        })
        .collect();
    let todo: Vec<&Path> =
        fin.files.iter().zip(&out).filter(|(_, r)| matches!(r, Ok(true))).map(|(f, _)| f.1.as_path()).collect();
    let dirs: Vec<&Path> = fin.dirs.iter().map(PathBuf::as_path).collect();
    let mut dirs_result = Ok(());
    if todo.len() + dirs.len() <= 1 || storage.sync_many(&todo, &dirs).is_err() {
        for ((_, path, _, _), r) in fin.files.iter().zip(out.iter_mut()) {
            if matches!(r, Ok(true)) {
                if let Err(e) = storage.sync(path) {
                    *r = Err(e);
                }
            }
        }
        for d in &dirs {
            if let Err(e) = storage.sync_dir(d) {
                dirs_result = dirs_result.and(Err(e));
            }
        }
    }
    let set: Vec<(&Path, Mtime)> =
        fin.files.iter().zip(&out).filter(|(_, r)| matches!(r, Ok(true))).map(|(f, _)| (f.1.as_path(), f.2)).collect();
    let mut set_results = storage.set_mtime_many(&set).into_iter();
    let files = out
        .into_iter()
        .map(|r| match r {
            Ok(true) => set_results.next().unwrap_or_else(|| Err(io::Error::other("no mtime set"))),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        })
        .collect();
    (files, dirs_result)
}
