//! The coordinator: sole owner of the planner and the node table.
//!
//! Every input (joins, peer messages, departures, new manifests, index progress) arrives as a
//! [`CoordMsg`] on one channel, so swarm state changes in one place and in arrival order, with
//! no locks. Peer messages are validated against that state: reports about transfers the peer
//! was not ordered, or chunks outside the manifest, are ignored (they can legitimately race a
//! cancel or a manifest change, so they are not treated as hostile).
//!
//! The master is planner node 0 and holds every chunk of each manifest it publishes. A peer
//! becomes a planner node only once it has reported its have-set for the current manifest, so
//! the planner never orders chunks a peer already holds.
//!
//! Who holds what and which transfers are active live only in the planner; this module asks it
//! ([`Planner::order`], [`Planner::node_has`], [`Planner::node_chunks`]) instead of keeping
//! copies. The planner must keep them anyway, with bit sets and counts its rounds depend on,
//! while copies here had to be updated by hand in step with every event and could drift.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::{ManifestState, Shared};
use crate::manifest::ChunkHash;
use crate::planner::{Event, FailReason, NodeConfig, NodeId, Order, Planner, TransferId};
use crate::protocol::{FailKind, Hello, MasterMsg, PeerMsg};
use crate::status::{
    Counters, EventLog, HeldShrink, NodeState, NodeStatus, RateMeter, Snapshot, CELL_HAS, CELL_INCOMING, CELL_MISSING,
};
use crate::transfer::server::ChunkServer;

pub(crate) enum CoordMsg {
    Join {
        hello: Hello,
        remote: SocketAddr,
        tx: mpsc::UnboundedSender<MasterMsg>,
        reply: oneshot::Sender<NodeId>,
    },
    Peer {
        node: NodeId,
        msg: PeerMsg,
    },
    Left {
        node: NodeId,
    },
    Manifest(Arc<ManifestState>),
    Indexing {
        done: u64,
        total: u64,
    },
    /// The index served is not the folder as it reads now, and why; with the shrink held back,
    /// if that is the reason.
    IndexError {
        message: String,
        shrink: Option<HeldShrink>,
    },
    /// A scan found nothing new: an earlier indexing error is over.
    IndexOk,
    /// A scan finished (whatever it found).
    Scanned,
    /// Something worth a line in the events list.
    Note(String),
}

const MASTER: NodeId = 0;

struct PeerNode {
    hello: Hello,
    /// `http://host:port` where this peer serves chunks.
    url: String,
    address: String,
    tx: mpsc::UnboundedSender<MasterMsg>,
    /// Reported its have-set for the current manifest (and so is a planner node).
    in_planner: bool,
    download_bps: f64,
    upload_bps: f64,
    bytes_uploaded: u64,
    error: Option<String>,
}

struct Coord {
    shared: Arc<Shared>,
    planner: Planner,
    start: Instant,
    nodes: HashMap<NodeId, PeerNode>,
    next_node: NodeId,
    current: Option<Arc<ManifestState>>,
    master_in_planner: bool,
    indexing: Option<(u64, u64)>,
    index_error: Option<String>,
    shrink_held: Option<HeldShrink>,
    index_scans: u64,
    events: EventLog,
    master_uploaded: u64,
    peers_uploaded: u64,
    server: Arc<ChunkServer>,
    up_meter: RateMeter,
    agg_meter: RateMeter,
    verify_failures: u64,
    /// Planner rounds run and their total duration (`/metrics`).
    rounds: (u64, f64),
    /// `--expect`: classifies the expected peers in each snapshot.
    expect: Option<super::expect::Tracker>,
    /// A proxy's upstream leg is up to date (always true for a plain master): until it is, each
    /// manifest is followed by [`MORE_COMING`], so downstream peers do not count as done.
    upstream_done: bool,
}

