//! The simulator's event loop (virtual time; see the parent module for the model).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::time::Instant;

use super::flow::{max_min_rates, Flow};
use super::{Frame, Row, SimConfig, SimResult};
use crate::manifest::ChunkHash;
use crate::planner::rng::Rng;
use crate::planner::{Event, FailReason, NodeConfig, Planner, TransferId, Tuning};

/// What a simulated member really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Honest,
    /// Claims every chunk, answers every request "busy".
    Liar,
    /// Honest until it freezes.
    Hung,
}

/// Simulated node (ground truth, which the planner only learns through events).
struct SimNode {
    role: Role,
    up: f64,
    down: f64,
    upload_slots: u32,
    download_slots: u32,
    is_master: bool,
    online: bool,
    has: Vec<bool>,
    have: usize,
    joined_at: f64,
    down_bytes: f64,
    complete_at: Option<f64>,
}

/// A transfer the planner ordered and still considers active.
struct Tracked {
    /// The chunks it carries (one, or a planner batch).
    chunks: Vec<u32>,
    from: usize,
    to: usize,
    size: f64,
    /// Bytes done; `None` until the transfer has started.
    done: Option<f64>,
    rate: f64,
    fail_at: Option<(f64, FailReason)>,
    /// Reached its end; waiting for the verification report to reach the planner.
    stopped: bool,
}

#[derive(Debug)]
enum Sched {
    Join(usize),
    Leave(usize),
    Start(TransferId),
    Report(Event),
    /// A hung node stops moving bytes (its transfers stall; the planner is not told).
    Freeze(usize),
}

fn hash_of(i: u32) -> ChunkHash {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&i.to_le_bytes());
    b[4] = 0xA5;
    ChunkHash(b)
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: Rng,
    planner: Planner,
    nodes: Vec<SimNode>,
    tracked: BTreeMap<TransferId, Tracked>,
    active_pairs: HashSet<(u32, usize)>,
    ul: Vec<u32>,
    dl: Vec<u32>,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    sched: Vec<Option<Sched>>,
    seq: u64,
    /// Scheduled joins and leaves not yet applied: the run is not over while any remain.
    churn_pending: usize,
    /// Chunks some peer has received (the master's injection progress).
    seeded: Vec<bool>,
    seeded_count: usize,
    t: f64,
    res: SimResult,
}

/// Run one scenario; `observer` (if any) gets a frame every `draw_every` virtual seconds.
pub fn run(cfg: &SimConfig, draw_every: f64, mut observer: Option<&mut dyn FnMut(&Frame)>) -> SimResult {
    let wall = Instant::now();
    let mut sim = Sim::new(cfg);
    let bound = sim.bound();
    sim.res.bound_seconds = bound;
    let max_t = bound * cfg.max_time_factor;
    let mut rounds = Rounds { next: 0.0, last: f64::NEG_INFINITY };
    let mut next_progress = 0.0;
    let mut next_draw = 0.0;
    let mut rates_dirty = true;
    loop {
        if rates_dirty {
            sim.recompute_rates();
            rates_dirty = false;
        }
        rates_dirty |= sim.advance(rounds.next);
        rates_dirty |= sim.apply_due(&mut rounds);
        if sim.t >= rounds.next {
            rounds.last = sim.t;
            if sim.t >= next_progress {
                sim.report_progress();
                next_progress = sim.t + cfg.progress_interval_s;
            }
            rates_dirty |= sim.round();
            rounds.next = sim.t + cfg.round_interval_s;
        }
        if let Some(obs) = observer.as_deref_mut() {
            if sim.t >= next_draw {
                obs(&sim.frame());
                next_draw = sim.t + draw_every;
            }
        }
        if sim.done() || sim.t > max_t {
            break;
        }
    }
    if let Some(obs) = observer {
        obs(&sim.frame());
    }
    sim.finish(bound, wall)
}

/// When the planner ran last and runs next (virtual seconds).
struct Rounds {
    next: f64,
    last: f64,
}

impl SimNode {
    fn master(cfg: &SimConfig) -> Self {
        let rate = cfg.master_rate.unwrap_or(cfg.rate);
        SimNode {
            role: Role::Honest,
            up: rate,
            down: rate,
            upload_slots: cfg.master_slots,
            download_slots: 0,
            is_master: true,
            online: false,
            has: vec![true; cfg.chunks],
            have: cfg.chunks,
            joined_at: 0.0,
            down_bytes: 0.0,
            complete_at: None,
        }
    }

