//! Distribution planner: decides which node fetches which chunk from whom.
//!
//! Pure and deterministic: no I/O, no clock (time is an argument), randomness only from a seeded
//! PRNG, no hash-map iteration. The master engine feeds [`Event`]s and calls [`Planner::plan`] and
//! [`Planner::check_timeouts`]; `lanscatter simulate` ([`crate::sim`]) drives the very same code
//! in virtual time, which is how the strategy below was tuned and is tested.
//!
//! # The limit and what it implies
//! With source upload `u_s`, peer uploads `u_i`, downloads `d_i` and data size `F`, no schedule
//! beats `max(F/u_s, F/min d_i, N·F/(u_s + Σu_i))` (Kumar & Ross). On a LAN of equal links that is
//! `F/u`, and reaching it needs three things at once: (1) the master's upload never idles and
//! never sends a chunk the swarm already has (otherwise new data enters slower than `u`);
//! (2) every peer's download never idles, so peers must always have something to trade;
//! (3) the last chunks the master injects spread in a few chunk-times (store-and-forward:
//! ~log2(N) hops), so chunks should be small relative to `F`.
//!
//! # Strategy (one round of [`Planner::plan`])
//! 1. **Super-seeding.** A master spends its upload slots on *fresh* chunks: in the manifest,
//!    held by no peer and not in flight. Each goes to the destination with the most idle
//!    download, then the most spare upload (it will forward the chunk), then the fewest chunks
//!    received from the master so far, so injected data is spread evenly, as in the
//!    Kumar–Ross construction where every peer forwards a distinct 1/N of the data.
//! 2. **Peer-to-peer, rarest first.** Destinations with free download slots are served in
//!    passes (one order per destination per pass, least busy first, random ties) so a scarce
//!    source is shared fairly. For each, the planner probes the best-ranked sources (ranked
//!    by expected per-transfer rate = measured upload capacity / (active uploads + 1), ×0.1
//!    while penalised; an unmeasured source is assumed to be as fast as the median measured
//!    peer, and excluded sources are skipped, see `trust`) and takes, among the first few that have
//!    something useful, the chunk with the fewest holders + in-flight copies. Counting
//!    in-flight copies steers parallel destinations to different chunks.
//! 3. **Master fallback.** Master slots left over (no fresh chunks remain, or no peer can
//!    serve) go to the rarest chunks destinations still miss. This is the endgame helper.
//!
//! # Slow sources, stalls, endgame
//! Rates are bytes/second measured from [`Event::Progress`], never a fixed time per chunk (the
//! original aborted big chunks from peers because its timeout ignored size). A transfer is
//! aborted by [`Planner::check_timeouts`] when (a) it is stuck: its destination, still
//! reporting, saw no progress for a few typical chunk times (relative to the chunk's size and
//! what recent transfers took, at least `min_stall_s`), or in any case for `stall_timeout_s`,
//! (b) its rate over the last `rate_window_s` is below its order's `min_rate_bps` (a fraction of
//! what that source/destination pair was measured to sustain), or (c) **endgame**: the
//! destination has nothing else left to request and the transfer would finish far later than
//! re-fetching from an idle, faster holder. (a) and (b) penalise the source (exponential
//! back-off in ranking); consistent but slow sources are simply ranked low, not aborted.
//! The fixed (a) fires after `first_byte_s` for a transfer that never received a byte. A
//! source stuck while its destination reports is excluded at once and its other uploads are
//! aborted in the same call (see `trust`); a destination that goes quiet ([`Event::Heard`]
//! stops) has its downloads released, nobody blamed.
//!
//! # Trust
//! Failures count against the source (busy, missing, stalled, slow, bad data) and, for master
//! transfers, against the destination; streaks exclude the node for a doubling time, see the
//! `trust` module.
//!
//! *Endgame interpretation.* The issue allows "the last chunks fetched twice from different
//! sources" and also forbids duplicate orders per (chunk, destination). We keep the stronger
//! invariant — at most one active transfer per (chunk, destination) at any time, which the
//! engine relies on to key downloads — and realise the second fetch as *replacement*: (c)
//! aborts the clearly slow first attempt and the next round orders the chunk from a faster
//! source. The bytes of the first attempt are the price, bounded because (c) only fires when
//! it wins time.
//!
//! # Driving it (master engine)
//! - Register the master with `Join { is_master: true, has: all }` after `NewManifest`.
//! - Call [`Planner::plan`] soon after every `Finished`/`Failed` (coalesce bursts, e.g. at most
//!   every 10 ms) *and* on a timer (~100 ms). Planning on a timer only costs efficiency: in the
//!   simulator, 64 peers x 1 GiB drop from 0.94 to 0.91 with 50 ms timer-only rounds, because
//!   every freed slot idles until the next tick.
//! - Call [`Planner::check_timeouts`] on the timer, cancel the returned transfers at the peers
//!   (they are already released here; [`Planner::check_timeouts_orders`] names their
//!   destinations), and feed `Progress` at least every few seconds per transfer: without
//!   progress a transfer counts as stalled after `stall_timeout_s`.
//! - Events for unknown transfer ids (aborted, or dropped by a `Leave`) are ignored.
//!
//! # Results (`lanscatter simulate --table`, 4 slots everywhere, 5 ms latency)
//! 1 GiB in 256 chunks over 100 Mbit/s: 8 peers 0.963, 64 peers 0.942 (0.958 with 512 chunks),
//! 2 of 8 peers at 10 Mbit/s 0.998, 30 % late joiners 0.991; the master sends 1.00–1.05x the
//! data. The naive policy (everyone from the master) reaches 0.124 and 0.033 on the first two.
//! The remaining gap is the ramp-up (peers idle until the first chunks land) and the tail (the
//! last injected chunks need a few store-and-forward hops); both shrink with smaller chunks.
//!
//! # Cost
//! Chunk hashes map to dense `u32` indices; each node has `has`/`incoming` bit sets; holder and
//! in-flight counts per chunk are kept incrementally by events. A round costs
//! O(nodes + orders × probes × chunks/64) with `probes` bounded by [`Tuning`]; it never walks
//! the peers × chunks matrix. Event handling is O(chunks in the event × the node's slots);
//! `Leave` and an exclusion are O(chunks/64 + held chunks).

