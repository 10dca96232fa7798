//! `scan`: turn a folder into a [`Manifest`].
//!
//! Steps: check the root, walk it (`walk`), flag names Windows cannot hold or that collide
//! case-insensitively, serve unchanged files from the hash cache, hash the rest in parallel
//! (`hash`), then re-`lstat` every hashed file: if its stamp (size, mtime, ctime, inode) moved
//! while we read it, the hash may mix old and new bytes, so it is hashed again (up to
//! [`MAX_ATTEMPTS`] times) and then reported rather than recorded. A file that vanishes is left
//! out with a warning; an unreadable one is an error unless `skip_unreadable` is set, in which
//! case the manifest says it is incomplete ([`Manifest::is_complete`]).
//!
//! With [`ScanOptions::settle`] (the master) a file that is still being written, i.e. modified
//! within that window or changing while hashed, is neither hashed again nor an error: it is left
//! out and named in [`Scanned::unsettled`], so one file being copied in does not fail the whole
//! index, and the caller decides what to publish for it and when to look again.
//!
//! Blocking and CPU-heavy: async callers use `spawn_blocking`. `threads` picks a dedicated rayon
//! pool size; by default the global pool (one thread per core) is used.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::cache::{CacheMode, FileStamp, HashCache};
use super::chunking::{self, ChunkRule};
pub use super::error::ScanError;
use super::hash::{hash_files, ByteCounter, HashFailure, HashJob};
use super::walk::{abs_path, walk, FoundFile};
use super::{Chunk, ChunkHash, DirEntry, FileEntry, Manifest, Mtime, ScanWarning};
use crate::paths::{case_fold_key, windows_name_problem};

/// How often a file that changes while being hashed is re-hashed before giving up.
pub const MAX_ATTEMPTS: usize = 3;

/// Progress snapshot, reported from worker threads (keep the callback cheap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanProgress {
    /// Regular files found by the walk.
    pub files: u64,
    /// Sum of their sizes.
    pub bytes_total: u64,
    /// Bytes whose hashes came from the cache.
    pub bytes_cached: u64,
    /// Bytes that must be read and hashed.
    pub bytes_to_hash: u64,
    /// Bytes hashed so far.
    pub bytes_hashed: u64,
}

/// Callback for [`ScanProgress`] updates.
pub type ProgressFn = Arc<dyn Fn(ScanProgress) + Send + Sync>;

/// How to scan.
#[derive(Clone)]
pub struct ScanOptions {
    pub chunk_rule: ChunkRule,
    pub cache: CacheMode,
    pub progress: Option<ProgressFn>,
    /// Worker threads for hashing and walking; `None` uses one per core.
    pub threads: Option<usize>,
    /// Leave out unreadable files/dirs with a warning (manifest marked incomplete) instead of
    /// failing the scan.
    pub skip_unreadable: bool,
    /// Files modified less than this long before hashing started are not stored in the hash
    /// cache (timestamps are too coarse to prove a later same-size rewrite changed them). 2 s
    /// covers FAT's mtime resolution.
    pub racy_window: Duration,
    /// Leave out files modified less than this long before (or after: a share's clock may run
    /// ahead) hashing started, and files that change while hashed, naming them in
    /// [`Scanned::unsettled`] instead of hashing them again or failing. `None` (the default):
    /// such files are hashed again, up to [`MAX_ATTEMPTS`] times.
    pub settle: Option<Duration>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            chunk_rule: ChunkRule::Auto,
            cache: CacheMode::Default,
            progress: None,
            threads: None,
            skip_unreadable: false,
            racy_window: Duration::from_secs(2),
            settle: None,
        }
    }
}

impl fmt::Debug for ScanOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanOptions")
            .field("chunk_rule", &self.chunk_rule)
            .field("cache", &self.cache)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .field("threads", &self.threads)
            .field("skip_unreadable", &self.skip_unreadable)
            .field("racy_window", &self.racy_window)
            .field("settle", &self.settle)
            .finish()
    }
}

/// Index the folder at `root`. Blocking; see the module doc.
pub fn scan(root: &Path, opts: &ScanOptions) -> Result<Manifest, ScanError> {
    scan_dir(root, opts).map(|s| s.manifest)
}

/// What [`scan_dir`] found: the manifest, and where the entries it left out live.
#[derive(Debug)]
pub struct Scanned {
    pub manifest: Manifest,
    /// Absolute paths of symlinks, special files and unsyncable names (see the warnings).
    pub skipped: Vec<PathBuf>,
    /// With [`ScanOptions::settle`]: files still being written, left out of the manifest, with
    /// how long ago each was last modified (zero when it changed while hashed).
    pub unsettled: Vec<Unsettled>,
}

