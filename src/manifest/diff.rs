//! What a peer must do to turn its folder (the `local` manifest) into the master's (`target`).
//!
//! Pure function of two manifests, no I/O. The local manifest must come from scanning the peer's
//! folder **with the target's chunk rule**, so that a file of the right size is cut at the same
//! offsets as the master's and in-place chunks are recognised.
//!
//! Content is identified by chunk hash only: a chunk the target needs is
//! - *in place* if the local file at the same path has a chunk with the same offset and hash
//!   (nothing to do, even if the file must be resized around it);
//! - *copyable* if any local file has a chunk with that hash anywhere (dedup, renames, resume);
//!   sources that stay in place are preferred, since files being rewritten or deleted may lose
//!   the bytes;
//! - otherwise *fetched* from the swarm; each hash appears once in [`SyncPlan::fetch`] however
//!   many places need it.
//!
//! Executing the plan safely (the peer engine's job): create dirs, resolve conflicts, then
//! copy local sources **before** overwriting or deleting them (and verify every copied or
//! fetched chunk's hash before writing), then delete, then set mtimes. Symlinks and special
//! files are not in manifests; the writer must refuse to write through them.

use std::collections::{BTreeSet, HashMap};

use super::{Chunk, ChunkHash, FileEntry, Manifest, Mtime};

/// Where the bytes for a chunk come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkSource {
    /// Not present locally: download by hash.
    Fetch,
    /// Present in a local file; `stable` if that location is itself already final (not
    /// rewritten or deleted by this plan), so it can be read at any time.
    Local { path: String, offset: u64, stable: bool },
}

/// One chunk of a target file that must be written: which one, and where its bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkWork {
    /// Index of the chunk in the target file's `chunks` (its offset, size and hash are there).
    pub index: u32,
    pub source: ChunkSource,
}

/// Which chunks of a target file must be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Todo {
    /// Every chunk, each fetched: the case of every file a fresh peer lacks, kept without a
    /// list (a list per file cost ~80 of the ~200 bytes a small file took in a plan).
    AllFetched,
    /// These chunks, in offset order (chunks already in place are omitted).
    Chunks(Vec<ChunkWork>),
}

/// A target file that is missing, has the wrong size, or has chunks to write. It names the
/// target file by index rather than copying its path, size and mtime: a fresh peer's plan
/// holds one per file, next to the manifest it was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWork {
    /// Index of the file in the target's `files`: its final size (create or resize the file
    /// to it), its mtime (set after all chunks are written and verified), its chunks.
    pub file: usize,
    /// Size of the local file at this path, if one exists.
    pub local_size: Option<u64>,
    pub todo: Todo,
}

static FETCH: ChunkSource = ChunkSource::Fetch;

impl FileWork {
    /// The chunks of `tf` (the target file this work is for) to write, in offset order, with
    /// where each comes from.
    pub fn chunks<'a>(&'a self, tf: &'a FileEntry) -> Box<dyn Iterator<Item = (&'a Chunk, &'a ChunkSource)> + 'a> {
        match &self.todo {
            Todo::AllFetched => Box::new(tf.chunks.iter().map(|c| (c, &FETCH))),
            Todo::Chunks(list) => {
                Box::new(list.iter().filter_map(|w| Some((tf.chunks.get(w.index as usize)?, &w.source))))
            }
        }
    }

    /// Whether every chunk of `tf` is to be written (nothing of the file is in place).
    pub fn writes_every_chunk(&self, tf: &FileEntry) -> bool {
        match &self.todo {
            Todo::AllFetched => true,
            Todo::Chunks(list) => list.len() == tf.chunks.len(),
        }
    }
}

/// A path that is a file on one side and a directory on the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub path: String,
    /// True if the peer has a directory where the master has a file (the local dir and all its
    /// contents must go), false for the reverse (the local file must go).
    pub local_is_dir: bool,
}

/// Everything a peer must do; see the module doc for the safe execution order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Distinct chunks found nowhere locally, with their sizes, sorted by hash.
    pub fetch: Vec<(ChunkHash, u64)>,
    /// Files to create or change, in the target's order (sorted by path): a subsequence of
    /// the target's files, which the peer's layout pairs with them in one walk.
    pub files: Vec<FileWork>,
    /// Directories to create, parents before children.
    pub create_dirs: Vec<String>,
    /// Local files the target does not have (including files in the way of a target dir).
    pub delete_files: Vec<String>,
    /// Local dirs the target does not have, children before parents.
    pub delete_dirs: Vec<String>,
    /// Type conflicts (also reflected in `delete_files`/`delete_dirs`).
    pub conflicts: Vec<Conflict>,
    /// Files whose content is already right but whose mtime differs.
    pub set_mtimes: Vec<(String, Mtime)>,
}

