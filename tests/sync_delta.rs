//! Issue 19 (a coordinator that scales): a one-file change on the master reaches a peer as a
//! manifest delta of about that file's entry, not as the whole manifest again, and the peer
//! ends byte-identical. Real engines on 127.0.0.1; asserts on the peer's counters of manifest
//! messages and bytes, never on time.

mod common;

use std::time::Duration;

use common::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_file_change_reaches_the_peer_as_a_delta() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(19);
    // Enough files that the whole manifest is far larger than one entry.
    for i in 0..300 {
        write_file(&mdir, &format!("d{}/f{i:03}.txt", i % 7), &rng.mixed_bytes(100 + i), 1_500_000_000);
    }
    let master = start_master(&mdir, &cache).await;
    let dir = t.path().join("peer");
    let peer = start_peer(master.local_addr(), &dir, &cache, "peer").await;
    wait_synced(&peer, &master, &mdir, &dir, Duration::from_secs(60)).await;
    let before = peer.status().borrow().counters.clone();
    assert_eq!((before.manifests_full, before.manifest_deltas), (1, 0), "joined with the whole manifest");

    let mut mrx = master.status();
    let first = mrx.borrow().manifest_id;
    write_file(&mdir, "d3/f010.txt", b"changed content", 1_700_000_000);
    wait_status(&mut mrx, Duration::from_secs(30), "master noticed the change", |s| s.manifest_id > first).await;
    wait_synced(&peer, &master, &mdir, &dir, Duration::from_secs(60)).await;

    let after = peer.status().borrow().counters.clone();
    assert_eq!(after.manifests_full, 1, "no whole manifest again");
    assert!(after.manifest_deltas >= 1, "{after:?}");
    let delta_bytes = after.manifest_bytes - before.manifest_bytes;
    assert!(
        delta_bytes * 20 < before.manifest_bytes && delta_bytes < 1024,
        "the change cost {delta_bytes} bytes, the whole manifest {}",
        before.manifest_bytes
    );
    assert_same_tree(&mdir, &dir);
    peer.shutdown().await;
    master.shutdown().await;
}
