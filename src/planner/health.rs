//! Rate measurement, expectations and aborts (stalled, too slow, endgame replacement).
//!
//! Stalls are judged relative to the swarm: a transfer is *stuck* once its destination, still
//! reporting, has seen no progress on it for [`super::Tuning::stall_chunks`] typical chunk
//! times (the median rate of the last [`RECENT`] finished transfers, order to finish, applied
//! to this chunk's size), at least `min_stall_s`. On loopback that is about a second where a
//! fixed timeout waited 4-5 s, and on a slow link it grows with the link. Measured against the
//! destination's own reports (not the master's clock), so a loaded or frozen destination does
//! not make its sources look stuck: a stuck source is excluded at once (`trust`), its other
//! uploads aborted in the same call. Silence counts from the source's last delivery to anyone:
//! a rate-limited master shares its few bytes per second among all its uploads (a batch of
//! small chunks is up to 1 MiB), so one of them may wait for its turn far longer than the
//! swarm's typical chunk time, and that source is busy, not hung. Without such reports (a destination that went quiet, or
//! an engine that does not send [`super::Event::Heard`]) the fixed timeouts still apply: no
//! first byte after `first_byte_s` plus the chunk's read time at `slow_read_bps` (a source
//! reads a whole chunk before it answers, so a big chunk on a slow disk is not a hung
//! source), no progress for `stall_timeout_s`, blamed as one failure.
//!
//! All rates are bytes/second from [`super::Event::Progress`] deltas over a window, never a
//! fixed per-chunk timeout: a 128 MiB chunk at 10 MB/s is healthy, a 1 MiB chunk stuck for 10 s
//! is not, and only a rate tells them apart.

use super::events::End;
use super::{Order, Planner, Transfer, TransferId};

/// Per-window decay of capacity estimates, so a node that became slower is re-learned.
const PEAK_DECAY: f64 = 0.97;
/// Finished transfers whose rates make the typical chunk time.
pub(crate) const RECENT: usize = 32;

/// Why the planner aborts a transfer, which sets how much the source is blamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abort {
    /// Nobody's fault (chunk gone, source excluded, destination quiet, endgame replacement).
    Release,
    /// Slow, or silent by the fixed timeouts: one failure.
    Soft,
    /// Stuck while its destination reports: the source is out at once.
    Stuck,
}

impl Abort {
    fn blame(self) -> u32 {
        match self {
            Abort::Release => 0,
            Abort::Soft => 1,
            Abort::Stuck => super::trust::EXCLUDE_AFTER,
        }
    }
}

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
        self.check_timeouts_orders(now).into_iter().map(|o| o.id).collect()
    }

    /// [`Self::check_timeouts`], answering with the aborted orders rather than their ids, for
    /// an engine that must tell each destination to cancel and keeps no transfer table of its
    /// own. A source excluded by one of these aborts loses its other uploads in the same call.
    pub fn check_timeouts_orders(&mut self, now: f64) -> Vec<Order> {
        let mut due = self.due_aborts(now);
        let mut orders = Vec::new();
        while !due.is_empty() {
            for (id, why) in due {
                if let Some(o) = self.order(id) {
                    orders.push(o);
                    self.end_transfer(now, id, End::Aborted { blame: why.blame() });
                }
            }
            // Exclusions just now queued their sources' other uploads.
            due = std::mem::take(&mut self.pending_aborts).into_iter().map(|id| (id, Abort::Release)).collect();
        }
        orders
    }

    /// Transfers due for an abort, each with why.
    fn due_aborts(&mut self, now: f64) -> Vec<(TransferId, Abort)> {
        self.update_rates(now);
        let mut out: Vec<(TransferId, Abort)> = Vec::new();
        for id in std::mem::take(&mut self.pending_aborts) {
            if self.transfers.contains_key(&id) && !out.iter().any(|(i, _)| *i == id) {
                out.push((id, Abort::Release));
            }
        }
        let typical = self.typical_rate();
        let window = self.tuning.rate_window_s;
        for (&id, t) in &self.transfers {
            if out.iter().any(|(i, _)| *i == id) {
                continue;
            }
            if let Some(why) = self.stall_check(now, t, typical) {
                out.push((id, why));
                continue;
            }
            let Some(rate) = t.rate else { continue };
            if t.min_rate > 0.0 && rate < t.min_rate && now - t.anchor_t < 2.0 * window {
                out.push((id, Abort::Soft));
                continue;
            }
            if self.endgame_replace(t.to, t.from, t.chunk, t.size - t.bytes, t.size, rate) {
                out.push((id, Abort::Release));
            }
        }
        out
    }

    /// Whether `t` is stalled, and whose fault that is (see the module doc).
    fn stall_check(&self, now: f64, t: &Transfer, typical: Option<f64>) -> Option<Abort> {
        let tu = &self.tuning;
        // A source reads (and may compress) the whole chunk before its first byte.
        let cap = if t.bytes == 0 { tu.first_byte_s + t.size as f64 / tu.slow_read_bps } else { tu.stall_timeout_s };
        let dest = self.nodes[t.to].as_ref()?;
        if self.is_quiet(t.to, now) {
            return Some(Abort::Release);
        }
        if let Some(rate) = typical {
            let limit = (tu.stall_chunks * t.size as f64 / rate).clamp(tu.min_stall_s, cap);
            // Silence counts from the source's last delivery to anyone, if later.
            let delivered = self.nodes[t.from].as_ref().map_or(t.last_change, |n| n.last_delivered);
            if dest.heard - t.last_change.max(delivered) > limit {
                return Some(Abort::Stuck);
            }
        }
        (now - t.last_change > cap).then_some(Abort::Soft)
    }

    /// A node that reports liveness and has not been heard for `silent_after_s`.
    pub(crate) fn is_quiet(&self, slot: usize, now: f64) -> bool {
        self.nodes[slot].as_ref().is_some_and(|n| n.reports && now - n.heard > self.tuning.silent_after_s)
    }

    /// Remember a finished transfer's rate (size over order-to-finish time).
    pub(crate) fn note_rate(&mut self, size: u64, took: f64) {
        if size == 0 || took <= 0.0 {
            return;
        }
        if self.recent_rates.len() >= RECENT {
            self.recent_rates.pop_front();
        }
        self.recent_rates.push_back(size as f64 / took);
    }

    /// The median of the recent transfer rates (bytes/s), if any finished yet.
    pub(crate) fn typical_rate(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.recent_rates.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
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
