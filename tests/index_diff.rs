//! Diff between scans of real folders: a peer's partial copy, renames, conflicts, deletions.

mod common;

use std::fs;

use common::*;
use lanscatter::manifest::diff::ChunkSource;
use lanscatter::manifest::{diff, scan, ChunkRule, Manifest, ScanOptions};

fn scan_with(root: &std::path::Path, rule: ChunkRule) -> Manifest {
    scan(root, &ScanOptions { chunk_rule: rule, ..no_cache_opts() }).unwrap()
}

#[test]
fn peer_copy_with_changes() {
    let master = tempfile::tempdir().unwrap();
    let peer = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(31);
    let big = rng.bytes(10 * 4096 + 5);
    write_file(master.path(), "big.bin", &big);
    write_file(master.path(), "moved/here.txt", &rng.bytes(3000));
    write_file(master.path(), "same.txt", b"unchanged");
    fs::create_dir(master.path().join("new_empty")).unwrap();

    // Peer: big.bin with chunk 3 corrupted, here.txt under an old name, an extra file, an
    // extra dir, and a file where the master has a dir.
    let mut damaged = big.clone();
    damaged[3 * 4096 + 10] ^= 1;
    write_file(peer.path(), "big.bin", &damaged);
    write_file(peer.path(), "old/name.txt", &fs::read(master.path().join("moved/here.txt")).unwrap());
    write_file(peer.path(), "same.txt", b"unchanged");
    write_file(peer.path(), "extra.txt", b"delete me");
    write_file(peer.path(), "new_empty", b"in the way");

    let rule = ChunkRule::Fixed(4096);
    let target = scan_with(master.path(), rule);
    let local = scan_with(peer.path(), rule);
    let plan = diff(&target, &local);

    assert_eq!(plan.fetch.len(), 1, "only the damaged chunk travels: {:?}", plan.fetch);
    assert_eq!(plan.fetch_bytes(), 4096);
    let work = |path: &str| plan.files.iter().find(|w| target.files[w.file].path == path);
    let big = target.file("big.bin").unwrap();
    let offsets: Vec<u64> = work("big.bin").unwrap().chunks(big).map(|(c, _)| c.offset).collect();
    assert_eq!(offsets, [3 * 4096]);
    let moved = target.file("moved/here.txt").unwrap();
    assert!(work("moved/here.txt")
        .unwrap()
        .chunks(moved)
        .all(|(_, s)| matches!(s, ChunkSource::Local { path, .. } if path == "old/name.txt")));
    assert!(work("same.txt").is_none());
    assert_eq!(plan.delete_files, vec!["extra.txt", "new_empty", "old/name.txt"]);
    assert_eq!(plan.delete_dirs, vec!["old"]);
    assert_eq!(plan.create_dirs, vec!["moved", "new_empty"]);
    assert_eq!(plan.conflicts.len(), 1);
    assert!(!plan.conflicts[0].local_is_dir);
}

#[test]
fn identical_copy_needs_nothing_but_mtimes() {
    let master = tempfile::tempdir().unwrap();
    let peer = tempfile::tempdir().unwrap();
    random_tree(master.path(), 32, &TreeSpec { files: 15, ..TreeSpec::default() });
    random_tree(peer.path(), 32, &TreeSpec { files: 15, ..TreeSpec::default() });
    let target = scan_with(master.path(), ChunkRule::Auto);
    let mut local = scan_with(peer.path(), ChunkRule::Auto);
    // Same content, written at different times: at most mtimes differ.
    let plan = diff(&target, &local);
    assert!(plan.fetch.is_empty() && plan.files.is_empty() && plan.delete_files.is_empty());
    for f in &mut local.files {
        f.mtime = target.file(&f.path).unwrap().mtime;
    }
    assert!(diff(&target, &local).is_empty());
}