pub mod batch;
mod bitset;
mod events;
mod health;
mod map;
mod misses;
pub mod rng;
mod round;
mod trust;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::manifest::ChunkHash;
pub use bitset::BitSet;
pub use map::MapCell;
use rng::Rng;

/// Identity of a node, chosen by the caller; the master itself is a node too.
pub type NodeId = u32;
/// Identity of a transfer, assigned by the planner (never reused within one planner).
pub type TransferId = u64;

/// What a node can do. Rates are bytes/second; `None` means unknown (the planner measures).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    pub is_master: bool,
    /// Concurrent uploads this node serves; 0 makes it a pure leecher (never a source).
    pub upload_slots: u32,
    /// Concurrent downloads; the planner never orders more than this to the node.
    pub download_slots: u32,
    pub max_upload_bps: Option<f64>,
    pub max_download_bps: Option<f64>,
}

impl NodeConfig {
    /// A node with these slots and no known rate limits.
    pub fn new(is_master: bool, upload_slots: u32, download_slots: u32) -> Self {
        NodeConfig { is_master, upload_slots, download_slots, max_upload_bps: None, max_download_bps: None }
    }
}

/// "Node `to`, fetch `chunk` from node `from`." Issued once; the transfer occupies one upload
/// slot of `from` and one download slot of `to` until it is finished, failed or aborted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: TransferId,
    pub chunk: ChunkHash,
    pub from: NodeId,
    pub to: NodeId,
    pub size: u64,
    /// Bytes/second below which (measured over the planner's rate window) the planner will
    /// abort and re-plan; 0 when nothing is known yet (only stall detection applies).
    pub min_rate_bps: f64,
    /// More small chunks (hash, size) this transfer carries after `chunk`, same source and
    /// destination (empty unless [`Tuning::batch_bytes`] is on). `size` is `chunk`'s alone;
    /// progress counts the whole batch ([`Order::total_size`]).
    pub batch: Vec<(ChunkHash, u64)>,
}

