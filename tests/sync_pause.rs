//! Pause (the tray's "Pause", `Engine::set_paused`): transfers stop, the engine, its index and the
//! folder stay, and resuming finishes the sync byte for byte.
//!
//! "Nothing moves while paused" is checked against the master's planner rounds, not a clock: the
//! coordinator keeps running its rounds while paused, so many rounds without a single new chunk
//! request is the evidence, however slow the machine is.

mod common;

use std::time::Duration;

use common::sync::*;
use lanscatter::status::Snapshot;

const LONG: Duration = Duration::from_secs(120);

/// Wait until the master has run `n` more planner rounds than now.
async fn rounds_pass(master: &lanscatter::engine::Engine, n: u64) {
    let mut rx = master.status();
    let r0 = rx.borrow().counters.planner_rounds;
    wait_status(&mut rx, LONG, "planner rounds", |s| s.counters.planner_rounds >= r0 + n).await;
}

fn peers_at(s: &Snapshot) -> usize {
    s.nodes.iter().filter(|n| !n.is_master).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_master_orders_nothing_until_resumed() {
    let (t, mdir, cache) = sync_source(41, 2);
    let master = start_master(&mdir, &cache).await;
    master.set_paused(true);
    let mut mrx = master.status();
    wait_status(&mut mrx, LONG, "the paused master indexed", |s| {
        s.paused && matches!(s.state, lanscatter::status::NodeState::UpToDate)
    })
    .await;
    let pdir = t.path().join("peer");
    let peer = start_peer(master.local_addr(), &pdir, &cache, "peer").await;
    wait_status(&mut mrx, LONG, "the peer joined", |s| peers_at(s) == 1).await;

    rounds_pass(&master, 30).await;
    let p = peer.status().borrow().clone();
    let m = master.status().borrow().clone();
    assert_eq!((p.counters.chunk_gets_made, p.bytes_done), (0, 0), "a paused master ordered a transfer");
    assert_eq!(m.counters.chunk_gets_served, 0);
    assert!(m.paused && !p.paused, "the snapshots say who is paused");

    master.set_paused(false);
    wait_synced(&peer, &master, &mdir, &pdir, LONG).await;
    wait_status(&mut mrx, LONG, "the master's snapshot no longer paused", |s| !s.paused).await;
    peer.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_peer_leaves_keeps_its_folder_and_resumes() {
    let (t, mdir, cache) = sync_source(42, 3);
    let mut mcfg = master_config(&mdir, &cache);
    // Slow enough that the pause lands mid-sync on any machine.
    mcfg.max_upload_bps = Some(400_000);
    let master = lanscatter::engine::Engine::start(mcfg).await.unwrap();
    let pdir = t.path().join("peer");
    let peer = start_peer(master.local_addr(), &pdir, &cache, "peer").await;
    let mut prx = peer.status();
    let mut mrx = master.status();
    wait_status(&mut prx, LONG, "the first verified bytes", |s| s.bytes_done > 0).await;
    let total = prx.borrow().bytes_total;

    peer.set_paused(true);
    wait_status(&mut prx, LONG, "the peer paused", |s| s.paused).await;
    wait_status(&mut mrx, LONG, "the paused peer left the master", |s| peers_at(s) == 0).await;
    let held = prx.borrow().clone();
    assert!(held.bytes_done < total, "the pause landed mid-sync ({} of {total})", held.bytes_done);
    rounds_pass(&master, 30).await;
    let still = prx.borrow().clone();
    assert_eq!(still.counters.chunk_gets_made, held.counters.chunk_gets_made, "a paused peer requested chunks");
    assert_eq!(peers_at(&master.status().borrow()), 0, "a paused peer stays away");
    assert!(pdir.is_dir(), "the folder stays");

    peer.set_paused(false);
    wait_synced(&peer, &master, &mdir, &pdir, LONG).await;
    let done = peer.status().borrow().clone();
    let said: Vec<&str> = done.events.iter().map(|e| e.message.as_str()).collect();
    assert!(said.iter().any(|m| m.starts_with("paused")) && said.iter().any(|m| m.starts_with("resumed")), "{said:?}");
    // What was verified before the pause is kept, not fetched again (a little slack for fetches
    // the pause cut off mid-chunk: those bytes were never written).
    assert!(
        done.counters.bytes_downloaded < total + total / 2,
        "downloaded {} for {total} bytes: the pause threw away verified data",
        done.counters.bytes_downloaded
    );
    peer.shutdown().await;
    master.shutdown().await;
}
