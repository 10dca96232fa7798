//! The coordinator's status snapshot: the master's row, one row per peer with its chunk map,
//! and the swarm totals the CLI, web page and GUI show.
//!
//! Part of the coordinator (`coord/mod.rs` publishes a snapshot every third tick). Rows are
//! read from the planner's view of who holds what, so they never disagree with what it plans.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{Coord, PeerNode, MASTER};
use crate::manifest::ChunkHash;
use crate::master::ManifestState;
use crate::planner::NodeId;
use crate::status::{Counters, NodeState, NodeStatus, Snapshot, CELL_HAS};

impl Coord {
    pub(super) fn snapshot(&mut self) -> Snapshot {
        let mut s = self.snapshot_header();
        let Some(cur) = self.current.clone() else {
            let (done, total) = self.indexing.unwrap_or((0, 0));
            s.state = match &self.index_error {
                Some(e) => NodeState::Error { message: e.clone() },
                None => NodeState::Indexing { done, total },
            };
            return s;
        };
        s.manifest_id = cur.id;
        let (files, folder_bytes, unique_bytes) = self.sizes_of(&cur);
        (s.files_total, s.folder_bytes) = (files, folder_bytes);
        s.nodes.push(NodeStatus {
            id: MASTER,
            name: self.shared.cfg.name.clone(),
            address: s.listen.clone(),
            is_master: true,
            state: NodeState::UpToDate,
            bytes_done: unique_bytes,
            bytes_total: unique_bytes,
            upload_bps: s.upload_bps,
            active_uploads: self.server.active_uploads(),
            bytes_uploaded: self.master_uploaded,
            chunk_map: vec![CELL_HAS; crate::master::maps::cells(&cur)],
            ..Default::default()
        });
        let mut all_done = true;
        for (p, complete) in self.peer_statuses(&cur, unique_bytes) {
            all_done &= complete;
            s.bytes_total += p.bytes_total;
            s.bytes_done += p.bytes_done;
            s.download_bps += p.download_bps;
            s.nodes.push(p);
        }
        let agg = self.agg_meter.update(s.bytes_done);
        if agg > 0.0 && s.bytes_done < s.bytes_total {
            s.eta_secs = Some((s.bytes_total - s.bytes_done) as f64 / agg);
        }
        s.state = match &self.index_error {
            Some(e) => NodeState::Error { message: e.clone() },
            None if all_done && self.upstream_done => NodeState::UpToDate,
            None => NodeState::Syncing,
        };
        s
    }

    /// Files, folder bytes and unique-chunk bytes of `cur`, summed once per manifest: at a
    /// million files the sums cost milliseconds, and a snapshot is published ~3 times a second.
    fn sizes_of(&mut self, cur: &ManifestState) -> (u64, u64, u64) {
        match self.sizes {
            Some((id, sizes)) if id == cur.id => sizes,
            _ => {
                let sizes = (cur.manifest.files.len() as u64, cur.manifest.total_bytes(), cur.unique_bytes());
                self.sizes = Some((cur.id, sizes));
                sizes
            }
        }
    }

    /// The part of a snapshot that does not depend on a manifest: identity, counters, events.
    fn snapshot_header(&mut self) -> Snapshot {
        let cfg = &self.shared.cfg;
        let mut s = Snapshot::new(crate::status::Role::Master, cfg.name.clone(), cfg.source_dir.clone());
        s.listen = self.shared.listen.to_string();
        s.open = cfg.security.is_open();
        s.paused = self.shared.paused.load(Ordering::Relaxed);
        let stats = &self.server.stats;
        s.counters = Counters {
            chunk_gets_served: stats.gets_served.load(Ordering::Relaxed),
            bytes_uploaded: stats.bytes_uploaded.load(Ordering::Relaxed),
            verify_failures: self.verify_failures,
            planner_rounds: self.rounds.0,
            planner_round_seconds: self.rounds.1,
            index_scans: self.index_scans,
            ..Default::default()
        };
        s.index_fault = self.index_error.clone();
        s.shrink_held = self.shrink_held.clone();
        s.upload_bps = self.up_meter.update(s.counters.bytes_uploaded);
        s.master_uploaded = self.master_uploaded;
        s.peers_uploaded = self.peers_uploaded;
        s.events = self.events.to_vec();
        s
    }

    /// Every peer's row, by node id, with its chunk map over `cur`, and whether the planner
    /// counts it complete (an erroring peer can still be complete).
    fn peer_statuses(&mut self, cur: &ManifestState, unique_bytes: u64) -> Vec<(NodeStatus, bool)> {
        let mut incoming: HashMap<NodeId, Vec<ChunkHash>> = HashMap::new();
        let mut ups: HashMap<NodeId, u32> = HashMap::new();
        for o in self.planner.orders().filter(|o| cur.has_chunk(&o.chunk)) {
            incoming.entry(o.to).or_default().push(o.chunk);
            *ups.entry(o.from).or_default() += 1;
        }
        let mut ids: Vec<_> = self.nodes.keys().copied().collect();
        ids.sort();
        let rows: Vec<_> = ids
            .iter()
            .map(|id| {
                let inc = incoming.get(id).map(|v| v.as_slice()).unwrap_or(&[]);
                self.maps.row(&self.planner, *id, cur, inc)
            })
            .collect();
        ids.into_iter()
            .zip(rows)
            .map(|(id, row)| {
                let up = ups.get(&id).copied().unwrap_or(0);
                let down = incoming.get(&id).map_or(0, |v| v.len() as u32);
                self.peer_status(id, &self.nodes[&id], row, (down, up), unique_bytes)
            })
            .collect()
    }

    /// One peer's row; `row` is its chunk map and held bytes ([`crate::master::maps`]), then the
    /// downloads it receives and the uploads it serves.
    fn peer_status(
        &self,
        id: NodeId,
        n: &PeerNode,
        (map, done): (Vec<u8>, u64),
        (downs, ups): (u32, u32),
        unique_bytes: u64,
    ) -> (NodeStatus, bool) {
        let complete = n.in_planner && self.planner.is_complete(id);
        let state = match (&n.error, complete, n.in_planner) {
            (Some(e), _, _) => NodeState::Error { message: e.clone() },
            (None, true, _) => NodeState::UpToDate,
            (None, false, false) => NodeState::Indexing { done: 0, total: 0 },
            (None, false, true) => NodeState::Syncing,
        };
        let status = NodeStatus {
            id,
            name: n.hello.name.clone(),
            address: n.address.clone(),
            is_master: false,
            state,
            bytes_done: done,
            bytes_total: unique_bytes,
            download_bps: n.download_bps,
            upload_bps: n.upload_bps,
            active_downloads: downs,
            active_uploads: ups,
            bytes_uploaded: n.bytes_uploaded,
            chunk_map: map,
        };
        (status, complete)
    }
}