/// What a proxy's downstream peers hear after a manifest while its upstream leg still fetches.
const MORE_COMING: &str = "the proxy is still fetching from its upstream master; more files follow";

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<CoordMsg>,
    status: watch::Sender<Snapshot>,
    server: Arc<ChunkServer>,
) {
    let mut c = Coord::new(shared, server);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    let mut last_round = Instant::now();
    // Plan right after a slot frees up, coalesced to one round per 10 ms: a timer-only planner
    // leaves a freed slot idle for up to a tick (a 1 MiB chunk takes ~0.3 s on a shared
    // 100 Mbit/s link), and a round per message would cost more than it gains with many peers.
    let mut round_due: Option<tokio::time::Instant> = None;
    loop {
        let due = round_due;
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => {
                    let frees = matches!(&m, CoordMsg::Peer { msg: PeerMsg::Finished { .. } | PeerMsg::Failed { .. } | PeerMsg::HaveAll { .. }, .. });
                    c.on_msg(m);
                    if frees && round_due.is_none() {
                        round_due = Some(tokio::time::Instant::from_std(last_round + Duration::from_millis(10)));
                    }
                }
                None => return,
            },
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                c.timed_round();
                last_round = Instant::now();
                round_due = None;
            }
            _ = tick.tick() => {
                c.timed_round();
                last_round = Instant::now();
                round_due = None;
                ticks += 1;
                c.after_tick(ticks, &status);
            }
        }
    }
}

impl Coord {
    fn new(shared: Arc<Shared>, server: Arc<ChunkServer>) -> Self {
        let expect = shared.cfg.expect.clone().map(super::expect::Tracker::new);
        let upstream_done = shared.cfg.upstream.is_none();
        Coord {
            planner: Planner::new(shared.cfg.seed),
            shared,
            start: Instant::now(),
            nodes: HashMap::new(),
            next_node: 1,
            current: None,
            master_in_planner: false,
            indexing: Some((0, 0)),
            index_error: None,
            shrink_held: None,
            index_scans: 0,
            events: EventLog::default(),
            master_uploaded: 0,
            peers_uploaded: 0,
            server,
            up_meter: RateMeter::default(),
            agg_meter: RateMeter::default(),
            verify_failures: 0,
            rounds: (0, 0.0),
            expect,
            upstream_done,
        }
    }