/// A file [`ScanOptions::settle`] left out because it is still being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub path: String,
    /// Time since its last modification as seen by the scan (zero if it changed while hashed
    /// or its clock runs ahead).
    pub age: Duration,
}

/// [`scan`], also returning the places of what it left out: the one walk a peer needs to both
/// find its verified content and clean its folder.
pub fn scan_dir(root: &Path, opts: &ScanOptions) -> Result<Scanned, ScanError> {
    opts.chunk_rule.validate()?;
    match opts.threads {
        None => scan_in_pool(root, opts),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .thread_name(|i| format!("lanscatter-hash-{i}"))
                .build()
                .map_err(|e| ScanError::ThreadPool { threads: n, reason: e.to_string() })?;
            pool.install(|| scan_in_pool(root, opts))
        }
    }
}

fn scan_in_pool(root: &Path, opts: &ScanOptions) -> Result<Scanned, ScanError> {
    let root = checked_root(root)?;
    let listing = walk(&root, opts.skip_unreadable)?;
    let mut warnings = listing.warnings;
    flag_names(&listing.files, &listing.dirs, &mut warnings);

    let (mut cache, cache_warning) = HashCache::load(&opts.cache, &root);
    if let Some(message) = cache_warning {
        tracing::warn!("{message}");
        warnings.push(ScanWarning::HashCache { message });
    }

    let rule = opts.chunk_rule;
    let (mut state, progress) = FileHashes::from_cache(root, listing.files, &mut cache, rule);
    report(opts, progress);
    let now = SystemTime::now();
    let trusted_before = Mtime::from(now - opts.racy_window);
    if let Some(window) = opts.settle {
        state.hold_recent(now, window);
    }
    let counter = ByteCounter::default();
    state.hash_pending(opts, progress, &counter, &mut warnings)?;
    let unsettled = std::mem::take(&mut state.unsettled);
    let entries = state.into_entries(&mut cache, rule, trusted_before);
    let mut dirs: Vec<DirEntry> = listing.dirs.into_iter().map(|path| DirEntry { path }).collect();
    dirs.sort_unstable();

    if let Err(message) = cache.save() {
        tracing::warn!("{message}");
        warnings.push(ScanWarning::HashCache { message });
    }
    let manifest = Manifest { files: entries, dirs, chunk_rule: rule, warnings };
    report(opts, ScanProgress { bytes_hashed: counter_value(&counter), ..progress });
    Ok(Scanned { manifest, skipped: listing.skipped, unsettled })
}

/// The canonical path of `root`, which must be an existing directory.
fn checked_root(root: &Path) -> Result<PathBuf, ScanError> {
    let meta = fs::metadata(root).map_err(|e| ScanError::from_io(root, e))?;
    if !meta.is_dir() {
        return Err(ScanError::NotADir(root.to_path_buf()));
    }
    fs::canonicalize(root).map_err(|e| ScanError::from_io(root, e))
}

/// The walk's files with what is known of their chunk hashes so far, index for index.
struct FileHashes {
    /// The walked root: a file's absolute path is `abs_path(root, wire)`.
    root: PathBuf,
    files: Vec<FoundFile>,
    hashes: Vec<Option<Vec<ChunkHash>>>,
    /// Which hashes the cache supplied (those need not be recorded in it again).
    from_cache: Vec<bool>,
    /// Files left out of the manifest (vanished, skipped as unreadable, or unsettled).
    dropped: Vec<bool>,
    /// Files left out because they are still being written ([`ScanOptions::settle`]).
    unsettled: Vec<Unsettled>,
}

type HashResult = Result<Vec<ChunkHash>, HashFailure>;

impl FileHashes {
    /// Take every hash the cache still vouches for, and count what is left to hash.
    fn from_cache(
        root: PathBuf,
        files: Vec<FoundFile>,
        cache: &mut HashCache,
        rule: ChunkRule,
    ) -> (Self, ScanProgress) {
        let mut hashes = Vec::with_capacity(files.len());
        let mut progress = ScanProgress { files: files.len() as u64, ..Default::default() };
        for f in &files {
            let cs = rule.chunk_size_for(f.stamp.size);
            progress.bytes_total += f.stamp.size;
            let hit = cache.lookup(&f.wire, &f.stamp, cs);
            if hit.is_some() {
                progress.bytes_cached += f.stamp.size;
                cache.keep(&f.wire);
            } else {
                progress.bytes_to_hash += f.stamp.size;
            }
            hashes.push(hit);
        }
        let from_cache = hashes.iter().map(Option::is_some).collect();
        let dropped = vec![false; files.len()];
        (FileHashes { root, files, hashes, from_cache, dropped, unsettled: Vec::new() }, progress)
    }

