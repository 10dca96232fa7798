//! Done-when 1 and 8: a master and 5 peers end byte-identical with matching mtimes, and the
//! master's folder is bit-for-bit and mtime-for-mtime unchanged.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_and_five_peers_end_identical() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    random_tree(&mdir, 1, 3);
    let before = tree_state(&mdir);
    let master = start_master(&mdir, &cache).await;
    let mut peers = Vec::new();
    for i in 0..5 {
        let dir = t.path().join(format!("peer{i}"));
        peers.push((start_peer(master.local_addr(), &dir, &cache, &format!("peer{i}")).await, dir));
    }
    for (p, dir) in &peers {
        wait_synced(p, &master, &mdir, dir, Duration::from_secs(60)).await;
        assert_same_tree(&mdir, dir);
    }
    let s = master.status().borrow().clone();
    assert_eq!(s.nodes.len(), 6, "master + 5 peers in the master's status");
    assert!(s.nodes.iter().all(|n| n.chunk_map.iter().all(|&c| c == lanscatter::status::CELL_HAS)));
    for (p, _) in peers {
        p.shutdown().await.unwrap();
    }
    master.shutdown().await.unwrap();
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}