    /// Periodic work after a tick's round: a slot log line every second (when enabled) and a
    /// status snapshot every third tick.
    fn after_tick(&mut self, ticks: u64, status: &watch::Sender<Snapshot>) {
        if ticks.is_multiple_of(10) && tracing::enabled!(target: "lanscatter::slots", tracing::Level::DEBUG) {
            let st = self.planner.stats();
            let row: Vec<String> =
                st.nodes.iter().map(|n| format!("{}:{}/{}", n.have, n.downloads, n.uploads)).collect();
            tracing::debug!(target: "lanscatter::slots", "have:down/up {}", row.join(" "));
        }
        self.follow_upstream();
        if ticks.is_multiple_of(3) {
            let mut snap = self.snapshot();
            let now = self.now();
            if let Some(t) = &mut self.expect {
                snap.expected = Some(t.report(&snap.nodes, snap.manifest_id, now));
            }
            snap.upstream = self.shared.cfg.upstream.as_ref().map(|u| Box::new(u.borrow().as_leg()));
            status.send_replace(snap);
        }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn on_msg(&mut self, m: CoordMsg) {
        match m {
            CoordMsg::Join { hello, remote, tx, reply } => {
                let id = self.next_node;
                self.next_node += 1;
                let host = hello.advertise_host.clone().unwrap_or_else(|| remote.ip().to_string());
                let address = crate::transport::host_port(&host, hello.port);
                self.events.push(format!("{} joined from {remote} (serves at {address})", hello.name));
                match &self.current {
                    Some(cur) => {
                        let _ = tx.send(MasterMsg::Manifest { id: cur.id, bytes: cur.bytes.to_vec() });
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
        let serving: Vec<Order> = self.planner.orders().filter(|o| o.from == node).collect();
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
        for n in self.nodes.values() {
            let _ = n.tx.send(MasterMsg::Manifest { id: st.id, bytes: st.bytes.to_vec() });
            if !self.upstream_done {
                let _ = n.tx.send(MasterMsg::Wait { message: MORE_COMING.into() });
            }
        }
        self.current = Some(st);
    }

    /// A proxy's upstream leg finished or started fetching again: tell the downstream peers
    /// (the manifest again clears their wait; [`MORE_COMING`] sets it).
    fn follow_upstream(&mut self) {
        let Some(up) = &self.shared.cfg.upstream else { return };
        let done = matches!(up.borrow().state, NodeState::UpToDate);
        if done == self.upstream_done {
            return;
        }
        self.upstream_done = done;
        let Some(cur) = &self.current else { return };
        for n in self.nodes.values() {
            let _ = n.tx.send(match done {
                true => MasterMsg::Manifest { id: cur.id, bytes: cur.bytes.to_vec() },
                false => MasterMsg::Wait { message: MORE_COMING.into() },
            });
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
        let Some(cur) = self.current.clone() else { return };
        match msg {
            PeerMsg::HaveAll { manifest_id, chunks } if manifest_id == cur.id => {
                self.on_have_all(now, node, &cur, chunks);
            }
            // A have-set for an older manifest: the peer sends another once it has the new one.
            PeerMsg::HaveAll { .. } => {}
            PeerMsg::Lost { chunks } => {
                let Some(n) = self.nodes.get(&node) else { return };
                if n.in_planner {
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
            PeerMsg::Stats { download_bps, upload_bps, error } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.download_bps = download_bps.max(0.0);
                    n.upload_bps = upload_bps.max(0.0);
                    n.error = error.map(|e| e.chars().take(500).collect());
                }
            }
        }
    }

    /// The order behind transfer `id` while it still counts. The planner keeps transfers of
    /// chunks that left the manifest until its next `check_timeouts` aborts them, but the peers
    /// cancel those themselves on the manifest change, so here they are already over.
    fn live_order(&self, id: TransferId) -> Option<Order> {
        let cur = self.current.as_ref()?;
        self.planner.order(id).filter(|o| cur.index.contains_key(&o.chunk))
    }

    /// The live order `id` if `node` was ordered to fetch it (reports about anything else
    /// are stale or foreign and ignored).
    fn owned_order(&self, node: NodeId, id: TransferId) -> Option<Order> {
        self.live_order(id).filter(|o| o.to == node)
    }

    /// A peer's full have-set for the current manifest: the first one makes it a planner
    /// node; later ones (after a rescan) become the difference as `Lost` and `Have`.
    fn on_have_all(&mut self, now: f64, node: NodeId, cur: &ManifestState, chunks: Vec<ChunkHash>) {
        let Some(n) = self.nodes.get_mut(&node) else { return };
        let new: HashSet<ChunkHash> = chunks.into_iter().filter(|h| cur.index.contains_key(h)).collect();
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
            let has = new.into_iter().collect();
            self.planner.handle(now, Event::Join { node, config, has });
        } else {
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
        if o.from == MASTER {
            self.master_uploaded += o.size;
        } else {
            self.peers_uploaded += o.size;
            if let Some(src) = self.nodes.get_mut(&o.from) {
                src.bytes_uploaded += o.size;
            }
        }
        self.planner.handle(now, Event::Finished { id });
    }

    fn on_failed(&mut self, now: f64, node: NodeId, id: TransferId, reason: FailKind, message: &str) {
        let Some(o) = self.owned_order(node, id) else { return };
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
            self.planner.handle(now, Event::Lost { node: o.from, chunks: vec![o.chunk] });
        }
    }

    fn node_name(&self, id: NodeId) -> String {
        self.nodes.get(&id).map(|n| n.hello.name.clone()).unwrap_or_else(|| format!("node {id}"))
    }

    fn timed_round(&mut self) {
        let t0 = Instant::now();
        self.round();
        self.rounds = (self.rounds.0 + 1, self.rounds.1 + t0.elapsed().as_secs_f64());
    }

    fn round(&mut self) {
        let now = self.now();
        for o in self.planner.check_timeouts_orders(now) {
            // Transfers of chunks that left the manifest were cancelled by the peers already.
            if !self.current.as_ref().is_some_and(|cur| cur.index.contains_key(&o.chunk)) {
                continue;
            }
            tracing::debug!("transfer {} of {} to {} timed out", o.id, o.chunk, o.to);
            if let Some(n) = self.nodes.get(&o.to) {
                let _ = n.tx.send(MasterMsg::Cancel { id: o.id });
            }
        }
        if self.shared.paused.load(Ordering::Relaxed) {
            return;
        }
        for o in self.planner.plan(now) {
            let url = if o.from == MASTER {
                None
            } else {
                match self.nodes.get(&o.from) {
                    Some(n) => Some(n.url.clone()),
                    None => {
                        self.planner.handle(now, Event::Failed { id: o.id, reason: FailReason::Other });
                        continue;
                    }
                }
            };
            let Some(dst) = self.nodes.get(&o.to) else {
                self.planner.handle(now, Event::Failed { id: o.id, reason: FailReason::Other });
                continue;
            };
            let msg =
                MasterMsg::Fetch { id: o.id, chunk: o.chunk, size: o.size, url, min_rate_bps: o.min_rate_bps as u64 };
            if dst.tx.send(msg).is_err() {
                self.planner.handle(now, Event::Failed { id: o.id, reason: FailReason::Other });
            }
        }
    }

    fn snapshot(&mut self) -> Snapshot {
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
        s.files_total = cur.manifest.files.len() as u64;
        s.folder_bytes = cur.manifest.total_bytes();
        let unique_bytes = cur.unique_bytes();
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
            chunk_map: vec![CELL_HAS; cur.unique.len()],
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
    fn peer_statuses(&self, cur: &ManifestState, unique_bytes: u64) -> Vec<(NodeStatus, bool)> {
        let mut incoming: HashMap<NodeId, Vec<ChunkHash>> = HashMap::new();
        let mut ups: HashMap<NodeId, u32> = HashMap::new();
        for o in self.planner.orders().filter(|o| cur.index.contains_key(&o.chunk)) {
            incoming.entry(o.to).or_default().push(o.chunk);
            *ups.entry(o.from).or_default() += 1;
        }
        let mut ids: Vec<_> = self.nodes.keys().copied().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let inc = incoming.get(&id).map(|v| v.as_slice()).unwrap_or(&[]);
                let up = ups.get(&id).copied().unwrap_or(0);
                self.peer_status(id, &self.nodes[&id], cur, inc, up, unique_bytes)
            })
            .collect()
    }

    /// One peer's row; `inc` are the chunks on their way to it, `ups` the uploads it serves.
    fn peer_status(
        &self,
        id: NodeId,
        n: &PeerNode,
        cur: &ManifestState,
        inc: &[ChunkHash],
        ups: u32,
        unique_bytes: u64,
    ) -> (NodeStatus, bool) {
        let mut map = vec![CELL_MISSING; cur.unique.len()];
        let mut done = 0;
        for h in self.planner.node_chunks(id) {
            if let Some(&i) = cur.index.get(&h) {
                map[i] = CELL_HAS;
                done += cur.unique[i].1;
            }
        }
        for h in inc {
            if let Some(&i) = cur.index.get(h) {
                if map[i] == CELL_MISSING {
                    map[i] = CELL_INCOMING;
                }
            }
        }
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
            active_downloads: inc.len() as u32,
            active_uploads: ups,
            bytes_uploaded: n.bytes_uploaded,
            chunk_map: map,
        };
        (status, complete)
    }
}

#[cfg(test)]
mod tests {
    //! The coordinator driven directly: messages in, orders out (per-peer channels), and the
    //! snapshot, without sockets or timers (`round` is called by hand).

    use std::path::PathBuf;

    use super::*;
    use crate::manifest::{Chunk, ChunkRule, FileEntry, Manifest, Mtime};
    use crate::master::{MasterConfig, MasterSource};
    use crate::protocol::PROTOCOL_VERSION;
    use crate::transfer::server::ServerConfig;

    type Inbox = mpsc::UnboundedReceiver<MasterMsg>;

    fn hash(i: u8) -> ChunkHash {
        ChunkHash::of(&[i])
    }

    /// One file of 100-byte chunks with these hashes.
    fn manifest(id: u64, chunks: &[u8]) -> Arc<ManifestState> {
        let chunks: Vec<Chunk> = chunks
            .iter()
            .enumerate()
            .map(|(i, &c)| Chunk { offset: i as u64 * 100, size: 100, hash: hash(c) })
            .collect();
        let file = FileEntry {
            path: "f".into(),
            size: 100 * chunks.len() as u64,
            mtime: Mtime { secs: 0, nanos: 0 },
            chunk_size: 100,
            chunks,
            hash: hash(255),
        };
        let m = Manifest { files: vec![file], dirs: vec![], chunk_rule: ChunkRule::Auto, warnings: vec![] };
        Arc::new(ManifestState::new(id, m))
    }

    fn coord(master_upload_slots: u32) -> Coord {
        let mut cfg = MasterConfig::new(PathBuf::from("/nonexistent"));
        cfg.upload_slots = master_upload_slots;
        cfg.name = "master".into();
        let (rescan, _) = mpsc::channel(1);
        let (coord, _) = mpsc::unbounded_channel();
        let (_, shutdown) = watch::channel(false);
        let listen = SocketAddr::from(([127, 0, 0, 1], 1));
        let shared = Arc::new(Shared::new(cfg, listen, rescan, coord, shutdown));
        let server = ChunkServer::new(
            Arc::new(MasterSource(shared.clone())),
            ServerConfig {
                upload_slots: master_upload_slots,
                limiter: None,
                compress: false,
                storage: Arc::new(crate::storage::ReadOnlyDisk),
            },
        );
        Coord::new(shared, server)
    }

    fn join(c: &mut Coord, host: &str, upload_slots: u32, download_slots: u32) -> (NodeId, Inbox) {
        let hello = Hello {
            app: Hello::APP.into(),
            protocol: PROTOCOL_VERSION,
            name: format!("peer {host}"),
            advertise_host: Some(host.into()),
            port: 7000,
            upload_slots,
            download_slots,
            max_upload_bps: None,
            max_download_bps: None,
            version: "test".into(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply, mut id) = oneshot::channel();
        let remote = SocketAddr::from(([192, 0, 2, 1], 5000));
        c.on_msg(CoordMsg::Join { hello, remote, tx, reply });
        (id.try_recv().expect("the join is answered at once"), rx)
    }

    fn peer(c: &mut Coord, node: NodeId, msg: PeerMsg) {
        c.on_msg(CoordMsg::Peer { node, msg });
    }

    fn have_all(c: &mut Coord, node: NodeId, manifest_id: u64, chunks: &[u8]) {
        peer(c, node, PeerMsg::HaveAll { manifest_id, chunks: chunks.iter().map(|&i| hash(i)).collect() });
    }

    fn drain(rx: &mut Inbox) -> Vec<MasterMsg> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    /// The fetch orders waiting in a peer's inbox: (transfer, chunk, source URL).
    /// A fetch order: its id, the chunk and the source's URL (`None`: the master).
    type Fetch = (TransferId, ChunkHash, Option<String>);

    fn fetches(rx: &mut Inbox) -> Vec<Fetch> {
        drain(rx)
            .into_iter()
            .filter_map(|m| match m {
                MasterMsg::Fetch { id, chunk, url, .. } => Some((id, chunk, url)),
                _ => None,
            })
            .collect()
    }

    fn row(s: &Snapshot, id: NodeId) -> &NodeStatus {
        s.nodes.iter().find(|n| n.id == id).expect("node in the snapshot")
    }

    /// The chunk map cell of chunk `i` in a row.
    fn cell(c: &Coord, n: &NodeStatus, i: u8) -> u8 {
        let cur = c.current.as_ref().expect("a manifest");
        n.chunk_map[cur.index[&hash(i)]]
    }

    #[test]
    fn joins_get_the_manifest_and_addresses_are_host_port() {
        let mut c = coord(2);
        let (a, mut a_rx) = join(&mut c, "fe80::1", 1, 1);
        assert!(matches!(drain(&mut a_rx)[..], [MasterMsg::Wait { .. }]), "no manifest yet");
        assert!(matches!(c.snapshot().state, NodeState::Indexing { .. }));
        c.on_msg(CoordMsg::Manifest(manifest(1, &[0, 1])));
        assert!(matches!(drain(&mut a_rx)[..], [MasterMsg::Manifest { id: 1, .. }]));
        let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 1);
        assert!(matches!(drain(&mut b_rx)[..], [MasterMsg::Manifest { id: 1, .. }]));
        assert_eq!(c.nodes[&a].url, "http://[fe80::1]:7000");
        let s = c.snapshot();
        assert_eq!(row(&s, a).address, "[fe80::1]:7000");
        assert_eq!(row(&s, b).address, "10.0.0.2:7000");
        assert!(row(&s, 0).is_master);
        // Not planner nodes until their have-sets arrive: nothing is ordered to them.
        assert!(matches!(row(&s, a).state, NodeState::Indexing { .. }));
        c.round();
        assert!(fetches(&mut a_rx).is_empty() && fetches(&mut b_rx).is_empty());
    }

    #[test]
    fn held_chunks_are_never_ordered_and_a_rescan_is_a_difference() {
        let mut c = coord(4);
        c.on_msg(CoordMsg::Manifest(manifest(1, &[0, 1, 2, 3])));
        let (a, mut a_rx) = join(&mut c, "10.0.0.1", 1, 4);
        // A chunk outside the manifest is dropped, not registered.
        have_all(&mut c, a, 1, &[0, 1, 9]);
        c.round();
        let mut got: Vec<_> = fetches(&mut a_rx).into_iter().map(|f| (f.1, f.2)).collect();
        got.sort();
        let mut want = vec![(hash(2), None), (hash(3), None)];
        want.sort();
        assert_eq!(got, want, "only the missing chunks, from the master");
        let s = c.snapshot();
        let r = row(&s, a);
        assert_eq!((r.bytes_done, r.active_downloads), (200, 2));
        assert_eq!([0, 1, 2, 3].map(|i| cell(&c, r, i)), [CELL_HAS, CELL_HAS, CELL_INCOMING, CELL_INCOMING]);
        // A rescan lost chunk 0: only that one is ordered again, nothing already held.
        have_all(&mut c, a, 1, &[1]);
        c.round();
        let again: Vec<_> = fetches(&mut a_rx).into_iter().map(|f| f.1).collect();
        assert_eq!(again, vec![hash(0)]);
        // Figures and errors reported by the peer show on its row.
        let stats = PeerMsg::Stats { download_bps: 5.0, upload_bps: -1.0, error: Some("disk full".into()) };
        peer(&mut c, a, stats);
        let s = c.snapshot();
        let r = row(&s, a);
        assert_eq!((r.download_bps, r.upload_bps, s.download_bps), (5.0, 0.0, 5.0));
        assert!(matches!(&r.state, NodeState::Error { message } if message == "disk full"));
    }

    #[test]
    fn finished_chunks_make_the_peer_a_source_and_credit_the_uploader() {
        let mut c = coord(0);
        c.on_msg(CoordMsg::Manifest(manifest(1, &[0])));
        let (a, mut a_rx) = join(&mut c, "10.0.0.1", 1, 1);
        let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 1);
        have_all(&mut c, a, 1, &[0]);
        have_all(&mut c, b, 1, &[]);
        c.round();
        assert!(fetches(&mut a_rx).is_empty(), "a holder is not ordered its own chunk");
        let f = fetches(&mut b_rx);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].2.as_deref(), Some("http://10.0.0.1:7000"), "from the peer holding it");
        let s = c.snapshot();
        assert_eq!((row(&s, a).active_uploads, row(&s, b).active_downloads), (1, 1));
        assert!(matches!(s.state, NodeState::Syncing));
        // Only the ordered destination may report a transfer.
        peer(&mut c, a, PeerMsg::Finished { id: f[0].0 });
        assert_eq!(c.snapshot().peers_uploaded, 0);
        peer(&mut c, b, PeerMsg::Finished { id: f[0].0 });
        let s = c.snapshot();
        assert_eq!((s.peers_uploaded, row(&s, a).bytes_uploaded, s.master_uploaded), (100, 100, 0));
        assert_eq!(row(&s, b).bytes_done, 100);
        assert!(matches!(row(&s, b).state, NodeState::UpToDate));
        assert!(matches!(s.state, NodeState::UpToDate));
        // A repeated report of an ended transfer counts nothing twice.
        peer(&mut c, b, PeerMsg::Finished { id: f[0].0 });
        assert_eq!(c.snapshot().peers_uploaded, 100);
    }