    fn abs(&self, i: usize) -> PathBuf {
        abs_path(&self.root, &self.files[i].wire)
    }

    /// Leave out, unhashed, the files to hash that were modified within `window` of `now`:
    /// hashing a file that is being copied in only produces a version nobody wants.
    fn hold_recent(&mut self, now: SystemTime, window: Duration) {
        for i in 0..self.files.len() {
            if self.hashes[i].is_some() {
                continue;
            }
            let mtime = self.files[i].stamp.mtime.to_system_time();
            let age = now.duration_since(mtime).unwrap_or(Duration::ZERO);
            let ahead = mtime.duration_since(now).unwrap_or(Duration::ZERO);
            if age < window && ahead < window {
                self.hold(i, age);
            }
        }
    }

    /// Leave file `i` out as still being written, `age` after its last modification.
    fn hold(&mut self, i: usize, age: Duration) {
        self.dropped[i] = true;
        self.unsettled.push(Unsettled { path: self.files[i].wire.clone(), age });
    }

    /// Hash every file the cache could not serve, hashing again those that change meanwhile.
    fn hash_pending(
        &mut self,
        opts: &ScanOptions,
        progress: ScanProgress,
        counter: &ByteCounter,
        warnings: &mut Vec<ScanWarning>,
    ) -> Result<(), ScanError> {
        let mut pending: Vec<usize> =
            (0..self.files.len()).filter(|&i| self.hashes[i].is_none() && !self.dropped[i]).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            if attempt > MAX_ATTEMPTS {
                return self.give_up(&pending, opts, warnings);
            }
            let results = self.hash_round(&pending, opts, progress, counter);
            pending = self.settle(&pending, results, opts, warnings)?;
        }
        Ok(())
    }

    /// Files still changing after [`MAX_ATTEMPTS`]: an error, or left out with a warning.
    fn give_up(
        &mut self,
        pending: &[usize],
        opts: &ScanOptions,
        warnings: &mut Vec<ScanWarning>,
    ) -> Result<(), ScanError> {
        if !opts.skip_unreadable {
            let path = self.abs(pending[0]);
            return Err(ScanError::KeepsChanging { path, attempts: MAX_ATTEMPTS });
        }
        for &i in pending {
            let reason = format!("kept changing while hashed ({MAX_ATTEMPTS} attempts)");
            warnings.push(ScanWarning::Unreadable { path: self.files[i].wire.clone(), reason });
            self.dropped[i] = true;
        }
        Ok(())
    }

    /// Hash the `pending` files once, reporting progress every few MiB.
    fn hash_round(
        &self,
        pending: &[usize],
        opts: &ScanOptions,
        progress: ScanProgress,
        counter: &ByteCounter,
    ) -> Vec<HashResult> {
        let rule = opts.chunk_rule;
        let jobs: Vec<HashJob> = pending
            .iter()
            .map(|&i| HashJob {
                root: &self.root,
                wire: &self.files[i].wire,
                size: self.files[i].stamp.size,
                chunk_size: rule.chunk_size_for(self.files[i].stamp.size),
            })
            .collect();
        const REPORT_EVERY: u64 = 8 << 20;
        let on_bytes = |n: u64| {
            let done = counter.add(n);
            if opts.progress.is_some() && (done - n) / REPORT_EVERY != done / REPORT_EVERY {
                report(opts, ScanProgress { bytes_hashed: done.min(progress.bytes_to_hash), ..progress });
            }
        };
        hash_files(&jobs, &on_bytes)
    }

    /// Keep the hashes of files that did not change while read; returns those to hash again.
    fn settle(
        &mut self,
        pending: &[usize],
        results: Vec<HashResult>,
        opts: &ScanOptions,
        warnings: &mut Vec<ScanWarning>,
    ) -> Result<Vec<usize>, ScanError> {
        let mut again = Vec::new();
        for (&i, res) in pending.iter().zip(results) {
            let abs = self.abs(i);
            let f = &mut self.files[i];
            match res {
                Ok(h) => match restat(&abs) {
                    Some(now) if now == f.stamp => self.hashes[i] = Some(h),
                    Some(_) if opts.settle.is_some() => {
                        tracing::debug!("{} changed while hashed; left for the next scan", f.wire);
                        self.hold(i, Duration::ZERO);
                        continue;
                    }
                    Some(now) => {
                        tracing::debug!("{} changed while hashed; hashing again", f.wire);
                        f.stamp = now;
                        again.push(i);
                    }
                    None => self.dropped[i] = true,
                },
                Err(HashFailure::Vanished) => self.dropped[i] = true,
                Err(HashFailure::Shrank) if opts.settle.is_some() && restat(&abs).is_some() => {
                    self.hold(i, Duration::ZERO);
                    continue;
                }
                Err(HashFailure::Shrank) => match restat(&abs) {
                    Some(now) => {
                        f.stamp = now;
                        again.push(i);
                    }
                    None => self.dropped[i] = true,
                },
                Err(HashFailure::Unreadable(e)) | Err(HashFailure::Io(e)) => {
                    if !opts.skip_unreadable {
                        return Err(ScanError::from_io(&abs, e));
                    }
                    warnings.push(ScanWarning::Unreadable { path: f.wire.clone(), reason: e.to_string() });
                    // Not vanished, but equally left out of the manifest.
                    self.dropped[i] = true;
                    continue;
                }
            }
            if self.dropped[i] {
                warnings.push(ScanWarning::Vanished { path: f.wire.clone() });
            }
        }
        Ok(again)
    }

    /// The manifest's file entries, sorted by path; freshly hashed files go into the cache.
    fn into_entries(self, cache: &mut HashCache, rule: ChunkRule, trusted_before: Mtime) -> Vec<FileEntry> {
        let FileHashes { files, hashes, from_cache, dropped, .. } = self;
        let mut entries = Vec::with_capacity(files.len());
        for (i, (f, h)) in files.into_iter().zip(hashes).enumerate() {
            let Some(h) = h.filter(|_| !dropped[i]) else { continue };
            let cs = rule.chunk_size_for(f.stamp.size);
            if !from_cache[i] {
                cache.record(&f.wire, f.stamp, cs, &h, trusted_before);
            }
            entries.push(file_entry(f, cs, &h));
        }
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        entries
    }
}

