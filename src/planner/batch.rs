//! Small-chunk batching: one order carries a run of small chunks from one source to one
//! destination.
//!
//! Why: every chunk is otherwise a planner order, a control message each way, an HTTP request
//! and a wake-up of a download slot. For a 1 KiB file that fixed cost is ~100x the transfer
//! itself; measured on loopback, 200,000 files of 0-2 KiB ran at 610 files/s. Chunking and
//! dedup stay per file (a chunk is still one file's content, verified on its own); only the
//! *work unit* grows: a batch of up to [`BATCH_BYTES`] takes one download slot and one upload
//! slot like any transfer, so the planner's slot accounting, rates and stall rules apply to it
//! unchanged, and its rate is measured over ~1 MiB instead of 1 KiB.
//!
//! Rules (see [`super::Planner::batch_more`]): only chunks of at most
//! [`BATCH_CHUNK_MAX`] join a batch, and only if the batch's first chunk is small too (a big
//! chunk is a work unit by itself); every batched chunk satisfies what an order's chunk must
//! (in the manifest, held by the source, neither held by nor in flight to the destination),
//! and a master's super-seeding batch takes only fresh chunks (held by no peer, in flight
//! nowhere), so injection still spreads distinct data. Candidates are taken in dense-index
//! order from the first chunk on (manifest order: files of one folder sit together), and the
//! scan is bounded by [`SCAN_WORDS`] words so a round stays cheap however sparse the useful
//! chunks are.

use super::Planner;

/// A batch stops growing at this many bytes (the planner's work unit for small files).
pub const BATCH_BYTES: u64 = 1 << 20;
/// Chunks up to this size are batched.
pub const BATCH_CHUNK_MAX: u64 = 64 << 10;
/// Most chunks in one order (bounds the order message and the batch request).
pub const BATCH_MAX: usize = 1024;
/// Bit-set words (64 chunks each) a batch scan looks at, at most.
const SCAN_WORDS: usize = 1024;

impl Planner {
    /// More chunks for an order of `c` from `from` to `to` (none when batching is off or `c`
    /// is big). `fresh_only`: a master's super-seeding order takes fresh chunks only.
    pub(crate) fn batch_more(&self, c: u32, from: usize, to: usize, fresh_only: bool) -> Vec<u32> {
        let t = &self.tuning;
        let first = self.sizes[c as usize];
        if t.batch_bytes == 0 || t.batch_max <= 1 || first > t.batch_chunk_max || first >= t.batch_bytes {
            return Vec::new();
        }
        let (Some(_), Some(d)) = (self.nodes[from].as_ref(), self.nodes[to].as_ref()) else { return Vec::new() };
        let words = self.manifest.word_len();
        let mut total = first;
        let mut out = Vec::new();
        let start = c as usize / 64;
        for k in 0..words.min(SCAN_WORDS) {
            let w = (start + k) % words;
            let mut x = self.servable_word(from, w) & !d.has.word(w) & !d.incoming.word(w) & self.manifest.word(w);
            if fresh_only {
                x &= self.fresh.word(w);
            }
            while x != 0 {
                let b = w as u32 * 64 + x.trailing_zeros();
                x &= x - 1;
                let size = self.sizes[b as usize];
                if b == c || size > t.batch_chunk_max || total + size > t.batch_bytes {
                    continue;
                }
                total += size;
                out.push(b);
                if out.len() + 1 >= t.batch_max || total >= t.batch_bytes {
                    return out;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::planner::{Event, NodeConfig, Planner, Policy, Tuning};

    use crate::planner::tests::h;

    /// A master with `sizes` chunks and one peer (8 download slots) that holds `held`.
    fn swarm(tuning: Tuning, sizes: &[u64], held: &[u32]) -> Planner {
        let mut p = Planner::with_options(7, Policy::Swarm, tuning);
        let chunks: Vec<_> = sizes.iter().enumerate().map(|(i, &s)| (h(i as u32), s)).collect();
        let all: Vec<_> = chunks.iter().map(|c| c.0).collect();
        p.handle(0.0, Event::NewManifest { chunks });
        p.handle(0.0, Event::Join { node: 0, config: NodeConfig::new(true, 8, 0), has: all });
        let has = held.iter().map(|&i| h(i)).collect();
        p.handle(0.0, Event::Join { node: 1, config: NodeConfig::new(false, 8, 8), has });
        p
    }

    #[test]
    fn small_chunks_travel_in_batches_of_at_most_the_work_unit() {
        let sizes = vec![1000u64; 5000];
        let mut p = swarm(Tuning::batched(), &sizes, &[]);
        let orders = p.plan(0.0);
        assert!(!orders.is_empty());
        let mut seen = std::collections::HashSet::new();
        for o in &orders {
            assert!(o.total_size() <= super::BATCH_BYTES, "{} bytes in one order", o.total_size());
            assert!(o.batch.len() < super::BATCH_MAX);
            assert!(o.chunks().all(|c| seen.insert(c)), "a chunk in two orders");
        }
        assert!(orders[0].batch.len() >= 1000, "a 1 MiB unit of 1 KB chunks: {}", orders[0].batch.len());
        assert_eq!(seen.len(), 5000, "8 slots of ~1 MiB carry all 5 MB at once");
        // Finishing a batch gives the peer every chunk in it.
        let first = orders[0].clone();
        p.handle(0.1, Event::Finished { id: first.id });
        assert!(first.chunks().all(|c| p.node_has(1, &c)));
    }

    #[test]
    fn big_chunks_held_chunks_and_batching_off_stay_single() {
        let mut sizes = vec![1000u64; 100];
        sizes[0] = 1 << 20; // a big chunk is its own unit
        sizes[50] = 100 << 10; // too big to join a batch
        let mut p = swarm(Tuning::batched(), &sizes, &[1, 2, 3]);
        let orders = p.plan(0.0);
        let big = orders.iter().find(|o| o.chunk == h(0)).expect("the big chunk is ordered");
        assert!(big.batch.is_empty());
        for o in &orders {
            assert!(o.chunks().all(|c| c != h(1) && c != h(2) && c != h(3)), "held chunks are never ordered");
            assert!(o.batch.iter().all(|b| b.0 != h(50)), "a 100 KiB chunk does not join a batch");
        }
        let mut off = swarm(Tuning::default(), &[1000; 100], &[]);
        assert!(off.plan(0.0).iter().all(|o| o.batch.is_empty()), "off by default");
    }

    #[test]
    fn a_partial_batch_credits_the_good_chunks_and_re_orders_the_bad_one() {
        let mut p = swarm(Tuning::batched(), &[1000; 10], &[]);
        let orders = p.plan(0.0);
        assert_eq!(orders.len(), 1, "ten small chunks: one order");
        let o = orders[0].clone();
        let bad = o.batch[3].0;
        let reason = crate::planner::FailReason::BadData;
        p.handle(0.1, Event::FinishedExcept { id: o.id, failed: vec![bad], reason });
        assert_eq!(p.active_transfers(), 0);
        assert!(o.chunks().filter(|&c| c != bad).all(|c| p.node_has(1, &c)));
        assert!(!p.node_has(1, &bad));
        let again = p.plan(0.2);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].chunks().collect::<Vec<_>>(), vec![bad], "only the bad chunk is fetched again");
        assert_eq!(p.stats().failed, 1, "the source's failure is counted");
    }
}
