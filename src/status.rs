//! Status snapshots shared by the CLI, the web page and the tray app.
//!
//! Each engine owns a `tokio::sync::watch` channel of [`Snapshot`]s and republishes a fresh one a
//! few times a second (and on every state change). Consumers never lock engine state: they clone
//! the latest snapshot. One type serves every consumer so there is a single source of truth:
//! the CLI prints it (progress bar, plain lines or JSON lines), the web status page serves it as
//! `/api/status`, the tray app drives its icon from it, and tests poll it for conditions.
//!
//! Snapshots are plain data (serde `Serialize`/`Deserialize`); the master's snapshot carries the
//! whole swarm (`nodes`, each with its chunk have-map), a peer's carries itself only.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which engine produced a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Peer,
}

/// Lifecycle state of an engine (or of a node as the master sees it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Starting,
    /// Hashing the local folder; `done`/`total` in bytes.
    Indexing {
        done: u64,
        total: u64,
    },
    /// Waiting for (or retrying) the connection to the master.
    Connecting,
    Syncing,
    UpToDate,
    /// Fatal or persistent error, with a message for the user.
    Error {
        message: String,
    },
}

impl NodeState {
    /// The state in words, as the plain outputs and `lanscatter status` print it.
    pub fn label(&self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Indexing { .. } => "indexing",
            NodeState::Connecting => "connecting",
            NodeState::Syncing => "syncing",
            NodeState::UpToDate => "up to date",
            NodeState::Error { .. } => "error",
        }
    }
}

/// Chunk have-map cell, as drawn by the status page (one cell per unique chunk of the manifest).
pub const CELL_MISSING: u8 = 0;
pub const CELL_INCOMING: u8 = 1;
pub const CELL_HAS: u8 = 2;

/// One node of the swarm as the master sees it (a peer's own snapshot has one entry: itself).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Planner node id (0 = master).
    pub id: u32,
    pub name: String,
    /// Address the node serves chunks on (`host:port`), empty if it does not serve.
    pub address: String,
    pub is_master: bool,
    pub state: NodeState,
    /// Bytes of the manifest's unique chunks this node holds, verified.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes (not bits) per second; the name is kept for `/api/status` consumers (README: Units).
    pub download_bps: f64,
    /// Bytes per second, like `download_bps`.
    pub upload_bps: f64,
    pub active_downloads: u32,
    pub active_uploads: u32,
    /// Chunk bytes this node has uploaded to others (as reported by transfers finishing).
    pub bytes_uploaded: u64,
    /// One byte per unique chunk of the current manifest, in manifest order: `CELL_*`.
    pub chunk_map: Vec<u8>,
}

/// Something worth showing in a "recent events" list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// Unix time in seconds.
    pub time: f64,
    pub message: String,
}

/// Counters that only grow; tests use them to prove what happened on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// `GET /chunk/…` requests this node's HTTP server answered with data.
    pub chunk_gets_served: u64,
    /// Chunk bytes sent by this node's HTTP server (after compression).
    pub bytes_uploaded: u64,
    /// Chunk fetches this node started.
    pub chunk_gets_made: u64,
    /// Chunk bytes received over the network (after compression).
    pub bytes_downloaded: u64,
    /// Chunks received whose hash did not match (never written).
    pub verify_failures: u64,
    /// Chunks satisfied by copying identical local content.
    pub local_copies: u64,
    /// Fetches aborted for stalling or being below the planner's minimum rate.
    pub slow_aborts: u64,
    /// Master: planner rounds run, and the seconds they took in total (`/metrics` summary).
    #[serde(default)]
    pub planner_rounds: u64,
    #[serde(default)]
    pub planner_round_seconds: f64,
    /// Master: scans of the source folder finished (published, unchanged or failed alike), so a
    /// caller can wait for "the master has looked again" instead of for a time.
    #[serde(default)]
    pub index_scans: u64,
    /// Peer: fetches a new manifest cancelled (their chunk left the manifest), and fetches that
    /// went on across a new manifest because it still holds their chunk.
    #[serde(default)]
    pub fetches_cancelled: u64,
    #[serde(default)]
    pub fetches_kept: u64,
    /// Peer: manifests received whole and as deltas, and their bytes on the wire (a one-file
    /// change should cost a delta of about one file's entry).
    #[serde(default)]
    pub manifests_full: u64,
    #[serde(default)]
    pub manifest_deltas: u64,
    #[serde(default)]
    pub manifest_bytes: u64,
}

