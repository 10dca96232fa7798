//! Done-when 3: adds, edits, deletes and renames on the master during a sync reach every peer.

mod common;

use std::time::Duration;

use common::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_changes_during_sync_reach_all_peers() {
    let (t, mdir, cache) = sync_source(3, 3);
    let mut rng = Rng::new(33);
    write_file(&mdir, "edit-same-size.bin", &rng.mixed_bytes(200_000), 1_500_000_000);
    write_file(&mdir, "edit-grow.bin", &rng.mixed_bytes(100_000), 1_500_000_000);
    write_file(&mdir, "to-delete.bin", &rng.mixed_bytes(150_000), 1_500_000_000);
    write_file(&mdir, "dir-to-delete/x/y.bin", &rng.mixed_bytes(1000), 1_500_000_000);
    write_file(&mdir, "old-name.bin", &rng.mixed_bytes(300_000), 1_500_000_000);
    let master = start_master(&mdir, &cache).await;
    let peers = start_peers_with(master.local_addr(), t.path(), &cache, 3, |_, cfg| {
        cfg.max_download_bps = Some(1_000_000);
    })
    .await;
    // Let the sync get going, then change the master's folder.
    let mut mrx = master.status();
    wait_status(&mut mrx, Duration::from_secs(30), "transfers started", |s| s.bytes_done > 0).await;
    let first_manifest = mrx.borrow().manifest_id;
    write_file(&mdir, "added/new file.txt", b"brand new", 1_700_000_000);
    write_file(&mdir, "edit-same-size.bin", &rng.mixed_bytes(200_000), 1_700_000_001);
    write_file(&mdir, "edit-grow.bin", &rng.mixed_bytes(400_000), 1_700_000_002);
    std::fs::remove_file(mdir.join("to-delete.bin")).unwrap();
    std::fs::remove_dir_all(mdir.join("dir-to-delete")).unwrap();
    std::fs::rename(mdir.join("old-name.bin"), mdir.join("added/new-name.bin")).unwrap();
    std::fs::create_dir_all(mdir.join("added/empty")).unwrap();
    wait_status(&mut mrx, Duration::from_secs(30), "master noticed the changes", |s| s.manifest_id > first_manifest)
        .await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    for (_, dir) in &peers {
        assert_same_tree(&mdir, dir);
    }
    shutdown_all(peers, master).await;
}

/// A renamed file, a moved directory and a new file made of an old one's chunks come from the
/// peer's own disk: moved or copied locally, not downloaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renamed_and_moved_content_is_reused_not_downloaded() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(77);
    let chunk = CHUNK as usize;
    let big = rng.bytes(8 * chunk + 123);
    let old = rng.bytes(4 * chunk);
    write_file(&mdir, "dir/big.bin", &big, 1_500_000_000);
    write_file(&mdir, "name-a.bin", &rng.bytes(3 * chunk), 1_500_000_000);
    write_file(&mdir, "old.bin", &old, 1_500_000_000);
    write_file(&mdir, "same.txt", b"unchanged", 1_500_000_000);
    let master = start_master(&mdir, &cache).await;
    let dir = t.path().join("peer");
    let peer = start_peer(master.local_addr(), &dir, &cache, "peer").await;
    wait_synced(&peer, &master, &mdir, &dir, Duration::from_secs(60)).await;
    let before = peer.status().borrow().counters.bytes_downloaded;

    let mut mrx = master.status();
    let first_manifest = mrx.borrow().manifest_id;
    std::fs::rename(mdir.join("dir"), mdir.join("moved-dir")).unwrap();
    std::fs::rename(mdir.join("name-a.bin"), mdir.join("name-b.bin")).unwrap();
    std::fs::remove_file(mdir.join("old.bin")).unwrap();
    let fresh = rng.bytes(chunk);
    let mut pieced = old[..2 * chunk].to_vec();
    pieced.extend_from_slice(&fresh);
    write_file(&mdir, "pieced.bin", &pieced, 1_700_000_000);
    wait_status(&mut mrx, Duration::from_secs(30), "master noticed the changes", |s| s.manifest_id > first_manifest)
        .await;
    wait_synced(&peer, &master, &mdir, &dir, Duration::from_secs(60)).await;

    let s = peer.status().borrow().clone();
    let downloaded = s.counters.bytes_downloaded - before;
    // Only the one fresh chunk is new content (plus the protocol's own bytes).
    assert!(
        downloaded < 2 * chunk as u64,
        "downloaded {downloaded} bytes again; only {} were new (local copies: {})",
        fresh.len(),
        s.counters.local_copies
    );
    assert!(s.counters.local_copies >= 9 + 3 + 2, "chunks reused locally: {}", s.counters.local_copies);
    assert!(!dir.join("dir").exists() && !dir.join("old.bin").exists(), "leftovers removed");
    assert_same_tree(&mdir, &dir);
    peer.shutdown().await;
    master.shutdown().await;
}
