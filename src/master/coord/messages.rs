//! How each coordinator input changes the swarm: joins, departures, new manifests, index
//! progress and the peers' reports.
//!
//! Part of the coordinator (`coord/mod.rs` owns the state and the run loop, which hands every
//! [`CoordMsg`] to [`Coord::on_msg`] here). Peer reports are checked against the orders the
//! planner holds, so a stale or foreign report changes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Coord, CoordMsg, PeerNode, MASTER, MORE_COMING};
use crate::manifest::ChunkHash;
use crate::master::ManifestState;
use crate::planner::{Event, FailReason, NodeConfig, NodeId, Order, TransferId};
use crate::protocol::{have_bits_indices, FailKind, MasterMsg, PeerMsg};
use crate::status::NodeState;

impl Coord {
    pub(super) fn on_msg(&mut self, m: CoordMsg) {
        match m {
            CoordMsg::Join { hello, remote, tx, reply } => {
                let id = self.next_node;
                self.next_node += 1;
                let host = hello.advertise_host.clone().unwrap_or_else(|| remote.ip().to_string());
                let address = crate::transport::host_port(&host, hello.port);
                self.events.push(format!("{} joined from {remote} (serves at {address})", hello.name));
                match &self.current {
                    Some(cur) => {
                        let _ = tx.send(crate::master::outbox::manifest_msg(cur, None));
                        if !self.upstream_done {
                            let _ = tx.send(MasterMsg::Wait { message: MORE_COMING.into() });
                        }
                    }
                    None => {
                        let _ = tx.send(MasterMsg::Wait { message: "the master is still indexing its folder".into() });
                    }
                }
                self.nodes.insert(
                    id,
                    PeerNode {
                        url: crate::transport::chunk_base(&address),
                        address,
                        hello,
                        tx,
                        in_planner: false,
                        download_bps: 0.0,
                        upload_bps: 0.0,
                        bytes_uploaded: 0,
                        error: None,
                        first_sent: self.current.as_ref().map(|c| c.id),
                        sent: self.current.as_ref().map(|c| c.id),
                    },
                );
                let _ = reply.send(id);
            }
            CoordMsg::Left { node } => self.on_left(node),
            CoordMsg::Manifest(st) => self.on_manifest(st),
            CoordMsg::Indexing { done, total } => {
                if self.current.is_none() {
                    self.indexing = Some((done, total));
                }
            }
            CoordMsg::IndexError { message, shrink } => {
                if self.index_error.as_ref() != Some(&message) {
                    self.events.push(format!("indexing failed: {message}"));
                }
                self.index_error = Some(message);
                self.shrink_held = shrink;
            }
            CoordMsg::IndexOk => {
                self.shrink_held = None;
                if self.index_error.take().is_some() {
                    self.events.push("the source folder reads as before again");
                }
            }
            CoordMsg::Scanned => self.index_scans += 1,
            CoordMsg::Note(n) => self.events.push(n),
            CoordMsg::Peer { node, msg } => self.on_peer(node, msg),
        }
    }

    /// A peer's connection ended (closed, or it stopped answering pings): its transfers are
    /// released and the downloads it was serving are cancelled at their destinations, so they
    /// are re-planned now rather than when each destination's fetch times out.
    fn on_left(&mut self, node: NodeId) {
        let Some(n) = self.nodes.remove(&node) else { return };
        self.events.push(format!("{} left", n.hello.name));
        self.maps.remove(node);
        let serving: Vec<Order> = self.planner.orders().filter(|o| o.from == node).collect();
        self.maps.touch(serving.iter().map(|o| o.to));
        for o in serving {
            if let Some(dst) = self.nodes.get(&o.to) {
                let _ = dst.tx.send(MasterMsg::Cancel { id: o.id });
            }
        }
        let now = self.now();
        self.planner.handle(now, Event::Leave { node });
    }

