//! The hash cache: hits skip reading, any change (touch, same-size rewrite with restored
//! mtime, replacement, chunk rule) is re-hashed, corrupt caches are discarded, and nothing is
//! ever written inside the indexed folder.

mod common;

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use lanscatter::manifest::{scan, ChunkHash, ChunkRule, Manifest, ScanOptions, ScanProgress, ScanWarning};

/// Scan and return the manifest plus the final progress report (which says how many bytes came
/// from the cache and how many were read).
fn scan_with_progress(root: &std::path::Path, opts: &ScanOptions) -> (Manifest, ScanProgress) {
    let last = Arc::new(Mutex::new(ScanProgress::default()));
    let l2 = last.clone();
    let opts = ScanOptions { progress: Some(Arc::new(move |p| *l2.lock().unwrap() = p)), ..opts.clone() };
    let m = scan(root, &opts).unwrap();
    let p = *last.lock().unwrap();
    (m, p)
}

#[test]
fn unchanged_folder_is_served_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    random_tree(dir.path(), 11, &TreeSpec { files: 25, max_size: 2 << 20, ..TreeSpec::default() });
    let opts = scan_opts(cache.path());
    let (cold, p1) = scan_with_progress(dir.path(), &opts);
    assert_eq!(p1.bytes_cached, 0);
    assert_eq!(p1.bytes_hashed, cold.total_bytes());
    let (warm, p2) = scan_with_progress(dir.path(), &opts);
    assert_eq!(warm, cold);
    assert_eq!(p2.bytes_cached, cold.total_bytes());
    assert_eq!(p2.bytes_hashed, 0, "warm re-index must not read file contents");
}

#[test]
fn touched_file_is_rehashed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let p = write_file(dir.path(), "a", &Rng::new(1).bytes(5000));
    write_file(dir.path(), "b", &Rng::new(2).bytes(7000));
    let opts = scan_opts(cache.path());
    let (m1, _) = scan_with_progress(dir.path(), &opts);
    set_mtime(&p, SystemTime::now() - Duration::from_secs(3600));
    let (m2, p2) = scan_with_progress(dir.path(), &opts);
    assert_eq!(p2.bytes_hashed, 5000, "only the touched file is read");
    assert_eq!(p2.bytes_cached, 7000);
    assert_eq!(m2.file("a").unwrap().hash, m1.file("a").unwrap().hash);
    assert_ne!(m2.file("a").unwrap().mtime, m1.file("a").unwrap().mtime);
}

#[cfg(unix)]
#[test]
fn same_size_rewrite_with_restored_mtime_is_caught_by_ctime() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let p = write_file(dir.path(), "a", &[1u8; 4096]);
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&p, old);
    let opts = scan_opts(cache.path());
    let (m1, _) = scan_with_progress(dir.path(), &opts);
    let ctime_before = std::os::unix::fs::MetadataExt::ctime_nsec(&fs::metadata(&p).unwrap());
    // Rewrite in place (same inode, same size), then restore the mtime as `touch -r` would.
    // Poll until the ctime visibly moved: timestamps are coarse (kernel tick).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        fs::write(&p, [2u8; 4096]).unwrap();
        set_mtime(&p, old);
        let now = fs::metadata(&p).unwrap();
        if std::os::unix::fs::MetadataExt::ctime_nsec(&now) != ctime_before || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::yield_now();
    }
    let (m2, p2) = scan_with_progress(dir.path(), &opts);
    assert_eq!(m2.file("a").unwrap().mtime, m1.file("a").unwrap().mtime, "mtime restored");
    assert_eq!(p2.bytes_hashed, 4096, "ctime change forces a re-hash");
    assert_eq!(m2.file("a").unwrap().chunks[0].hash, ChunkHash::of(&[2u8; 4096]));
}

#[test]
fn replaced_file_and_rule_change_are_rehashed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let p = write_file(dir.path(), "a", &[1u8; 10000]);
    let opts = scan_opts(cache.path());
    scan_with_progress(dir.path(), &opts);
    // Replace by rename with identical size and mtime: caught by the inode (Unix) or mtime.
    let meta = fs::metadata(&p).unwrap();
    let tmp = write_file(dir.path(), "tmp", &[3u8; 10000]);
    set_mtime(&tmp, meta.modified().unwrap());
    fs::rename(&tmp, &p).unwrap();
    let (m, p2) = scan_with_progress(dir.path(), &opts);
    assert_eq!(p2.bytes_hashed, 10000);
    assert_eq!(m.file("a").unwrap().chunks[0].hash, ChunkHash::of(&[3u8; 10000]));
    // Another chunk rule cannot reuse hashes of other chunk boundaries.
    let fixed = ScanOptions { chunk_rule: ChunkRule::Fixed(4096), ..opts.clone() };
    let (m, p3) = scan_with_progress(dir.path(), &fixed);
    assert_eq!(p3.bytes_hashed, 10000);
    assert_eq!(m.file("a").unwrap().chunks.len(), 3);
}

#[test]
fn corrupt_cache_is_discarded_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a", &Rng::new(5).bytes(20000));
    let opts = scan_opts(cache.path());
    let (good, _) = scan_with_progress(dir.path(), &opts);
    let files: Vec<_> = fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one cache file per folder");
    let mut bytes = fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xff;
    fs::write(&files[0], &bytes).unwrap();
    let (m, p) = scan_with_progress(dir.path(), &opts);
    assert_eq!(p.bytes_hashed, 20000, "corrupt cache is not trusted");
    assert_eq!(m.files, good.files);
    assert!(
        m.warnings.iter().any(|w| matches!(w, ScanWarning::HashCache { message } if message.contains("discarded"))),
        "{:?}",
        m.warnings
    );
    // The rewritten cache is good again.
    let (_, p) = scan_with_progress(dir.path(), &opts);
    assert_eq!(p.bytes_hashed, 0);
}

#[test]
fn nothing_is_written_inside_the_indexed_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    random_tree(dir.path(), 12, &TreeSpec::default());
    let before = tree_paths(dir.path());
    scan(dir.path(), &scan_opts(cache.path())).unwrap();
    scan(dir.path(), &scan_opts(cache.path())).unwrap();
    assert_eq!(tree_paths(dir.path()), before);
    assert!(fs::read_dir(cache.path()).unwrap().count() > 0, "the cache went to the cache dir");
}

#[test]
fn freshly_written_files_are_not_cached_yet() {
    // With the default racy window, a file written just now could be rewritten within the same
    // timestamp tick after hashing; it must be hashed again next time, not trusted.
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_file(dir.path(), "fresh", &[7u8; 3000]);
    let old = write_file(dir.path(), "old", &[8u8; 2000]);
    set_mtime(&old, SystemTime::now() - Duration::from_secs(3600));
    let opts = ScanOptions { racy_window: Duration::from_secs(3600 * 24 * 365 * 100), ..scan_opts(cache.path()) };
    scan_with_progress(dir.path(), &opts);
    let (_, p) = scan_with_progress(dir.path(), &opts);
    // ctime of "old" is recent too, so with a 100-year window nothing is trusted.
    assert_eq!(p.bytes_hashed, 5000);
    let (_, p) = scan_with_progress(dir.path(), &scan_opts(cache.path()));
    assert_eq!(p.bytes_hashed, 5000, "first scan with a zero window fills the cache");
    let (_, p) = scan_with_progress(dir.path(), &scan_opts(cache.path()));
    assert_eq!(p.bytes_hashed, 0);
}
