//! Done-when 6: the master restarts mid-sync; peers reconnect and finish.

mod common;

use std::time::Duration;

use common::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_survive_a_master_restart() {
    let (t, mdir, cache) = sync_source(6, 4);
    let before = tree_state(&mdir);
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.max_upload_bps = Some(1_500_000);
    let master = lanscatter::engine::Engine::start(mcfg.clone()).await.unwrap();
    let addr = master.local_addr();
    let peers = start_peers(addr, t.path(), &cache, 3).await;
    let mut mrx = master.status();
    wait_status(&mut mrx, Duration::from_secs(60), "some progress", |s| {
        s.bytes_done * 5 >= s.bytes_total && s.bytes_total > 0
    })
    .await;
    assert!(!mrx.borrow().nodes.iter().skip(1).all(|n| n.bytes_done == n.bytes_total), "restart happens mid-sync");
    master.shutdown().await;

    mcfg.bind = addr;
    mcfg.max_upload_bps = None;
    let master = lanscatter::engine::Engine::start(mcfg).await.expect("master restarts on the same port");
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    let mut mrx = master.status();
    wait_status(&mut mrx, Duration::from_secs(10), "all peers rejoined", |s| s.nodes.len() == 4).await;
    for (_, dir) in &peers {
        assert_same_tree(&mdir, dir);
    }
    shutdown_all(peers, master).await;
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}