fn file_entry(f: FoundFile, chunk_size: u64, h: &[ChunkHash]) -> FileEntry {
    let size = f.stamp.size;
    let chunks: Vec<Chunk> = chunking::chunk_ranges(size, chunk_size)
        .zip(h)
        .map(|((offset, size), hash)| Chunk { offset, size, hash: *hash })
        .collect();
    let hash = chunking::file_hash(size, chunk_size, h.iter().copied());
    FileEntry { path: f.wire, size, mtime: f.stamp.mtime, chunk_size, chunks, hash }
}

fn counter_value(c: &ByteCounter) -> u64 {
    c.add(0)
}

fn report(opts: &ScanOptions, p: ScanProgress) {
    if let Some(cb) = &opts.progress {
        cb(p);
    }
}

/// Current stamp of a path that should still be a regular file; `None` if it is gone or is no
/// longer a regular file.
fn restat(path: &Path) -> Option<FileStamp> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Some(FileStamp::of(&m)),
        _ => None,
    }
}

/// Flag names that Windows cannot hold and paths that collide case-insensitively.
///
/// Collisions are found by sorting a 64-bit hash of each path's fold key and comparing keys
/// only within a run of equal hashes: a map from key to paths cost ~150 bytes a file, at the
/// moment the walk's whole listing is held.
fn flag_names(files: &[FoundFile], dirs: &[String], warnings: &mut Vec<ScanWarning>) {
    let all = files.iter().map(|f| f.wire.as_str()).chain(dirs.iter().map(String::as_str));
    let mut keyed: Vec<(u64, &str)> = Vec::with_capacity(files.len() + dirs.len());
    let mut flagged = Vec::new();
    for path in all {
        let name = path.rsplit('/').next().unwrap_or(path);
        if let Some(problem) = windows_name_problem(name) {
            flagged.push(ScanWarning::WindowsName { path: path.to_string(), problem });
        }
        keyed.push((fold_hash(path), path));
    }
    keyed.sort_unstable_by_key(|&(h, _)| h);
    let mut collisions: Vec<Vec<String>> = Vec::new();
    for run in keyed.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        let mut by_key: Vec<(String, &str)> = run.iter().map(|&(_, p)| (case_fold_key(p), p)).collect();
        by_key.sort_unstable();
        for same in by_key.chunk_by(|a, b| a.0 == b.0).filter(|same| same.len() > 1) {
            collisions.push(same.iter().map(|(_, p)| p.to_string()).collect());
        }
    }
    collisions.sort();
    flagged.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    warnings.extend(flagged);
    warnings.extend(collisions.into_iter().map(|paths| ScanWarning::CaseCollision { paths }));
}

/// A hash of [`case_fold_key`]`(path)` computed without building the key.
fn fold_hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for c in path.chars().flat_map(char::to_lowercase) {
        c.hash(&mut h);
    }
    h.finish()
}