    fn on_manifest(&mut self, st: Arc<ManifestState>) {
        self.index_error = None;
        self.shrink_held = None;
        self.indexing = None;
        let now = self.now();
        self.events.push(format!(
            "manifest {}: {} files, {} bytes, {} unique chunks",
            st.id,
            st.manifest.files.len(),
            st.manifest.total_bytes(),
            st.unique.len()
        ));
        self.planner.handle(now, Event::NewManifest { chunks: st.unique.clone() });
        let all: Vec<ChunkHash> = st.unique.iter().map(|(h, _)| *h).collect();
        if self.master_in_planner {
            self.planner.handle(now, Event::Have { node: MASTER, chunks: all });
        } else {
            let config = NodeConfig {
                is_master: true,
                upload_slots: self.shared.cfg.upload_slots,
                download_slots: 0,
                max_upload_bps: self.shared.cfg.max_upload_bps.map(|b| b as f64),
                max_download_bps: None,
            };
            self.planner.handle(now, Event::Join { node: MASTER, config, has: all });
            self.master_in_planner = true;
        }
        self.maps.clear();
        // Kept for have-sets (as bits) of the manifest before, still on their way.
        self.previous = self.current.as_ref().map(|p| (p.id, p.unique.iter().map(|(h, _)| *h).collect()));
        for n in self.nodes.values_mut() {
            let _ = n.tx.send(crate::master::outbox::manifest_msg(&st, n.sent));
            n.sent = Some(st.id);
            n.first_sent = n.first_sent.or(n.sent);
            if !self.upstream_done {
                let _ = n.tx.send(MasterMsg::Wait { message: MORE_COMING.into() });
            }
        }
        self.current = Some(st);
    }

    /// A proxy's upstream leg finished or started fetching again: tell the downstream peers
    /// (the manifest again clears their wait; [`MORE_COMING`] sets it).
    pub(super) fn follow_upstream(&mut self) {
        let Some(up) = &self.shared.cfg.upstream else { return };
        let done = matches!(up.borrow().state, NodeState::UpToDate);
        if done == self.upstream_done {
            return;
        }
        self.upstream_done = done;
        let Some(cur) = &self.current else { return };
        for n in self.nodes.values_mut() {
            let msg = match done {
                true => crate::master::outbox::manifest_msg(cur, n.sent),
                false => MasterMsg::Wait { message: MORE_COMING.into() },
            };
            if done {
                n.sent = Some(cur.id);
            }
            let _ = n.tx.send(msg);
        }
    }

    fn fail_reason(kind: FailKind) -> FailReason {
        match kind {
            FailKind::BadData => FailReason::BadData,
            FailKind::TooSlow => FailReason::TooSlow,
            FailKind::Network => FailReason::SourceMissing,
            FailKind::Busy => FailReason::Busy,
            FailKind::Cancelled => FailReason::Cancelled,
            FailKind::LocalDisk => FailReason::LocalDisk,
        }
    }

