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
//! A source that has not served anything yet gets at most [`UNPROVEN_UPLOADS`] concurrent
//! uploads, which bounds what a liar can tie up before its first failures are in.
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
        FailReason::Other | FailReason::Cancelled => 0,
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

    /// Upload slots a source may use now: none while excluded, few while unproven.
    pub(crate) fn usable_upload_slots(&self, slot: usize, now: f64) -> u32 {
        let Some(n) = self.nodes[slot].as_ref() else { return 0 };
        if n.cfg.is_master {
            n.cfg.upload_slots
        } else if n.excluded_until > now {
            0
        } else if n.served_since == 0 {
            n.cfg.upload_slots.min(UNPROVEN_UPLOADS)
        } else {
            n.cfg.upload_slots
        }
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
