//! Done-when 4: hand-made changes on a peer are overwritten and extra files removed, both at
//! start-up and while running; nothing outside the destination is touched (not even through a
//! symlink inside it).

mod common;

use std::time::Duration;

use common::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_edits_are_reverted_and_extras_removed() {
    let (t, mdir, cache) = sync_source(4, 2);
    write_file(&mdir, "a/file.txt", b"master content", 1_500_000_000);
    write_file(&mdir, "conflict-file-on-master", b"file", 1_500_000_000);
    std::fs::create_dir_all(mdir.join("conflict-dir-on-master/sub")).unwrap();
    let before = tree_state(&mdir);
    // Outside the peer's folder: must survive untouched.
    let outside = t.path().join("outside");
    write_file(&outside, "precious.txt", b"do not touch", 1_400_000_000);
    let outside_before = tree_state(&outside);

    let master = start_master(&mdir, &cache).await;
    let dst = t.path().join("peer");
    // Hand-made state before the first sync: extras, a conflicting dir and file, an edit.
    write_file(&dst, "extra.txt", b"extra", 1_400_000_000);
    write_file(&dst, "extra-dir/deep/x.txt", b"x", 1_400_000_000);
    write_file(&dst, "conflict-file-on-master/inside.txt", b"dir here", 1_400_000_000);
    write_file(&dst, "conflict-dir-on-master", b"file here", 1_400_000_000);
    write_file(&dst, "a/file.txt", b"local edit!!!!", 1_400_000_000);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, dst.join("link-to-outside")).unwrap();

    let mut cfg = peer_config(master.local_addr(), &dst, &cache, "peer");
    cfg.rescan_interval = Duration::from_secs(1);
    cfg.adopt = true; // the hand-made state is there on purpose
    let peer = lanscatter::engine::Engine::start(cfg).await.unwrap();
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(60)).await;
    assert_same_tree(&mdir, &dst);
    assert_eq!(tree_state(&outside), outside_before, "nothing outside dst touched");

    // While running: edit a file (same size), add an extra file, delete a synced file.
    write_file(&dst, "a/file.txt", b"MASTER CONTENT", 1_400_000_000);
    write_file(&dst, "sneaky/extra.bin", b"extra", 1_400_000_000);
    std::fs::remove_file(dst.join("日本語/ファイル.txt")).unwrap();
    wait_until(Duration::from_secs(60), "periodic re-check repairs the folder", || trees_equal(&mdir, &dst)).await;
    peer.shutdown().await;
    master.shutdown().await;
    assert_same_tree(&mdir, &dst);
    assert_eq!(tree_state(&outside), outside_before, "nothing outside dst touched");
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}