    /// Peer `p` (0-based), joining at virtual time `join`: the first `slow` peers are slow, the
    /// next `leave` churn, and the `zero_upload` after those upload nothing.
    fn peer(cfg: &SimConfig, p: usize, join: f64) -> Self {
        let rate = if p < cfg.slow { cfg.slow_rate } else { cfg.rate };
        let zero = p >= cfg.slow + cfg.leave && p < cfg.slow + cfg.leave + cfg.zero_upload;
        SimNode {
            role: Role::Honest,
            up: rate,
            down: rate,
            upload_slots: if zero { 0 } else { cfg.upload_slots },
            download_slots: cfg.download_slots,
            is_master: false,
            online: false,
            has: vec![false; cfg.chunks],
            have: 0,
            joined_at: join,
            down_bytes: 0.0,
            complete_at: None,
        }
    }
}

impl SimNode {
    /// A member that claims everything, offers many slots and downloads nothing.
    fn liar(cfg: &SimConfig) -> Self {
        SimNode {
            role: Role::Liar,
            upload_slots: 64,
            download_slots: 0,
            has: vec![true; cfg.chunks],
            have: cfg.chunks,
            ..SimNode::peer(cfg, cfg.peers, 0.0)
        }
    }
}

impl<'a> Sim<'a> {
    fn new(cfg: &'a SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let tuning = if cfg.batch { Tuning::batched() } else { Tuning::default() };
        let planner = Planner::with_options(rng.next_u64(), cfg.policy, tuning);
        let ideal = cfg.ideal_seconds();
        let late_n = ((cfg.peers as f64) * cfg.late_fraction).round() as usize;
        let late_window = cfg.late_window_s.unwrap_or(0.5 * ideal);
        let mut nodes = vec![SimNode::master(cfg)];
        for p in 0..cfg.peers {
            // The last `late_n` peers join at random times within the late window.
            let join = if p >= cfg.peers - late_n.min(cfg.peers) { rng.unit() * late_window } else { 0.0 };
            nodes.push(SimNode::peer(cfg, p, join));
        }
        for _ in 0..cfg.hung {
            nodes.push(SimNode { role: Role::Hung, ..SimNode::peer(cfg, cfg.peers, 0.0) });
        }
        for _ in 0..cfg.liars {
            nodes.push(SimNode::liar(cfg));
        }
        let n = nodes.len();
        let mut sim = Sim {
            cfg,
            rng,
            planner,
            nodes,
            tracked: BTreeMap::new(),
            active_pairs: HashSet::new(),
            ul: vec![0; n],
            dl: vec![0; n],
            queue: BinaryHeap::new(),
            sched: Vec::new(),
            seq: 0,
            churn_pending: 0,
            seeded: vec![false; cfg.chunks],
            seeded_count: 0,
            t: 0.0,
            res: SimResult {
                policy: cfg.policy,
                peers: cfg.peers,
                chunks: cfg.chunks,
                data_bytes: cfg.data_bytes(),
                ..SimResult::default()
            },
        };
        sim.schedule_start(ideal);
        sim
    }