/// A shrink of the master's folder held back by the shrink guard, as the status page offers it
/// for confirmation (`POST /api/shrink?held=<id>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldShrink {
    /// Names this held scan: a confirmation publishes exactly the one the admin was shown.
    pub id: u64,
    pub files_before: u64,
    pub bytes_before: u64,
    pub files_now: u64,
    pub bytes_now: u64,
}

/// The engine's whole observable state at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub role: Role,
    pub name: String,
    pub state: NodeState,
    /// Bytes of unique chunk content in the current manifest.
    pub bytes_total: u64,
    /// For a peer: verified bytes it holds. For the master: sum over peers of verified bytes.
    pub bytes_done: u64,
    pub files_total: u64,
    /// Sum of file sizes in the current manifest (what the folder holds, duplicates included).
    pub folder_bytes: u64,
    /// Bytes (not bits) per second; the name is kept for `/api/status` consumers (README: Units).
    pub download_bps: f64,
    /// Bytes per second, like `download_bps`.
    pub upload_bps: f64,
    pub eta_secs: Option<f64>,
    pub folder: PathBuf,
    /// Address the engine listens on (`host:port`).
    pub listen: String,
    /// Master: every node including itself. Peer: itself.
    pub nodes: Vec<NodeStatus>,
    /// Most recent last; bounded.
    pub events: Vec<StatusEvent>,
    pub counters: Counters,
    /// Identifier of the manifest this snapshot refers to (changes when the master's folder does).
    pub manifest_id: u64,
    /// Bytes the master uploaded vs bytes peers uploaded to each other (master snapshot only).
    pub master_uploaded: u64,
    pub peers_uploaded: u64,
    /// Unix time of this snapshot.
    pub time: f64,
    /// Why the node is in its state, when the state alone does not say (a peer waiting for an
    /// unreachable master, or told by the master to wait while it indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// An open swarm (`--open`): anyone on the network may join and read. The status page
    /// says so in its header.
    #[serde(default)]
    pub open: bool,
    /// Master: why the index it serves is the last good one rather than the folder as it reads
    /// now (the folder vanished, cannot be read, or shrank suspiciously). Also in `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_fault: Option<String>,
    /// Master: the shrink it holds back, while it holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_held: Option<HeldShrink>,
    /// Master started with `--expect`: how each expected peer stands ([`ExpectedReport`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<ExpectedReport>,
    /// Proxy (`lanscatter proxy`): its upstream leg, the peer of the upstream swarm, while this
    /// snapshot is its downstream master's. The status page and `/api/status` show both legs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Box<Snapshot>>,
    /// Transfers are paused ([`crate::engine::Engine::set_paused`]); the state says where it
    /// stands otherwise.
    #[serde(default)]
    pub paused: bool,
}

/// How one expected peer stands (`lanscatter master --expect`; the rules are in
/// `master::expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectState {
    /// Connected and up to date with the current manifest.
    Done,
    /// Connected and making progress (or not idle for long yet).
    Syncing,
    /// Connected, not done, and its verified bytes have not grown for `stuck_after_secs`.
    Stuck,
    /// Never joined, or gone.
    Missing,
}

impl ExpectState {
    pub const ALL: [ExpectState; 4] =
        [ExpectState::Done, ExpectState::Syncing, ExpectState::Stuck, ExpectState::Missing];

    /// The name used in JSON, `/metrics` labels and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            ExpectState::Done => "done",
            ExpectState::Syncing => "syncing",
            ExpectState::Stuck => "stuck",
            ExpectState::Missing => "missing",
        }
    }
}

/// One entry of the expected list and the node that answers to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedPeer {
    /// The name or address as the list gives it; `*` for a slot of `--expect N`.
    pub want: String,
    pub state: ExpectState,
    /// The matching node's id, name and address (none while missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    /// Seconds since the node's verified bytes last changed (or it joined), while connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<f64>,
}

/// The master's report on its expected peers, part of its [`Snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpectedReport {
    /// In list order (names), or done first (a count).
    pub peers: Vec<ExpectedPeer>,
    pub done: u32,
    pub syncing: u32,
    pub stuck: u32,
    pub missing: u32,
    /// Connected peers that answer to no entry (name lists), or beyond the count.
    #[serde(default)]
    pub unexpected: Vec<String>,
    /// A connected peer counts as stuck after this long without progress.
    pub stuck_after_secs: f64,
}