    fn on_peer(&mut self, node: NodeId, msg: PeerMsg) {
        let now = self.now();
        // Peers report every 250 ms: the planner tells a stuck source from a frozen
        // destination by these, and releases a node that went quiet (planner::health).
        self.planner.handle(now, Event::Heard { node });
        let Some(cur) = self.current.clone() else { return };
        match msg {
            // A have-set for a manifest sent on this connection is the peer's latest word even if
            // a newer one is on its way: a peer brought up to date by a delta sends no new
            // have-set, only what it lost (see `peer::session`).
            PeerMsg::HaveAll { manifest_id, chunks } if self.sent_here(node, manifest_id, &cur) => {
                self.maps.touch([node]);
                let held: HashSet<ChunkHash> = chunks.into_iter().filter(|h| cur.has_chunk(h)).collect();
                self.on_have_all(now, node, held.into_iter().collect());
            }
            PeerMsg::HaveAll { .. } => {}
            PeerMsg::HaveBits { manifest_id, chunks, bits } if self.sent_here(node, manifest_id, &cur) => {
                self.on_have_bits(now, node, &cur, manifest_id, chunks, &bits);
            }
            PeerMsg::HaveBits { .. } => {}
            PeerMsg::Lost { chunks } => {
                let Some(n) = self.nodes.get(&node) else { return };
                if n.in_planner {
                    self.maps.touch([node]);
                    self.planner.handle(now, Event::Lost { node, chunks });
                }
            }
            PeerMsg::Progress { id, bytes_done } => {
                if self.owned_order(node, id).is_some() {
                    self.planner.handle(now, Event::Progress { id, bytes_done });
                }
            }
            PeerMsg::Finished { id } => self.on_finished(now, node, id),
            PeerMsg::Failed { id, reason, message } => self.on_failed(now, node, id, reason, &message),
            PeerMsg::FinishedExcept { id, failed, reason, message } => {
                tracing::debug!("transfer {id} to {node} arrived in part ({reason:?}): {message}");
                self.on_finished_except(now, node, id, failed, reason);
            }
            PeerMsg::Stats { download_bps, upload_bps, error } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.download_bps = download_bps.max(0.0);
                    n.upload_bps = upload_bps.max(0.0);
                    n.error = error.map(|e| e.chars().take(500).collect());
                }
            }
        }
    }

    /// Whether manifest `id` was sent to `node` on this connection (and is not from the future).
    fn sent_here(&self, node: NodeId, id: u64, cur: &ManifestState) -> bool {
        id <= cur.id && self.nodes.get(&node).and_then(|n| n.first_sent).is_some_and(|first| id >= first)
    }

    /// The order behind transfer `id` while it still counts. The planner keeps transfers of
    /// chunks that left the manifest until its next `check_timeouts` aborts them, but the peers
    /// cancel those themselves on the manifest change, so here they are already over.
    fn live_order(&self, id: TransferId) -> Option<Order> {
        let cur = self.current.as_ref()?;
        self.planner.order(id).filter(|o| cur.has_chunk(&o.chunk))
    }

    /// The live order `id` if `node` was ordered to fetch it (reports about anything else
    /// are stale or foreign and ignored).
    fn owned_order(&self, node: NodeId, id: TransferId) -> Option<Order> {
        self.live_order(id).filter(|o| o.to == node)
    }

    /// A have-set as bits over the unique chunks of manifest `id` (`PeerMsg::HaveBits`): read
    /// against the current manifest or the one before it (a peer that decoded a manifest while
    /// the next one was published). Older ones cannot be read any more: the peer gets the whole
    /// current manifest, which it answers with a fresh have-set. A set that does not fit its
    /// manifest is refused with an `Error` and changes nothing.
    fn on_have_bits(&mut self, now: f64, node: NodeId, cur: &ManifestState, id: u64, chunks: u64, bits: &[u8]) {
        let held = if id == cur.id {
            have_bits_indices(chunks, bits, cur.unique.len())
                .map(|ix| ix.into_iter().map(|i| cur.unique[i].0).collect())
        } else if let Some((_, prev)) = self.previous.as_ref().filter(|(p, _)| *p == id) {
            have_bits_indices(chunks, bits, prev.len())
                .map(|ix| ix.into_iter().map(|i| prev[i]).filter(|h| cur.has_chunk(h)).collect())
        } else {
            let Some(n) = self.nodes.get_mut(&node) else { return };
            tracing::debug!(
                "{} sent a have-set of manifest {id}, now {}: sending the whole manifest",
                n.hello.name,
                cur.id
            );
            let _ = n.tx.send(crate::master::outbox::manifest_msg(cur, None));
            n.sent = Some(cur.id);
            return;
        };
        match held {
            Ok(held) => {
                self.maps.touch([node]);
                self.on_have_all(now, node, held);
            }
            Err(e) => {
                if let Some(n) = self.nodes.get(&node) {
                    tracing::warn!("{} sent a have-set that does not fit manifest {id}: {e}", n.hello.name);
                    let _ = n.tx.send(MasterMsg::Error { message: format!("{e}; the have-set was ignored") });
                }
            }
        }
    }

    /// A peer's full have-set for the current manifest (distinct chunks of it): the first one
    /// makes it a planner node; later ones (after a rescan) become the difference as `Lost`
    /// and `Have`.
    fn on_have_all(&mut self, now: f64, node: NodeId, new: Vec<ChunkHash>) {
        let Some(n) = self.nodes.get_mut(&node) else { return };
        if !n.in_planner {
            n.in_planner = true;
            let h = &n.hello;
            let config = NodeConfig {
                is_master: false,
                upload_slots: h.upload_slots,
                download_slots: h.download_slots,
                max_upload_bps: h.max_upload_bps.map(|b| b as f64),
                max_download_bps: h.max_download_bps.map(|b| b as f64),
            };
            self.planner.handle(now, Event::Join { node, config, has: new });
        } else {
            let new: HashSet<ChunkHash> = new.into_iter().collect();
            let gained: Vec<_> = new.iter().filter(|h| !self.planner.node_has(node, h)).copied().collect();
            let lost: Vec<_> = self.planner.node_chunks(node).filter(|h| !new.contains(h)).collect();
            if !lost.is_empty() {
                self.planner.handle(now, Event::Lost { node, chunks: lost });
            }
            if !gained.is_empty() {
                self.planner.handle(now, Event::Have { node, chunks: gained });
            }
        }
    }

    /// An ordered transfer arrived: credit its source's upload and tell the planner.
    fn on_finished(&mut self, now: f64, node: NodeId, id: TransferId) {
        let Some(o) = self.owned_order(node, id) else { return };
        self.maps.touch([o.from, o.to]);
        self.credit_upload(o.from, o.total_size());
        self.planner.handle(now, Event::Finished { id });
    }

    fn credit_upload(&mut self, from: NodeId, bytes: u64) {
        if from == MASTER {
            self.master_uploaded += bytes;
        } else {
            self.peers_uploaded += bytes;
            if let Some(src) = self.nodes.get_mut(&from) {
                src.bytes_uploaded += bytes;
            }
        }
    }

    /// A batch arrived in part: credit what was used, count the failure against the source
    /// once, and (bad data from a peer) never order the rejected chunks from it again.
    fn on_finished_except(&mut self, now: f64, node: NodeId, id: TransferId, failed: Vec<ChunkHash>, reason: FailKind) {
        let Some(o) = self.owned_order(node, id) else { return self.count_late_rejection(node, reason) };
        self.maps.touch([o.from, o.to]);
        let failed: HashSet<ChunkHash> = failed.into_iter().collect();
        let chunks = std::iter::once((o.chunk, o.size)).chain(o.batch.iter().copied());
        let used: u64 = chunks.filter(|(h, _)| !failed.contains(h)).map(|c| c.1).sum();
        self.credit_upload(o.from, used);
        let failed: Vec<ChunkHash> = o.chunks().filter(|h| failed.contains(h)).collect();
        if reason == FailKind::BadData {
            self.verify_failures += 1;
            let src = if o.from == MASTER { "the master".to_string() } else { self.node_name(o.from) };
            let n = failed.len();
            self.events.push(format!("{} rejected {n} chunks of a batch from {src}", self.node_name(node)));
        }
        let lost = failed.clone();
        self.planner.handle(now, Event::FinishedExcept { id, failed, reason: Self::fail_reason(reason) });
        if o.from != MASTER && reason == FailKind::BadData {
            self.planner.handle(now, Event::Lost { node: o.from, chunks: lost });
        }
    }

    fn on_failed(&mut self, now: f64, node: NodeId, id: TransferId, reason: FailKind, message: &str) {
        let Some(o) = self.owned_order(node, id) else { return self.count_late_rejection(node, reason) };
        self.maps.touch([o.from, o.to]);
        if reason == FailKind::BadData {
            self.verify_failures += 1;
            let src = if o.from == MASTER { "the master".to_string() } else { self.node_name(o.from) };
            self.events.push(format!("{} rejected chunk {} from {src}: {message}", self.node_name(node), o.chunk));
        } else {
            tracing::debug!("transfer {id} to {node} failed ({reason:?}): {message}");
        }
        self.planner.handle(now, Event::Failed { id, reason: Self::fail_reason(reason) });
        // After Network the planner forgets the chunk at a peer source by itself (so the
        // source's next HaveAll announces it again); after BadData it only ranks the source
        // lower, so the engine also reports the chunk lost there and it is never ordered from
        // that source again. A master is never forgotten.
        if o.from != MASTER && reason == FailKind::BadData {
            self.planner.handle(now, Event::Lost { node: o.from, chunks: o.chunks().collect() });
        }
    }

    /// A rejection reported for an order the planner already let go (aborted as stuck, or
    /// replaced): nobody can be blamed any more, since the order named the source, but the
    /// verify failure happened and the status page counts it.
    fn count_late_rejection(&mut self, node: NodeId, reason: FailKind) {
        if reason == FailKind::BadData && self.nodes.contains_key(&node) {
            self.verify_failures += 1;
        }
    }

    fn node_name(&self, id: NodeId) -> String {
        self.nodes.get(&id).map(|n| n.hello.name.clone()).unwrap_or_else(|| format!("node {id}"))
    }
}
