//! Unit tests of the peer's folder layout on real temp folders: an empty folder laid out and
//! filled with verified content, renames and extra entries, local copies of identical chunks,
//! a storage that refuses every write, and placed chunks that complete files only once the
//! pending finish ran.

use std::sync::Mutex;

use super::*;
use crate::manifest::ChunkRule;
use crate::manifest::{CacheMode, ScanOptions};
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

#[test]
fn placed_chunks_count_as_done_only_once_the_pending_finish_ran() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, two) = (pattern(100, 3), pattern(2 * CHUNK as usize, 4));
    write(src.path(), "d/one.bin", &one);
    write(src.path(), "d/two.bin", &two);
    let m = manifest_of(src.path());
    let cell = Mutex::new(Some(prepare(dst.path(), &m)));
    let chunks: Vec<(ChunkHash, &[u8])> = m
        .files
        .iter()
        .flat_map(|f| {
            let data = if f.path.ends_with("one.bin") { &one } else { &two };
            f.chunks.iter().map(move |c| (c.hash, &data[c.offset as usize..(c.offset + u64::from(c.size)) as usize]))
        })
        .collect();
    place_chunks(&cell, &chunks).unwrap();
    {
        let g = cell.lock().unwrap();
        let l = g.as_ref().unwrap();
        assert_eq!(l.bytes_done, l.bytes_total, "every chunk is placed");
        assert!(l.has_unfinished() && !l.is_complete(), "but no file counts as done before its flush");
        assert_eq!(l.complete_files().count(), 0);
    }
    assert_ne!(manifest_of(dst.path()).files, m.files, "the master's mtimes are not set yet");
    finish_pending(&cell).unwrap();
    let l = cell.into_inner().unwrap().unwrap();
    assert!(!l.has_unfinished() && l.is_complete());
    assert_eq!(manifest_of(dst.path()).files, m.files, "same content and mtimes");
}