impl ExpectedReport {
    /// Every expected peer is up to date with the current manifest.
    pub fn all_done(&self) -> bool {
        !self.peers.is_empty() && self.peers.iter().all(|p| p.state == ExpectState::Done)
    }

    /// How many entries are in `state`.
    pub fn count(&self, state: ExpectState) -> u32 {
        match state {
            ExpectState::Done => self.done,
            ExpectState::Syncing => self.syncing,
            ExpectState::Stuck => self.stuck,
            ExpectState::Missing => self.missing,
        }
    }
}

impl Snapshot {
    /// This snapshot as another's [`Snapshot::upstream`]: without chunk maps (the page draws
    /// the downstream swarm's) and events, which the proxy logs itself.
    pub fn as_leg(&self) -> Snapshot {
        let mut s = self.clone();
        s.events.clear();
        for n in &mut s.nodes {
            n.chunk_map.clear();
        }
        s
    }

    pub fn new(role: Role, name: String, folder: PathBuf) -> Self {
        Snapshot {
            role,
            name,
            state: NodeState::Starting,
            bytes_total: 0,
            bytes_done: 0,
            files_total: 0,
            folder_bytes: 0,
            download_bps: 0.0,
            upload_bps: 0.0,
            eta_secs: None,
            folder,
            listen: String::new(),
            nodes: Vec::new(),
            events: Vec::new(),
            counters: Counters::default(),
            manifest_id: 0,
            master_uploaded: 0,
            peers_uploaded: 0,
            time: unix_now(),
            detail: None,
            open: false,
            paused: false,
            index_fault: None,
            shrink_held: None,
            expected: None,
            upstream: None,
        }
    }

    /// Progress in `0.0..=1.0` (1.0 for an empty manifest).
    pub fn progress(&self) -> f64 {
        if self.bytes_total == 0 {
            1.0
        } else {
            self.bytes_done as f64 / self.bytes_total as f64
        }
    }
}

/// Resolve once a shutdown flag channel says `true` (or its sender is gone). Written without
/// holding a `watch::Ref` across an await, so futures using it stay `Send`.
pub async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

pub use crate::host::unix_now;

/// Bounded list of recent events kept by an engine.
#[derive(Debug, Default)]
pub struct EventLog {
    items: VecDeque<StatusEvent>,
}

impl EventLog {
    const MAX: usize = 100;

    pub fn push(&mut self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!("{message}");
        if self.items.len() == Self::MAX {
            self.items.pop_front();
        }
        self.items.push_back(StatusEvent { time: unix_now(), message });
    }

    pub fn to_vec(&self) -> Vec<StatusEvent> {
        self.items.iter().cloned().collect()
    }
}

/// Exponentially smoothed byte rate from a monotonically growing byte counter.
#[derive(Debug, Clone)]
pub struct RateMeter {
    last_bytes: u64,
    last_time: std::time::Instant,
    rate: f64,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter { last_bytes: 0, last_time: std::time::Instant::now(), rate: 0.0 }
    }
}

impl RateMeter {
    /// Feed the counter's current value; returns the smoothed rate in bytes/s.
    pub fn update(&mut self, total_bytes: u64) -> f64 {
        let now = std::time::Instant::now();
        let dt = now.duration_since(self.last_time).as_secs_f64();
        if dt >= 0.2 {
            let inst = total_bytes.saturating_sub(self.last_bytes) as f64 / dt;
            // Half-life of about a second: responsive but not jumpy.
            let alpha = (dt / 1.5).min(1.0);
            self.rate = self.rate * (1.0 - alpha) + inst * alpha;
            self.last_bytes = total_bytes;
            self.last_time = now;
        }
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_json_round_trip() {
        let mut s = Snapshot::new(Role::Peer, "p".into(), PathBuf::from("/x"));
        s.state = NodeState::Error { message: "disk full".into() };
        // serde_json's default float parser may be off by one ulp; a dyadic time round-trips exactly.
        s.time = 1_796_000_000.5;
        s.nodes.push(NodeStatus { chunk_map: vec![CELL_HAS, CELL_MISSING], ..Default::default() });
        let j = serde_json::to_string(&s).unwrap();
        let back: Snapshot = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
        assert!(j.contains("\"role\":\"peer\""));
    }

    #[test]
    fn event_log_is_bounded() {
        let mut l = EventLog::default();
        for i in 0..250 {
            l.push(format!("e{i}"));
        }
        let v = l.to_vec();
        assert_eq!(v.len(), EventLog::MAX);
        assert_eq!(v.last().unwrap().message, "e249");
    }
}
