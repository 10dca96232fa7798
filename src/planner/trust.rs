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
//!
//! What one report may do, since reports come from members that may lie or break:
//! - One incident is one exclusion: failures reported while a node is already excluded (its
//!   other uploads failing in the same incident) count nothing, and exclusions and bars decay
//!   by one per [`DECAY_AFTER`] chunks of good service, so an old incident is forgiven.
//! - Bad data needs two witnesses: a destination that reports bad data from a source counts
//!   one failure; only a second, different destination makes it the source's exclusion. A
//!   lying destination alone cannot throw an honest seeder out of the swarm.
//! - "Not held" (404, or a reset) from a source that has served or received chunks drops that
//!   claim and is no strike: an honest peer answers 404 while it re-checks its folder. From an
//!   unproven source (all it offers are its own claims) it still counts.
//! - A master's failed transfer blames its destination only if the master delivered to another
//!   destination since that transfer started: a slow or stalled master is nobody's fault.

use super::{FailReason, Planner, Transfer};

/// Failures in a row that take a source out (bad data counts as all of them at once).
pub(crate) const EXCLUDE_AFTER: u32 = 3;
/// Concurrent uploads a source gets before it has served its first chunk.
pub(crate) const UNPROVEN_UPLOADS: u32 = 2;
/// Exclusions double up to this many times.
const MAX_DOUBLINGS: u32 = 6;
/// Chunks of good service that take one exclusion (or bar) off a node's record.
pub(crate) const DECAY_AFTER: u32 = 8;

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
    /// How much the failure of transfer `t` counts against its source (see the module doc:
    /// bad data needs a second witness, "not held" from a proven source is no strike).
    pub(crate) fn failure_weight(&mut self, t: &Transfer, reason: FailReason) -> u32 {
        match reason {
            FailReason::SourceMissing if !self.is_unproven(t.from) => 0,
            FailReason::BadData => {
                let to = self.nodes[t.to].as_ref().map(|n| n.id);
                let Some(src) = self.nodes[t.from].as_mut() else { return 0 };
                match (src.bad_report_by, to) {
                    (Some(first), Some(to)) if first != to => EXCLUDE_AFTER,
                    (_, to) => {
                        src.bad_report_by = to;
                        1
                    }
                }
            }
            _ => source_weight(reason),
        }
    }

    /// Count `weight` failures against source `slot` (never a master).
    pub(crate) fn blame_source(&mut self, now: f64, slot: usize, weight: u32) {
        let base = self.tuning.penalty_s;
        let Some(n) = self.nodes[slot].as_mut() else { return };
        // Already out: the rest of the same incident (its other uploads failing) adds nothing.
        if n.cfg.is_master || weight == 0 || n.excluded_until > now {
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
        n.bad_report_by = None;
        n.excluded_until = now + base * f64::from(1u32 << (n.exclusions - 1).min(MAX_DOUBLINGS));
        tracing::debug!(target: "lanscatter::planner", "node {} excluded as a source until {:.1}", n.id, n.excluded_until);
        self.suspend(slot);
    }

    /// A transfer from `slot` arrived intact.
    pub(crate) fn credit_source(&mut self, now: f64, slot: usize) {
        if let Some(n) = self.nodes[slot].as_mut() {
            n.fail_streak = 0;
            n.served_since += 1;
            n.last_served = now;
            n.last_delivered = now;
            if n.served_since.is_multiple_of(DECAY_AFTER) {
                n.exclusions = n.exclusions.saturating_sub(1);
            }
        }
    }

    /// Transfer `t` from a master failed or was aborted for a reason that may be its
    /// destination's: counted only if the master delivered to someone else meanwhile (else
    /// the master itself is slow or stalled), and once per bar.
    pub(crate) fn blame_destination(&mut self, now: f64, t: &Transfer) {
        let base = self.tuning.penalty_s;
        let master_delivered = self.nodes[t.from].as_ref().is_some_and(|m| m.last_served > t.started);
        let Some(n) = self.nodes[t.to].as_mut() else { return };
        if !master_delivered || n.barred_until > now {
            return;
        }
        n.dest_streak += 1;
        if n.dest_streak >= EXCLUDE_AFTER {
            n.dest_streak = 0;
            n.dest_good = 0;
            n.bars += 1;
            n.barred_until = now + base * f64::from(1u32 << (n.bars - 1).min(MAX_DOUBLINGS));
        }
    }

    pub(crate) fn credit_destination(&mut self, slot: usize) {
        if let Some(n) = self.nodes[slot].as_mut() {
            n.dest_streak = 0;
            n.dest_good += 1;
            if n.dest_good.is_multiple_of(DECAY_AFTER) {
                n.bars = n.bars.saturating_sub(1);
            }
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

    use crate::planner::tests::h;

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
    fn bad_data_from_two_destinations_excludes_and_serving_restores_trust() {
        let mut p = swarm_with_liar();
        let o = p.plan(0.0);
        let xs: Vec<_> = o.iter().filter(|o| o.from == 9).cloned().collect();
        assert_ne!(xs[0].to, xs[1].to);
        p.handle(0.1, Event::Failed { id: xs[0].id, reason: FailReason::BadData });
        assert!(!excluded(&p, 9), "one destination's word is not enough");
        p.handle(0.1, Event::Failed { id: xs[1].id, reason: FailReason::BadData });
        assert!(excluded(&p, 9), "a second destination corroborates it");
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
    fn a_lying_destination_alone_cannot_exclude_an_honest_source() {
        let mut p = Planner::new(19);
        p.handle(0.0, Event::NewManifest { chunks: (0..40).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 0, 0), has: all(40) });
        p.handle(0.0, Event::Join { node: 9, config: NodeConfig::new(false, 4, 0), has: all(40) });
        for n in 1..=3 {
            p.handle(0.0, Event::Join { node: n, config: NodeConfig::new(false, 0, 1), has: vec![] });
        }
        // Node 1 reports bad data from 9 every time; the others receive 9's chunks intact.
        let mut lies = 0;
        for k in 0..12 {
            let t = f64::from(k);
            for o in p.plan(t) {
                if o.to == 1 {
                    lies += 1;
                    p.handle(t + 0.1, Event::Failed { id: o.id, reason: FailReason::BadData });
                } else {
                    p.handle(t + 0.1, Event::Finished { id: o.id });
                }
            }
            assert!(!excluded(&p, 9), "excluded on one destination's word at {t}");
        }
        assert!(lies >= 3, "node 1 was served (and lied) {lies} times");
    }

    /// Node 9 has served one chunk (it is proven) and gets uploads to several destinations.
    fn proven_source() -> (Planner, Vec<crate::planner::Order>) {
        let mut p = Planner::new(16);
        p.handle(0.0, Event::NewManifest { chunks: (0..40).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 0, 0), has: all(40) });
        p.handle(0.0, Event::Join { node: 9, config: NodeConfig::new(false, 8, 0), has: all(40) });
        for n in 1..=4 {
            p.handle(0.0, Event::Join { node: n, config: NodeConfig::new(false, 2, 2), has: vec![] });
        }
        let first = p.plan(0.0);
        p.handle(0.1, Event::Finished { id: first[0].id });
        let more: Vec<_> = p.plan(0.1).into_iter().filter(|o| o.from == 9).collect();
        assert!(more.len() >= 5, "a proven source gets its full slots: {more:?}");
        (p, more)
    }

    #[test]
    fn one_incident_is_one_exclusion_and_exclusions_decay_with_good_service() {
        let (mut p, up) = proven_source();
        // All its uploads fail in one incident, reported one after the other.
        for o in &up {
            p.handle(0.2, Event::Failed { id: o.id, reason: FailReason::Busy });
        }
        assert!(excluded(&p, 9));
        let slot = p.node_index[&9];
        assert_eq!(p.nodes[slot].as_ref().map(|n| n.exclusions), Some(1), "one incident, one exclusion");
        let back: Vec<_> = p.plan(0.2 + 15.1).into_iter().filter(|o| o.from == 9).collect();
        assert!(!back.is_empty(), "back after the first penalty (15 s)");
        for o in back {
            p.handle(15.3, Event::Finished { id: o.id });
        }
        // Good service takes the exclusion off its record.
        let mut t = 15.4;
        while p.nodes[slot].as_ref().is_some_and(|n| n.served_since < super::super::trust::DECAY_AFTER) {
            let o: Vec<_> = p.plan(t).into_iter().filter(|o| o.from == 9).collect();
            assert!(!o.is_empty(), "more work for 9 at {t}");
            for o in o {
                p.handle(t, Event::Finished { id: o.id });
            }
            t += 0.1;
        }
        assert_eq!(p.nodes[slot].as_ref().map(|n| n.exclusions), Some(0), "decayed after good service");
    }

    #[test]
    fn not_held_from_a_proven_source_drops_the_claim_without_a_strike() {
        let (mut p, up) = proven_source();
        // It re-checks its folder and answers 404 to everything meanwhile.
        let chunks: Vec<_> = up.iter().map(|o| o.chunk).collect();
        for o in &up {
            p.handle(0.2, Event::Failed { id: o.id, reason: FailReason::SourceMissing });
        }
        assert!(!excluded(&p, 9), "an honest re-check is no strike");
        assert!(chunks.iter().all(|c| !p.node_has(9, c)), "but those claims are dropped");
        let again = p.plan(0.3);
        assert!(again.iter().all(|o| o.from != 9 || !chunks.contains(&o.chunk)), "{again:?}");
        // The re-check ends and it announces them again: it serves them again.
        p.handle(0.4, Event::Have { node: 9, chunks: chunks.clone() });
        assert!(chunks.iter().all(|c| p.node_has(9, c)));
    }

    #[test]
    fn a_slow_master_is_not_blamed_on_its_destinations() {
        let mut p = Planner::new(17);
        p.handle(0.0, Event::NewManifest { chunks: (0..20).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 2, 0), has: all(20) });
        for n in [1, 2] {
            p.handle(0.0, Event::Join { node: n, config: NodeConfig::new(false, 0, 1), has: vec![] });
        }
        // Nothing the master sends arrives anywhere: it is the slow one.
        for k in 0..6 {
            let t = f64::from(k);
            let o = p.plan(t);
            assert_eq!(o.len(), 2, "both destinations still get master slots at {t}");
            for o in o {
                p.handle(t + 0.5, Event::Failed { id: o.id, reason: FailReason::TooSlow });
            }
        }
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
        p.handle(0.0, Event::NewManifest { chunks: (0..40).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 4, 0), has: all(40) });
        p.handle(0.0, Event::Join { node: 1, config: NodeConfig::new(false, 0, 1), has: vec![] });
        // Node 2 receives what the master sends it: the master is fine, node 1 is not.
        p.handle(0.0, Event::Join { node: 2, config: NodeConfig::new(false, 0, 1), has: vec![] });
        for k in 0..3 {
            let t = f64::from(k);
            let o = p.plan(t);
            let (mine, theirs): (Vec<_>, Vec<_>) = o.into_iter().partition(|o| o.to == 1);
            assert_eq!(mine.len(), 1);
            for o in theirs {
                p.handle(t + 0.2, Event::Finished { id: o.id });
            }
            p.handle(t + 0.5, Event::Failed { id: mine[0].id, reason: FailReason::Other });
        }
        assert!(p.plan(3.0).iter().all(|o| o.to != 1), "barred from the master after three failures in a row");
        // A cancel (manifest change) is nobody's fault and does not count.
        let o: Vec<_> = p.plan(18.0).into_iter().filter(|o| o.to == 1).collect();
        assert_eq!(o.len(), 1, "the bar runs out");
        p.handle(18.1, Event::Failed { id: o[0].id, reason: FailReason::Cancelled });
        let o: Vec<_> = p.plan(18.2).into_iter().filter(|o| o.to == 1).collect();
        assert_eq!(o.len(), 1);
        p.handle(18.3, Event::Finished { id: o[0].id });
        assert!(!p.is_barred(p.node_index[&1], 18.3));
    }

    #[test]
    fn a_big_chunk_gets_time_to_be_read_before_its_first_byte() {
        let mut p = Planner::new(18);
        let size = 128u64 << 20;
        p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), size)] });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 1, 0), has: all(1) });
        p.handle(0.0, Event::Join { node: 1, config: NodeConfig::new(false, 0, 1), has: vec![] });
        assert_eq!(p.plan(0.0).len(), 1);
        // 128 MiB at 20 MB/s is 6.7 s of reading on a busy HDD: no first byte at 6 s is fine.
        assert!(p.check_timeouts(6.0).is_empty(), "a fixed first-byte time would abort it");
        assert_eq!(p.check_timeouts(11.0).len(), 1, "but not forever");
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

    /// A rate-limited master shares its bytes among its uploads: one that waits for its turn
    /// while another moves is not stuck (that would abort the master's batches again and
    /// again), only the fixed timeouts apply to it.
    #[test]
    fn a_source_still_delivering_elsewhere_is_busy_not_stuck() {
        let mut p = Planner::new(16);
        p.handle(0.0, Event::NewManifest { chunks: (0..3).map(|i| (h(i), 1000)).collect() });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 3, 0), has: all(3) });
        p.handle(0.0, Event::Join { node: 1, config: NodeConfig::new(false, 3, 3), has: vec![] });
        let o = p.plan(0.0);
        assert_eq!(o.len(), 3);
        p.handle(0.1, Event::Finished { id: o[0].id });
        assert_eq!(p.typical_rate(), Some(10_000.0), "a chunk takes 0.1 s: stuck after 1 s (the floor)");
        let (moving, waiting) = (o[1].id, o[2].id);
        let mut t = 0.1;
        while t < 3.0 {
            t += 0.25;
            heard(&mut p, t, &[1]);
            p.handle(t, Event::Progress { id: moving, bytes_done: (t * 300.0) as u64 });
            assert!(p.check_timeouts(t).is_empty(), "nothing stuck at {t} while the master delivers");
        }
        // The moving one finishes at 3.1: the waiting one's silence counts from there (the
        // floor, 1 s), and its first-byte timeout (4 s from its order) still holds.
        p.handle(3.1, Event::Finished { id: moving });
        for k in 1..=6 {
            let t = 3.1 + 0.25 * f64::from(k);
            heard(&mut p, t, &[1]);
            let aborted = p.check_timeouts(t);
            if !aborted.is_empty() {
                assert!(t > 4.0, "aborted at {t}, before its first-byte timeout");
                assert_eq!(aborted, vec![waiting]);
                return;
            }
        }
        panic!("a transfer that never got a byte outlived its first-byte timeout");
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
