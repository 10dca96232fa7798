//! Durable before done (issue 14, part 3), under a simulated power loss: a peer syncs part-way
//! through [`PowerLossDisk`], the power is cut (nothing more reaches the disk, the engine is
//! gone) and every change that was never synced is undone. A file the peer had finished must
//! survive whole; a new peer engine on the same folder (plain disk, no `--adopt`: the marker
//! survived too) re-fetches exactly the chunks that were lost and ends byte-identical.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::storage::PowerLossDisk;
use common::sync::*;
use common::TreeSpec;
use lanscatter::engine::Engine;
use lanscatter::manifest::{ChunkHash, ChunkRule, Manifest};

/// Bytes of `manifest`'s distinct chunks that no place in `dir` holds intact.
fn missing_bytes(manifest: &Manifest, dir: &Path) -> u64 {
    let mut intact: HashMap<ChunkHash, bool> = HashMap::new();
    for f in &manifest.files {
        let data = std::fs::read(dir.join(&f.path)).unwrap_or_default();
        for c in &f.chunks {
            let (start, end) = (c.offset as usize, (c.offset + u64::from(c.size)) as usize);
            let ok = data.get(start..end).is_some_and(|b| ChunkHash::of(b) == c.hash);
            *intact.entry(c.hash).or_default() |= ok;
        }
    }
    let sizes: HashMap<ChunkHash, u64> = manifest.unique_chunks().into_iter().collect();
    intact.iter().filter(|(_, ok)| !**ok).map(|(h, _)| sizes[h]).sum()
}

/// Content (hash and size, not mtime) of every file.
fn contents(state: &BTreeMap<String, Entry>) -> BTreeMap<&String, (&String, u64)> {
    state
        .iter()
        .filter_map(|(k, e)| match e {
            Entry::File { hash, size, .. } => Some((k, (hash, *size))),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_power_loss_finished_files_survive_and_exactly_the_lost_chunks_are_fetched() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    // Single-chunk files finish early, the big ones late: at the cut some are done, some not.
    let sizes = vec![CHUNK / 2, CHUNK, 12 * CHUNK + 5];
    let spec = TreeSpec { files: 24, sizes, dup_fraction: 0.0, empty_dirs: 0, ..Default::default() };
    common::random_tree(&mdir, 51, &spec);
    let mut opts = common::no_cache_opts();
    opts.chunk_rule = ChunkRule::Fixed(CHUNK);
    let manifest = lanscatter::manifest::scan(&mdir, &opts).unwrap();
    let master = start_master(&mdir, &cache).await;
    let mut want = tree_state(&mdir);
    want.retain(|_, e| matches!(e, Entry::File { .. }));
    let pdir = t.path().join("peer");

    let disk = Arc::new(PowerLossDisk::with_write_delay(Duration::from_millis(100)));
    let mut cfg = peer_config(master.local_addr(), &pdir, &cache, "peer");
    (cfg.storage, cfg.compress, cfg.download_slots) = (disk.clone(), false, 2);
    let peer = Engine::start(cfg).await.expect("peer starts");
    let done = |now: &BTreeMap<String, Entry>| want.iter().filter(|(k, v)| now.get(*k) == Some(v)).count();
    let part_way = || disk.unsynced_bytes() > 0 && done(&tree_state(&pdir)) >= 2;
    wait_until(Duration::from_secs(60), "some files finished, others part-written", part_way).await;

    disk.cut();
    let at_cut = tree_state(&pdir);
    let finished: Vec<&String> = want.keys().filter(|k| at_cut.get(*k) == want.get(*k)).collect();
    assert!(finished.len() < want.len(), "cut part-way: {} of {} files done", finished.len(), want.len());
    peer.shutdown().await; // its disk is dead: it cannot change anything any more
    let lost = disk.lose_unsynced();
    let after = tree_state(&pdir);
    let (want_c, after_c) = (contents(&want), contents(&after));
    for rel in &finished {
        assert_eq!(after_c.get(rel), want_c.get(rel), "{rel} was done before the power loss: it must survive");
    }
    let expected = missing_bytes(&manifest, &pdir);
    assert!(lost > 0 && expected >= lost, "unsynced chunks were lost: {lost} bytes, {expected} to fetch");
    let total = manifest.total_bytes();
    assert!(expected < total, "what was finished is not fetched again: {expected} of {total}, {} done", finished.len());

    let mut cfg = peer_config(master.local_addr(), &pdir, &cache, "peer");
    cfg.compress = false;
    let peer = Engine::start(cfg).await.expect("the marked folder restarts without --adopt");
    wait_synced(&peer, &master, &mdir, &pdir, Duration::from_secs(60)).await;
    let fetched = peer.status().borrow().counters.bytes_downloaded;
    assert!(
        fetched >= expected && fetched <= expected + CHUNK,
        "re-fetched {fetched} bytes; lost or never written: {expected}"
    );
    peer.shutdown().await;
    master.shutdown().await;
}
