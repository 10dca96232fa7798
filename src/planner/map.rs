//! Chunk maps for the status page, read from the planner's bit sets.
//!
//! A status row used to carry one cell per unique chunk, rebuilt per peer from hash lookups
//! every snapshot: O(peers x chunks), a gigabyte per snapshot at 1000 peers and a million
//! chunks. [`Planner::node_map`] instead counts, for runs of the current manifest's chunks in
//! the planner's own order, how many the node holds and how many are on their way, from the
//! bit-set words (popcounts; a run boundary inside a word costs at most 64 bit steps), so a
//! map of any resolution costs O(chunks / 64 + cells) per node.

use super::{NodeId, Planner};

/// One cell of a bucketed chunk map: a run of `chunks` consecutive manifest chunks (in the
/// planner's order), of which `has` are held and `incoming` (not held) are in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapCell {
    pub chunks: u32,
    pub has: u32,
    pub incoming: u32,
}

impl Planner {
    /// The node's chunk map in at most `cells` cells of equal runs over the current manifest,
    /// and the bytes of the manifest's chunks it holds; `None` for an unknown node.
    pub fn node_map(&self, node: NodeId, cells: usize) -> Option<(Vec<MapCell>, u64)> {
        let n = self.node(node)?;
        let total = self.manifest_count as usize;
        let per = total.div_ceil(cells.clamp(1, total.max(1))).max(1);
        let mut out = Vec::with_capacity(total.div_ceil(per));
        let mut cur = MapCell::default();
        let mut bytes = 0;
        for w in 0..self.manifest.word_len() {
            let m = self.manifest.word(w);
            if m == 0 {
                continue;
            }
            let has = n.has.word(w) & m;
            let inc = n.incoming.word(w) & m & !has;
            let mut held = has;
            while held != 0 {
                bytes += self.sizes[w * 64 + held.trailing_zeros() as usize];
                held &= held - 1;
            }
            if (m.count_ones() as usize) < per - cur.chunks as usize {
                cur.chunks += m.count_ones();
                cur.has += has.count_ones();
                cur.incoming += inc.count_ones();
                continue;
            }
            let mut bits = m;
            while bits != 0 {
                let b = bits & bits.wrapping_neg();
                bits ^= b;
                cur.chunks += 1;
                cur.has += u32::from(has & b != 0);
                cur.incoming += u32::from(inc & b != 0);
                if cur.chunks as usize == per {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
        if cur.chunks > 0 {
            out.push(cur);
        }
        Some((out, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ChunkHash;
    use crate::planner::{Event, NodeConfig};

    fn h(i: u32) -> ChunkHash {
        ChunkHash::of(&i.to_le_bytes())
    }

    #[test]
    fn cells_count_held_and_incoming_chunks_in_equal_runs() {
        let mut p = Planner::new(1);
        // An older manifest's chunks stay interned: they must not count in the new one.
        p.handle(0.0, Event::NewManifest { chunks: (0..50).map(|i| (h(i), 10)).collect() });
        p.handle(0.0, Event::NewManifest { chunks: (25..325).map(|i| (h(i), 10)).collect() });
        let cfg = NodeConfig::new(false, 1, 1);
        p.handle(0.0, Event::Join { node: 7, config: cfg, has: (25..125).map(h).collect() });
        let (map, bytes) = p.node_map(7, 30).unwrap();
        assert_eq!(bytes, 1000);
        assert_eq!(map.len(), 30);
        assert!(map.iter().all(|c| c.chunks == 10));
        assert_eq!(map.iter().map(|c| c.has).sum::<u32>(), 100);
        let exact = p.node_map(7, 1000).unwrap().0;
        assert_eq!(exact.len(), 300, "never more cells than chunks");
        assert_eq!(p.node_map(7, 7).unwrap().0.iter().map(|c| c.chunks).sum::<u32>(), 300);
        assert_eq!(p.node_map(7, 7).unwrap().0.len(), 7);
        assert!(p.node_map(8, 10).is_none());
        // A master joins with everything; one order to node 7 shows as incoming.
        let master = NodeConfig::new(true, 1, 0);
        p.handle(0.0, Event::Join { node: 0, config: master, has: (25..325).map(h).collect() });
        let orders = p.plan(0.0);
        assert_eq!(orders.len(), 1);
        let map = p.node_map(7, 1).unwrap().0;
        assert_eq!(map, vec![MapCell { chunks: 300, has: 100, incoming: 1 }]);
    }
}
