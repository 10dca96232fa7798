//! Distribution planner: decides which node fetches which chunk from whom.
//!
//! TEMPORARY FALLBACK written on the `sync` branch so the engines can run end to end before the
//! planner issue's real planner lands; it has the same API (`Planner::new`, `handle`, `plan`,
//! `check_timeouts`, `is_complete`) and is replaced wholesale by that branch's `src/planner/`.
//! Strategy here: greedy, rarest chunk first, peers preferred over the master, sources that
//! sent bad data excluded, no duplicate (chunk, destination) orders, slots respected.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::manifest::ChunkHash;

pub type NodeId = u32;
pub type TransferId = u64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    pub is_master: bool,
    pub upload_slots: u32,
    pub download_slots: u32,
    pub max_upload_bps: Option<f64>,
    pub max_download_bps: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: TransferId,
    pub chunk: ChunkHash,
    pub from: NodeId,
    pub to: NodeId,
    pub size: u64,
    pub min_rate_bps: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    Stalled,
    TooSlow,
    BadData,
    SourceMissing,
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Join { node: NodeId, config: NodeConfig, has: Vec<ChunkHash> },
    Leave { node: NodeId },
    Have { node: NodeId, chunks: Vec<ChunkHash> },
    Lost { node: NodeId, chunks: Vec<ChunkHash> },
    Progress { id: TransferId, bytes_done: u64 },
    Finished { id: TransferId },
    Failed { id: TransferId, reason: FailReason },
    NewManifest { chunks: Vec<(ChunkHash, u64)> },
}

struct Node {
    cfg: NodeConfig,
    has: HashSet<ChunkHash>,
    incoming: HashSet<ChunkHash>,
    up: u32,
    down: u32,
    bad: u32,
}

struct Transfer {
    order: Order,
    last_progress: f64,
    bytes: u64,
}

pub struct Planner {
    nodes: HashMap<NodeId, Node>,
    chunks: Vec<(ChunkHash, u64)>,
    transfers: HashMap<TransferId, Transfer>,
    next_id: TransferId,
}

impl Planner {
    pub fn new(_seed: u64) -> Self {
        Planner { nodes: HashMap::new(), chunks: Vec::new(), transfers: HashMap::new(), next_id: 1 }
    }

    fn release(&mut self, id: TransferId) -> Option<Transfer> {
        let t = self.transfers.remove(&id)?;
        if let Some(n) = self.nodes.get_mut(&t.order.from) {
            n.up = n.up.saturating_sub(1);
        }
        if let Some(n) = self.nodes.get_mut(&t.order.to) {
            n.down = n.down.saturating_sub(1);
            n.incoming.remove(&t.order.chunk);
        }
        Some(t)
    }

    pub fn handle(&mut self, now: f64, ev: Event) {
        match ev {
            Event::Join { node, config, has } => {
                self.leave(node);
                let has = has.into_iter().collect();
                self.nodes.insert(node, Node { cfg: config, has, incoming: HashSet::new(), up: 0, down: 0, bad: 0 });
            }
            Event::Leave { node } => self.leave(node),
            Event::Have { node, chunks } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.has.extend(chunks);
                }
            }
            Event::Lost { node, chunks } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    for c in &chunks {
                        n.has.remove(c);
                    }
                }
                let ids: Vec<_> = self
                    .transfers
                    .iter()
                    .filter(|(_, t)| t.order.from == node && chunks.contains(&t.order.chunk))
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.release(id);
                }
            }
            Event::Progress { id, bytes_done } => {
                if let Some(t) = self.transfers.get_mut(&id) {
                    if bytes_done > t.bytes {
                        t.bytes = bytes_done;
                        t.last_progress = now;
                    }
                }
            }
            Event::Finished { id } => {
                if let Some(t) = self.release(id) {
                    if let Some(n) = self.nodes.get_mut(&t.order.to) {
                        n.has.insert(t.order.chunk);
                    }
                }
            }
            Event::Failed { id, reason } => {
                if let Some(t) = self.release(id) {
                    if let Some(n) = self.nodes.get_mut(&t.order.from) {
                        match reason {
                            FailReason::BadData => n.bad += 1,
                            FailReason::SourceMissing => {
                                n.has.remove(&t.order.chunk);
                            }
                            _ => {}
                        }
                    }
                }
            }
            Event::NewManifest { chunks } => {
                let set: HashSet<ChunkHash> = chunks.iter().map(|c| c.0).collect();
                let gone: Vec<_> = self.transfers.iter().filter(|(_, t)| !set.contains(&t.order.chunk)).map(|(id, _)| *id).collect();
                for id in gone {
                    self.release(id);
                }
                self.chunks = chunks;
            }
        }
    }

    fn leave(&mut self, node: NodeId) {
        let ids: Vec<_> = self.transfers.iter().filter(|(_, t)| t.order.from == node || t.order.to == node).map(|(id, _)| *id).collect();
        for id in ids {
            self.release(id);
        }
        self.nodes.remove(&node);
    }

    pub fn is_complete(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| self.chunks.iter().all(|(h, _)| n.has.contains(h)))
    }

    pub fn plan(&mut self, now: f64) -> Vec<Order> {
        let mut orders = Vec::new();
        let mut rarity: Vec<(usize, ChunkHash, u64)> =
            self.chunks.iter().map(|(h, s)| (self.nodes.values().filter(|n| n.has.contains(h)).count(), *h, *s)).collect();
        rarity.sort();
        let mut ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        ids.sort();
        for to in ids {
            for &(_, chunk, size) in &rarity {
                let n = &self.nodes[&to];
                if n.cfg.is_master || n.down >= n.cfg.download_slots {
                    break;
                }
                if n.has.contains(&chunk) || n.incoming.contains(&chunk) {
                    continue;
                }
                let mut best: Option<(u32, u32, NodeId)> = None;
                for (&id, s) in &self.nodes {
                    if id == to || s.up >= s.cfg.upload_slots || !s.has.contains(&chunk) {
                        continue;
                    }
                    let key = (s.bad, if s.cfg.is_master { 1 } else { 0 }, id);
                    if best.is_none_or(|b| key < b) {
                        best = Some(key);
                    }
                }
                let Some((bad, _, from)) = best else { continue };
                if bad > 0 && self.nodes.values().any(|s| s.bad == 0 && s.has.contains(&chunk) && s.cfg.upload_slots > 0) {
                    continue; // wait for a trustworthy source
                }
                let id = self.next_id;
                self.next_id += 1;
                let order = Order { id, chunk, from, to, size, min_rate_bps: 0.0 };
                self.nodes.get_mut(&from).map(|s| s.up += 1);
                if let Some(d) = self.nodes.get_mut(&to) {
                    d.down += 1;
                    d.incoming.insert(chunk);
                }
                self.transfers.insert(id, Transfer { order: order.clone(), last_progress: now, bytes: 0 });
                orders.push(order);
            }
        }
        orders
    }

    pub fn check_timeouts(&mut self, now: f64) -> Vec<TransferId> {
        let ids: Vec<_> = self.transfers.iter().filter(|(_, t)| now - t.last_progress > 30.0).map(|(id, _)| *id).collect();
        for id in &ids {
            self.release(*id);
        }
        ids
    }
}