impl Order {
    /// Bytes of every chunk the transfer carries.
    pub fn total_size(&self) -> u64 {
        self.size + self.batch.iter().map(|b| b.1).sum::<u64>()
    }

    /// Every chunk the transfer carries, `chunk` first.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkHash> + '_ {
        std::iter::once(self.chunk).chain(self.batch.iter().map(|b| b.0))
    }
}

/// Why a transfer failed, as reported by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// No progress for too long.
    Stalled,
    /// Measured rate below the order's minimum.
    TooSlow,
    /// Hash mismatch after download: the source is penalised.
    BadData,
    /// The source does not have the chunk (any more): it is removed from its have-set.
    SourceMissing,
    /// The destination could not write it (disk full or failing): its downloads pause, for
    /// longer each time it repeats, instead of failing every order until space returns.
    LocalDisk,
    /// The source answered that all its upload slots are taken. It may well hold the chunk,
    /// but a source that is always busy serves nothing, so this counts against it too.
    Busy,
    /// The destination gave the transfer up itself (manifest change, shutdown): nobody's fault.
    Cancelled,
    Other,
}

/// Input to the planner. Events about unknown nodes or transfers are ignored (they may race a
/// `Leave` or an abort), so the engine never has to filter them.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A node (re)joins with what it has. A `Join` for a known id replaces the old node.
    Join {
        node: NodeId,
        config: NodeConfig,
        has: Vec<ChunkHash>,
    },
    /// Releases all the node's transfers and slots; later events for them are ignored.
    Leave {
        node: NodeId,
    },
    /// The node has these chunks (e.g. re-announced after a rescan).
    Have {
        node: NodeId,
        chunks: Vec<ChunkHash>,
    },
    /// The node no longer has these chunks; its uploads of them are aborted.
    Lost {
        node: NodeId,
        chunks: Vec<ChunkHash>,
    },
    /// Bytes received so far by the destination.
    Progress {
        id: TransferId,
        bytes_done: u64,
    },
    /// Destination verified the chunk: it now has it (and can serve it).
    Finished {
        id: TransferId,
    },
    Failed {
        id: TransferId,
        reason: FailReason,
    },
    /// A batch arrived in part: the destination verified and holds every chunk of the transfer
    /// except `failed`, which failed for `reason` (counted against the source once, as a
    /// `Failed` transfer is).
    FinishedExcept {
        id: TransferId,
        failed: Vec<ChunkHash>,
        reason: FailReason,
    },
    /// Unique chunks of the master's current manifest with their sizes. Have-sets keep all
    /// hashes; transfers of chunks no longer in the manifest are aborted.
    NewManifest {
        chunks: Vec<(ChunkHash, u64)>,
    },
    /// The node said something (any control message): it is alive. An engine that sends this
    /// regularly (the master: every peer message) lets the planner tell a stuck source from a
    /// frozen destination, and pause a node that went quiet before its connection is given up
    /// (see `health`). Nodes never heard this way are judged by their transfers alone.
    Heard {
        node: NodeId,
    },
}

/// Strategy policy; `Naive` exists to measure the planner against "everyone downloads from
/// the master".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Policy {
    #[default]
    Swarm,
    Naive,
}