impl SyncPlan {
    /// True if the local folder already matches the target.
    pub fn is_empty(&self) -> bool {
        self.fetch.is_empty()
            && self.files.is_empty()
            && self.create_dirs.is_empty()
            && self.delete_files.is_empty()
            && self.delete_dirs.is_empty()
            && self.conflicts.is_empty()
            && self.set_mtimes.is_empty()
    }

    /// Bytes that must come over the network.
    pub fn fetch_bytes(&self) -> u64 {
        self.fetch.iter().map(|(_, s)| s).sum()
    }
}

/// Compute the plan that turns `local` into `target` (see module doc).
pub fn diff(target: &Manifest, local: &Manifest) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let in_place = chunks_in_place(target, local);
    let sources = local_sources(local, &in_place);
    plan_files(target, local, &in_place, &sources, &mut plan);
    plan_tree(target, local, &mut plan);
    plan
}

/// Local (path, offset) locations that already hold the target's chunk there.
type InPlace<'a> = BTreeSet<(&'a str, u64)>;
/// For every hash found locally, one location holding it and whether the plan leaves it untouched.
type Sources<'a> = HashMap<ChunkHash, (&'a str, u64, bool)>;

fn chunks_in_place<'a>(target: &Manifest, local: &'a Manifest) -> InPlace<'a> {
    let mut in_place = BTreeSet::new();
    for tf in &target.files {
        if let Some(lf) = local.file(&tf.path) {
            for tc in &tf.chunks {
                if lf.chunk_at(tc.offset).is_some_and(|lc| lc.hash == tc.hash && lc.size == tc.size) {
                    in_place.insert((lf.path.as_str(), tc.offset));
                }
            }
        }
    }
    in_place
}

/// One source per local hash, preferring a location that stays in place.
fn local_sources<'a>(local: &'a Manifest, in_place: &InPlace<'_>) -> Sources<'a> {
    let mut sources: Sources<'a> = HashMap::new();
    for lf in &local.files {
        for lc in &lf.chunks {
            let stable = in_place.contains(&(lf.path.as_str(), lc.offset));
            let entry = sources.entry(lc.hash).or_insert((lf.path.as_str(), lc.offset, stable));
            if stable && !entry.2 {
                *entry = (lf.path.as_str(), lc.offset, true);
            }
        }
    }
    sources
}

/// File work, mtime fixes and the distinct chunks to fetch.
///
/// Sized with care: a fresh peer gets one `FileWork` per file, and at a million files the
/// default growth (four slots for a file's first chunk, doubling lists) cost more than the
/// manifest itself.
fn plan_files(target: &Manifest, local: &Manifest, in_place: &InPlace<'_>, sources: &Sources<'_>, plan: &mut SyncPlan) {
    let mut fetch: Vec<(ChunkHash, u64)> = Vec::new();
    for (fi, tf) in target.files.iter().enumerate() {
        let lf = local.file(&tf.path);
        let placed = |tc: &Chunk| lf.is_some() && in_place.contains(&(tf.path.as_str(), tc.offset));
        let local_size = lf.map(|l| l.size);
        let todo = if tf.chunks.iter().all(|tc| !placed(tc) && !sources.contains_key(&tc.hash)) {
            fetch.extend(tf.chunks.iter().map(|tc| (tc.hash, u64::from(tc.size))));
            if tf.chunks.is_empty() && local_size == Some(0) {
                Todo::Chunks(Vec::new())
            } else {
                Todo::AllFetched
            }
        } else {
            Todo::Chunks(chunk_work(tf, &placed, sources, &mut fetch))
        };
        if todo == Todo::Chunks(Vec::new()) && local_size == Some(tf.size) {
            if lf.is_some_and(|l| l.mtime != tf.mtime) {
                plan.set_mtimes.push((tf.path.clone(), tf.mtime));
            }
        } else {
            plan.files.push(FileWork { file: fi, local_size, todo });
        }
    }
    // Give back the list's unused growth (a large one is remapped, not copied).
    plan.files.shrink_to_fit();
    // Each hash once (equal hashes have equal sizes: the size is part of the content).
    fetch.sort_unstable();
    fetch.dedup_by_key(|(h, _)| *h);
    fetch.shrink_to_fit();
    plan.fetch = fetch;
}

