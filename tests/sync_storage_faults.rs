//! Disk faults through the peer's storage seam, as plain tests (no root, no tmpfs): a disk that
//! fills up mid-sync and gets space back, writes that fail and recover, and a slow disk.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::storage::FaultyDisk;
use common::sync::*;
use lanscatter::engine::Engine;
use lanscatter::status::NodeState;

/// Six 512 KiB files and a small one: about 3 MiB in 64 KiB chunks.
fn source_tree(mdir: &std::path::Path, seed: u64) {
    let mut rng = Rng::new(seed);
    for i in 0..6 {
        write_file(mdir, &format!("big/{i}.bin"), &rng.bytes(512 * 1024), 1_500_000_000 + i);
    }
    write_file(mdir, "small.txt", b"fits", 1_500_000_000);
}

async fn start_peer_on(
    master: &Engine,
    dst: &std::path::Path,
    cache: &std::path::Path,
    disk: Arc<FaultyDisk>,
) -> Engine {
    let mut pcfg = peer_config(master.local_addr(), dst, cache, "peer");
    pcfg.storage = disk;
    Engine::start(pcfg).await.expect("peer starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_keeps_what_is_verified_and_resumes_when_space_returns() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    source_tree(&mdir, 14);
    let before = tree_state(&mdir);
    let dst = t.path().join("disk");
    // Room for about a third of the data: the disk fills mid-sync.
    let disk = Arc::new(FaultyDisk::with_space(1 << 20));
    let master = start_master(&mdir, &cache).await;
    let peer = start_peer_on(&master, &dst, &cache, disk.clone()).await;

    let mut rx = peer.status();
    let full = wait_status(
        &mut rx,
        Duration::from_secs(60),
        "a disk-full error",
        |s| matches!(&s.state, NodeState::Error { message } if message.contains("disk full")),
    )
    .await;
    let NodeState::Error { message } = &full.state else { unreachable!() };
    assert!(message.contains("free some space"), "says what to do: {message}");
    assert!(full.bytes_done > 0, "verified chunks are kept ({} bytes)", full.bytes_done);
    assert!(peer.is_running(), "a full disk is not fatal");

    assert!(disk.written.load(Ordering::SeqCst) <= 1 << 20, "nothing was written past the full disk");
    disk.make_room();
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(90)).await;
    peer.shutdown().await;
    master.shutdown().await;
    assert_same_tree(&mdir, &dst);
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_errors_are_reported_and_the_sync_resumes_when_writes_work() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    source_tree(&mdir, 15);
    let dst = t.path().join("dst");
    let disk = Arc::new(FaultyDisk::default());
    disk.fail_writes.store(true, Ordering::SeqCst);
    let master = start_master(&mdir, &cache).await;
    let peer = start_peer_on(&master, &dst, &cache, disk.clone()).await;
    let mut rx = peer.status();
    let failed = wait_status(
        &mut rx,
        Duration::from_secs(60),
        "a write error",
        |s| matches!(&s.state, NodeState::Error { message } if message.contains("injected write error")),
    )
    .await;
    assert_eq!(failed.bytes_done, 0, "nothing counts as written");
    assert!(peer.is_running(), "a failing write is not fatal");
    disk.fail_writes.store(false, Ordering::SeqCst);
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(90)).await;
    peer.shutdown().await;
    master.shutdown().await;
    assert_same_tree(&mdir, &dst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_disk_slows_the_peer_but_it_completes() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    source_tree(&mdir, 16);
    let dst = t.path().join("dst");
    let disk = Arc::new(FaultyDisk { write_delay: Duration::from_millis(20), ..Default::default() });
    let master = start_master(&mdir, &cache).await;
    let peer = start_peer_on(&master, &dst, &cache, disk.clone()).await;
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(90)).await;
    let s = peer.status().borrow().clone();
    assert_eq!(s.counters.verify_failures, 0);
    assert!(disk.written.load(Ordering::SeqCst) >= 3 << 20, "every chunk went through the slow disk");
    peer.shutdown().await;
    master.shutdown().await;
    assert_same_tree(&mdir, &dst);
}
