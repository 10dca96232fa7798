//! Compact views of a [`Snapshot`] for the page (SSE) and for `/api/status?maps=…`.
//!
//! A master snapshot of 500 nodes x 10,000 chunks holds 5 MB of chunk maps; as JSON arrays that
//! would be ~10 MB per update. The views therefore pack each map 2 bits per cell (base64, ~3.4 KB
//! per node at 10,000 chunks), and the SSE view sends a node's map only when it changed since
//! that client last received it ([`MapMemory`]).
//!
//! The views embed a clone of the snapshot (with maps emptied) through `#[serde(flatten)]`, so
//! every field the engines add to [`Snapshot`] or [`NodeStatus`] reaches the page and the API
//! without changes here.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use serde::Serialize;

use crate::status::{NodeState, NodeStatus, Snapshot};

/// Events sent to the page (the newest ones); the snapshot holds up to 100.
const PAGE_EVENTS: usize = 50;

/// Pack cells (`CELL_*`, values 0..=3) 4 per byte, cell `i` in bits `2*(i%4)..` of byte `i/4`,
/// then base64 (standard alphabet, padded) so the browser decodes it with `atob`.
pub fn pack_map(cells: &[u8]) -> String {
    let mut packed = vec![0u8; cells.len().div_ceil(4)];
    for (i, &c) in cells.iter().enumerate() {
        packed[i / 4] |= (c & 3) << ((i % 4) * 2);
    }
    base64::engine::general_purpose::STANDARD.encode(packed)
}

/// Inverse of [`pack_map`] (tests and scripts); `None` if `s` is not valid base64.
pub fn unpack_map(s: &str, cells: usize) -> Option<Vec<u8>> {
    let packed = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if packed.len() < cells.div_ceil(4) {
        return None;
    }
    Some((0..cells).map(|i| (packed[i / 4] >> ((i % 4) * 2)) & 3).collect())
}

fn map_digest(cells: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    cells.hash(&mut h);
    h.finish()
}

/// Per-client memory of which chunk map (by digest) each node id was last sent with.
#[derive(Debug, Default)]
pub struct MapMemory {
    sent: HashMap<u32, u64>,
}

/// A node as the page sees it.
#[derive(Debug, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: NodeStatus,
    /// Cells in this node's chunk map.
    pub chunks: usize,
    /// Packed map ([`pack_map`]), or `null` when unchanged since this client's previous message.
    pub map: Option<String>,
    /// Syncing much slower than its peers (derived here; see [`slow_nodes`]).
    pub slow: bool,
}

/// One SSE message: the snapshot's fields, with `nodes` as [`NodeView`]s and two extras:
/// `history` (`[unix_time, aggregate_download_bps, master_or_own_upload_bps]` points newer than
/// the client's previous message) and `version`.
pub fn page_view(
    mut snap: Snapshot,
    mem: &mut MapMemory,
    history: Vec<[f64; 3]>,
) -> serde_json::Result<serde_json::Value> {
    let slow = slow_nodes(&snap.nodes);
    let manifest_salt = snap.manifest_id.rotate_left(17);
    let mut nodes = Vec::with_capacity(snap.nodes.len());
    for (mut node, slow) in std::mem::take(&mut snap.nodes).into_iter().zip(slow) {
        let cells = std::mem::take(&mut node.chunk_map);
        let d = map_digest(&cells) ^ manifest_salt;
        let map = if mem.sent.get(&node.id) == Some(&d) {
            None
        } else {
            mem.sent.insert(node.id, d);
            Some(pack_map(&cells))
        };
        nodes.push(NodeView { node, chunks: cells.len(), map, slow });
    }
    // Nodes that left are forgotten so a rejoin under the same id gets its map resent.
    mem.sent.retain(|id, _| nodes.iter().any(|n| n.node.id == *id));
    let skip = snap.events.len().saturating_sub(PAGE_EVENTS);
    snap.events.drain(..skip);
    let mut v = serde_json::to_value(&snap)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("nodes".into(), serde_json::to_value(&nodes)?);
        o.insert("history".into(), serde_json::to_value(&history)?);
        o.insert("version".into(), crate::VERSION.into());
    }
    Ok(v)
}

/// A node of `/api/status?maps=packed|none`: `chunk_map` is `[]`, `chunks` gives the cell count
/// and `chunk_map_packed` the [`pack_map`] encoding (packed only).
#[derive(Debug, Serialize)]
pub struct ApiNode {
    #[serde(flatten)]
    pub node: NodeStatus,
    pub chunks: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_map_packed: Option<String>,
}

/// `/api/status?maps=packed|none`: the snapshot with each node's map packed or omitted.
pub fn api_status(mut snap: Snapshot, packed: bool) -> serde_json::Result<serde_json::Value> {
    let nodes: Vec<ApiNode> = std::mem::take(&mut snap.nodes)
        .into_iter()
        .map(|mut node| {
            let cells = std::mem::take(&mut node.chunk_map);
            ApiNode { chunk_map_packed: packed.then(|| pack_map(&cells)), chunks: cells.len(), node }
        })
        .collect();
    let mut v = serde_json::to_value(&snap)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("nodes".into(), serde_json::to_value(&nodes)?);
    }
    Ok(v)
}

/// Flag nodes that are syncing at under a quarter of the median download rate of the syncing
/// nodes (only when there are at least three, so one fast pair does not brand the other slow).
pub fn slow_nodes(nodes: &[NodeStatus]) -> Vec<bool> {
    let syncing = |n: &NodeStatus| !n.is_master && n.state == NodeState::Syncing && n.bytes_done < n.bytes_total;
    let mut rates: Vec<f64> = nodes.iter().filter(|n| syncing(n)).map(|n| n.download_bps).collect();
    if rates.len() < 3 {
        return vec![false; nodes.len()];
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    nodes.iter().map(|n| syncing(n) && median > 0.0 && n.download_bps < median / 4.0).collect()
}
