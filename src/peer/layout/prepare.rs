//! Steps 1 to 4 and 6 of [`Layout::prepare`] (listed in the module doc of `layout`): scan the
//! folder, diff it against the manifest, clear what stands in the way, create dirs and size or
//! move files into place, then remove the leftovers.
//!
//! Part of the peer layout (`layout/mod.rs` holds the state this builds; step 5, copying chunks
//! already verified elsewhere in the folder, reuses the chunk writing in `write`).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{io_err, Layout, LayoutError};
use crate::manifest::diff::ChunkSource as DiffSource;
use crate::manifest::{CacheMode, ChunkHash, FileWork, Manifest, ScanOptions, Scanned};
use crate::storage::{self, EntryKind, Storage};

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
        crate::peer::adopt::mark(root, &*storage).map_err(|e| io_err(root, e))?;
        let folds_case = crate::peer::names::is_case_insensitive(root, &*storage).map_err(|e| io_err(root, e))?;
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
            crate::peer::names::match_case(root, &manifest, &needed, &mut scanned.manifest, &*storage)
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
        // The plan's files are the manifest's that need work, in the manifest's order: one walk
        // pairs them (a map by path cost ~30 bytes per file at the preparation's peak).
        let mut work = plan.files.iter().peekable();
        let todo = (0..manifest.files.len()).map(|fi| work.next_if(|w| w.file == fi)).collect();
        layout.size_files(root, todo, &mut spare)?;
        layout.bytes_done = layout.held.iter().zip(&layout.unique).filter(|(p, _)| p.is_some()).map(|(_, u)| u.1).sum();
        layout.copy_held()?;
        layout.copy_from_leftovers(&spare.chunks)?;
        for abs in &spare.paths {
            tracing::info!("removing {} (not in the master's folder)", abs.display());
            layout.storage.remove(abs).map_err(|e| io_err(abs, e))?;
        }
        // Files already complete (or completed by the copies above): make sure their mtime is
        // right, inline, as nothing is being downloaded yet.
        layout.to_finish.clear();
        let complete: Vec<usize> =
            (0..layout.manifest.files.len()).filter(|&fi| layout.file_pending[fi] == 0).collect();
        layout.finish_files(complete)?;
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
        let unique_count = unique.len();
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
            pending: super::Pending::new(unique_count),
            held: vec![None; unique_count],
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
    /// none of them is synced, and the peer says which (see [`crate::peer::names`]).
    fn refuse_case_collisions(&mut self, needed: &HashSet<&str>) {
        let (refused, messages) = crate::peer::names::case_collisions(&self.manifest, needed);
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
        self.pending.forget_file(fi);
        self.file_pending[fi] = self.file_pending[fi].max(f.files[fi].chunks.len().max(1) as u32);
    }

    /// Another program holds file `fi` locked: skip it in this layout, say so, and let the
    /// session retry with a new layout (a sharing violation is not a failed sync).
    pub(super) fn skip_locked(&mut self, fi: usize) {
        if let Some(p) = self.paths[fi].take() {
            tracing::warn!("{}", crate::peer::names::locked_message(&p));
            self.locked.push(p);
        }
        self.never_here(fi);
    }

    /// A write to file `fi` failed: a locked file or a name this folder's file system rejects
    /// (a Windows-hostile name on FAT or SMB) is skipped with a message; anything else fails.
    pub(super) fn skip_or_fail(&mut self, fi: usize, path: &Path, e: io::Error) -> Result<(), LayoutError> {
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

    /// Give every file its final size (moving a leftover with the same content into place
    /// when nothing of it is in place yet), all in one [`Storage::create_sized_many`], and
    /// record which of their chunks are held or pending. `todo[fi]`: what file `fi` lacks
    /// (`None`: nothing).
    fn size_files(
        &mut self,
        root: &Path,
        mut todo: Vec<Option<&FileWork>>,
        spare: &mut Leftovers,
    ) -> Result<(), LayoutError> {
        let m = self.manifest.clone();
        for (fi, w) in todo.iter_mut().enumerate() {
            let whole = w.is_some_and(|w| w.writes_every_chunk(&m.files[fi]));
            if let (true, false, Some(path)) = (whole, spare.files.is_empty(), self.paths[fi].clone()) {
                if self.move_spare(&m.files[fi], &path, spare) {
                    *w = None;
                }
            }
        }
        let here: Vec<usize> = (0..m.files.len()).filter(|&fi| self.paths[fi].is_some()).collect();
        let sized = {
            let list: Vec<(&Path, u64)> =
                here.iter().filter_map(|&fi| Some((self.paths[fi].as_deref()?, m.files[fi].size))).collect();
            self.storage.create_sized_many(&list)
        };
        let mut sized = sized.into_iter();
        let mut here = here.into_iter().peekable();
        for (fi, w) in todo.into_iter().enumerate() {
            if here.next_if_eq(&fi).is_none() {
                // Cannot exist here: its chunks stay pending forever and the peer reports it.
                self.never_here(fi);
                continue;
            }
            let r = sized.next().unwrap_or_else(|| Err(io::Error::other("a file of the batch was not sized")));
            let Some(path) = self.paths[fi].clone() else { continue };
            match r {
                Ok(true) => {
                    // A new entry: its directory is flushed before the file counts as done.
                    if let Some(parent) = path.parent() {
                        self.unsynced_dirs.insert(parent.to_path_buf());
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    self.skip_or_fail(fi, &path, e)?;
                    continue;
                }
            }
            self.account_chunks(root, fi, w, spare);
        }
        Ok(())
    }

    /// Record which chunks of file `fi` (sized) are held and which pending, and where pieces
    /// of leftovers can fill them.
    fn account_chunks(&mut self, root: &Path, fi: usize, todo: Option<&FileWork>, spare: &mut Leftovers) {
        let m = self.manifest.clone();
        let f = &m.files[fi];
        // Both in offset order: one walk pairs the file's chunks with those to write.
        let mut todo = todo.map(|w| w.chunks(f)).into_iter().flatten().peekable();
        for c in &f.chunks {
            let Some((_, source)) = todo.next_if(|(t, _)| t.offset == c.offset) else {
                if !self.has(&c.hash) {
                    self.hold(&c.hash, fi, c.offset);
                }
                continue;
            };
            if let Some(&u) = self.index.get(&c.hash) {
                self.pending.push(u, fi, c.offset);
            }
            self.file_pending[fi] += 1;
            if let DiffSource::Local { path, offset, stable: false } = source {
                if let Some(abs) = spare.local(root, path) {
                    spare.chunks.entry(c.hash).or_insert((abs, *offset, u64::from(c.size)));
                }
            }
        }
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
}
