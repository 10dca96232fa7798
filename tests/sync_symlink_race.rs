//! Symlinks planted in a peer's folder mid-sync: a link to a folder outside in place of a
//! directory the sync is filling, and a link to a file outside in place of a file still being
//! written. No write goes through either (the storage seam resolves every path without
//! following links); the links are removed as foreign content, the peer ends byte-identical to
//! the master, and the targets outside are byte-unchanged.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::sync::*;
use lanscatter::engine::Engine;

/// Most of the data lies in `fill/`, the directory that is swapped for a link.
fn source_tree(mdir: &Path) {
    let mut rng = Rng::new(41);
    for i in 0..8 {
        write_file(mdir, &format!("fill/{i}.bin"), &rng.bytes(384 * 1024), 1_500_000_000 + i);
    }
    write_file(mdir, "solo.bin", &rng.bytes(512 * 1024), 1_500_000_100);
    write_file(mdir, "small.txt", b"small", 1_500_000_200);
}

/// What sits outside the folder: a decoy for every name the sync writes through the links.
fn outside_tree(out: &Path) {
    for i in 0..8 {
        write_file(out, &format!("{i}.bin"), format!("outside {i}").as_bytes(), 1_400_000_000);
    }
    write_file(out, "target.bin", b"outside target", 1_400_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_planted_mid_sync_are_never_written_through() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    source_tree(&mdir);
    let out = t.path().join("outside");
    outside_tree(&out);
    let before = tree_state(&out);
    let dst = t.path().join("peer");

    let master = start_master(&mdir, &cache).await;
    let mut pcfg = peer_config(master.local_addr(), &dst, &cache, "peer");
    // About 4 MiB at 1 MiB/s: the links land while most of it is still to come.
    pcfg.max_download_bps = Some(1 << 20);
    pcfg.download_slots = 4;
    let peer = Engine::start(pcfg).await.expect("peer starts");
    let mut rx = peer.status();
    wait_status(&mut rx, Duration::from_secs(60), "the sync under way", |s| {
        s.bytes_total > 0 && s.bytes_done >= 64 * 1024 && s.bytes_done * 3 < s.bytes_total
    })
    .await;
    assert!(dst.join("fill").is_dir() && dst.join("solo.bin").is_file(), "laid out before the links are planted");

    // A local user swaps a directory and a file for links pointing outside.
    std::fs::remove_dir_all(dst.join("fill")).unwrap();
    std::os::unix::fs::symlink(&out, dst.join("fill")).unwrap();
    std::fs::remove_file(dst.join("solo.bin")).unwrap();
    std::os::unix::fs::symlink(out.join("target.bin"), dst.join("solo.bin")).unwrap();

    // On a timeout this says what the peer last reported.
    wait_status(&mut rx, Duration::from_secs(60), "the peer's folder as the master's", |_| trees_equal(&mdir, &dst))
        .await;
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(60)).await;
    for link in ["fill", "solo.bin"] {
        let m = std::fs::symlink_metadata(dst.join(link)).unwrap();
        assert!(!m.file_type().is_symlink(), "{link} is a plain entry again");
    }
    assert_same_tree(&mdir, &dst);
    assert_eq!(tree_state(&out), before, "nothing outside the folder changed");
    let events: Vec<String> = rx.borrow().events.iter().map(|e| e.message.clone()).collect();
    assert!(events.iter().any(|e| e.contains("symbolic link")), "a write that met a link said so: {events:?}");

    peer.shutdown().await;
    master.shutdown().await;
}