/// The chunks of `tf` not in place, each with its source (a local copy, or fetched: then it
/// goes in `fetch`).
fn chunk_work(
    tf: &FileEntry,
    placed: &dyn Fn(&Chunk) -> bool,
    sources: &Sources<'_>,
    fetch: &mut Vec<(ChunkHash, u64)>,
) -> Vec<ChunkWork> {
    let mut work = Vec::new();
    for (ci, tc) in tf.chunks.iter().enumerate() {
        if placed(tc) {
            continue;
        }
        let source = match sources.get(&tc.hash) {
            Some(&(path, offset, stable)) => ChunkSource::Local { path: path.to_string(), offset, stable },
            None => {
                fetch.push((tc.hash, u64::from(tc.size)));
                ChunkSource::Fetch
            }
        };
        // A manifest is bounded far below 2^32 chunks per file.
        work.push(ChunkWork { index: ci as u32, source });
    }
    work.shrink_to_fit();
    work
}

/// Type conflicts, directories to create, and files and directories to delete.
fn plan_tree(target: &Manifest, local: &Manifest, plan: &mut SyncPlan) {
    for tf in &target.files {
        if local.has_dir(&tf.path) {
            plan.conflicts.push(Conflict { path: tf.path.clone(), local_is_dir: true });
        }
    }
    for td in &target.dirs {
        if local.file(&td.path).is_some() {
            plan.conflicts.push(Conflict { path: td.path.clone(), local_is_dir: false });
        }
        if !local.has_dir(&td.path) {
            // Sorted byte order puts "a" before "a/b": parents first.
            plan.create_dirs.push(td.path.clone());
        }
    }
    plan.conflicts.sort_by(|a, b| a.path.cmp(&b.path));

    plan.delete_files =
        local.files.iter().filter(|lf| target.file(&lf.path).is_none()).map(|lf| lf.path.clone()).collect();
    plan.delete_dirs = local.dirs.iter().filter(|ld| !target.has_dir(&ld.path)).map(|ld| ld.path.clone()).collect();
    // Children before parents: reverse of sorted order puts "a/b" before "a".
    plan.delete_dirs.reverse();
}

#[cfg(test)]
mod tests {
    use super::super::chunking::{self, MIB};
    use super::super::{Chunk, ChunkRule, DirEntry, FileEntry};
    use super::*;

    /// A file whose chunk `i` has content id `ids[i]` (hash of that id), with `last` bytes in
    /// the final chunk.
    fn file(path: &str, ids: &[u8], last: u64, mtime: i64) -> FileEntry {
        let cs = MIB;
        let size = if ids.is_empty() { 0 } else { (ids.len() as u64 - 1) * cs + last };
        assert_eq!(ChunkRule::Fixed(cs).chunk_size_for(size), cs);
        let chunks: Vec<Chunk> = chunking::chunk_ranges(size, cs)
            .zip(ids)
            .map(|((offset, size), id)| Chunk { offset, size, hash: ChunkHash::of(&[*id, size as u8]) })
            .collect();
        let hash = chunking::file_hash(size, cs, chunks.iter().map(|c| c.hash));
        FileEntry { path: path.into(), size, mtime: Mtime { secs: mtime, nanos: 0 }, chunk_size: cs, chunks, hash }
    }

