//! Unit tests of the planner's bookkeeping on small hand-built swarms.

use super::*;

/// Chunk `i` of a hand-built manifest (shared by the planner's submodules' tests).
pub(super) fn h(i: u32) -> ChunkHash {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&i.to_le_bytes());
    ChunkHash(b)
}

pub(super) fn cfg(master: bool, up: u32, down: u32) -> NodeConfig {
    NodeConfig::new(master, up, down)
}

#[test]
fn master_super_seeds_distinct_chunks() {
    let mut p = Planner::new(1);
    p.handle(0.0, Event::NewManifest { chunks: (0..10).map(|i| (h(i), 100)).collect() });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 4, 0), has: (0..10).map(h).collect() });
    for n in 1..=4 {
        p.handle(0.0, Event::Join { node: n, config: cfg(false, 2, 2), has: vec![] });
    }
    let orders = p.plan(0.0);
    assert_eq!(orders.len(), 4);
    let mut chunks: Vec<_> = orders.iter().map(|o| o.chunk).collect();
    chunks.sort();
    chunks.dedup();
    assert_eq!(chunks.len(), 4, "fresh chunks are distinct");
    let mut dests: Vec<_> = orders.iter().map(|o| o.to).collect();
    dests.sort();
    assert_eq!(dests, vec![1, 2, 3, 4], "spread over destinations");
    // Finishing one makes its destination a source for the others.
    p.handle(1.0, Event::Finished { id: orders[0].id });
    assert!(p.node_has(orders[0].to, &orders[0].chunk));
    let more = p.plan(1.0);
    assert!(more.iter().any(|o| o.from == orders[0].to && o.chunk == orders[0].chunk));
}

#[test]
fn leave_releases_and_unknown_events_are_ignored() {
    let mut p = Planner::new(2);
    p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 10)] });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 1, 0), has: vec![h(0)] });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 1), has: vec![] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 1);
    p.handle(0.5, Event::Leave { node: 1 });
    assert_eq!(p.active_transfers(), 0);
    p.handle(0.6, Event::Finished { id: o[0].id }); // ignored
    p.handle(0.6, Event::Progress { id: 999, bytes_done: 5 });
    assert!(!p.is_complete(1));
    p.handle(1.0, Event::Join { node: 1, config: cfg(false, 1, 1), has: vec![h(0)] });
    assert!(p.is_complete(1) && p.all_complete());
}

#[test]
fn stalled_transfer_is_aborted_and_replanned() {
    let mut p = Planner::new(3);
    p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 1000)] });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 1, 0), has: vec![h(0)] });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 1), has: vec![] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 1);
    p.handle(1.0, Event::Progress { id: o[0].id, bytes_done: 10 });
    assert!(p.check_timeouts(5.0).is_empty());
    assert_eq!(p.check_timeouts(12.0), vec![o[0].id]);
    let again = p.plan(12.0);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, o[0].id);
}

#[test]
fn new_manifest_keeps_present_hashes_and_aborts_stale_transfers() {
    let mut p = Planner::new(4);
    p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 10), (h(1), 10)] });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 2, 0), has: vec![h(0), h(1)] });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 2), has: vec![h(0)] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].chunk, h(1));
    p.handle(0.1, Event::NewManifest { chunks: vec![(h(0), 10), (h(2), 10)] });
    p.handle(0.1, Event::Have { node: 0, chunks: vec![h(2)] });
    assert!(!p.is_complete(1));
    assert_eq!(p.check_timeouts(0.2), vec![o[0].id]);
    let o2 = p.plan(0.2);
    assert_eq!(o2.len(), 1);
    assert_eq!(o2[0].chunk, h(2));
    p.handle(0.3, Event::Lost { node: 1, chunks: vec![h(0)] });
    assert_eq!(p.stats().nodes.iter().find(|n| n.id == 1).map(|n| n.have), Some(0));
}

#[test]
fn too_slow_source_is_aborted_penalised_and_avoided() {
    let mut p = Planner::new(5);
    p.handle(0.0, Event::NewManifest { chunks: (0..4).map(|i| (h(i), 10_000_000)).collect() });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 1, 0), has: (0..4).map(h).collect() });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 1), has: (0..4).map(h).collect() });
    p.handle(0.0, Event::Join { node: 2, config: cfg(false, 1, 1), has: (0..4).map(h).collect() });
    let dest = NodeConfig { max_download_bps: Some(10e6), ..cfg(false, 1, 1) };
    p.handle(0.0, Event::Join { node: 3, config: dest, has: vec![] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 1);
    assert!(o[0].from != 0, "a peer with spare upload is preferred over the master");
    assert!((o[0].min_rate_bps - 2e6).abs() < 1.0, "a fraction of the destination's per-slot rate");
    p.handle(1.0, Event::Progress { id: o[0].id, bytes_done: 100_000 });
    p.handle(3.5, Event::Progress { id: o[0].id, bytes_done: 200_000 });
    assert_eq!(p.check_timeouts(3.6), vec![o[0].id], "57 kB/s is far below 2 MB/s");
    let slow = o[0].from;
    assert!(p.stats().nodes.iter().any(|n| n.id == slow && n.penalized));
    let again = p.plan(3.6);
    assert_eq!(again.len(), 1);
    assert!(again[0].from != slow, "the penalised source is demoted");
    // A healthy transfer (8 MB/s) is left alone.
    p.handle(4.6, Event::Progress { id: again[0].id, bytes_done: 8_000_000 });
    p.handle(6.0, Event::Progress { id: again[0].id, bytes_done: 9_000_000 });
    assert!(p.check_timeouts(6.1).is_empty());
}

