//! Event handling: keeps have-sets, holder/in-flight counts, slots and byte counters consistent.
//!
//! Every count the round relies on (holders, in-flight, fresh set, per-node manifest coverage,
//! active slots) is updated here incrementally, so a planning round never has to recount.
//! How a transfer ended feeds the trust of its source and destination (`trust`).

use super::{BitSet, Event, FailReason, Node, NodeConfig, Planner, Transfer, TransferId};
use crate::manifest::ChunkHash;
use crate::planner::NodeId;

/// How a transfer ended, for bookkeeping and penalties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Finished,
    Failed(FailReason),
    /// Aborted by the planner; `blame` failures count against the source (0: nobody's fault).
    Aborted {
        blame: u32,
    },
    /// An endpoint left.
    Dropped,
}

impl Planner {
    /// Apply one event at time `now` (seconds, any monotonic origin).
    pub fn handle(&mut self, now: f64, ev: Event) {
        match ev {
            Event::Join { node, config, has } => self.join(now, node, config, has),
            Event::Leave { node } => self.leave(node),
            Event::Have { node, chunks } => {
                if let Some(&slot) = self.node_index.get(&node) {
                    for h in chunks {
                        let c = self.intern(h);
                        self.add_have(slot, c);
                    }
                }
            }
            Event::Lost { node, chunks } => {
                if let Some(&slot) = self.node_index.get(&node) {
                    for h in chunks {
                        if let Some(&c) = self.index.get(&h) {
                            self.remove_have(slot, c);
                        }
                    }
                }
            }
            Event::Progress { id, bytes_done } => self.progress(now, id, bytes_done),
            Event::Finished { id } => {
                if let Some(t) = self.transfers.get(&id) {
                    let size = t.size;
                    self.progress(now, id, size);
                    self.end_transfer(now, id, End::Finished);
                }
            }
            Event::Failed { id, reason } => {
                self.end_transfer(now, id, End::Failed(reason));
            }
            Event::FinishedExcept { id, failed, reason } => self.finished_except(now, id, &failed, reason),
            Event::NewManifest { chunks } => self.new_manifest(chunks),
            Event::Heard { node } => {
                if let Some(n) = self.node_index.get(&node).and_then(|&i| self.nodes[i].as_mut()) {
                    n.heard = n.heard.max(now);
                    n.reports = true;
                }
            }
        }
    }

