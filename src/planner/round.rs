//! One planning round: super-seeding, peer-to-peer rarest-first, master fallback (see the
//! module doc of [`super`] for the why). Also the naive comparison policy.

use std::collections::BinaryHeap;

use super::bitset::BitIter;
use super::{Order, Planner, Policy};

/// Max-heap entry for sources: rank bits (positive f64 bits sort like the value), random
/// tie-break, node slot.
type SourceKey = (u64, u64, usize);

impl Planner {
    /// New orders for this round. Respects every node's slots, never orders a chunk to a node
    /// that has it or is already receiving it, and never uses a node without upload slots as
    /// a source.
    pub fn plan(&mut self, now: f64) -> Vec<Order> {
        self.update_rates(now);
        self.reinstate_due(now);
        self.misses.expire(now);
        self.refresh_assumed_rate();
        let mut orders = Vec::new();
        if self.manifest_count == 0 {
            return orders;
        }
        let mut dests: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.wants(i, now)).collect();
        self.rng.shuffle(&mut dests);
        dests.sort_by_key(|&i| self.nodes[i].as_ref().map_or(0, |n| n.active_down));
        let masters: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].as_ref().is_some_and(|n| n.cfg.is_master)).collect();
        match self.policy {
            Policy::Naive => self.naive(now, &masters, &dests, &mut orders),
            Policy::Swarm => {
                self.super_seed(now, &masters, &dests, &mut orders);
                self.peer_round(now, &dests, &mut orders);
                self.master_fallback(now, &masters, &dests, &mut orders);
            }
        }
        orders
    }

    /// Non-master, online, not paused by its disk, with a free download slot and something left
    /// to request.
    fn wants(&self, i: usize, now: f64) -> bool {
        self.nodes[i].as_ref().is_some_and(|n| {
            !n.cfg.is_master
                && n.hold_until <= now
                && !self.is_quiet(i, now)
                && n.active_down < n.cfg.download_slots
                && n.have_in_manifest + n.active_down < self.manifest_count
        })
    }

    /// A free upload slot it may use now (see `trust` for excluded and unproven sources).
    fn free_up(&self, i: usize, now: f64) -> bool {
        self.nodes[i].as_ref().is_some_and(|n| n.active_up < self.usable_upload_slots(i, now))
    }

    /// A destination a master may serve now.
    fn master_may_serve(&self, d: usize, now: f64) -> bool {
        self.wants(d, now) && !self.is_barred(d, now)
    }

    /// Phase 1: masters push chunks no peer has or receives.
    fn super_seed(&mut self, now: f64, masters: &[usize], dests: &[usize], orders: &mut Vec<Order>) {
        let fast_cap = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].as_ref().is_some_and(|n| !n.cfg.is_master))
            .filter_map(|i| self.up_cap(i))
            .fold(0.0f64, f64::max);
        for &m in masters {
            let mut skipped = 0usize;
            while self.free_up(m, now) {
                let Some(c) = self.fresh.next_from(self.fresh_cursor) else { break };
                self.fresh_cursor = c + 1;
                let m_has = self.nodes[m].as_ref().is_some_and(|n| n.has.get(c)) && !self.misses.is_held(m, c);
                if !m_has {
                    // Another master may have it; bounded so an odd master cannot spin.
                    skipped += 1;
                    if skipped > self.fresh.count() {
                        break;
                    }
                    continue;
                }
                // Best forwarder: can upload and is not slow, least busy downloading, most
                // spare upload, fewest master chunks so far.
                let best = dests
                    .iter()
                    .copied()
                    .filter(|&d| self.master_may_serve(d, now))
                    .filter(|&d| self.nodes[d].as_ref().is_some_and(|n| !n.has.get(c) && !n.incoming.get(c)))
                    .min_by_key(|&d| {
                        let n = self.nodes[d].as_ref().expect("filtered online");
                        let weak = n.cfg.upload_slots == 0
                            || n.penalty_until > now
                            || self.up_cap(d).is_some_and(|cap| cap < 0.5 * fast_cap);
                        (weak, n.active_down, n.active_up, n.from_master)
                    });
                let Some(d) = best else { break };
                orders.push(self.start_transfer(now, c, m, d, true));
            }
        }
    }

    /// Phase 2: destinations in passes, each taking its rarest useful chunk from a good source.
    fn peer_round(&mut self, now: f64, dests: &[usize], orders: &mut Vec<Order>) {
        let mut heap: BinaryHeap<SourceKey> = BinaryHeap::new();
        for i in 0..self.nodes.len() {
            let ok = self.nodes[i].as_ref().is_some_and(|n| !n.cfg.is_master && n.have_in_manifest > 0)
                && self.free_up(i, now);
            if ok {
                let key = self.source_key(i, now);
                heap.push(key);
            }
        }
        let mut pending: Vec<usize> = dests.to_vec();
        let mut popped: Vec<SourceKey> = Vec::new();
        while !pending.is_empty() && !heap.is_empty() {
            let mut next = Vec::new();
            for &d in &pending {
                if !self.wants(d, now) {
                    continue;
                }
                // Probe the best-ranked sources; collect useful (rarity, share, source, chunk).
                let mut hits: Vec<(u32, f64, usize, u32)> = Vec::new();
                let mut probes = 0;
                while probes < self.tuning.max_probes && hits.len() < self.tuning.max_hits {
                    let Some(key) = heap.pop() else { break };
                    popped.push(key);
                    let s = key.2;
                    if s == d {
                        continue;
                    }
                    probes += 1;
                    if self.is_unproven(s) && self.waits_on_unproven(d) {
                        continue;
                    }
                    if let Some((c, rarity)) = self.best_chunk(s, d) {
                        hits.push((rarity, f64::from_bits(key.0), s, c));
                    }
                }
                let best_share = hits.iter().map(|h| h.1).fold(0.0f64, f64::max);
                let choice = hits.iter().filter(|h| h.1 >= 0.3 * best_share).min_by_key(|h| h.0).map(|h| (h.2, h.3));
                for key in popped.drain(..) {
                    if Some(key.2) != choice.map(|c| c.0) {
                        heap.push(key);
                    }
                }
                if let Some((s, c)) = choice {
                    orders.push(self.start_transfer(now, c, s, d, false));
                    if self.free_up(s, now) {
                        let key = self.source_key(s, now);
                        heap.push(key);
                    }
                    if self.wants(d, now) {
                        next.push(d);
                    }
                }
            }
            pending = next;
        }
    }

    /// Phase 3: leftover master slots serve the rarest chunks destinations still miss.
    fn master_fallback(&mut self, now: f64, masters: &[usize], dests: &[usize], orders: &mut Vec<Order>) {
        self.masters_round_robin(now, masters, dests, orders, |p, m, d| p.best_chunk(m, d).map(|(c, _)| c));
    }

    /// Comparison policy: every destination fetches its missing chunks in order from a master.
    fn naive(&mut self, now: f64, masters: &[usize], dests: &[usize], orders: &mut Vec<Order>) {
        self.masters_round_robin(now, masters, dests, orders, |p, m, d| p.first_missing(m, d));
    }

    /// Hand each master's free upload slots to the destinations in turn, one chunk per
    /// destination per pass, so no destination monopolises a master; `pick` chooses the chunk.
    fn masters_round_robin(
        &mut self,
        now: f64,
        masters: &[usize],
        dests: &[usize],
        orders: &mut Vec<Order>,
        mut pick: impl FnMut(&mut Self, usize, usize) -> Option<u32>,
    ) {
        for &m in masters {
            let mut pending: Vec<usize> = dests.to_vec();
            while self.free_up(m, now) && !pending.is_empty() {
                let mut next = Vec::new();
                for &d in &pending {
                    if !self.free_up(m, now) {
                        break;
                    }
                    if !self.master_may_serve(d, now) {
                        continue;
                    }
                    if let Some(c) = pick(self, m, d) {
                        orders.push(self.start_transfer(now, c, m, d, false));
                        next.push(d);
                    }
                }
                pending = next;
            }
        }
    }

    fn source_key(&mut self, slot: usize, now: f64) -> SourceKey {
        let rank = self.source_rank(slot, now).max(0.0);
        (rank.to_bits(), self.rng.next_u64(), slot)
    }

    /// Useful chunks of `s` for `d`, word `w`.
    #[inline]
    fn useful_word(&self, s: usize, d: usize, w: usize) -> u64 {
        let Some(dn) = self.nodes[d].as_ref() else { return 0 };
        self.servable_word(s, w) & !dn.has.word(w) & !dn.incoming.word(w) & self.manifest.word(w)
    }

    /// The rarest (fewest holders + in flight) chunk `s` can give `d`, looking at no more than
    /// `max_examined` candidates from a random offset: bounded cost, unbiased sampling.
    fn best_chunk(&mut self, s: usize, d: usize) -> Option<(u32, u32)> {
        let words = self.manifest.word_len();
        if words == 0 {
            return None;
        }
        let start = self.rng.below(words as u64) as usize;
        let mut best: Option<(u32, u32)> = None;
        let mut examined = 0;
        for k in 0..words {
            let w = (start + k) % words;
            let x = self.useful_word(s, d, w);
            for c in (BitIter { w: x, base: w as u32 * 64 }) {
                let r = self.holders[c as usize] + self.inflight[c as usize];
                if best.is_none_or(|b| r < b.1) {
                    best = Some((c, r));
                }
                examined += 1;
                if r <= 1 || examined >= self.tuning.max_examined {
                    return best;
                }
            }
        }
        best
    }

    fn first_missing(&self, s: usize, d: usize) -> Option<u32> {
        (0..self.manifest.word_len()).find_map(|w| {
            let x = self.useful_word(s, d, w);
            (x != 0).then(|| w as u32 * 64 + x.trailing_zeros())
        })
    }
}