/// Knobs of the strategy; defaults are what the simulator was tuned with.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Abort a transfer without progress for this long (seconds).
    pub stall_timeout_s: f64,
    /// Window over which transfer and node rates are measured (seconds).
    pub rate_window_s: f64,
    /// Order minimum rate = this × expected per-transfer rate of the pair.
    pub min_rate_fraction: f64,
    /// Endgame replacement when the projected finish is this many times later than a refetch.
    pub endgame_factor: f64,
    /// First penalty after a slow/stalled/bad transfer (seconds); doubles per strike.
    pub penalty_s: f64,
    /// First download pause of a node whose disk failed a write; doubles per repeat, to 8x
    /// (16 s by default, so space that returns is used soon).
    pub disk_hold_s: f64,
    /// Sources probed per destination slot, and useful ones compared (rarest wins).
    pub max_probes: usize,
    pub max_hits: usize,
    /// Candidate chunks looked at per probe (sampled from a random offset).
    pub max_examined: usize,
    /// A transfer that has not received its first byte after this long is stalled (seconds):
    /// on a LAN the first byte takes a round trip and a disk read, so a source that sends
    /// nothing for this long is hung or lying, and waiting `stall_timeout_s` for it would
    /// hold a download slot for nothing.
    pub first_byte_s: f64,
    /// Upload rate assumed for an unmeasured source while no peer is measured yet (bytes/s).
    pub assumed_bps: f64,
    /// A transfer is stuck once its destination, still reporting, has seen no progress on it
    /// for `stall_chunks` × the time a chunk of its size typically takes (the median of recent
    /// transfers, order to finish), at least `min_stall_s` and at most the fixed timeouts
    /// above. Such a stall excludes its source at once (see `trust`).
    pub stall_chunks: f64,
    pub min_stall_s: f64,
    /// Slowest disk read a source is allowed before its first byte (bytes/s): a source reads a
    /// whole chunk before it answers, so the first-byte timeout is `first_byte_s` plus the
    /// chunk's size at this rate (a 128 MiB chunk on a busy HDD is not a hung source).
    pub slow_read_bps: f64,
    /// A node that sends [`Event::Heard`] and then goes quiet this long gets no orders and
    /// its downloads are released (nobody blamed) until it is heard again (seconds; peers
    /// report every 250 ms).
    pub silent_after_s: f64,
    /// Small-chunk batching (0 = off): an order for a chunk of at most [`Tuning::batch_chunk_max`]
    /// bytes carries more such chunks from the same source to the same destination, up to this
    /// many bytes in all, so a tree of tiny files costs one order, one control message and one
    /// request per batch instead of per file (see `batch`).
    pub batch_bytes: u64,
    /// Largest chunk a batch takes.
    pub batch_chunk_max: u64,
    /// Most chunks in one order (bounds the order's wire size and the request's).
    pub batch_max: usize,
}

impl Tuning {
    /// The defaults with small-chunk batching on, as the master engine runs it.
    pub fn batched() -> Self {
        Tuning {
            batch_bytes: batch::BATCH_BYTES,
            batch_chunk_max: batch::BATCH_CHUNK_MAX,
            batch_max: batch::BATCH_MAX,
            ..Tuning::default()
        }
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            stall_timeout_s: 5.0,
            rate_window_s: 2.0,
            min_rate_fraction: 0.2,
            endgame_factor: 2.0,
            penalty_s: 15.0,
            disk_hold_s: 2.0,
            max_probes: 48,
            max_hits: 3,
            max_examined: 64,
            first_byte_s: 4.0,
            assumed_bps: 100e6 / 8.0,
            stall_chunks: 4.0,
            min_stall_s: 1.0,
            slow_read_bps: 20e6,
            silent_after_s: 2.0,
            batch_bytes: 0,
            batch_chunk_max: 0,
            batch_max: 1,
        }
    }
}

/// Per-node figures for the status page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStats {
    pub id: NodeId,
    pub is_master: bool,
    /// Chunks of the current manifest it has.
    pub have: u32,
    pub complete: bool,
    pub uploads: u32,
    pub downloads: u32,
    /// Aggregate rates over the last measurement window (bytes/second).
    pub upload_bps: f64,
    pub download_bps: f64,
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
    /// Currently demoted as a source after slow/stalled/bad transfers.
    pub penalized: bool,
    /// Currently out of the source set after a streak of failures (see `trust`).
    pub excluded: bool,
}

