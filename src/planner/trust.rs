//! Trust per node: a source's claims are believed only as far as it delivers, and a
//! downloader keeps its master slots only while it finishes what it is given.
//!
//! Why: one member that claims every chunk and answers every GET with 503 (or resets, or
//! stalls) used to attract every download slot of the swarm, because a failure that is not
//! bad data cost it nothing and an unmeasured source ranked as infinitely fast. Here every
//! failure a source causes (busy, missing, stalled, too slow, bad data) counts against it; a
//! streak of them takes it out of the source set for an exponentially growing time and stops
//! its claims from counting as holders (so the master super-seeds those chunks again); after
//! that it is on probation until it serves a chunk. Re-announcing its have-set changes
//! nothing of this (the state lives on the planner node, which a `Have` does not touch).
//! A source that offers only its own claims (it has neither served nor received a chunk) gets
//! at most [`UNPROVEN_UPLOADS`] concurrent uploads, which bounds what a liar can tie up before
//! its first failures are in.
//!
//! Destinations: consecutive failed or aborted transfers *from a master* (which is never the
//! one to blame) bar the destination from master slots the same way; finishing any chunk
//! clears the streak. All of this is pure planner state driven by events and `now`.

use super::{FailReason, Planner};

/// Failures in a row that take a source out (bad data counts as all of them at once).
pub(crate) const EXCLUDE_AFTER: u32 = 3;
/// Concurrent uploads a source gets before it has served its first chunk.
pub(crate) const UNPROVEN_UPLOADS: u32 = 2;
/// Exclusions double up to this many times.
const MAX_DOUBLINGS: u32 = 6;

/// How much one failure counts against the source that was asked to serve it.
pub(crate) fn source_weight(reason: FailReason) -> u32 {
    match reason {
        FailReason::BadData => EXCLUDE_AFTER,
        FailReason::Busy | FailReason::SourceMissing | FailReason::Stalled | FailReason::TooSlow => 1,
        FailReason::Other | FailReason::Cancelled | FailReason::LocalDisk => 0,
    }
}

/// Whether a failed transfer from a master is the destination's doing.
pub(crate) fn blames_destination(reason: FailReason) -> bool {
    matches!(reason, FailReason::Stalled | FailReason::TooSlow | FailReason::Other)
}

impl Planner {
    /// Count `weight` failures against source `slot` (never a master).
    pub(crate) fn blame_source(&mut self, now: f64, slot: usize, weight: u32) {
        let base = self.tuning.penalty_s;
        let Some(n) = self.nodes[slot].as_mut() else { return };
        if n.cfg.is_master || weight == 0 {
            return;
        }
        n.fail_streak += weight;
        // On probation (excluded before, nothing served since) one failure is enough.
        let limit = if n.exclusions > 0 && n.served_since == 0 { 1 } else { EXCLUDE_AFTER };
        if n.fail_streak < limit {
            return;
        }
        n.fail_streak = 0;
        n.exclusions += 1;
        n.served_since = 0;
        n.excluded_until = now + base * f64::from(1u32 << (n.exclusions - 1).min(MAX_DOUBLINGS));
        tracing::debug!(target: "lanscatter::planner", "node {} excluded as a source until {:.1}", n.id, n.excluded_until);
        self.suspend(slot);
    }

    /// A transfer from `slot` arrived intact.
    pub(crate) fn credit_source(&mut self, slot: usize) {
        if let Some(n) = self.nodes[slot].as_mut() {
            n.fail_streak = 0;
            n.served_since += 1;
        }
    }

    /// A transfer to `slot` from a master failed for a reason that is not the master's.
    pub(crate) fn blame_destination(&mut self, now: f64, slot: usize) {
        let base = self.tuning.penalty_s;
        let Some(n) = self.nodes[slot].as_mut() else { return };
        n.dest_streak += 1;
        if n.dest_streak >= EXCLUDE_AFTER {
            n.dest_streak = 0;
            n.bars += 1;
            n.barred_until = now + base * f64::from(1u32 << (n.bars - 1).min(MAX_DOUBLINGS));
        }
    }

