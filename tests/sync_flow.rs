//! Done-when 7: a peer with 0 upload slots is never asked to upload; a node limited to a rate
//! never exceeds it by more than its burst (a correctness bound sampled over the whole run,
//! not a speed assertion).

mod common;

use std::time::{Duration, Instant};

use common::sync::*;
use lanscatter::transfer::ratelimit::RateLimiter;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_upload_slots_means_never_a_source() {
    let (t, mdir, cache) = sync_source(7, 3);
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.upload_slots = 1;
    let master = lanscatter::engine::Engine::start(mcfg).await.unwrap();
    let peers = start_peers_with(master.local_addr(), t.path(), &cache, 4, |i, cfg| {
        if i == 0 {
            cfg.upload_slots = 0;
        }
    })
    .await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    let leech = peers[0].0.status().borrow().clone();
    assert_eq!(leech.counters.chunk_gets_served, 0, "no GET reached the 0-slot peer");
    let others: u64 = peers[1..].iter().map(|(p, _)| p.status().borrow().counters.chunk_gets_served).sum();
    assert!(others > 0, "the other peers did serve (so the planner does use peers)");
    let ms = master.status().borrow().clone();
    let leech_node = ms.nodes.iter().find(|n| n.name == "peer0").unwrap();
    assert_eq!(leech_node.bytes_uploaded, 0);
    shutdown_all(peers, master).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn download_rate_never_exceeds_limit_plus_burst() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(77);
    for i in 0..4 {
        write_file(&mdir, &format!("f{i}.bin"), &rng.bytes(1_000_000), 1_500_000_000);
    }
    let master = start_master(&mdir, &cache).await;
    let rate = 1_000_000u64;
    let burst = RateLimiter::with_rate(rate).burst();
    let dir = t.path().join("peer");
    let mut cfg = peer_config(master.local_addr(), &dir, &cache, "peer");
    cfg.max_download_bps = Some(rate);
    cfg.download_slots = 4;
    let start = Instant::now();
    let peer = lanscatter::engine::Engine::start(cfg).await.unwrap();
    let rx = peer.status();
    let mut samples = 0;
    loop {
        let s = rx.borrow().clone();
        let bound = burst as f64 + rate as f64 * start.elapsed().as_secs_f64();
        assert!(
            s.counters.bytes_downloaded as f64 <= bound,
            "{} bytes after {:?} exceeds {bound}",
            s.counters.bytes_downloaded,
            start.elapsed()
        );
        samples += 1;
        if lanscatter::engine::is_done(&s) && s.manifest_id > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "sync finishes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(samples > 20, "sampled throughout the transfer");
    assert!(rx.borrow().counters.bytes_downloaded >= 4_000_000, "incompressible data all came over the wire");
    assert_same_tree(&mdir, &dir);
    peer.shutdown().await;
    master.shutdown().await;
}
