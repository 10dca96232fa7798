//! Disk faults through the peer's storage seam, as plain tests (no root, no tmpfs): a disk that
//! fills up mid-sync and gets space back, writes that fail and recover, fsyncs that fail, and a
//! slow disk. One
//! test runs the real binary on a real full file system (a 1 MiB tmpfs in a user namespace, on
//! Linux) to check what its plain output says.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
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
    assert!(names_file_and_space(message, &dst), "names the file and the space: {message}");
    assert!(full.bytes_done > 0, "verified chunks are kept ({} bytes)", full.bytes_done);
    assert!(peer.is_running(), "a full disk is not fatal");

    assert!(disk.written.load(Ordering::SeqCst) <= 1 << 20, "nothing was written past the full disk");
    // The peer stays connected while its disk is full: the master (status page, `--json`, its
    // plain output) shows the peer's reason as it is.
    let mut mrx = master.status();
    wait_status(&mut mrx, Duration::from_secs(30), "the peer's reason at the master", |s| {
        s.nodes.iter().any(|n| matches!(&n.state, NodeState::Error { message } if names_file_and_space(message, &dst)))
    })
    .await;
    disk.make_room();
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(90)).await;
    peer.shutdown().await;
    master.shutdown().await;
    assert_same_tree(&mdir, &dst);
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}

/// A full disk's message names the file (under `dst`), the free space and what is still needed,
/// e.g. "disk full writing /…/dst/big/3.bin: free 0 B, needs at least 2 MiB more; …".
fn names_file_and_space(message: &str, dst: &std::path::Path) -> bool {
    let file = message.split(": ").next().and_then(|m| m.strip_prefix("disk full writing "));
    file.is_some_and(|f| f.starts_with(&*dst.to_string_lossy()) && f.len() > dst.as_os_str().len() + 1)
        && message.contains(": free ")
        && message.contains("B, needs at least ")
        && message.contains(" more; free some space")
}

/// The peer binary on a real 1 MiB file system (tmpfs, mounted in a user and mount namespace of
/// its own so no root is needed) mirroring 3 MiB: its plain output says why it is in error.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plain_output_says_which_file_filled_the_disk_and_the_space() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    source_tree(&mdir, 17);
    let dst = t.path().join("small-disk");
    std::fs::create_dir_all(&dst).unwrap();
    let master = start_master(&mdir, &cache).await;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m lanscatter-test "$0" && exec "$@""#)
        .arg(&dst)
        .arg(common::bin())
        .args(["peer", &master.local_addr().to_string()])
        .arg(&dst)
        .args(["--port", "0", "--bind", "127.0.0.1", "--advertise", "127.0.0.1", "--no-cache", "--open"])
        .stdout(std::process::Stdio::null());
    let mut peer = common::Proc::start(cmd, common::Lines::Stderr);
    let dst2 = dst.clone();
    let line = tokio::task::spawn_blocking(move || {
        let l = peer.wait_for(
            "the disk-full reason (needs util-linux unshare and user namespaces)",
            Duration::from_secs(60),
            |l| l.starts_with("lanscatter peer: error: disk full writing "),
        );
        (l, peer)
    })
    .await
    .expect("waiting for the line");
    let (line, mut peer) = line;
    let message = line.trim_start_matches("lanscatter peer: error: ");
    assert!(names_file_and_space(message, &dst2), "{line}");
    assert!(!line.contains("free 0 B, needs at least 0 B"), "real numbers: {line}");
    peer.kill();
    master.shutdown().await;
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

/// The fsync after a file's last chunk fails (a few times): the file is finished again later,
/// not left counted as done while its data and the master's mtime never reached the disk (no
/// fetch would ever finish it, since all its chunks are in). Periodic re-checks are off, so
/// only that retry can end the sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_fsync_of_a_finished_file_is_retried() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    source_tree(&mdir, 17);
    let dst = t.path().join("dst");
    let disk = Arc::new(FaultyDisk { fail_syncs: AtomicU64::new(3), ..Default::default() });
    let master = start_master(&mdir, &cache).await;
    let mut pcfg = peer_config(master.local_addr(), &dst, &cache, "peer");
    pcfg.storage = disk.clone();
    pcfg.rescan_interval = Duration::from_secs(3600);
    let peer = Engine::start(pcfg).await.expect("peer starts");
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(90)).await;
    assert_eq!(disk.fail_syncs.load(Ordering::SeqCst), 0, "the injected fsync errors happened");
    peer.shutdown().await;
    master.shutdown().await;
    assert_same_tree(&mdir, &dst);
}