    pub(crate) fn credit_destination(&mut self, slot: usize) {
        if let Some(n) = self.nodes[slot].as_mut() {
            n.dest_streak = 0;
        }
    }

    /// Barred from master slots for now.
    pub(crate) fn is_barred(&self, slot: usize, now: f64) -> bool {
        self.nodes[slot].as_ref().is_some_and(|n| n.barred_until > now)
    }

    /// Upload slots a source may use now: none while excluded, few while unproven (it served
    /// nothing and, before any exclusion, received nothing through the swarm either: all it
    /// offers are its own claims). A peer whose chunks came from verified transfers gets its
    /// full slots at once, which the ramp-up needs (64 peers: 0.92 instead of 0.94 otherwise).
    pub(crate) fn usable_upload_slots(&self, slot: usize, now: f64) -> u32 {
        let Some(n) = self.nodes[slot].as_ref() else { return 0 };
        if n.cfg.is_master {
            n.cfg.upload_slots
        } else if n.excluded_until > now || self.is_quiet(slot, now) {
            0
        } else if self.is_unproven(slot) {
            n.cfg.upload_slots.min(UNPROVEN_UPLOADS)
        } else {
            n.cfg.upload_slots
        }
    }

    /// A peer source whose chunks nobody has verified yet: it served nothing and (before any
    /// exclusion) received nothing through the swarm either.
    pub(crate) fn is_unproven(&self, slot: usize) -> bool {
        self.nodes[slot]
            .as_ref()
            .is_some_and(|n| !n.cfg.is_master && n.served_since == 0 && (n.exclusions > 0 || n.received == 0))
    }

    /// Whether destination `d` already waits on a transfer from an unproven source: it gets
    /// at most one at a time, so a liar can hold one of its slots, never all of them.
    pub(crate) fn waits_on_unproven(&self, d: usize) -> bool {
        let Some(n) = self.nodes[d].as_ref() else { return false };
        n.downloads.iter().any(|id| self.transfers.get(id).is_some_and(|t| self.is_unproven(t.from)))
    }

    /// Stop counting the node's claims as holders and abort its uploads.
    fn suspend(&mut self, slot: usize) {
        let Some(n) = self.nodes[slot].as_mut() else { return };
        if n.suspended {
            return;
        }
        n.suspended = true;
        let held: Vec<u32> = n.has.iter().collect();
        let uploads = n.uploads.clone();
        for c in held {
            self.holders[c as usize] -= 1;
            self.refresh_fresh(c);
        }
        self.pending_aborts.extend(uploads);
    }

    /// Nodes whose exclusion ran out count as holders again (on probation).
    pub(crate) fn reinstate_due(&mut self, now: f64) {
        for slot in 0..self.nodes.len() {
            let Some(n) = self.nodes[slot].as_mut() else { continue };
            if !n.suspended || n.excluded_until > now {
                continue;
            }
            n.suspended = false;
            let held: Vec<u32> = n.has.iter().collect();
            for c in held {
                self.holders[c as usize] += 1;
                self.refresh_fresh(c);
            }
        }
    }

