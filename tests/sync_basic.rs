//! Done-when 1 and 8: a master and 5 peers end byte-identical with matching mtimes, and the
//! master's folder is bit-for-bit and mtime-for-mtime unchanged.

mod common;

use std::time::Duration;

use common::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_and_five_peers_end_identical() {
    let (t, mdir, cache) = sync_source(1, 3);
    let before = tree_state(&mdir);
    let master = start_master(&mdir, &cache).await;
    let peers = start_peers(master.local_addr(), t.path(), &cache, 5).await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(60)).await;
    for (_, dir) in &peers {
        assert_same_tree(&mdir, dir);
    }
    // The master publishes snapshots on its own tick, so wait for one that has seen the last
    // peer finish rather than reading whatever is current.
    let mut rx = master.status();
    let all_have = |s: &lanscatter::status::Snapshot| {
        s.nodes.len() == 6 && s.nodes.iter().all(|n| n.chunk_map.iter().all(|&c| c == lanscatter::status::CELL_HAS))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !all_have(&rx.borrow_and_update()) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            break;
        }
    }
    let s = rx.borrow().clone();
    assert_eq!(s.nodes.len(), 6, "master + 5 peers in the master's status");
    assert!(all_have(&s), "every node's chunk map is full in the master's status");
    shutdown_all(peers, master).await;
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}