/// Swarm-wide figures for the status page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannerStats {
    pub chunks: u32,
    pub bytes: u64,
    pub active_transfers: usize,
    pub master_upload_bytes: u64,
    pub total_upload_bytes: u64,
    pub orders: u64,
    pub finished: u64,
    pub failed: u64,
    /// Transfers the planner aborted (stalled, too slow, endgame, chunk lost).
    pub aborted: u64,
    pub nodes: Vec<NodeStats>,
}

/// Planner-side state of one node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub id: NodeId,
    pub cfg: NodeConfig,
    pub has: BitSet,
    /// Chunks with an active transfer to this node (so never ordered twice).
    pub incoming: BitSet,
    pub have_in_manifest: u32,
    pub active_up: u32,
    pub active_down: u32,
    /// Chunks received from a master: spreads super-seeded chunks evenly.
    pub from_master: u32,
    pub up_bytes: u64,
    pub down_bytes: u64,
    /// Rate-window anchor: time and byte totals at its start.
    pub win_t: f64,
    pub win_up: u64,
    pub win_down: u64,
    pub up_rate: f64,
    pub down_rate: f64,
    /// Slowly decaying maxima of the measured aggregate rates: capacity estimates.
    pub up_peak: f64,
    pub down_peak: f64,
    pub penalty_until: f64,
    pub strikes: u32,
    /// Downloads paused until then after local write failures (`FailReason::LocalDisk`).
    pub hold_until: f64,
    pub hold_strikes: u32,
    /// Active transfers this node serves / receives (bounded by its slots), so removing one
    /// chunk or a node never scans every transfer.
    pub uploads: Vec<TransferId>,
    pub downloads: Vec<TransferId>,
    /// Trust as a source (see `trust`): failures in a row, exclusions so far, chunks served
    /// since the last one, excluded until, and whether its claims are left out of `holders`.
    pub fail_streak: u32,
    pub exclusions: u32,
    pub served_since: u32,
    /// Chunks received through finished transfers (the swarm verified them at this node).
    pub received: u32,
    pub excluded_until: f64,
    pub suspended: bool,
    /// The destination that reported bad data from this source, not yet corroborated by a
    /// second one (a lying destination alone cannot exclude an honest source).
    pub bad_report_by: Option<NodeId>,
    /// Last time a transfer from this node finished (a master that delivers to others is not
    /// why one destination's transfers fail).
    pub last_served: f64,
    /// Chunks finished as a destination since the last bar (bars decay after good service).
    pub dest_good: u32,
    /// Trust as a destination of master slots: failures in a row, bars so far, barred until.
    pub dest_streak: u32,
    pub bars: u32,
    pub barred_until: f64,
    /// Last time the node was heard (an [`Event::Heard`], or a report about one of its
    /// downloads), and whether it sends [`Event::Heard`] at all.
    pub heard: f64,
    pub reports: bool,
    /// Last time a byte of one of its uploads arrived (progress or finish): a source that
    /// delivers to anyone is busy, not hung (`health`).
    pub last_delivered: f64,
}

/// One active transfer.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    pub chunk: u32,
    /// Batched chunks after `chunk` (see [`Tuning::batch_bytes`]).
    pub extra: Vec<u32>,
    pub from: usize,
    pub to: usize,
    pub size: u64,
    pub min_rate: f64,
    pub bytes: u64,
    /// Last time `bytes` increased (or the order time).
    pub last_change: f64,
    pub anchor_t: f64,
    pub anchor_b: u64,
    /// Rate over the last complete window (bytes/s).
    pub rate: Option<f64>,
    pub from_master: bool,
    /// Order time: order-to-finish durations feed the typical chunk time (`health`).
    pub started: f64,
}