    /// What an unmeasured source is assumed to upload: the median of the measured peers (the
    /// swarm's typical link), else [`super::Tuning::assumed_bps`]. Computed once per round.
    pub(crate) fn refresh_assumed_rate(&mut self) {
        let mut caps: Vec<f64> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].as_ref().is_some_and(|n| !n.cfg.is_master))
            .filter_map(|i| self.up_cap(i))
            .collect();
        caps.sort_by(f64::total_cmp);
        self.assumed_bps = if caps.is_empty() { self.tuning.assumed_bps } else { caps[caps.len() / 2] };
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::ChunkHash;
    use crate::planner::{Event, FailReason, NodeConfig, Planner};

    fn h(i: u32) -> ChunkHash {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_le_bytes());
        ChunkHash(b)
    }

    fn all(n: u32) -> Vec<ChunkHash> {
        (0..n).map(h).collect()
    }

    /// Master 0 (1 slot), liar 9 claiming everything with many slots, peers 1..=3.
    fn swarm_with_liar() -> Planner {
        let mut p = Planner::new(11);
        p.handle(0.0, Event::NewManifest { chunks: (0..8).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 1, 0), has: all(8) });
        p.handle(0.0, Event::Join { node: 9, config: NodeConfig::new(false, 64, 0), has: all(8) });
        for n in 1..=3 {
            p.handle(0.0, Event::Join { node: n, config: NodeConfig::new(false, 2, 2), has: vec![] });
        }
        p
    }

    fn excluded(p: &Planner, id: u32) -> bool {
        p.stats().nodes.iter().any(|n| n.id == id && n.excluded)
    }

    #[test]
    fn a_busy_liar_is_excluded_its_claims_stop_counting_and_reannouncing_does_not_help() {
        let mut p = swarm_with_liar();
        let o = p.plan(0.0);
        let from_liar: Vec<_> = o.iter().filter(|o| o.from == 9).collect();
        assert_eq!(from_liar.len(), 2, "an unproven source gets two uploads, not all 64: {o:?}");
        for x in &from_liar {
            p.handle(0.1, Event::Failed { id: x.id, reason: FailReason::Busy });
        }
        assert!(!excluded(&p, 9), "two busy answers are not yet a streak");
        let o = p.plan(0.2);
        let again: Vec<_> = o.iter().filter(|o| o.from == 9).collect();
        assert!(!again.is_empty());
        p.handle(0.3, Event::Failed { id: again[0].id, reason: FailReason::Busy });
        assert!(excluded(&p, 9), "the third failure in a row excludes it");
        // Its other uploads are aborted and nothing more is ordered from it, even after it
        // announces everything again.
        p.handle(0.4, Event::Have { node: 9, chunks: all(8) });
        let aborted = p.check_timeouts(0.5);
        assert_eq!(aborted.len(), again.len() - 1, "its remaining uploads are dropped");
        let o = p.plan(0.5);
        assert!(o.iter().all(|o| o.from != 9), "{o:?}");
        assert!(excluded(&p, 9));
        // Its claims no longer count as holders: the master super-seeds (every chunk is
        // fresh again) rather than waiting for it.
        assert!(p.fresh.count() > 0);
        // Back after the penalty, on probation: one more failure excludes it for twice as long.
        let o = p.plan(15.6);
        let probe: Vec<_> = o.iter().filter(|o| o.from == 9).collect();
        assert!(!probe.is_empty(), "reinstated after its exclusion ran out");
        p.handle(15.7, Event::Failed { id: probe[0].id, reason: FailReason::SourceMissing });
        assert!(excluded(&p, 9));
        assert!(p.plan(15.7 + 29.0).iter().all(|o| o.from != 9), "the second exclusion lasts 30 s");
        assert!(p.plan(15.7 + 31.0).iter().any(|o| o.from == 9));
    }

    #[test]
    fn bad_data_excludes_at_once_and_serving_restores_trust() {
        let mut p = swarm_with_liar();
        let o = p.plan(0.0);
        let x = o.iter().find(|o| o.from == 9).expect("an order from the liar");
        p.handle(0.1, Event::Failed { id: x.id, reason: FailReason::BadData });
        assert!(excluded(&p, 9));
        // An honest source that fails twice and then serves is never excluded.
        let mut p = swarm_with_liar();
        let o = p.plan(0.0);
        let xs: Vec<_> = o.iter().filter(|o| o.from == 9).map(|o| o.id).collect();
        p.handle(0.1, Event::Failed { id: xs[0], reason: FailReason::Busy });
        p.handle(0.1, Event::Finished { id: xs[1] });
        let o = p.plan(0.2);
        let ys: Vec<_> = o.iter().filter(|o| o.from == 9).map(|o| o.id).collect();
        assert!(ys.len() >= 2, "a source that served gets its full slots: {o:?}");
        p.handle(0.3, Event::Failed { id: ys[0], reason: FailReason::Busy });
        p.handle(0.3, Event::Failed { id: ys[1], reason: FailReason::Busy });
        assert!(!excluded(&p, 9), "the streak restarted after it served");
    }

    #[test]
    fn an_unmeasured_source_is_assumed_typical_not_infinite() {
        let mut p = Planner::new(12);
        p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 1000)] });
        for (id, bps) in [(1, 1e6), (2, 3e6), (3, 2e6)] {
            let config = NodeConfig { max_upload_bps: Some(bps), ..NodeConfig::new(false, 1, 1) };
            p.handle(0.0, Event::Join { node: id, config, has: vec![] });
        }
        p.handle(0.0, Event::Join { node: 4, config: NodeConfig::new(false, 1, 1), has: vec![] });
        p.plan(0.0);
        let slot = p.node_index[&4];
        assert_eq!(p.source_share(slot), 2e6, "the median measured peer");
        let fresh = Planner::new(1);
        assert_eq!(fresh.assumed_bps, fresh.tuning.assumed_bps);
    }

    #[test]
    fn a_downloader_that_never_finishes_loses_its_master_slots_for_a_while() {
        let mut p = Planner::new(13);
        p.handle(0.0, Event::NewManifest { chunks: (0..10).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 4, 0), has: all(10) });
        p.handle(0.0, Event::Join { node: 1, config: NodeConfig::new(false, 1, 1), has: vec![] });
        for k in 0..3 {
            let o = p.plan(f64::from(k));
            assert_eq!(o.len(), 1);
            p.handle(f64::from(k) + 0.5, Event::Failed { id: o[0].id, reason: FailReason::Other });
        }
        assert!(p.plan(3.0).is_empty(), "barred from the master after three failures in a row");
        // A cancel (manifest change) is nobody's fault and does not count.
        let o = p.plan(18.0);
        assert_eq!(o.len(), 1, "the bar runs out");
        p.handle(18.1, Event::Failed { id: o[0].id, reason: FailReason::Cancelled });
        let o = p.plan(18.2);
        assert_eq!(o.len(), 1);
        p.handle(18.3, Event::Finished { id: o[0].id });
        assert!(!p.is_barred(p.node_index[&1], 18.3));
    }

    #[test]
    fn a_source_that_never_sends_a_byte_is_aborted_after_first_byte_s_and_blamed() {
        let mut p = swarm_with_liar();
        let o = p.plan(0.0);
        let stuck: Vec<_> = o.iter().filter(|o| o.from == 9).map(|o| o.id).collect();
        assert!(p.check_timeouts(3.9).is_empty());
        let mut aborted = p.check_timeouts(4.1);
        aborted.sort();
        let mut all_orders: Vec<_> = o.iter().map(|o| o.id).collect();
        all_orders.sort();
        assert_eq!(aborted, all_orders, "nothing got a byte: all are stalled");
        assert_eq!(stuck.len(), 2);
        assert!(!excluded(&p, 9), "two stalls");
        let more: Vec<_> = p.plan(4.1).into_iter().filter(|o| o.from == 9).collect();
        assert!(!more.is_empty());
        p.check_timeouts(8.3);
        assert!(excluded(&p, 9), "the third stall in a row excludes it");
    }

    /// Every peer's engine says it is alive at `t`.
    fn heard(p: &mut Planner, t: f64, peers: &[u32]) {
        for &node in peers {
            p.handle(t, Event::Heard { node });
        }
    }

    #[test]
    fn a_stuck_source_is_out_after_a_few_typical_chunk_times_and_loses_all_its_uploads_at_once() {
        let mut p = swarm_with_liar();
        let o = p.plan(0.0);
        let liar: Vec<_> = o.iter().filter(|o| o.from == 9).cloned().collect();
        assert_eq!(liar.len(), 2);
        assert_ne!(liar[0].to, liar[1].to, "one unproven source per destination at a time");
        // The master's chunk arrives in 0.1 s: a chunk takes 0.1 s, four of them 0.4 s, so
        // the floor `min_stall_s` (1 s) applies, not the fixed 4 s first-byte timeout.
        let master = o.iter().find(|o| o.from == 0).expect("a master order");
        p.handle(0.1, Event::Finished { id: master.id });
        assert_eq!(p.typical_rate(), Some(10_000.0));
        // Only the first liar destination reports liveness; the other says nothing at all.
        let (a, b) = (liar[0].to, liar[1].to);
        let mut t = 0.0;
        while t < 0.95 {
            t += 0.25;
            heard(&mut p, t, &[a]);
            assert!(p.check_timeouts(t).is_empty(), "not stuck yet at {t}");
        }
        heard(&mut p, 1.25, &[a]);
        let mut aborted = p.check_timeouts(1.25);
        aborted.sort();
        let mut want = vec![liar[0].id, liar[1].id];
        want.sort();
        assert_eq!(aborted, want, "the stuck one, and at once the liar's other upload (to {b})");
        assert!(excluded(&p, 9), "one stuck transfer is enough while its destination reports");
        assert!(p.plan(1.3).iter().all(|o| o.from != 9));
    }

    #[test]
    fn a_quiet_destination_is_released_without_blaming_its_sources() {
        let mut p = Planner::new(14);
        p.handle(0.0, Event::NewManifest { chunks: (0..4).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 1, 0), has: all(4) });
        p.handle(0.0, Event::Join { node: 2, config: NodeConfig::new(false, 2, 2), has: all(4) });
        p.handle(0.0, Event::Join { node: 1, config: NodeConfig::new(false, 2, 2), has: vec![] });
        let o = p.plan(0.0);
        assert!(!o.is_empty() && o.iter().all(|o| o.to == 1));
        let first = o[0].id;
        p.handle(0.1, Event::Finished { id: first });
        heard(&mut p, 0.1, &[1, 2]);
        // Node 1 freezes: it stops reporting. Its transfers are not its sources' fault, and
        // nothing counts as stuck (that needs the destination to report).
        for k in 1..8 {
            let t = 0.1 + 0.25 * f64::from(k);
            heard(&mut p, t, &[2]);
            assert!(p.check_timeouts(t).is_empty(), "nothing aborted at {t}");
        }
        let released = p.check_timeouts(2.2);
        assert_eq!(released.len(), o.len() - 1, "quiet for 2 s: its downloads are released");
        assert!(!excluded(&p, 2) && !p.stats().nodes.iter().any(|n| n.penalized));
        assert!(p.plan(2.2).is_empty(), "no orders to a quiet node");
        heard(&mut p, 2.3, &[1, 2]);
        assert!(!p.plan(2.3).is_empty(), "heard again: served again");
    }

    #[test]
    fn a_destination_waits_on_at_most_one_unproven_source() {
        let mut p = Planner::new(15);
        p.handle(0.0, Event::NewManifest { chunks: (0..8).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 0, 0), has: all(8) });
        for liar in [9, 10] {
            p.handle(0.0, Event::Join { node: liar, config: NodeConfig::new(false, 8, 0), has: all(8) });
        }
        for n in [1, 2] {
            p.handle(0.0, Event::Join { node: n, config: NodeConfig::new(false, 2, 4), has: vec![] });
        }
        let o = p.plan(0.0);
        for d in [1, 2] {
            assert_eq!(o.iter().filter(|o| o.to == d).count(), 1, "{o:?}");
        }
        // Once a source served, it is proven and the destination may use more of it.
        let x = o.iter().find(|o| o.to == 1).expect("an order");
        p.handle(0.1, Event::Finished { id: x.id });
        let more = p.plan(0.1);
        assert!(more.iter().filter(|m| m.to == 1 && m.from == x.from).count() >= 2, "{more:?}");
    }
}
