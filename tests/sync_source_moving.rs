//! A source that is still moving (issue 14, part 1): a file being copied into the master's
//! folder waits for a later scan instead of failing the index or reaching peers half written,
//! and a new manifest does not cancel the fetches of chunks it still holds.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::sync::*;
use lanscatter::engine::Engine;
use lanscatter::status::NodeState;

const WAIT: Duration = Duration::from_secs(60);

/// Append `pieces` random pieces of 64 KiB to `path`, one every 50 ms, on a thread; `done` is
/// set when it stops.
fn writer(path: PathBuf, seed: u64, pieces: usize, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut rng = Rng::new(seed);
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        for _ in 0..pieces {
            f.write_all(&rng.bytes(64 * 1024)).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::SeqCst);
    })
}

/// While the writer runs: the master never fails its index, and `check` holds for the peer.
async fn watch_while_writing(master: &Engine, done: &AtomicBool, mut check: impl FnMut() -> Result<(), String>) {
    let mut rx = master.status();
    while !done.load(Ordering::SeqCst) {
        let s = rx.borrow_and_update().clone();
        if let NodeState::Error { message } = &s.state {
            panic!("the index failed while a file was being written: {message}");
        }
        if let Err(e) = check() {
            panic!("{e}");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
    }
}

fn is_absent(p: &Path) -> Result<(), String> {
    match p.exists() {
        true => Err(format!("{} reached the peer while it was still being written", p.display())),
        false => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_being_written_wait_for_a_later_scan_and_then_sync() {
    let (t, mdir, cache) = sync_source(31, 1);
    let mut mcfg = master_config(&mdir, &cache);
    // Wide enough that a writer pausing on a loaded machine is not taken for finished.
    mcfg.settle = Duration::from_secs(5);
    let done = Arc::new(AtomicBool::new(false));
    // A file is being copied in while the master makes its first index.
    let incoming = mdir.join("incoming.bin");
    let w = writer(incoming.clone(), 1, 60, done.clone());
    let master = Engine::start(mcfg).await.expect("master starts");
    let (peer, pdir) = start_peers(master.local_addr(), t.path(), &cache, 1).await.remove(0);
    let on_peer = pdir.join("incoming.bin");
    watch_while_writing(&master, &done, || is_absent(&on_peer)).await;
    w.join().unwrap();
    wait_synced(&peer, &master, &mdir, &pdir, WAIT).await;
    assert_eq!(std::fs::metadata(&on_peer).unwrap().len(), 60 * 64 * 1024, "the whole file, once it stopped");

    // A synced file grows again: the peer keeps the version it has until the writer is done.
    let before = std::fs::read(&on_peer).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let w = writer(incoming.clone(), 2, 40, done.clone());
    let scans = master.status().borrow().counters.index_scans;
    watch_while_writing(&master, &done, || match std::fs::read(&on_peer) {
        Ok(now) if now == before => Ok(()),
        _ => Err("the peer's copy changed while the master's was still being written".into()),
    })
    .await;
    w.join().unwrap();
    wait_synced(&peer, &master, &mdir, &pdir, WAIT).await;
    assert_eq!(std::fs::metadata(&on_peer).unwrap().len(), 100 * 64 * 1024);
    assert!(master.status().borrow().counters.index_scans > scans, "the master looked again meanwhile");
    peer.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_manifest_mid_sync_keeps_the_fetches_of_chunks_it_still_holds() {
    let (t, mdir, cache) = sync_source(32, 3);
    let master = Engine::start(master_config(&mdir, &cache)).await.expect("master starts");
    let (peer, pdir) =
        start_peers_with(master.local_addr(), t.path(), &cache, 1, |_, p| p.max_download_bps = Some(1_000_000))
            .await
            .remove(0);
    let mut rx = peer.status();
    // Bytes arriving, not bytes written: the 8 flows share the 1 MB/s and their batches tend
    // to land together near the end, so a written total below a third may never be seen.
    let first = wait_status(&mut rx, WAIT, "the peer to be part way", |p| {
        p.manifest_id != 0 && p.counters.bytes_downloaded > 0 && p.bytes_done * 3 < p.bytes_total
    })
    .await;
    // A file is added (old mtime: settled at once): nothing the peer is fetching leaves.
    write_file(&mdir, "added/later.bin", &Rng::new(5).bytes(200_000), 1_600_000_000);
    let changed =
        wait_status(&mut rx, WAIT, "the new manifest at the peer", |p| p.manifest_id > first.manifest_id).await;
    assert!(changed.bytes_done < changed.bytes_total, "still syncing when the manifest changed");
    let c = &changed.counters;
    assert_eq!(c.fetches_cancelled, 0, "no fetch of an unchanged chunk was cancelled");
    assert!(c.fetches_kept > 0, "fetches were in flight and went on: {c:?}");
    wait_synced(&peer, &master, &mdir, &pdir, WAIT).await;
    assert_eq!(peer.status().borrow().counters.fetches_cancelled, 0);
    peer.shutdown().await;
    master.shutdown().await;
}
