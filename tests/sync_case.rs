//! Peers whose folder ignores letter case (NTFS, APFS), and files another program holds
//! locked, through the storage seam: `CaseFoldingDisk` behaves as a case-insensitive,
//! case-preserving file system (this machine cannot loop-mount one: see the README's test
//! notes), `LockingDisk` fails writes to one file as a Windows sharing violation would.
//!
//! - a case-only rename on the master is a rename on the peer: new name, same content, no data
//!   fetched again (without care, the "leftover" old name would be deleted — the same file);
//! - two master files differing only by case are refused with one message naming both, and
//!   the rest syncs;
//! - a locked file is skipped with a message naming it, then synced once unlocked.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::storage::{CaseFoldingDisk, LockingDisk};
use common::sync::*;
use lanscatter::engine::Engine;
use lanscatter::status::Snapshot;

async fn start_peer_on(
    master: &Engine,
    dst: &Path,
    cache: &Path,
    storage: Arc<dyn lanscatter::storage::Storage>,
) -> Engine {
    let mut pcfg = peer_config(master.local_addr(), dst, cache, "peer");
    pcfg.storage = storage;
    Engine::start(pcfg).await.expect("peer starts")
}

/// Names in `dir` (not recursive), sorted, without a peer's own `.lanscatter` marker folder.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !lanscatter::paths::is_state_dir(n))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_case_only_rename_is_a_rename_on_a_case_insensitive_peer() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(3);
    let readme = rng.bytes(300 * 1024);
    write_file(&mdir, "Readme.txt", &readme, 1_500_000_000);
    write_file(&mdir, "Docs/guide.bin", &rng.bytes(200 * 1024), 1_500_000_001);
    let dst = t.path().join("peer");
    let master = start_master(&mdir, &cache).await;
    let peer = start_peer_on(&master, &dst, &cache, Arc::new(CaseFoldingDisk::new(&dst))).await;
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(60)).await;
    let fetched = peer.status().borrow().counters.bytes_downloaded;

    // Only the letter case changes, of a file and of a directory.
    std::fs::rename(mdir.join("Readme.txt"), mdir.join("README.txt")).unwrap();
    std::fs::rename(mdir.join("Docs"), mdir.join("docs")).unwrap();
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(60)).await;
    assert_eq!(names(&dst), vec!["README.txt", "docs"], "new spellings, nothing deleted, nothing extra");
    assert_eq!(std::fs::read(dst.join("README.txt")).unwrap(), readme, "content intact");
    assert_same_tree(&mdir, &dst);
    let after = peer.status().borrow().counters.bytes_downloaded;
    assert_eq!(after, fetched, "no data fetched again for a rename");

    peer.shutdown().await;
    master.shutdown().await;
}

fn says(s: &Snapshot, needle: &str) -> bool {
    s.events.iter().any(|e| e.message.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_differing_only_by_case_are_refused_and_the_rest_syncs() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(5);
    write_file(&mdir, "A.txt", b"upper", 1_500_000_000);
    write_file(&mdir, "a.txt", b"lower", 1_500_000_000);
    write_file(&mdir, "other/b.bin", &rng.bytes(150 * 1024), 1_500_000_002);
    write_file(&mdir, "c.txt", b"plain", 1_500_000_003);
    let dst = t.path().join("peer");
    let master = start_master(&mdir, &cache).await;
    let peer = start_peer_on(&master, &dst, &cache, Arc::new(CaseFoldingDisk::new(&dst))).await;
    let mut rx = peer.status();
    let s = wait_status(&mut rx, Duration::from_secs(60), "the collision message and the rest synced", |s| {
        says(s, "A.txt and a.txt") && s.bytes_done > 0 && dst.join("c.txt").exists()
    })
    .await;
    let msg = &s.events.iter().find(|e| e.message.contains("A.txt and a.txt")).unwrap().message;
    assert!(msg.contains("differ only in letter case") && msg.contains("rename"), "says why and what to do: {msg}");
    // The rest arrives complete; neither colliding name is written.
    wait_until(Duration::from_secs(60), "the other files", || {
        let (m, p) = (tree_state(&mdir), tree_state(&dst));
        m.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("a.txt")).all(|(k, v)| p.get(k) == Some(v))
    })
    .await;
    assert_eq!(names(&dst), vec!["c.txt", "other"], "no a.txt in either spelling");
    assert!(peer.is_running());

    peer.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_file_is_skipped_with_a_message_then_synced_when_unlocked() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(9);
    for i in 0..3 {
        write_file(&mdir, &format!("data/{i}.bin"), &rng.bytes(200 * 1024), 1_500_000_000 + i);
    }
    let dst = t.path().join("peer");
    let disk = Arc::new(LockingDisk::new("data/1.bin"));
    let master = start_master(&mdir, &cache).await;
    let peer = start_peer_on(&master, &dst, &cache, disk.clone()).await;
    let mut rx = peer.status();
    let s = wait_status(&mut rx, Duration::from_secs(60), "the locked-file message", |s| says(s, "1.bin")).await;
    let msg = s.events.iter().find(|e| e.message.contains("1.bin")).unwrap().message.clone();
    assert!(msg.contains("locked") && msg.contains("retries"), "names the file, says it retries: {msg}");
    let others = |dst: &Path| {
        let (m, p) = (tree_state(&mdir), tree_state(dst));
        ["data/0.bin", "data/2.bin"].iter().all(|k| m.get(*k) == p.get(*k))
    };
    wait_until(Duration::from_secs(60), "the unlocked files", || others(&dst)).await;
    assert!(peer.is_running(), "a locked file is not a failed sync");
    assert!(!matches!(rx.borrow().state, lanscatter::status::NodeState::Error { .. }), "{:?}", rx.borrow().state);
    let refused = disk.refused.load(Ordering::SeqCst);
    wait_until(Duration::from_secs(30), "a retry of the locked file", || disk.refused.load(Ordering::SeqCst) > refused)
        .await;

    disk.locked.store(false, Ordering::SeqCst);
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(60)).await;

    peer.shutdown().await;
    master.shutdown().await;
}