    fn join(&mut self, now: f64, id: NodeId, cfg: NodeConfig, has: Vec<ChunkHash>) {
        if self.node_index.contains_key(&id) {
            self.leave(id);
        }
        let node = Node {
            id,
            cfg,
            has: BitSet::with_len(self.hashes.len()),
            incoming: BitSet::with_len(self.hashes.len()),
            have_in_manifest: 0,
            active_up: 0,
            active_down: 0,
            from_master: 0,
            up_bytes: 0,
            down_bytes: 0,
            win_t: now,
            win_up: 0,
            win_down: 0,
            up_rate: 0.0,
            down_rate: 0.0,
            up_peak: 0.0,
            down_peak: 0.0,
            penalty_until: 0.0,
            strikes: 0,
            hold_until: 0.0,
            hold_strikes: 0,
            uploads: Vec::new(),
            downloads: Vec::new(),
            fail_streak: 0,
            exclusions: 0,
            served_since: 0,
            received: 0,
            excluded_until: 0.0,
            suspended: false,
            bad_report_by: None,
            last_served: f64::NEG_INFINITY,
            dest_good: 0,
            dest_streak: 0,
            bars: 0,
            barred_until: 0.0,
            heard: now,
            reports: false,
            last_delivered: f64::NEG_INFINITY,
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.nodes[s] = Some(node);
                s
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        self.node_index.insert(id, slot);
        for h in has {
            let c = self.intern(h);
            self.add_have(slot, c);
        }
    }

    fn leave(&mut self, id: NodeId) {
        let Some(slot) = self.node_index.remove(&id) else { return };
        let ids: Vec<TransferId> = self.nodes[slot]
            .as_ref()
            .map(|n| n.uploads.iter().chain(n.downloads.iter()).copied().collect())
            .unwrap_or_default();
        for tid in ids {
            self.end_transfer(0.0, tid, End::Dropped);
        }
        let Some(node) = self.nodes[slot].take() else { return };
        if node.cfg.is_master {
            self.misses.clear();
        }
        if !node.cfg.is_master && !node.suspended {
            for c in node.has.iter() {
                self.holders[c as usize] -= 1;
                self.refresh_fresh(c);
            }
        }
        self.free_slots.push(slot);
    }

    pub(crate) fn add_have(&mut self, slot: usize, c: u32) {
        let in_manifest = self.manifest.get(c);
        let Some(n) = self.nodes[slot].as_mut() else { return };
        if !n.has.insert(c) {
            return;
        }
        if in_manifest {
            n.have_in_manifest += 1;
        }
        if !n.cfg.is_master && !n.suspended {
            self.holders[c as usize] += 1;
            self.refresh_fresh(c);
        }
    }

    pub(crate) fn remove_have(&mut self, slot: usize, c: u32) {
        let in_manifest = self.manifest.get(c);
        let Some(n) = self.nodes[slot].as_mut() else { return };
        if !n.has.remove(c) {
            return;
        }
        if in_manifest {
            n.have_in_manifest -= 1;
        }
        let counted = !n.cfg.is_master && !n.suspended;
        // Its uploads of that chunk can no longer succeed (a node's uploads are few: its slots).
        let doomed: Vec<TransferId> =
            n.uploads.iter().copied().filter(|id| self.transfers.get(id).is_some_and(|t| t.carries(c))).collect();
        if counted {
            self.holders[c as usize] -= 1;
            self.refresh_fresh(c);
        }
        self.pending_aborts.extend(doomed);
    }

    fn progress(&mut self, now: f64, id: TransferId, bytes_done: u64) {
        let Some(t) = self.transfers.get_mut(&id) else { return };
        let bytes_done = bytes_done.min(t.size);
        if bytes_done <= t.bytes {
            return;
        }
        if let Some(n) = self.nodes[t.to].as_mut() {
            n.heard = n.heard.max(now); // the destination is alive and receiving
        }
        let delta = bytes_done - t.bytes;
        t.bytes = bytes_done;
        t.last_change = now;
        if now - t.anchor_t >= self.tuning.rate_window_s {
            t.rate = Some((t.bytes - t.anchor_b) as f64 / (now - t.anchor_t));
            t.anchor_t = now;
            t.anchor_b = t.bytes;
        }
        let (from, to, from_master) = (t.from, t.to, t.from_master);
        if let Some(n) = self.nodes[from].as_mut() {
            n.up_bytes += delta;
            n.last_delivered = now;
        }
        if let Some(n) = self.nodes[to].as_mut() {
            n.down_bytes += delta;
        }
        self.total_upload_bytes += delta;
        if from_master {
            self.master_upload_bytes += delta;
        }
    }

    /// `t`'s source said it does not hold `chunks`. A peer is forgotten as their source; a
    /// master always holds its whole manifest (a changed file brings a new manifest), and
    /// forgetting that could leave a chunk with no source, so it is only asked again later
    /// (`misses`).
    fn source_missing(&mut self, now: f64, t: &Transfer, chunks: &[u32]) {
        for &c in chunks {
            if t.from_master {
                self.misses.record(now, t.from, c);
            } else {
                self.remove_have(t.from, c);
            }
        }
    }

    /// A batch arrived except `failed`: the destination gains the rest, and the transfer ends
    /// as failed (the source is blamed once; `SourceMissing` drops only the failed chunks from
    /// its have-set).
    fn finished_except(&mut self, now: f64, id: TransferId, failed: &[ChunkHash], reason: FailReason) {
        let Some(t) = self.transfers.get(&id) else { return };
        let bad: Vec<u32> =
            failed.iter().filter_map(|h| self.index.get(h).copied()).filter(|&c| t.carries(c)).collect();
        let good: Vec<u32> = t.all().filter(|c| !bad.contains(c)).collect();
        let (to, from_master) = (t.to, t.from_master);
        self.end_transfer_with(now, id, End::Failed(reason), Some(&bad));
        for c in good {
            if let Some(n) = self.nodes[to].as_mut() {
                n.received += 1;
                if from_master {
                    n.from_master += 1;
                }
            }
            self.add_have(to, c);
        }
    }

    /// Release a transfer's slots and counts; on `Finished` the destination gains its chunks.
    pub(crate) fn end_transfer(&mut self, now: f64, id: TransferId, how: End) {
        self.end_transfer_with(now, id, how, None);
    }

    /// [`Self::end_transfer`]; `failed`: the chunks a `Failed` end is about (`None`: all).
    fn end_transfer_with(&mut self, now: f64, id: TransferId, how: End, failed: Option<&[u32]>) {
        let Some(t) = self.transfers.remove(&id) else { return };
        let chunks: Vec<u32> = t.all().collect();
        if let Some(n) = self.nodes[t.from].as_mut() {
            n.active_up -= 1;
            n.uploads.retain(|&u| u != id);
        }
        if let Some(n) = self.nodes[t.to].as_mut() {
            n.active_down -= 1;
            for &c in &chunks {
                n.incoming.remove(c);
            }
            n.downloads.retain(|&d| d != id);
        }
        for &c in &chunks {
            self.inflight[c as usize] -= 1;
            self.refresh_fresh(c);
        }
        if let (End::Finished | End::Failed(_), Some(n)) = (how, self.nodes[t.to].as_mut()) {
            n.heard = n.heard.max(now);
        }
        match how {
            End::Finished => {
                self.finished += 1;
                self.note_rate(t.size, now - t.started);
                if let Some(n) = self.nodes[t.to].as_mut() {
                    n.received += chunks.len() as u32;
                    if t.from_master {
                        n.from_master += chunks.len() as u32;
                    }
                    n.hold_strikes = 0;
                }
                for &c in &chunks {
                    self.add_have(t.to, c);
                }
                if t.from_master {
                    self.misses.delivered(t.from, chunks.iter().copied());
                }
                self.credit_source(now, t.from);
                self.credit_destination(t.to);
            }
            End::Failed(reason) => {
                self.failed += 1;
                if reason == FailReason::SourceMissing {
                    self.source_missing(now, &t, failed.unwrap_or(&chunks));
                }
                if reason == FailReason::LocalDisk {
                    self.hold_downloads(now, t.to);
                }
                let weight = self.failure_weight(&t, reason);
                if matches!(reason, FailReason::Stalled | FailReason::TooSlow) || weight >= super::trust::EXCLUDE_AFTER
                {
                    self.penalise(now, t.from);
                }
                if t.from_master && super::trust::blames_destination(reason) {
                    self.blame_destination(now, &t);
                }
                self.blame_source(now, t.from, weight);
            }
            End::Aborted { blame } => {
                self.aborted += 1;
                if blame > 0 {
                    self.penalise(now, t.from);
                    self.blame_source(now, t.from, blame);
                    if t.from_master {
                        self.blame_destination(now, &t);
                    }
                }
            }
            End::Dropped => {}
        }
    }

    /// Demote a (peer) source in the ranking for a doubling time.
    fn penalise(&mut self, now: f64, slot: usize) {
        let base = self.tuning.penalty_s;
        if let Some(n) = self.nodes[slot].as_mut() {
            if !n.cfg.is_master {
                n.strikes += 1;
                n.penalty_until = now + base * f64::from(1u32 << n.strikes.min(6).saturating_sub(1));
            }
        }
    }

    /// Pause a destination's downloads after a failed write; the in-flight transfers that fail
    /// with it in the same pause do not lengthen it.
    fn hold_downloads(&mut self, now: f64, slot: usize) {
        let base = self.tuning.disk_hold_s;
        let Some(n) = self.nodes[slot].as_mut() else { return };
        if n.hold_until > now {
            return;
        }
        n.hold_until = now + base * f64::from(1u32 << n.hold_strikes.min(3));
        n.hold_strikes += 1;
    }

    fn new_manifest(&mut self, chunks: Vec<(ChunkHash, u64)>) {
        let mut manifest = BitSet::default();
        let mut bytes = 0;
        let mut count = 0;
        // Exactly the room the new hashes need: growth by doubling left up to half of the
        // per-chunk vecs and the index empty (~25 of ~70 bytes a chunk at 200,000 chunks).
        let new = chunks.iter().filter(|(h, _)| !self.index.contains_key(h)).count();
        self.hashes.reserve_exact(new);
        self.sizes.reserve_exact(new);
        self.holders.reserve_exact(new);
        self.inflight.reserve_exact(new);
        self.index.reserve(new);
        for (h, size) in chunks {
            let c = self.intern(h);
            self.sizes[c as usize] = size;
            if manifest.insert(c) {
                count += 1;
                bytes += size;
            }
        }
        manifest.grow(self.hashes.len());
        self.manifest = manifest;
        self.misses.clear();
        self.manifest_count = count;
        self.manifest_bytes = bytes;
        self.fresh = BitSet::with_len(self.hashes.len());
        for c in 0..self.hashes.len() as u32 {
            self.refresh_fresh(c);
        }
        let manifest = &self.manifest;
        for n in self.nodes.iter_mut().flatten() {
            n.has.grow(manifest.word_len() * 64);
            n.incoming.grow(manifest.word_len() * 64);
            n.have_in_manifest = n.has.count_and(manifest) as u32;
        }
        let stale: Vec<TransferId> =
            self.transfers.iter().filter(|(_, t)| !t.all().all(|c| self.manifest.get(c))).map(|(&i, _)| i).collect();
        self.pending_aborts.extend(stale);
    }

    /// Register a new transfer (the round's single way to create one).
    /// `fresh_only`: a super-seeding order, whose batch takes fresh chunks only (see `batch`).
    pub(crate) fn start_transfer(
        &mut self,
        now: f64,
        c: u32,
        from: usize,
        to: usize,
        fresh_only: bool,
    ) -> super::Order {
        let id = self.next_id;
        self.next_id += 1;
        self.orders += 1;
        let extra = self.batch_more(c, from, to, fresh_only);
        let size = self.sizes[c as usize] + extra.iter().map(|&b| self.sizes[b as usize]).sum::<u64>();
        let min_rate = self.expected_rate(from, to) * self.tuning.min_rate_fraction;
        let from_master;
        let (from_id, to_id);
        {
            let s = self.nodes[from].as_mut().expect("source is online");
            s.active_up += 1;
            s.uploads.push(id);
            from_master = s.cfg.is_master;
            from_id = s.id;
        }
        {
            let d = self.nodes[to].as_mut().expect("destination is online");
            d.active_down += 1;
            for &b in std::iter::once(&c).chain(&extra) {
                d.incoming.insert(b);
            }
            d.downloads.push(id);
            to_id = d.id;
        }
        for &b in std::iter::once(&c).chain(&extra) {
            self.inflight[b as usize] += 1;
            self.fresh.remove(b);
        }
        let batch = extra.iter().map(|&b| (self.hashes[b as usize], self.sizes[b as usize])).collect();
        self.transfers.insert(
            id,
            Transfer {
                chunk: c,
                extra,
                from,
                to,
                size,
                min_rate,
                bytes: 0,
                last_change: now,
                anchor_t: now,
                anchor_b: 0,
                rate: None,
                from_master,
                started: now,
            },
        );
        let chunk = self.hashes[c as usize];
        super::Order {
            id,
            chunk,
            from: from_id,
            to: to_id,
            size: self.sizes[c as usize],
            min_rate_bps: min_rate,
            batch,
        }
    }
}