impl Transfer {
    /// Every chunk it carries, `chunk` first.
    pub(crate) fn all(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.chunk).chain(self.extra.iter().copied())
    }

    pub(crate) fn carries(&self, c: u32) -> bool {
        self.chunk == c || self.extra.contains(&c)
    }
}

/// The planner. See the module doc for the strategy.
#[derive(Debug, Clone)]
pub struct Planner {
    pub(crate) policy: Policy,
    pub(crate) tuning: Tuning,
    pub(crate) rng: Rng,
    // chunks (dense indices)
    pub(crate) hashes: Vec<ChunkHash>,
    pub(crate) sizes: Vec<u64>,
    pub(crate) index: HashMap<ChunkHash, u32>,
    pub(crate) manifest: BitSet,
    pub(crate) manifest_count: u32,
    pub(crate) manifest_bytes: u64,
    /// Online, non-master, not suspended nodes holding each chunk.
    pub(crate) holders: Vec<u32>,
    /// Active transfers of each chunk.
    pub(crate) inflight: Vec<u32>,
    /// In manifest, no peer holder, nothing in flight: what super-seeding sends next.
    pub(crate) fresh: BitSet,
    pub(crate) fresh_cursor: u32,
    // nodes
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) free_slots: Vec<usize>,
    pub(crate) node_index: HashMap<NodeId, usize>,
    // transfers
    pub(crate) transfers: BTreeMap<TransferId, Transfer>,
    pub(crate) next_id: TransferId,
    pub(crate) pending_aborts: Vec<TransferId>,
    /// Upload rate assumed for unmeasured sources this round (see `trust`).
    pub(crate) assumed_bps: f64,
    /// Rates (size / order-to-finish time) of the last finished transfers, oldest first.
    pub(crate) recent_rates: std::collections::VecDeque<f64>,
    /// Chunks a master recently said it cannot serve, held back from it (see `misses`).
    pub(crate) misses: misses::Misses,
    // counters
    pub(crate) master_upload_bytes: u64,
    pub(crate) total_upload_bytes: u64,
    pub(crate) orders: u64,
    pub(crate) finished: u64,
    pub(crate) failed: u64,
    pub(crate) aborted: u64,
}

impl Planner {
    pub fn new(seed: u64) -> Self {
        Self::with_options(seed, Policy::Swarm, Tuning::default())
    }

    pub fn with_options(seed: u64, policy: Policy, tuning: Tuning) -> Self {
        let assumed_bps = tuning.assumed_bps;
        Planner {
            policy,
            tuning,
            rng: Rng::new(seed),
            hashes: Vec::new(),
            sizes: Vec::new(),
            index: HashMap::new(),
            manifest: BitSet::default(),
            manifest_count: 0,
            manifest_bytes: 0,
            holders: Vec::new(),
            inflight: Vec::new(),
            fresh: BitSet::default(),
            fresh_cursor: 0,
            nodes: Vec::new(),
            free_slots: Vec::new(),
            node_index: HashMap::new(),
            transfers: BTreeMap::new(),
            next_id: 1,
            pending_aborts: Vec::new(),
            assumed_bps,
            recent_rates: std::collections::VecDeque::new(),
            misses: misses::Misses::default(),
            master_upload_bytes: 0,
            total_upload_bytes: 0,
            orders: 0,
            finished: 0,
            failed: 0,
            aborted: 0,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// True if the node is online and has every chunk of the current manifest.
    pub fn is_complete(&self, node: NodeId) -> bool {
        self.node(node).is_some_and(|n| n.have_in_manifest == self.manifest_count)
    }

    /// True if every online non-master node is complete.
    pub fn all_complete(&self) -> bool {
        self.nodes.iter().flatten().all(|n| n.cfg.is_master || n.have_in_manifest == self.manifest_count)
    }

    /// Unique chunks and bytes of the current manifest.
    pub fn manifest_size(&self) -> (u32, u64) {
        (self.manifest_count, self.manifest_bytes)
    }

    /// Whether the node is known and has the chunk.
    pub fn node_has(&self, node: NodeId, chunk: &ChunkHash) -> bool {
        match (self.node(node), self.index.get(chunk)) {
            (Some(n), Some(&c)) => n.has.get(c),
            _ => false,
        }
    }

    /// Chunks the node holds, of any manifest (have-sets keep every hash they were told
    /// about), in dense-index order; none for an unknown node. O(chunks / 64 + held).
    pub fn node_chunks(&self, node: NodeId) -> impl Iterator<Item = ChunkHash> + '_ {
        self.node(node).into_iter().flat_map(move |n| n.has.iter().map(move |c| self.hashes[c as usize]))
    }

    pub fn active_transfers(&self) -> usize {
        self.transfers.len()
    }

    /// The active transfer `id` as it was ordered; `None` once it ended or was aborted.
    pub fn order(&self, id: TransferId) -> Option<Order> {
        self.transfers.get(&id).and_then(|t| self.order_of(id, t))
    }

    /// Every active transfer as it was ordered, by ascending id.
    pub fn orders(&self) -> impl Iterator<Item = Order> + '_ {
        self.transfers.iter().filter_map(|(&id, t)| self.order_of(id, t))
    }

