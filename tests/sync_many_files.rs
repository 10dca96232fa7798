//! Many small files travel in batches (issue 19): a few thousand tiny files, empty and
//! duplicate ones among them, reach two peers byte-identical through the batch route with far
//! fewer requests than files, and a source that corrupts some chunks of every batch it serves
//! gets the rest of each batch used, the bad chunks fetched again elsewhere, and is counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::storage::FaultyDisk;
use common::sync::*;
use lanscatter::engine::Engine;

/// `files` files of 0-2 KiB in nested folders, ~10 % duplicates, the special files (an empty
/// file, identical copies, unicode names).
fn tiny_tree(seed: u64, files: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let spec = TreeSpec {
        files,
        min_size: 0,
        max_size: 2048,
        max_depth: 3,
        dup_fraction: 0.1,
        empty_dirs: 2,
        mtime: Some(1_600_000_000),
        special_files: true,
        ..TreeSpec::default()
    };
    random_tree(&mdir, seed, &spec);
    (t, mdir, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_tiny_files_sync_in_batches() {
    let (t, mdir, cache) = tiny_tree(19, 3000);
    let before = tree_state(&mdir);
    let master = start_master(&mdir, &cache).await;
    let peers = start_peers(master.local_addr(), t.path(), &cache, 2).await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    for (p, dir) in &peers {
        assert_same_tree(&mdir, dir);
        let gets = p.status().borrow().counters.chunk_gets_made;
        assert!(gets > 0, "the peer fetched something");
        // One request per file would be ~2700 (3000 files, 10 % duplicates); batches of up to
        // 1 MiB of ~1 KiB files are a few requests each.
        assert!(gets < 300, "{gets} requests for 3000 files: the batch path was not used");
    }
    shutdown_all(peers, master).await;
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_corrupting_some_chunks_of_each_batch_gets_the_rest_used() {
    let (t, mdir, cache) = tiny_tree(23, 2000);
    let mut mcfg = master_config(&mdir, &cache);
    // A slow master with one slot makes the (complete) rogue the attractive source.
    mcfg.upload_slots = 1;
    mcfg.max_upload_bps = Some(1_000_000);
    let master = Engine::start(mcfg).await.unwrap();

    let rogue_dir = t.path().join("rogue");
    let mut rcfg = peer_config(master.local_addr(), &rogue_dir, &cache, "rogue");
    // About one chunk in 16 is served corrupt: every batch of hundreds holds some.
    rcfg.storage = Arc::new(FaultyDisk { corrupt_one_in: 16, ..Default::default() });
    rcfg.upload_slots = 4;
    let rogue = Engine::start(rcfg).await.unwrap();
    wait_synced(&rogue, &master, &mdir, &rogue_dir, Duration::from_secs(120)).await;

    let peers = start_peers(master.local_addr(), t.path(), &cache, 2).await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(180)).await;
    let rejected: u64 = peers.iter().map(|(p, _)| p.status().borrow().counters.verify_failures).sum();
    assert!(rejected > 0, "corrupt chunks were detected");
    // The master publishes its status on a timer, so its count may trail the peers' by a beat.
    let mut mrx = master.status();
    let snap = wait_status(&mut mrx, Duration::from_secs(10), "the master to count the liar", |s| {
        s.counters.verify_failures > 0
    })
    .await;
    let credited = snap.nodes.iter().find(|n| n.name == "rogue").map_or(0, |n| n.bytes_uploaded);
    assert!(credited > 0, "the good chunks of the rogue's batches were used (credited to it)");
    for (_, dir) in &peers {
        assert_same_tree(&mdir, dir);
    }
    rogue.shutdown().await;
    shutdown_all(peers, master).await;
}