    #[test]
    fn a_departed_peers_transfers_are_released_and_replanned() {
        let mut c = coord(0);
        c.on_msg(CoordMsg::Manifest(manifest(1, &[0])));
        let (a, _a_rx) = join(&mut c, "10.0.0.1", 1, 1);
        let (d, _d_rx) = join(&mut c, "10.0.0.4", 1, 1);
        let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 1);
        have_all(&mut c, a, 1, &[0]);
        have_all(&mut c, d, 1, &[0]);
        have_all(&mut c, b, 1, &[]);
        c.round();
        let first = fetches(&mut b_rx);
        assert_eq!(first.len(), 1);
        let (src, other) = if first[0].2.as_deref() == Some("http://10.0.0.1:7000") { (a, d) } else { (d, a) };
        // The source leaves: the order is released and re-planned from the other holder.
        c.on_msg(CoordMsg::Left { node: src });
        assert_eq!(c.planner.active_transfers(), 0);
        c.round();
        let second = fetches(&mut b_rx);
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].0, first[0].0);
        assert_eq!(second[0].2, Some(c.nodes[&other].url.clone()));
        // The old transfer's late failure is ignored; the new one stays active.
        peer(&mut c, b, PeerMsg::Failed { id: first[0].0, reason: FailKind::Network, message: "gone".into() });
        assert_eq!(c.planner.order(second[0].0).map(|o| o.from), Some(other));
        // The destination leaves: the source's slot is free again and the row is gone.
        c.on_msg(CoordMsg::Left { node: b });
        let s = c.snapshot();
        assert_eq!(row(&s, other).active_uploads, 0);
        assert!(s.nodes.iter().all(|n| n.id != b));
        assert!(s.events.iter().any(|e| e.message == "peer 10.0.0.2 left"));
    }

    /// Peer a holds chunk 0 of manifest 1, peer b holds nothing and is ordered to fetch it.
    fn a_feeds_b(c: &mut Coord) -> (NodeId, NodeId, Inbox, Vec<Fetch>) {
        c.on_msg(CoordMsg::Manifest(manifest(1, &[0])));
        let (a, _a_rx) = join(c, "10.0.0.1", 1, 1);
        let (b, mut b_rx) = join(c, "10.0.0.2", 1, 1);
        have_all(c, a, 1, &[0]);
        have_all(c, b, 1, &[]);
        c.round();
        let f = fetches(&mut b_rx);
        assert_eq!(f.len(), 1);
        (a, b, b_rx, f)
    }

    #[test]
    fn bad_data_makes_the_source_lose_the_chunk() {
        let mut c = coord(1);
        let (a, b, mut b_rx, f) = a_feeds_b(&mut c);
        assert_eq!(f[0].2.as_deref(), Some("http://10.0.0.1:7000"), "peers serve before the master");
        peer(&mut c, b, PeerMsg::Failed { id: f[0].0, reason: FailKind::BadData, message: "hash mismatch".into() });
        let s = c.snapshot();
        assert_eq!(s.counters.verify_failures, 1);
        assert!(s.events.iter().any(|e| e.message.contains("rejected chunk")));
        let r = row(&s, a);
        assert_eq!((r.bytes_done, cell(&c, r, 0)), (0, CELL_MISSING), "the bad source lost the chunk");
        // Re-planned from the master, and a newcomer is never sent to the bad source either.
        let (n, mut n_rx) = join(&mut c, "10.0.0.3", 1, 1);
        have_all(&mut c, n, 1, &[]);
        c.round();
        let again = fetches(&mut b_rx);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].2, None, "from the master");
        assert!(fetches(&mut n_rx).iter().all(|f| f.2.as_deref() != Some("http://10.0.0.1:7000")));
    }

    #[test]
    fn a_slow_source_keeps_the_chunk() {
        let mut c = coord(0);
        let (a, b, mut b_rx, f) = a_feeds_b(&mut c);
        peer(&mut c, b, PeerMsg::Failed { id: f[0].0, reason: FailKind::TooSlow, message: "slow".into() });
        assert!(c.planner.node_has(a, &hash(0)));
        c.round();
        assert_eq!(fetches(&mut b_rx).len(), 1, "re-planned, and the only holder is still a source");
    }

    #[test]
    fn a_new_manifest_ends_stale_transfers_and_replans() {
        let mut c = coord(2);
        c.on_msg(CoordMsg::Manifest(manifest(1, &[0, 1])));
        let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 2);
        have_all(&mut c, b, 1, &[]);
        c.round();
        let f = fetches(&mut b_rx);
        assert_eq!(f.len(), 2);
        let id_of = |i: u8| f.iter().find(|x| x.1 == hash(i)).map(|x| x.0).expect("ordered");
        let (stale, kept) = (id_of(0), id_of(1));
        c.on_msg(CoordMsg::Manifest(manifest(2, &[1, 2])));
        assert!(matches!(drain(&mut b_rx)[..], [MasterMsg::Manifest { id: 2, .. }]));
        // Chunk 0 left the manifest: its transfer is over, a late report of it counts nothing.
        peer(&mut c, b, PeerMsg::Finished { id: stale });
        assert_eq!(c.snapshot().master_uploaded, 0);
        let s = c.snapshot();
        assert_eq!((row(&s, b).active_downloads, row(&s, b).chunk_map.len()), (1, 2));
        // The peer cancels the other on the manifest change; both chunks are re-planned, and
        // the stale transfer is not cancelled again (the peer dropped it itself).
        peer(&mut c, b, PeerMsg::Failed { id: kept, reason: FailKind::Cancelled, message: "new manifest".into() });
        have_all(&mut c, b, 1, &[1]); // for the old manifest: ignored
        have_all(&mut c, b, 2, &[]);
        c.round();
        let msgs = drain(&mut b_rx);
        assert!(msgs.iter().all(|m| !matches!(m, MasterMsg::Cancel { .. })));
        let mut got: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                MasterMsg::Fetch { chunk, .. } => Some(*chunk),
                _ => None,
            })
            .collect();
        got.sort();
        let mut want = vec![hash(1), hash(2)];
        want.sort();
        assert_eq!(got, want);
        assert_eq!(c.planner.active_transfers(), 2, "the stale transfer was released");
    }
}
