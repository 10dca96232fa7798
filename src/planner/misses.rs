//! Chunks a master just said it cannot serve: held back from that master for a while.
//!
//! A master always holds its whole manifest in the planner's view (a changed file brings a new
//! manifest), so a "source missing" failure from it cannot drop the chunk from its have-set:
//! a transient failure would leave a chunk with no source at all. But some misses last: a proxy
//! keeps publishing the old version of a file it is rewriting, and its chunk route refuses
//! those chunks until the new version is complete (see `proxy`). Re-ordering them at once made
//! every destination ask again on every round, for as long as the rewrite took.
//!
//! So a miss holds that chunk back from that master for [`FIRST_HOLD_S`], doubling with each
//! repeat up to [`MAX_HOLD_S`]: a transient failure costs half a second, a lasting one a request
//! every few seconds. A delivery from that master clears the chunk's record, and a new manifest
//! clears all of them. Holds are bit sets per master, so the round masks a whole word at once.

use std::collections::BTreeMap;

use super::{BitSet, Planner};

/// First hold after a miss (seconds); doubles per repeat.
pub(crate) const FIRST_HOLD_S: f64 = 0.5;
/// Longest hold: a chunk a master refuses is still asked for this often.
pub(crate) const MAX_HOLD_S: f64 = 8.0;

#[derive(Debug, Clone, Default)]
pub(crate) struct Misses {
    /// Per master slot: chunks held back now.
    held: BTreeMap<usize, BitSet>,
    /// Per (master slot, chunk): misses in a row and the end of the current hold.
    records: BTreeMap<(usize, u32), (u32, f64)>,
}

impl Misses {
    /// Master slot `node` missed `chunk` at `now`.
    pub(crate) fn record(&mut self, now: f64, node: usize, chunk: u32) {
        let r = self.records.entry((node, chunk)).or_insert((0, now));
        r.0 += 1;
        let hold = (FIRST_HOLD_S * 2f64.powi(r.0.min(16) as i32 - 1)).min(MAX_HOLD_S);
        r.1 = now + hold;
        let set = self.held.entry(node).or_default();
        set.grow(chunk as usize + 1);
        set.insert(chunk);
    }

    /// Release the holds that are over (their records stay, so a repeat holds longer).
    pub(crate) fn expire(&mut self, now: f64) {
        for (&(node, chunk), &(_, until)) in &self.records {
            if until <= now {
                if let Some(set) = self.held.get_mut(&node) {
                    set.remove(chunk);
                }
            }
        }
    }

    /// `node` delivered these chunks: they start afresh.
    pub(crate) fn delivered(&mut self, node: usize, chunks: impl Iterator<Item = u32>) {
        if self.records.is_empty() {
            return;
        }
        for c in chunks {
            if self.records.remove(&(node, c)).is_some() {
                if let Some(set) = self.held.get_mut(&node) {
                    set.remove(c);
                }
            }
        }
    }

    /// Forget everything (a new manifest, or the node left).
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.records.clear();
    }

    /// Word `w` of the chunks held back from `node`.
    #[inline]
    pub(crate) fn word(&self, node: usize, w: usize) -> u64 {
        if self.held.is_empty() {
            return 0;
        }
        self.held.get(&node).map_or(0, |s| s.word(w))
    }

    pub(crate) fn is_held(&self, node: usize, chunk: u32) -> bool {
        !self.held.is_empty() && self.held.get(&node).is_some_and(|s| s.get(chunk))
    }
}

impl Planner {
    /// What `node` can serve of word `w` as the planner sees it: its have-set minus what it
    /// recently said it cannot serve.
    #[inline]
    pub(crate) fn servable_word(&self, node: usize, w: usize) -> u64 {
        self.nodes[node].as_ref().map_or(0, |n| n.has.word(w)) & !self.misses.word(node, w)
    }
}

#[cfg(test)]
mod tests {
    use super::{FIRST_HOLD_S, MAX_HOLD_S};
    use crate::planner::tests::{cfg, h};
    use crate::planner::{Event, FailReason, Planner};

    /// R9: a master (a proxy rewriting the file) that keeps answering "not held" is asked
    /// again after a doubling hold, not on every round; a new manifest asks at once.
    #[test]
    fn a_master_that_keeps_missing_a_chunk_is_asked_less_and_less_often() {
        let mut p = Planner::new(9);
        p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 100)] });
        p.handle(0.0, Event::Join { node: 0, config: cfg(true, 4, 0), has: vec![h(0)] });
        p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 4), has: vec![] });
        let mut asked = Vec::new();
        let mut t = 0.0;
        while t < 30.0 {
            for o in p.plan(t) {
                asked.push(t);
                p.handle(t, Event::Failed { id: o.id, reason: FailReason::SourceMissing });
            }
            t += 0.1;
        }
        // Holds 0.5, 1, 2, 4, 8, 8, 8: eight or nine requests in 30 s, not one per round.
        assert!((7..=10).contains(&asked.len()), "asked at {asked:?}");
        let gaps: Vec<f64> = asked.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| (FIRST_HOLD_S - 1e-9..=MAX_HOLD_S + 0.2).contains(g)), "{gaps:?}");
        assert!(gaps.windows(2).all(|g| g[1] >= g[0] - 0.15), "the holds grow: {gaps:?}");
        p.handle(t, Event::NewManifest { chunks: vec![(h(0), 100)] });
        assert_eq!(p.plan(t).len(), 1, "a new manifest lifts the hold");
    }

    /// A delivery ends the record: the next miss of that chunk holds it only briefly again.
    #[test]
    fn a_delivery_resets_the_hold() {
        let mut p = Planner::new(10);
        p.handle(0.0, Event::NewManifest { chunks: vec![(h(0), 100)] });
        p.handle(0.0, Event::Join { node: 0, config: cfg(true, 4, 0), has: vec![h(0)] });
        p.handle(0.0, Event::Join { node: 1, config: cfg(false, 1, 4), has: vec![] });
        p.handle(0.0, Event::Join { node: 2, config: cfg(false, 1, 4), has: vec![] });
        let mut t = 0.0;
        let mut missed = 0;
        while missed < 3 {
            for o in p.plan(t) {
                if o.to == 1 {
                    p.handle(t, Event::Failed { id: o.id, reason: FailReason::SourceMissing });
                    missed += 1;
                } else {
                    p.handle(t, Event::Failed { id: o.id, reason: FailReason::Cancelled });
                }
            }
            t += 0.1;
        }
        // Held for 2 s now; a delivery from the master of that chunk clears it.
        let o = loop {
            t += 0.1;
            if let Some(o) = p.plan(t).into_iter().next() {
                break o;
            }
        };
        p.handle(t, Event::Finished { id: o.id });
        assert!(!p.misses.is_held(0, 0));
        assert!(p.misses.records.is_empty());
    }
}
