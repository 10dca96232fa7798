//! The planner's contract through its public API, driven by hand: a peer leaving with the only
//! non-master copy of a chunk, 0-slot peers, slot limits, duplicates, failures and re-planning.

use std::collections::{HashMap, HashSet};

use lanscatter::manifest::ChunkHash;
use lanscatter::planner::{Event, FailReason, NodeConfig, NodeId, Order, Planner, TransferId};

fn h(i: u32) -> ChunkHash {
    ChunkHash::of(&i.to_le_bytes())
}

fn node(master: bool, up: u32, down: u32) -> NodeConfig {
    NodeConfig::new(master, up, down)
}

/// Minimal engine stand-in: checks every order against the contract and tracks activity.
struct Harness {
    p: Planner,
    cfg: HashMap<NodeId, NodeConfig>,
    has: HashMap<NodeId, HashSet<ChunkHash>>,
    active: HashMap<TransferId, Order>,
    now: f64,
}

impl Harness {
    fn new(chunks: u32) -> Self {
        let mut p = Planner::new(42);
        p.handle(0.0, Event::NewManifest { chunks: (0..chunks).map(|i| (h(i), 1000)).collect() });
        Harness { p, cfg: HashMap::new(), has: HashMap::new(), active: HashMap::new(), now: 0.0 }
    }

    fn join(&mut self, id: NodeId, cfg: NodeConfig, has: Vec<ChunkHash>) {
        self.cfg.insert(id, cfg);
        self.has.insert(id, has.iter().copied().collect());
        self.p.handle(self.now, Event::Join { node: id, config: cfg, has });
    }

    fn leave(&mut self, id: NodeId) {
        self.p.handle(self.now, Event::Leave { node: id });
        self.active.retain(|_, o| o.from != id && o.to != id);
        self.cfg.remove(&id);
    }

    /// One round: plan and verify the contract; returns the new orders.
    fn plan(&mut self) -> Vec<Order> {
        let orders = self.p.plan(self.now);
        for o in &orders {
            assert!(self.has[&o.from].contains(&o.chunk), "source lacks chunk: {o:?}");
            assert!(!self.has[&o.to].contains(&o.chunk), "destination has chunk: {o:?}");
            assert!(!self.active.values().any(|a| a.chunk == o.chunk && a.to == o.to), "duplicate (chunk, to): {o:?}");
            self.active.insert(o.id, o.clone());
            let ups = self.active.values().filter(|a| a.from == o.from).count() as u32;
            let downs = self.active.values().filter(|a| a.to == o.to).count() as u32;
            assert!(ups <= self.cfg[&o.from].upload_slots, "upload slots exceeded: {o:?}");
            assert!(downs <= self.cfg[&o.to].download_slots, "download slots exceeded: {o:?}");
        }
        orders
    }

    fn finish(&mut self, id: TransferId) {
        let o = self.active.remove(&id).expect("active");
        self.has.get_mut(&o.to).expect("node").insert(o.chunk);
        self.p.handle(self.now, Event::Finished { id });
    }

    fn fail(&mut self, id: TransferId, reason: FailReason) {
        self.active.remove(&id);
        self.p.handle(self.now, Event::Failed { id, reason });
    }

    /// Finish everything round by round until all are complete (bounded).
    fn run_to_completion(&mut self) {
        for _ in 0..10_000 {
            if self.p.all_complete() {
                return;
            }
            self.now += 0.1;
            self.plan();
            let ids: Vec<TransferId> = {
                let mut v: Vec<_> = self.active.keys().copied().collect();
                v.sort();
                v
            };
            for id in ids {
                self.finish(id);
            }
        }
        panic!("did not complete");
    }
}

#[test]
fn peer_leaving_with_only_non_master_copy() {
    let mut x = Harness::new(1);
    x.join(0, node(true, 1, 0), vec![h(0)]);
    x.join(1, node(false, 2, 2), vec![]);
    x.join(2, node(false, 2, 2), vec![]);
    let o = x.plan();
    assert_eq!(o.len(), 1);
    let first = o[0].clone();
    x.finish(first.id);
    // Now the first receiver is the only peer copy; it forwards, then leaves mid-transfer.
    let o = x.plan();
    let relay = o.iter().find(|o| o.from == first.to).expect("relayed from the peer, not the master");
    let other = relay.to;
    x.leave(first.to);
    assert_eq!(x.p.active_transfers(), 0, "leave released the relay");
    // The chunk is fresh again: the master sends it.
    let o = x.plan();
    assert_eq!(o.len(), 1);
    assert_eq!((o[0].from, o[0].to), (0, other));
    x.run_to_completion();
    assert!(x.p.is_complete(other));
}

#[test]
fn zero_upload_peer_is_never_a_source_and_slots_hold() {
    let mut x = Harness::new(40);
    x.join(0, node(true, 3, 0), (0..40).map(h).collect());
    x.join(1, node(false, 0, 3), (0..20).map(h).collect()); // leecher holding half
    for n in 2..6 {
        x.join(n, node(false, 2, 2), vec![]);
    }
    for _ in 0..200 {
        if x.p.all_complete() {
            break;
        }
        x.now += 0.1;
        let orders = x.plan();
        assert!(orders.iter().all(|o| o.from != 1), "0-slot peer used as source");
        // Finish only half the transfers each round so slots stay contended.
        let mut ids: Vec<_> = x.active.keys().copied().collect();
        ids.sort();
        for id in ids.into_iter().step_by(2) {
            x.finish(id);
        }
    }
    assert!(x.p.all_complete());
}

#[test]
fn failures_are_replanned_and_bad_sources_demoted() {
    let mut x = Harness::new(8);
    x.join(0, node(true, 2, 0), (0..8).map(h).collect());
    x.join(1, node(false, 2, 2), (0..8).map(h).collect());
    x.join(2, node(false, 2, 2), vec![]);
    x.now = 1.0;
    let o = x.plan();
    assert!(!o.is_empty());
    for o in &o {
        x.fail(o.id, if o.from == 1 { FailReason::BadData } else { FailReason::Other });
    }
    let stats = x.p.stats();
    assert_eq!(stats.failed as usize, o.len());
    x.run_to_completion();
    assert!(x.p.is_complete(2));
}

#[test]
fn source_missing_removes_the_chunk_from_the_source() {
    let mut x = Harness::new(1);
    x.join(0, node(true, 1, 0), vec![h(0)]);
    x.join(1, node(false, 1, 1), vec![h(0)]);
    x.join(2, node(false, 1, 1), vec![]);
    let o = x.plan();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].from, 1, "peer with spare upload preferred over the master");
    x.fail(o[0].id, FailReason::SourceMissing);
    x.has.get_mut(&1).expect("node").remove(&h(0));
    assert!(!x.p.node_has(1, &h(0)));
    x.run_to_completion();
}

#[test]
fn rejoin_with_data_and_lost_chunks() {
    let mut x = Harness::new(6);
    x.join(0, node(true, 2, 0), (0..6).map(h).collect());
    x.join(1, node(false, 2, 2), vec![]);
    x.run_to_completion();
    x.p.handle(x.now, Event::Lost { node: 1, chunks: vec![h(2), h(3)] });
    x.has.get_mut(&1).expect("node").retain(|c| *c != h(2) && *c != h(3));
    assert!(!x.p.is_complete(1));
    x.leave(1);
    let has: Vec<_> = x.has[&1].iter().copied().collect();
    x.join(1, node(false, 2, 2), has);
    x.run_to_completion();
    assert!(x.p.is_complete(1));
}
