//! Fuzzing the planner: event sequences chosen by the input (hostile ones included) must never
//! overcommit a slot, order from or to an offline or excluded node, or let its counters drift
//! from its own order list; and random swarms whose members misbehave for a while and then all
//! serve honestly must finish. Targets: `tests/common/fuzz_targets.rs`; long runs:
//! `scripts/fuzz.sh`.

mod common;

use std::collections::{HashMap, HashSet};

use common::fuzz::{self, cases};
use common::fuzz_seeds::seeds;
use common::Rng;
use lanscatter::manifest::ChunkHash;
use lanscatter::planner::{Event, FailReason, NodeConfig, NodeId, Order, Planner, TransferId};

#[global_allocator]
static ALLOC: fuzz::CountingAlloc = fuzz::CountingAlloc;

#[test]
fn hostile_event_sequences_keep_the_invariants() {
    fuzz::run("planner_events", cases(300), seeds("planner_events"), fuzz::per_byte(4096));
}

#[test]
fn random_swarms_finish_once_everyone_serves_honestly() {
    let n = cases(40);
    let ticks: u64 = (0..n).map(|case| swarm_finishes(0x5eed ^ case.wrapping_mul(0x9E37_79B9))).sum();
    println!("fuzz swarm_termination: {n} cases without a failure ({ticks} simulated ticks)");
}

/// Virtual seconds per tick, and the ticks a swarm may take once everyone is honest.
const TICK: f64 = 0.1;
const HONEST_TICKS: u32 = 20_000;

/// The engine side of a simulated swarm: what each node really holds, its rate, its transfers.
struct Sim {
    p: Planner,
    rng: Rng,
    now: f64,
    cfg: HashMap<NodeId, NodeConfig>,
    has: HashMap<NodeId, HashSet<ChunkHash>>,
    /// Upload bytes per second of each node.
    rate: HashMap<NodeId, f64>,
    active: HashMap<TransferId, (Order, u64)>,
    chunks: Vec<(ChunkHash, u64)>,
}

/// Simulate one swarm to completion; returns the ticks it took.
fn swarm_finishes(seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let chunks: Vec<(ChunkHash, u64)> =
        (0..1 + rng.below(40)).map(|i| (ChunkHash::of(&i.to_le_bytes()), 1 + rng.below(4 << 20))).collect();
    let mut sim = Sim {
        p: Planner::new(seed),
        rng,
        now: 0.0,
        cfg: HashMap::new(),
        has: HashMap::new(),
        rate: HashMap::new(),
        active: HashMap::new(),
        chunks: chunks.clone(),
    };
    sim.p.handle(0.0, Event::NewManifest { chunks: chunks.clone() });
    let master = NodeConfig::new(true, 1 + sim.rng.below(8) as u32, 0);
    sim.join(0, master, chunks.iter().map(|c| c.0).collect());
    for id in 1..=1 + sim.rng.below(8) as NodeId {
        let cfg = NodeConfig::new(false, sim.rng.below(5) as u32, 1 + sim.rng.below(6) as u32);
        let has = chunks.iter().map(|c| c.0).filter(|_| sim.rng.below(4) == 0).collect();
        sim.join(id, cfg, has);
    }
    let hostile_ticks = sim.rng.below(600) as u32;
    for _ in 0..hostile_ticks {
        sim.misbehave();
        sim.tick(true);
    }
    for honest in 0..HONEST_TICKS {
        if sim.p.all_complete() {
            return u64::from(hostile_ticks + honest);
        }
        sim.tick(false);
    }
    panic!(
        "seed {seed}: swarm not complete {} s after everyone turned honest: {:?}",
        HONEST_TICKS as f64 * TICK,
        sim.p.stats()
    );
}

impl Sim {
    fn join(&mut self, id: NodeId, cfg: NodeConfig, has: HashSet<ChunkHash>) {
        self.cfg.insert(id, cfg);
        self.rate.insert(id, 1e5 + self.rng.below(50_000_000) as f64);
        self.p.handle(self.now, Event::Join { node: id, config: cfg, has: has.iter().copied().collect() });
        self.has.insert(id, has);
    }

    fn peers(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.cfg.keys().copied().filter(|&id| id != 0).collect();
        v.sort_unstable();
        v
    }

    /// One hostile act at random: bad data or a reset on a live transfer, a peer losing chunks,
    /// a peer leaving and rejoining, or one claiming a chunk it does not hold.
    fn misbehave(&mut self) {
        let peers = self.peers();
        let peer = peers[self.rng.below(peers.len() as u64) as usize];
        let chunk = self.chunks[self.rng.below(self.chunks.len() as u64) as usize].0;
        match self.rng.below(20) {
            0 => {
                let mut ids: Vec<TransferId> = self.active.keys().copied().collect();
                ids.sort_unstable();
                if let Some(&id) = ids.get(self.rng.below(ids.len() as u64 + 1) as usize) {
                    self.active.remove(&id);
                    let reason = [FailReason::BadData, FailReason::Other][self.rng.below(2) as usize];
                    self.p.handle(self.now, Event::Failed { id, reason });
                }
            }
            1 => {
                self.has.get_mut(&peer).map(|h| h.remove(&chunk));
                self.p.handle(self.now, Event::Lost { node: peer, chunks: vec![chunk] });
            }
            2 => {
                self.p.handle(self.now, Event::Leave { node: peer });
                self.active.retain(|_, (o, _)| o.from != peer && o.to != peer);
                let (cfg, has) = (self.cfg[&peer], self.has[&peer].clone());
                self.join(peer, cfg, has);
            }
            3 => self.p.handle(self.now, Event::Have { node: peer, chunks: vec![chunk] }),
            _ => {}
        }
    }

    /// Plan, move bytes for one tick, report progress and completions, apply the planner's aborts.
    fn tick(&mut self, hostile: bool) {
        self.now += TICK;
        for o in self.p.plan(self.now) {
            assert!(self.cfg[&o.from].upload_slots > 0 && self.cfg[&o.to].download_slots > 0, "{o:?}");
            self.active.insert(o.id, (o, 0));
        }
        for o in self.p.check_timeouts_orders(self.now) {
            self.active.remove(&o.id);
        }
        let mut ids: Vec<TransferId> = self.active.keys().copied().collect();
        ids.sort_unstable();
        let mut uploads: HashMap<NodeId, f64> = HashMap::new();
        for (o, _) in self.active.values() {
            *uploads.entry(o.from).or_default() += 1.0;
        }
        for id in ids {
            let (o, done) = self.active[&id].clone();
            if !self.has[&o.from].contains(&o.chunk) {
                self.active.remove(&id);
                self.p.handle(self.now, Event::Failed { id, reason: FailReason::SourceMissing });
                continue;
            }
            // While hostile, a quarter of the sources hang (no bytes at all).
            let hung = hostile && o.from % 4 == 1;
            let step = if hung { 0 } else { (self.rate[&o.from] / uploads[&o.from] * TICK) as u64 + 1 };
            let done = (done + step).min(o.size);
            if done == o.size {
                self.active.remove(&id);
                self.has.get_mut(&o.to).map(|h| h.insert(o.chunk));
                self.p.handle(self.now, Event::Finished { id });
            } else {
                self.active.insert(id, (o, done));
                self.p.handle(self.now, Event::Progress { id, bytes_done: done });
            }
        }
    }
}
