//! Rate measurement, expectations and aborts (stalled, too slow, endgame replacement).
//!
//! A transfer that never received a byte is stalled after `first_byte_s`; one that did, after
//! `stall_timeout_s` without progress.
//!
//! All rates are bytes/second from [`super::Event::Progress`] deltas over a window, never a
//! fixed per-chunk timeout: a 128 MiB chunk at 10 MB/s is healthy, a 1 MiB chunk stuck for 10 s
//! is not, and only a rate tells them apart.

use super::events::End;
use super::{Order, Planner, TransferId};

/// Per-window decay of capacity estimates, so a node that became slower is re-learned.
const PEAK_DECAY: f64 = 0.97;

impl Planner {
    /// Close rate windows that are due: aggregate node rates and capacity estimates.
    pub(crate) fn update_rates(&mut self, now: f64) {
        let window = self.tuning.rate_window_s;
        for n in self.nodes.iter_mut().flatten() {
            let dt = now - n.win_t;
            if dt < window {
                continue;
            }
            n.up_rate = (n.up_bytes - n.win_up) as f64 / dt;
            n.down_rate = (n.down_bytes - n.win_down) as f64 / dt;
            n.up_peak = (n.up_peak * PEAK_DECAY).max(n.up_rate);
            n.down_peak = (n.down_peak * PEAK_DECAY).max(n.down_rate);
            n.win_t = now;
            n.win_up = n.up_bytes;
            n.win_down = n.down_bytes;
        }
    }

    /// Upload capacity estimate (configured limit, else measured peak; None if unknown).
    pub(crate) fn up_cap(&self, slot: usize) -> Option<f64> {
        let n = self.nodes[slot].as_ref()?;
        n.cfg.max_upload_bps.or((n.up_peak > 0.0).then_some(n.up_peak))
    }

    pub(crate) fn down_cap(&self, slot: usize) -> Option<f64> {
        let n = self.nodes[slot].as_ref()?;
        n.cfg.max_download_bps.or((n.down_peak > 0.0).then_some(n.down_peak))
    }

    /// What one more upload from this node is expected to get. An unknown source is assumed
    /// to be typical (the median measured peer), not infinitely fast: optimism about a node
    /// that never delivers would aim every slot of the swarm at it.
    pub(crate) fn source_share(&self, slot: usize) -> f64 {
        let Some(n) = self.nodes[slot].as_ref() else { return 0.0 };
        let cap = self.up_cap(slot).unwrap_or(self.assumed_bps);
        cap / f64::from(n.active_up + 1)
    }

    /// Ranking key of a source: its share, demoted ×0.1 while penalised.
    pub(crate) fn source_rank(&self, slot: usize, now: f64) -> f64 {
        let share = self.source_share(slot);
        match self.nodes[slot].as_ref() {
            Some(n) if n.penalty_until > now => share * 0.1,
            _ => share,
        }
    }

    /// Rate a (source, destination) pair should sustain with both at full slot use; 0 if unknown.
    pub(crate) fn expected_rate(&self, from: usize, to: usize) -> f64 {
        let per_slot = |cap: Option<f64>, slots: u32| cap.map(|c| c / f64::from(slots.max(1)));
        let (Some(s), Some(d)) = (self.nodes[from].as_ref(), self.nodes[to].as_ref()) else { return 0.0 };
        let src = per_slot(self.up_cap(from), s.cfg.upload_slots);
        let dst = per_slot(self.down_cap(to), d.cfg.download_slots);
        match (src, dst) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 0.0,
        }
    }

    /// Transfers to abort now (they are released immediately; treat them as failed).
    pub fn check_timeouts(&mut self, now: f64) -> Vec<TransferId> {
        let due = self.due_aborts(now);
        for &(id, penalise) in &due {
            self.end_transfer(now, id, End::Aborted { penalise });
        }
        due.into_iter().map(|(id, _)| id).collect()
    }

    /// [`Self::check_timeouts`], answering with the aborted orders rather than their ids, for
    /// an engine that must tell each destination to cancel and keeps no transfer table of its
    /// own.
    pub fn check_timeouts_orders(&mut self, now: f64) -> Vec<Order> {
        let due = self.due_aborts(now);
        let orders = due.iter().filter_map(|&(id, _)| self.order(id)).collect();
        for &(id, penalise) in &due {
            self.end_transfer(now, id, End::Aborted { penalise });
        }
        orders
    }

    /// Transfers due for an abort, each with whether the source is to blame.
    fn due_aborts(&mut self, now: f64) -> Vec<(TransferId, bool)> {
        self.update_rates(now);
        let mut out: Vec<(TransferId, bool)> = Vec::new();
        for id in std::mem::take(&mut self.pending_aborts) {
            if self.transfers.contains_key(&id) && !out.iter().any(|(i, _)| *i == id) {
                out.push((id, false));
            }
        }
        let window = self.tuning.rate_window_s;
        for (&id, t) in &self.transfers {
            if out.iter().any(|(i, _)| *i == id) {
                continue;
            }
            let silent = now - t.last_change;
            if silent > self.tuning.stall_timeout_s || (t.bytes == 0 && silent > self.tuning.first_byte_s) {
                out.push((id, true));
                continue;
            }
            let Some(rate) = t.rate else { continue };
            if t.min_rate > 0.0 && rate < t.min_rate && now - t.anchor_t < 2.0 * window {
                out.push((id, true));
                continue;
            }
            if self.endgame_replace(t.to, t.from, t.chunk, t.size - t.bytes, t.size, rate) {
                out.push((id, false));
            }
        }
        out
    }

    /// Endgame: the destination waits only on what is in flight, and this transfer would end
    /// far later than a refetch from an idle, faster holder of the chunk.
    fn endgame_replace(&self, to: usize, from: usize, c: u32, remaining: u64, size: u64, rate: f64) -> bool {
        let Some(d) = self.nodes[to].as_ref() else { return false };
        if d.have_in_manifest + d.active_down < self.manifest_count {
            return false;
        }
        let dest_share = self.down_cap(to).map_or(f64::INFINITY, |c| c / f64::from(d.cfg.download_slots.max(1)));
        if rate >= 0.5 * dest_share {
            return false;
        }
        let left = remaining as f64 / rate.max(1.0);
        let best_alt = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
            .filter(|(i, n)| *i != to && *i != from && n.has.get(c) && n.active_up < n.cfg.upload_slots)
            .filter(|(_, n)| !n.suspended)
            .filter_map(|(i, _)| {
                self.up_cap(i).map(|cap| cap / f64::from(self.nodes[i].as_ref().map_or(1, |n| n.active_up + 1)))
            })
            .fold(0.0f64, f64::max);
        if best_alt <= 0.0 {
            return false;
        }
        let refetch = size as f64 / best_alt.min(dest_share);
        left > self.tuning.endgame_factor * refetch + self.tuning.rate_window_s
    }
}