    fn manifest(mut files: Vec<FileEntry>, dirs: &[&str]) -> Manifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut dirs: Vec<DirEntry> = dirs.iter().map(|d| DirEntry { path: d.to_string() }).collect();
        dirs.sort();
        let m = Manifest { files, dirs, chunk_rule: ChunkRule::Fixed(MIB), warnings: vec![] };
        m.validate().expect("test manifest is valid");
        m
    }

    #[test]
    fn identical_folders_need_nothing() {
        let m = manifest(vec![file("a", &[1, 2], 5, 10), file("d/b", &[], 0, 11)], &["d", "e"]);
        let plan = diff(&m, &m);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn empty_peer_fetches_each_distinct_chunk_once() {
        let target =
            manifest(vec![file("a", &[1, 2, 1], 7, 10), file("b", &[1, 2, 1], 7, 10), file("e", &[], 0, 3)], &["x"]);
        let plan = diff(&target, &Manifest::empty(ChunkRule::Fixed(MIB)));
        assert_eq!(plan.fetch.len(), 3, "chunk 1 full, chunk 2 full, chunk 1 short tail");
        assert_eq!(plan.fetch_bytes(), 2 * MIB + 7);
        assert_eq!(plan.files.len(), 3);
        assert!(plan.files.iter().all(|f| f.local_size.is_none()));
        let e = &target.files[plan.files[2].file];
        assert!(plan.files[2].chunks(e).next().is_none() && e.size == 0, "empty file is created");
        assert_eq!(plan.files[0].todo, Todo::AllFetched, "no list for a file fetched whole");
        assert!(plan.files[0].chunks(&target.files[0]).all(|(_, s)| *s == ChunkSource::Fetch));
        assert_eq!(plan.create_dirs, vec!["x"]);
    }

    #[test]
    fn content_anywhere_locally_is_copied_not_fetched() {
        let target = manifest(vec![file("new/name", &[1, 2], 9, 10)], &["new"]);
        let local = manifest(vec![file("old/name", &[1, 2], 9, 10)], &["old"]);
        let plan = diff(&target, &local);
        assert!(plan.fetch.is_empty());
        assert_eq!(plan.files.len(), 1);
        assert!(plan.files[0]
            .chunks(&target.files[0])
            .all(|(_, s)| matches!(s, ChunkSource::Local { path, stable: false, .. } if path == "old/name")));
        assert_eq!(plan.delete_files, vec!["old/name"]);
        assert_eq!(plan.delete_dirs, vec!["old"]);
        assert_eq!(plan.create_dirs, vec!["new"]);
    }

    #[test]
    fn partial_file_only_missing_chunks_and_resize() {
        let target = manifest(vec![file("f", &[1, 2, 3, 4], 100, 10)], &[]);
        // Peer has a pre-sized file with chunks 0 and 2 written, 1 and 3 still zeros.
        let local = manifest(vec![file("f", &[1, 0, 3, 0], 100, 99)], &[]);
        let plan = diff(&target, &local);
        let offsets: Vec<u64> = plan.files[0].chunks(&target.files[0]).map(|(c, _)| c.offset).collect();
        assert_eq!(offsets, vec![MIB, 3 * MIB]);
        assert_eq!(plan.fetch.len(), 2);
        assert_eq!(plan.files[0].local_size, Some(3 * MIB + 100));
        // A shorter local file: in-place prefix kept, tail fetched, file grown.
        let local = manifest(vec![file("f", &[1, 2], 100, 99)], &[]);
        let plan = diff(&target, &local);
        let offsets: Vec<u64> = plan.files[0].chunks(&target.files[0]).map(|(c, _)| c.offset).collect();
        assert_eq!(offsets, vec![MIB, 2 * MIB, 3 * MIB], "chunk 1 was a short tail locally, so it is rewritten");
    }

    #[test]
    fn stable_sources_are_preferred() {
        // Chunk 7 exists in "keep" (in place, stable) and in "gone" (deleted): copy from "keep".
        let target = manifest(vec![file("keep", &[7], 50, 1), file("want", &[7], 50, 1)], &[]);
        let local = manifest(vec![file("gone", &[7], 50, 1), file("keep", &[7], 50, 1)], &[]);
        let plan = diff(&target, &local);
        assert_eq!(plan.files.len(), 1);
        assert_eq!(plan.files[0].file, 1);
        let (_, source) = plan.files[0].chunks(&target.files[1]).next().unwrap();
        assert_eq!(*source, ChunkSource::Local { path: "keep".into(), offset: 0, stable: true });
        assert_eq!(plan.delete_files, vec!["gone"]);
    }

    #[test]
    fn mtime_only_changes() {
        let target = manifest(vec![file("a", &[1], 3, 20)], &[]);
        let local = manifest(vec![file("a", &[1], 3, 10)], &[]);
        let plan = diff(&target, &local);
        assert!(plan.files.is_empty() && plan.fetch.is_empty());
        assert_eq!(plan.set_mtimes, vec![("a".to_string(), Mtime { secs: 20, nanos: 0 })]);
    }

    #[test]
    fn dir_file_conflicts_and_deletions() {
        let target = manifest(vec![file("x", &[1], 3, 1)], &["y", "y/z"]);
        let local = manifest(vec![file("x/inner", &[1], 3, 1), file("y", &[2], 3, 1)], &["x", "x/deep", "q", "q/r"]);
        let plan = diff(&target, &local);
        assert_eq!(
            plan.conflicts,
            vec![Conflict { path: "x".into(), local_is_dir: true }, Conflict { path: "y".into(), local_is_dir: false }]
        );
        assert_eq!(plan.delete_files, vec!["x/inner", "y"]);
        assert_eq!(plan.delete_dirs, vec!["x/deep", "x", "q/r", "q"]);
        assert_eq!(plan.create_dirs, vec!["y", "y/z"]);
        // x's content exists in x/inner: copied (the executor reads it before removing the dir).
        assert!(plan.fetch.is_empty());
    }

    #[test]
    fn empty_target_deletes_everything() {
        let local = manifest(vec![file("a", &[1], 3, 1), file("d/b", &[], 0, 1)], &["d"]);
        let plan = diff(&Manifest::empty(ChunkRule::Fixed(MIB)), &local);
        assert_eq!(plan.delete_files, vec!["a", "d/b"]);
        assert_eq!(plan.delete_dirs, vec!["d"]);
        assert!(plan.files.is_empty());
    }
}