    /// Hand the planner the manifest and schedule every join and every churn leave/rejoin.
    fn schedule_start(&mut self, ideal: f64) {
        let cfg = self.cfg;
        let manifest = (0..cfg.chunks as u32).map(|i| (hash_of(i), cfg.chunk_size)).collect();
        self.planner.handle(0.0, Event::NewManifest { chunks: manifest });
        self.schedule(0.0, Sched::Join(0));
        for p in 1..self.nodes.len() {
            self.schedule(self.nodes[p].joined_at, Sched::Join(p));
        }
        let offline = cfg.offline_s.unwrap_or(0.2 * ideal);
        for p in cfg.slow..(cfg.slow + cfg.leave).min(cfg.peers) {
            let at = self.nodes[p + 1].joined_at + (0.1 + 0.4 * self.rng.unit()) * ideal;
            self.schedule(at, Sched::Leave(p + 1));
            self.schedule(at + offline, Sched::Join(p + 1));
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].role == Role::Hung {
                self.schedule(0.3 * ideal, Sched::Freeze(i));
                self.schedule(0.3 * ideal + cfg.hung_detect_s, Sched::Leave(i));
            }
        }
    }

    /// Move virtual time to the next thing that happens (a round, a scheduled event, a transfer
    /// reaching its end or its injected failure); true if flows completed on the way.
    fn advance(&mut self, next_round: f64) -> bool {
        let mut t_next: f64 = next_round;
        if let Some(Reverse((bits, _, _))) = self.queue.peek() {
            t_next = t_next.min(f64::from_bits(*bits));
        }
        for tr in self.tracked.values() {
            if let (Some(done), true) = (tr.done, tr.rate > 0.0) {
                let target = tr.fail_at.map_or(tr.size, |f| f.0);
                t_next = t_next.min(self.t + (target - done).max(0.0) / tr.rate);
            }
        }
        let dt = (t_next - self.t).max(0.0);
        for tr in self.tracked.values_mut() {
            if let Some(done) = tr.done.as_mut() {
                *done += tr.rate * dt;
            }
        }
        self.t = t_next;
        self.complete_flows()
    }

    /// Apply every scheduled event that is due; true if transfer rates must be recomputed.
    fn apply_due(&mut self, rounds: &mut Rounds) -> bool {
        let mut rates_dirty = false;
        while let Some(Reverse((bits, _, idx))) = self.queue.peek().copied() {
            if f64::from_bits(bits) > self.t {
                break;
            }
            self.queue.pop();
            if let Some(ev) = self.sched[idx].take() {
                let report = matches!(ev, Sched::Report(_));
                rates_dirty |= self.apply(ev);
                // Event-driven planning: a freed slot triggers a round soon (coalesced).
                if report && self.cfg.event_round_gap_s > 0.0 {
                    rounds.next = rounds.next.min((rounds.last + self.cfg.event_round_gap_s).max(self.t));
                }
            }
        }
        rates_dirty
    }

    /// The run's summary, once reports still on the wire have reached the planner (so its byte
    /// counters are final).
    fn finish(mut self, bound: f64, wall: Instant) -> SimResult {
        while let Some(Reverse((_, _, idx))) = self.queue.pop() {
            if let Some(Sched::Report(ev)) = self.sched[idx].take() {
                self.planner.handle(self.t, ev);
            }
        }
        let peers: Vec<&SimNode> = self.nodes.iter().filter(|n| !n.is_master && n.role == Role::Honest).collect();
        let all = peers.iter().all(|n| n.complete_at.is_some());
        let seconds = if all { peers.iter().filter_map(|n| n.complete_at).fold(0.0, f64::max) } else { self.t };
        let st = self.planner.stats();
        let mut res = self.res;
        res.seconds = seconds;
        res.all_complete = all;
        res.efficiency = if seconds > 0.0 { bound / seconds } else { 0.0 };
        res.master_upload_bytes = st.master_upload_bytes;
        res.orders = st.orders;
        res.aborted = st.aborted;
        res.wall_seconds = wall.elapsed().as_secs_f64();
        res
    }

    /// Kumar–Ross with join times (see [`SimResult::bound_seconds`]).
    fn bound(&self) -> f64 {
        let f = self.cfg.data_bytes() as f64;
        let master = &self.nodes[0];
        let peers: Vec<&SimNode> = self.nodes[1..].iter().filter(|n| n.role == Role::Honest).collect();
        if peers.is_empty() {
            return 0.0;
        }
        let sum_up: f64 = peers.iter().map(|n| if n.upload_slots > 0 { n.up } else { 0.0 }).sum();
        let latest = peers.iter().map(|n| n.joined_at + f / n.down).fold(0.0, f64::max);
        (f / master.up).max(latest).max(peers.len() as f64 * f / (master.up + sum_up))
    }

    fn schedule(&mut self, at: f64, ev: Sched) {
        if matches!(ev, Sched::Join(_) | Sched::Leave(_)) {
            self.churn_pending += 1;
        }
        self.sched.push(Some(ev));
        self.seq += 1;
        self.queue.push(Reverse((at.max(0.0).to_bits(), self.seq, self.sched.len() - 1)));
    }

    fn node_config(&self, i: usize) -> NodeConfig {
        let n = &self.nodes[i];
        NodeConfig {
            is_master: n.is_master,
            upload_slots: n.upload_slots,
            download_slots: n.download_slots,
            max_upload_bps: None,
            max_download_bps: None,
        }
    }

    /// Apply a scheduled event; returns whether flow rates must be recomputed.
    fn apply(&mut self, ev: Sched) -> bool {
        match ev {
            Sched::Join(i) => {
                self.churn_pending -= 1;
                self.nodes[i].online = true;
                let has = (0..self.cfg.chunks).filter(|&c| self.nodes[i].has[c]).map(|c| hash_of(c as u32)).collect();
                let config = self.node_config(i);
                self.planner.handle(self.t, Event::Join { node: i as u32, config, has });
                false
            }
            Sched::Leave(i) => {
                self.churn_pending -= 1;
                self.nodes[i].online = false;
                self.planner.handle(self.t, Event::Leave { node: i as u32 });
                let gone: Vec<TransferId> =
                    self.tracked.iter().filter(|(_, t)| t.from == i || t.to == i).map(|(&id, _)| id).collect();
                for id in gone {
                    self.untrack(id);
                }
                true
            }
            Sched::Freeze(i) => {
                self.nodes[i].up = 0.0;
                self.nodes[i].down = 0.0;
                true
            }
            Sched::Start(id) => match self.tracked.get_mut(&id) {
                Some(tr) if tr.done.is_none() && !tr.stopped => {
                    tr.done = Some(0.0);
                    true
                }
                _ => false,
            },
            Sched::Report(ev) => {
                let id = match &ev {
                    Event::Finished { id } | Event::Failed { id, .. } => Some(*id),
                    _ => None,
                };
                self.planner.handle(self.t, ev);
                if let Some(id) = id {
                    self.untrack(id);
                }
                false
            }
        }
    }

    fn untrack(&mut self, id: TransferId) {
        if let Some(tr) = self.tracked.remove(&id) {
            for c in &tr.chunks {
                self.active_pairs.remove(&(*c, tr.to));
            }
            self.ul[tr.from] -= 1;
            self.dl[tr.to] -= 1;
        }
    }

    /// Flows that reached their end (or failure point); returns whether any stopped.
    fn complete_flows(&mut self) -> bool {
        let mut changed = false;
        let lat = self.cfg.latency_s;
        let mut reports = Vec::new();
        for (&id, tr) in self.tracked.iter_mut() {
            let Some(done) = tr.done else { continue };
            let target = tr.fail_at.map_or(tr.size, |f| f.0);
            if done + 1e-6 * tr.size.max(1.0) < target {
                continue;
            }
            tr.done = None;
            tr.rate = 0.0;
            tr.stopped = true;
            changed = true;
            let verify = tr.size / self.cfg.verify_rate;
            match tr.fail_at {
                Some((_, reason)) => {
                    let delay = if reason == FailReason::BadData { verify + lat } else { lat };
                    reports.push((self.t + delay, Event::Failed { id, reason }));
                }
                None => {
                    let n = &mut self.nodes[tr.to];
                    for &c in &tr.chunks {
                        let c = c as usize;
                        if n.has[c] {
                            continue;
                        }
                        if !self.seeded[c] {
                            self.seeded[c] = true;
                            self.seeded_count += 1;
                            if self.seeded_count == self.cfg.chunks {
                                self.res.seeded_seconds = self.t;
                            }
                        }
                        n.has[c] = true;
                        n.have += 1;
                        n.down_bytes += self.cfg.chunk_size as f64;
                        if n.have == self.cfg.chunks && !n.is_master {
                            n.complete_at = Some(self.t + verify);
                        }
                    }
                    reports.push((self.t + verify + lat, Event::Finished { id }));
                }
            }
        }
        for (at, ev) in reports {
            self.schedule(at, Sched::Report(ev));
        }
        changed
    }

    fn report_progress(&mut self) {
        let evs: Vec<Event> = self
            .tracked
            .iter()
            .filter_map(|(&id, tr)| tr.done.map(|d| Event::Progress { id, bytes_done: d as u64 }))
            .collect();
        for ev in evs {
            self.planner.handle(self.t, ev);
        }
    }

    /// One planner round: aborts, then new orders (checked against the planner's promises).
    fn round(&mut self) -> bool {
        self.res.rounds += 1;
        let wall = Instant::now();
        let aborted = self.planner.check_timeouts(self.t);
        let orders = self.planner.plan(self.t);
        self.res.max_round_ms = self.res.max_round_ms.max(wall.elapsed().as_secs_f64() * 1e3);
        let changed = !aborted.is_empty();
        for id in aborted {
            self.untrack(id);
        }
        for o in orders {
            let (from, to) = (o.from as usize, o.to as usize);
            let chunks: Vec<u32> =
                o.chunks().map(|h| u32::from_le_bytes(h.0[..4].try_into().unwrap_or([0; 4]))).collect();
            for &chunk in &chunks {
                if !self.active_pairs.insert((chunk, to)) {
                    self.res.duplicate_orders += 1;
                }
                if !self.nodes[from].has[chunk as usize] {
                    self.res.bad_source_orders += 1;
                }
            }
            self.ul[from] += 1;
            self.dl[to] += 1;
            if self.ul[from] > self.nodes[from].upload_slots || self.dl[to] > self.nodes[to].download_slots {
                self.res.slot_violations += 1;
            }
            if self.nodes[from].upload_slots == 0 {
                self.res.zero_slot_uploads += 1;
            }
            if !self.nodes[from].online || !self.nodes[to].online {
                self.res.bad_source_orders += 1;
            }
            let size = o.total_size() as f64;
            let fail_at = if self.nodes[from].role == Role::Liar {
                Some((0.0, FailReason::Busy))
            } else if self.rng.unit() < self.cfg.fail_rate {
                self.res.injected_failures += 1;
                if self.rng.unit() < 0.5 {
                    Some((size, FailReason::BadData))
                } else {
                    Some((size * (0.05 + 0.9 * self.rng.unit()), FailReason::Other))
                }
            } else {
                None
            };
            self.tracked
                .insert(o.id, Tracked { chunks, from, to, size, done: None, rate: 0.0, fail_at, stopped: false });
            self.schedule(self.t + self.cfg.latency_s + self.cfg.request_cost_s, Sched::Start(o.id));
        }
        changed
    }

    fn recompute_rates(&mut self) {
        let ids: Vec<TransferId> = self.tracked.iter().filter(|(_, t)| t.done.is_some()).map(|(&id, _)| id).collect();
        let mut flows: Vec<Flow> = ids
            .iter()
            .map(|id| {
                let t = &self.tracked[id];
                Flow { from: t.from, to: t.to, rate: 0.0 }
            })
            .collect();
        let up: Vec<f64> = self.nodes.iter().map(|n| n.up).collect();
        let down: Vec<f64> = self.nodes.iter().map(|n| n.down).collect();
        max_min_rates(&mut flows, &up, &down);
        for (id, f) in ids.iter().zip(flows) {
            if let Some(t) = self.tracked.get_mut(id) {
                t.rate = f.rate;
            }
        }
    }

    fn done(&self) -> bool {
        self.churn_pending == 0
            && self.nodes.iter().all(|n| n.is_master || n.role != Role::Honest || (n.online && n.complete_at.is_some()))
    }

    fn frame(&self) -> Frame {
        let mut rows = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let mut cells: Vec<u8> = n.has.iter().map(|&h| if h { 2 } else { 0 }).collect();
            let mut downloads = 0;
            let mut uploads = 0;
            for tr in self.tracked.values() {
                if tr.done.is_some() {
                    if tr.to == i {
                        downloads += 1;
                        for &c in &tr.chunks {
                            if cells[c as usize] == 0 {
                                cells[c as usize] = 1;
                            }
                        }
                    }
                    if tr.from == i {
                        uploads += 1;
                    }
                }
            }
            let online_for = (self.t - n.joined_at).max(1e-9);
            rows.push(Row {
                label: match (n.is_master, n.role) {
                    (true, _) => "M".into(),
                    (_, Role::Liar) => format!("L{:02}", i - 1),
                    (_, Role::Hung) => format!("H{:02}", i - 1),
                    _ => format!("P{:02}", i - 1),
                },
                online: n.online,
                cells,
                downloads,
                uploads,
                avg_down: n.down_bytes / online_for,
            });
        }
        Frame { t: self.t, chunks: self.cfg.chunks, rows }
    }
}
