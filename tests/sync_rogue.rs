//! A rogue node that serves wrong bytes gets none of its data accepted, and the sync still
//! completes. The rogue is a real peer whose storage seam flips bits in what it uploads.

mod common;

use std::time::Duration;

use common::sync::*;

// Once flaky: a 503 from the master (its single upload slot not yet released after the previous
// upload) read as "the master lost this chunk", and when the rogue had also lost it for serving
// bad bytes, that chunk had no source left. Busy is now its own failure kind and a master is
// never forgotten as a source (planner unit test `master_stays_a_source_after_a_missing_report`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rogue_source_is_rejected_and_sync_completes() {
    let (t, mdir, cache) = sync_source(5, 3);
    let before = tree_state(&mdir);
    let mut mcfg = master_config(&mdir, &cache);
    // A slow master with one slot makes the (complete) rogue the attractive source.
    mcfg.upload_slots = 1;
    mcfg.max_upload_bps = Some(2_000_000);
    let master = lanscatter::engine::Engine::start(mcfg).await.unwrap();

    let rogue_dir = t.path().join("rogue");
    let mut rcfg = peer_config(master.local_addr(), &rogue_dir, &cache, "rogue");
    rcfg.storage = std::sync::Arc::new(common::storage::FaultyDisk { corrupt_uploads: true, ..Default::default() });
    rcfg.upload_slots = 4;
    let rogue = lanscatter::engine::Engine::start(rcfg).await.unwrap();
    wait_synced(&rogue, &master, &mdir, &rogue_dir, Duration::from_secs(60)).await;

    let peers = start_peers(master.local_addr(), t.path(), &cache, 3).await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    let rejected: u64 = peers.iter().map(|(p, _)| p.status().borrow().counters.verify_failures).sum();
    let served = rogue.status().borrow().counters.chunk_gets_served;
    assert!(served > 0, "the rogue was asked to serve (else this test proves nothing)");
    assert!(rejected > 0, "corrupt chunks were detected");
    assert!(master.status().borrow().counters.verify_failures > 0, "the master heard about them");
    for (_, dir) in &peers {
        assert_same_tree(&mdir, dir);
    }
    rogue.shutdown().await;
    shutdown_all(peers, master).await;
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}
