//! The chunk maps and byte counts of the master's status rows, rebuilt only where something
//! changed.
//!
//! A snapshot every 300 ms used to rebuild every peer's map from the planner (O(peers x
//! chunks): at 1000 peers and a million chunks, a gigabyte of cells and 10^9 hash lookups per
//! snapshot). Now the coordinator marks the nodes an event or an order touched ([`Maps::touch`])
//! and a snapshot rebuilds only those; a quiet swarm costs O(peers) per snapshot. Above
//! [`MAX_CELLS`] unique chunks a map is bucketed ([`Planner::node_map`]): each cell stands for
//! an equal run of chunks and reads "has" when all are held, "incoming" when some are held or
//! on their way, "missing" otherwise. Up to that size a map keeps one cell per unique chunk in
//! the manifest's hash order, as before.

use std::collections::{HashMap, HashSet};

use super::ManifestState;
use crate::manifest::ChunkHash;
use crate::planner::{NodeId, Planner};
use crate::status::{CELL_HAS, CELL_INCOMING, CELL_MISSING};

/// Most cells in one node's map (a status page cannot show more per row anyway).
pub const MAX_CELLS: usize = 4096;

/// Cells of a map over `cur`.
pub fn cells(cur: &ManifestState) -> usize {
    cur.unique.len().min(MAX_CELLS)
}

/// Each node's last map and held bytes, and the nodes whose ones are stale.
#[derive(Default)]
pub struct Maps {
    rows: HashMap<NodeId, (Vec<u8>, u64)>,
    dirty: HashSet<NodeId>,
}

impl Maps {
    /// Something about these nodes' chunks changed (held, lost, ordered, ended).
    pub fn touch(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        self.dirty.extend(nodes);
    }

    /// A new manifest: every map is stale.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.dirty.clear();
    }

    pub fn remove(&mut self, node: NodeId) {
        self.rows.remove(&node);
        self.dirty.remove(&node);
    }

    /// The node's map and held bytes over `cur`, rebuilt if stale; `inc` are the chunks on
    /// their way to it (used by the exact map only: the bucketed one reads the planner's).
    pub fn row(&mut self, p: &Planner, id: NodeId, cur: &ManifestState, inc: &[ChunkHash]) -> (Vec<u8>, u64) {
        if self.dirty.remove(&id) || !self.rows.contains_key(&id) {
            let row = if cur.unique.len() <= MAX_CELLS { exact(p, id, cur, inc) } else { bucketed(p, id) };
            self.rows.insert(id, row);
        }
        self.rows.get(&id).cloned().unwrap_or_default()
    }
}

/// One cell per unique chunk, in `cur`'s hash order.
fn exact(p: &Planner, id: NodeId, cur: &ManifestState, inc: &[ChunkHash]) -> (Vec<u8>, u64) {
    let mut map = vec![CELL_MISSING; cur.unique.len()];
    let mut done = 0;
    for h in p.node_chunks(id) {
        if let Some(i) = cur.position(&h) {
            map[i] = CELL_HAS;
            done += cur.unique[i].1;
        }
    }
    for h in inc {
        if let Some(i) = cur.position(h) {
            if map[i] == CELL_MISSING {
                map[i] = CELL_INCOMING;
            }
        }
    }
    (map, done)
}

/// [`MAX_CELLS`] cells over runs of chunks, from the planner's bit sets.
fn bucketed(p: &Planner, id: NodeId) -> (Vec<u8>, u64) {
    let Some((cells, done)) = p.node_map(id, MAX_CELLS) else { return (Vec::new(), 0) };
    let map = cells
        .iter()
        .map(|c| match c {
            c if c.has == c.chunks => CELL_HAS,
            c if c.has > 0 || c.incoming > 0 => CELL_INCOMING,
            _ => CELL_MISSING,
        })
        .collect();
    (map, done)
}