/// The rogue-test hang: the only peer holding a chunk was caught serving bad data (so it lost
/// the chunk) and a transient failure from the master read as "source missing". The master
/// must stay a source, or the chunk has none and the swarm never completes.
#[test]
fn master_stays_a_source_after_a_missing_report() {
    let mut p = Planner::new(4);
    p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 100)] });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 1, 0), has: vec![h(0)] });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 1), has: vec![] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].from, 0);
    p.handle(0.1, Event::Failed { id: o[0].id, reason: FailReason::SourceMissing });
    assert!(p.node_has(0, &h(0)), "the master still holds its manifest");
    assert!(p.plan(0.2).is_empty(), "held back briefly (`misses`)");
    let again = p.plan(0.2 + super::misses::FIRST_HOLD_S);
    assert_eq!(again.len(), 1, "re-planned from the master");
    assert_eq!(again[0].from, 0);
    // A peer that reports a chunk missing is forgotten as its source.
    p.handle(0.8, Event::Finished { id: again[0].id });
    p.handle(0.8, Event::Join { node: 2, config: cfg(false, 1, 1), has: vec![] });
    let from_peer: Vec<_> = p.plan(0.9).into_iter().filter(|o| o.from == 1).collect();
    assert_eq!(from_peer.len(), 1, "the new holder serves the newcomer");
    p.handle(1.0, Event::Failed { id: from_peer[0].id, reason: FailReason::SourceMissing });
    assert!(!p.node_has(1, &h(0)));
}

#[test]
fn orders_are_readable_until_they_end() {
    let mut p = Planner::new(6);
    p.handle(0.0, Event::NewManifest { chunks: (0..3).map(|i| (h(i), 100)).collect() });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 2, 0), has: (0..3).map(h).collect() });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 2), has: vec![h(2)] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 2);
    assert_eq!(p.order(o[0].id), Some(o[0].clone()), "an active transfer reads back as ordered");
    assert_eq!(p.orders().collect::<Vec<_>>(), o, "all active, by ascending id");
    assert_eq!(p.order(999), None);
    p.handle(0.5, Event::Finished { id: o[0].id });
    assert_eq!(p.order(o[0].id), None, "ended");
    assert_eq!(p.orders().map(|x| x.id).collect::<Vec<_>>(), vec![o[1].id]);
    p.handle(0.6, Event::Leave { node: 1 });
    assert_eq!(p.orders().count(), 0, "a leave drops the node's transfers");
}

#[test]
fn node_chunks_follow_joins_finishes_and_losses() {
    let mut p = Planner::new(7);
    p.handle(0.0, Event::NewManifest { chunks: (0..3).map(|i| (h(i), 100)).collect() });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 1, 0), has: (0..3).map(h).collect() });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 1), has: vec![h(2), h(0)] });
    assert_eq!(p.node_chunks(1).collect::<Vec<_>>(), vec![h(0), h(2)], "dense-index order");
    assert_eq!(p.node_chunks(9).count(), 0, "unknown node");
    let o = p.plan(0.0);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].chunk, h(1));
    p.handle(0.1, Event::Finished { id: o[0].id });
    assert_eq!(p.node_chunks(1).count(), 3);
    // Have-sets keep hashes outside the manifest; a Lost removes them.
    p.handle(0.2, Event::NewManifest { chunks: vec![(h(0), 100)] });
    assert_eq!(p.node_chunks(1).count(), 3);
    p.handle(0.3, Event::Lost { node: 1, chunks: vec![h(2)] });
    assert_eq!(p.node_chunks(1).collect::<Vec<_>>(), vec![h(0), h(1)]);
}

#[test]
fn check_timeouts_orders_names_the_aborted_orders() {
    let mut p = Planner::new(8);
    p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 1000), (h(1), 1000)] });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 2, 0), has: vec![h(0), h(1)] });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 2), has: vec![] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 2);
    p.handle(1.0, Event::Progress { id: o[1].id, bytes_done: 10 });
    assert!(p.check_timeouts_orders(3.0).is_empty());
    // Only the first, which never got a byte, stalls (after `first_byte_s`); it comes back
    // whole and is released.
    assert_eq!(p.check_timeouts_orders(4.5), vec![o[0].clone()]);
    assert_eq!(p.order(o[0].id), None);
    assert_eq!(p.active_transfers(), 1);
}

/// A destination whose disk failed a write gets no orders for a pause that doubles per repeat
/// (one failing round does not count twice), and a verified chunk ends the doubling.
#[test]
fn a_failing_disk_pauses_its_downloads_for_growing_times() {
    let mut p = Planner::new(7);
    p.handle(0.0, Event::NewManifest { chunks: (0..8).map(|i| (h(i), 100)).collect() });
    p.handle(0.0, Event::Join { node: 0, config: cfg(true, 4, 0), has: (0..8).map(h).collect() });
    p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 2), has: vec![] });
    let o = p.plan(0.0);
    assert_eq!(o.len(), 2);
    for x in &o {
        p.handle(0.1, Event::Failed { id: x.id, reason: FailReason::LocalDisk });
    }
    assert!(p.plan(2.0).is_empty(), "paused for the first 2 s");
    let retry = p.plan(2.2);
    assert_eq!(retry.len(), 2, "the pause ended");
    p.handle(2.3, Event::Failed { id: retry[0].id, reason: FailReason::LocalDisk });
    assert!(p.plan(6.2).is_empty(), "the second pause is twice as long");
    p.handle(6.4, Event::Finished { id: retry[1].id });
    let after = p.plan(6.4);
    assert!(!after.is_empty(), "the pause ended and a write worked");
    p.handle(6.5, Event::Failed { id: after[0].id, reason: FailReason::LocalDisk });
    assert!(p.plan(8.4).is_empty() && !p.plan(8.6).is_empty(), "a success starts the pauses over");
}
