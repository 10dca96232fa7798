//! Scanning real folders: chunk boundaries, directories, unicode names, dedup, determinism,
//! and that manifests survive both serializations.

mod common;

use common::*;
use lanscatter::manifest::chunking::{file_hash, MIB};
use lanscatter::manifest::{scan, ChunkHash, ChunkRule, Manifest, ScanOptions};

fn fixed(n: u64) -> ScanOptions {
    ScanOptions { chunk_rule: ChunkRule::Fixed(n), ..no_cache_opts() }
}

/// Check every chunk of every file against the bytes on disk.
fn assert_matches_disk(root: &std::path::Path, m: &Manifest) {
    for f in &m.files {
        let data = std::fs::read(root.join(&f.path)).unwrap();
        assert_eq!(data.len() as u64, f.size, "{}", f.path);
        assert_eq!(f.chunk_size, m.chunk_rule.chunk_size_for(f.size));
        let want: Vec<ChunkHash> = data.chunks(f.chunk_size as usize).map(ChunkHash::of).collect();
        let got: Vec<ChunkHash> = f.chunks.iter().map(|c| c.hash).collect();
        assert_eq!(got, want, "{}", f.path);
        assert_eq!(f.hash, file_hash(f.size, f.chunk_size, want));
    }
}

#[test]
fn chunk_boundaries_fixed_rule() {
    let dir = tempfile::tempdir().unwrap();
    let cs = 4096u64;
    let mut rng = Rng::new(1);
    for (name, len) in [
        ("empty", 0),
        ("one_byte", 1),
        ("exactly_one", cs),
        ("one_over", cs + 1),
        ("many", 10 * cs + 7),
        ("exact_many", 8 * cs),
    ] {
        write_file(dir.path(), name, &rng.bytes(len as usize));
    }
    let m = scan(dir.path(), &fixed(cs)).unwrap();
    let n = |p: &str| m.file(p).unwrap().chunks.len();
    assert_eq!(n("empty"), 0, "an empty file has no chunks");
    assert_eq!(n("one_byte"), 1);
    assert_eq!(n("exactly_one"), 1);
    assert_eq!(n("one_over"), 2);
    assert_eq!(m.file("one_over").unwrap().chunks[1].size, 1);
    assert_eq!(n("many"), 11);
    assert_eq!(m.file("many").unwrap().chunks[10].offset, 10 * cs);
    assert_eq!(n("exact_many"), 8);
    assert_matches_disk(dir.path(), &m);
}

#[test]
fn chunk_boundaries_auto_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2);
    write_file(dir.path(), "mib", &rng.bytes(MIB as usize));
    write_file(dir.path(), "mib_plus_one", &rng.bytes(MIB as usize + 1));
    write_file(dir.path(), "small", &rng.bytes(1000));
    let m = scan(dir.path(), &no_cache_opts()).unwrap();
    assert_eq!(m.chunk_rule, ChunkRule::Auto);
    assert_eq!(m.file("mib").unwrap().chunks.len(), 1);
    assert_eq!(m.file("mib_plus_one").unwrap().chunks.len(), 2);
    assert_eq!(m.file("small").unwrap().chunk_size, MIB);
    assert_matches_disk(dir.path(), &m);
}

#[test]
fn dirs_including_empty_ones_and_unicode_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("empty/nested/deeper")).unwrap();
    write_file(dir.path(), "ünïcödé/日本語.txt", b"hello");
    write_file(dir.path(), "emoji 😀/space name.txt", b"x");
    let m = scan(dir.path(), &no_cache_opts()).unwrap();
    let dirs: Vec<&str> = m.dirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(dirs, vec!["emoji 😀", "empty", "empty/nested", "empty/nested/deeper", "ünïcödé"]);
    assert!(m.file("ünïcödé/日本語.txt").is_some());
    assert!(m.file("emoji 😀/space name.txt").is_some());
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    m.validate().unwrap();
}

#[test]
fn identical_content_is_one_chunk_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = Rng::new(3).bytes(3 * 4096 + 100);
    write_file(dir.path(), "a", &data);
    write_file(dir.path(), "sub/b", &data);
    write_file(dir.path(), "c", &data[..4096]); // same bytes as a's first chunk
    let m = scan(dir.path(), &fixed(4096)).unwrap();
    assert_eq!(m.file("a").unwrap().hash, m.file("sub/b").unwrap().hash);
    assert_eq!(m.chunk_count(), 9);
    assert_eq!(m.unique_chunks().len(), 4, "a and b share 4 chunks; c equals a's first");
    assert_eq!(m.total_bytes(), 2 * data.len() as u64 + 4096);
}

#[test]
fn random_tree_is_deterministic_sorted_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let files = random_tree(dir.path(), 42, &TreeSpec { files: 60, max_size: 3 * MIB, ..TreeSpec::default() });
    let m1 = scan(dir.path(), &no_cache_opts()).unwrap();
    let m2 = scan(dir.path(), &ScanOptions { threads: Some(1), ..no_cache_opts() }).unwrap();
    assert_eq!(m1, m2, "thread count must not change the result");
    assert_eq!(m1.files.len(), files.len());
    assert!(m1.files.windows(2).all(|w| w[0].path < w[1].path));
    assert_matches_disk(dir.path(), &m1);
    assert_eq!(Manifest::from_bytes(&m1.to_bytes()).unwrap(), m1);
    assert_eq!(Manifest::from_json(&serde_json::to_string(&m1).unwrap()).unwrap(), m1);
}

#[test]
fn presized_partial_file_chunks_like_the_final_one() {
    // A peer pre-sizes files to their final length and fills chunks as they arrive: scanning it
    // with the master's rule must cut at the same offsets so finished chunks are recognised.
    let master = tempfile::tempdir().unwrap();
    let peer = tempfile::tempdir().unwrap();
    let data = Rng::new(4).bytes(3 * MIB as usize + 12345);
    write_file(master.path(), "f", &data);
    let mut partial = vec![0u8; data.len()];
    partial[..MIB as usize].copy_from_slice(&data[..MIB as usize]);
    write_file(peer.path(), "f", &partial);
    let rule = ScanOptions { chunk_rule: ChunkRule::Fixed(MIB), ..no_cache_opts() };
    let mm = scan(master.path(), &rule).unwrap();
    let pm = scan(peer.path(), &rule).unwrap();
    let (mf, pf) = (mm.file("f").unwrap(), pm.file("f").unwrap());
    assert_eq!(mf.chunks.len(), pf.chunks.len());
    assert_eq!(mf.chunks[0], pf.chunks[0]);
    assert_ne!(mf.chunks[1].hash, pf.chunks[1].hash);
}

#[test]
fn progress_reports_reach_the_total() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    random_tree(dir.path(), 7, &TreeSpec { files: 30, max_size: 2 * MIB, ..TreeSpec::default() });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let opts = ScanOptions { progress: Some(Arc::new(move |p| s2.lock().unwrap().push(p))), ..no_cache_opts() };
    let m = scan(dir.path(), &opts).unwrap();
    let seen = seen.lock().unwrap();
    let last = seen.last().expect("at least one report");
    assert_eq!(last.bytes_total, m.total_bytes());
    assert_eq!(last.bytes_hashed, m.total_bytes());
    assert_eq!(last.files, m.files.len() as u64);
    assert!(seen.windows(2).all(|w| w[0].bytes_total == w[1].bytes_total));
}
