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
//!
//! This file holds the coordinator's state, its run loop and the planner rounds; what each
//! input does to that state is in `messages`, and the status snapshot built from it in `snapshot`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::{ManifestState, Shared};
use crate::manifest::ChunkHash;
use crate::planner::{Event, FailReason, NodeId, Planner, Policy, Tuning};
use crate::protocol::{Hello, MasterMsg, PeerMsg};
use crate::status::{EventLog, HeldShrink, RateMeter, Snapshot};
use crate::transfer::server::ChunkServer;

mod messages;
mod snapshot;
#[cfg(test)]
mod tests;

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
    /// Ids of the first and the last manifest sent on this connection (the last one is the
    /// peer's base for a delta).
    first_sent: Option<u64>,
    sent: Option<u64>,
}

struct Coord {
    shared: Arc<Shared>,
    planner: Planner,
    start: Instant,
    nodes: HashMap<NodeId, PeerNode>,
    next_node: NodeId,
    current: Option<Arc<ManifestState>>,
    /// The manifest before `current`: its id and unique chunks in order, so a have-set (as
    /// bits) for it that crossed the new one on the wire can still be read.
    previous: Option<(u64, Vec<ChunkHash>)>,
    /// The current manifest's id, file count, folder bytes and unique bytes (`snapshot`).
    sizes: Option<(u64, (u64, u64, u64))>,
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
    /// Status rows' chunk maps, rebuilt only for the nodes something touched.
    maps: crate::master::maps::Maps,
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
                    let frees = matches!(&m, CoordMsg::Peer { msg: PeerMsg::Finished { .. } | PeerMsg::Failed { .. } | PeerMsg::HaveAll { .. } | PeerMsg::HaveBits { .. }, .. });
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
            planner: match shared.cfg.batch {
                true => Planner::with_options(shared.cfg.seed, Policy::Swarm, Tuning::batched()),
                false => Planner::new(shared.cfg.seed),
            },
            shared,
            start: Instant::now(),
            nodes: HashMap::new(),
            next_node: 1,
            current: None,
            previous: None,
            sizes: None,
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
            maps: Default::default(),
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

    fn timed_round(&mut self) {
        let t0 = Instant::now();
        self.round();
        self.rounds = (self.rounds.0 + 1, self.rounds.1 + t0.elapsed().as_secs_f64());
    }

    fn round(&mut self) {
        let now = self.now();
        for o in self.planner.check_timeouts_orders(now) {
            self.maps.touch([o.from, o.to]);
            // Transfers of chunks that left the manifest were cancelled by the peers already.
            if !self.current.as_ref().is_some_and(|cur| cur.has_chunk(&o.chunk)) {
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
            self.maps.touch([o.to]);
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
            let min_rate_bps = o.min_rate_bps as u64;
            let msg = if o.batch.is_empty() {
                MasterMsg::Fetch { id: o.id, chunk: o.chunk, size: o.size, url, min_rate_bps }
            } else {
                let chunks = std::iter::once((o.chunk, o.size)).chain(o.batch.iter().copied()).collect();
                MasterMsg::FetchBatch { id: o.id, chunks, url, min_rate_bps }
            };
            if dst.tx.send(msg).is_err() {
                self.planner.handle(now, Event::Failed { id: o.id, reason: FailReason::Other });
            }
        }
    }
}