    /// The order a transfer was created by (its endpoints are online while it is active:
    /// a `Leave` drops the node's transfers first).
    pub(crate) fn order_of(&self, id: TransferId, t: &Transfer) -> Option<Order> {
        let from = self.nodes[t.from].as_ref()?.id;
        let to = self.nodes[t.to].as_ref()?.id;
        let chunk = self.hashes[t.chunk as usize];
        let batch = t.extra.iter().map(|&c| (self.hashes[c as usize], self.sizes[c as usize])).collect();
        let size = self.sizes[t.chunk as usize];
        Some(Order { id, chunk, from, to, size, min_rate_bps: t.min_rate, batch })
    }

    pub fn stats(&self) -> PlannerStats {
        let nodes = self
            .nodes
            .iter()
            .flatten()
            .map(|n| NodeStats {
                id: n.id,
                is_master: n.cfg.is_master,
                have: n.have_in_manifest,
                complete: n.have_in_manifest == self.manifest_count,
                uploads: n.active_up,
                downloads: n.active_down,
                upload_bps: n.up_rate,
                download_bps: n.down_rate,
                uploaded_bytes: n.up_bytes,
                downloaded_bytes: n.down_bytes,
                penalized: n.strikes > 0 && n.penalty_until > n.win_t,
                excluded: n.suspended,
            })
            .collect();
        PlannerStats {
            chunks: self.manifest_count,
            bytes: self.manifest_bytes,
            active_transfers: self.transfers.len(),
            master_upload_bytes: self.master_upload_bytes,
            total_upload_bytes: self.total_upload_bytes,
            orders: self.orders,
            finished: self.finished,
            failed: self.failed,
            aborted: self.aborted,
            nodes,
        }
    }

    pub(crate) fn node(&self, id: NodeId) -> Option<&Node> {
        self.node_index.get(&id).and_then(|&i| self.nodes[i].as_ref())
    }

    /// Dense index of a hash, allocating one (outside the manifest) if new.
    pub(crate) fn intern(&mut self, h: ChunkHash) -> u32 {
        if let Some(&c) = self.index.get(&h) {
            return c;
        }
        let c = self.hashes.len() as u32;
        self.hashes.push(h);
        self.sizes.push(0);
        self.holders.push(0);
        self.inflight.push(0);
        self.index.insert(h, c);
        c
    }

    /// Keep `fresh` consistent after a count or manifest change of chunk `c`.
    pub(crate) fn refresh_fresh(&mut self, c: u32) {
        let i = c as usize;
        if self.manifest.get(c) && self.holders[i] == 0 && self.inflight[i] == 0 {
            self.fresh.insert(c);
        } else {
            self.fresh.remove(c);
        }
    }
}

#[cfg(test)]
mod tests;
