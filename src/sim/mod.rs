//! Swarm simulator: drives the real [`Planner`] in virtual time with a fluid bandwidth model.
//!
//! Why: the planner's quality is a property of whole swarms over minutes, which tests cannot
//! observe on a real network. The simulator runs the planner exactly as the master engine does
//! (events in, orders out) and measures the finishing time against the Kumar–Ross bound.
//!
//! Model (deliberately not optimistic):
//! - Every node has an upload and a download capacity; active transfers share them max-min
//!   fairly ([`flow`]); the LAN core is non-blocking.
//! - Control latency: the planner runs every `round_interval_s` and, like the master engine
//!   should, soon after a report frees a slot (no sooner than `event_round_gap_s` after the
//!   previous round, so bursts of reports coalesce into one round); an order starts
//!   `latency_s` after its round; a finished chunk is verified (`verify_bps`) and reported
//!   `latency_s` later, and only then can it be relayed (the real peer serves only verified
//!   chunks). Progress is reported every `progress_interval_s`. Each order also costs
//!   `request_cost_s` before its bytes flow (the fixed work of an order, its control message
//!   and its HTTP request at both ends): negligible for MiB chunks, the whole cost for tiny
//!   files, which is what `batch` (the planner's small-chunk batches) amortises.
//! - Churn: late joins, leave-and-rejoin (keeping data), random transfer failures (half
//!   connection resets mid-transfer, half bad data detected at verification).
//!
//! - Hostile and broken members: liars (claim everything, answer "busy") and hung peers
//!   (freeze mid-run, dropped by the liveness ping later). Neither counts as a peer that must
//!   finish nor in the bound; the run measures what they cost the honest peers.
//!
//! It also checks the planner's promises on every order (no duplicate (chunk, destination), no
//! slot overrun, source really has the chunk, 0-slot peers never upload) and reports violations
//! instead of trusting them.

pub mod bench;
pub mod flow;
pub mod render;
mod run;

use serde::Serialize;

use crate::planner::Policy;
pub use run::run;

/// One scenario. Rates are bytes/second.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub peers: usize,
    pub chunks: usize,
    pub chunk_size: u64,
    /// Upload and download capacity of every link (master and peers).
    pub rate: f64,
    /// Master link capacity if different from `rate`.
    pub master_rate: Option<f64>,
    /// The first `slow` peers have `slow_rate` both ways.
    pub slow: usize,
    pub slow_rate: f64,
    /// Fraction of peers (the last ones) that join at a uniform time in `[0, late_window_s]`.
    pub late_fraction: f64,
    /// Default: half the ideal multicast time `F / rate`.
    pub late_window_s: Option<f64>,
    /// Peers that leave once (uniformly in [0.1, 0.5] x ideal time) and rejoin with their data.
    pub leave: usize,
    /// Time offline before rejoining; default 0.2 x ideal time.
    pub offline_s: Option<f64>,
    /// Probability that a transfer fails.
    pub fail_rate: f64,
    /// Peers with 0 upload slots (pure leechers).
    pub zero_upload: usize,
    /// Extra members that claim every chunk and answer every request "busy" (503).
    pub liars: usize,
    /// Extra peers that freeze (stop sending and answering) at 0.3 x the ideal time; the
    /// master's control-channel ping drops each `hung_detect_s` later.
    pub hung: usize,
    pub hung_detect_s: f64,
    pub upload_slots: u32,
    pub download_slots: u32,
    pub master_slots: u32,
    pub seed: u64,
    pub policy: Policy,
    pub round_interval_s: f64,
    /// Minimum gap between event-triggered rounds; 0 disables them (timer only).
    pub event_round_gap_s: f64,
    pub latency_s: f64,
    pub progress_interval_s: f64,
    /// Hashing speed of a peer verifying a received chunk.
    pub verify_rate: f64,
    /// Give up (all_complete = false) after this many times the bound.
    pub max_time_factor: f64,
    /// Fixed cost of one order before its bytes flow (seconds; see the model above).
    pub request_cost_s: f64,
    /// Plan with small-chunk batching on (`Tuning::batched`, as the master engine does).
    pub batch: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            peers: 8,
            chunks: 256,
            chunk_size: 4 << 20,
            rate: 100e6 / 8.0,
            master_rate: None,
            slow: 0,
            slow_rate: 10e6 / 8.0,
            late_fraction: 0.0,
            late_window_s: None,
            leave: 0,
            offline_s: None,
            fail_rate: 0.0,
            zero_upload: 0,
            liars: 0,
            hung: 0,
            hung_detect_s: 7.0,
            upload_slots: 4,
            download_slots: 4,
            master_slots: 4,
            seed: 1,
            policy: Policy::Swarm,
            round_interval_s: 0.1,
            event_round_gap_s: 0.01,
            latency_s: 0.005,
            progress_interval_s: 0.5,
            verify_rate: 1e9,
            max_time_factor: 200.0,
            request_cost_s: 0.0,
            batch: false,
        }
    }
}

impl SimConfig {
    pub fn data_bytes(&self) -> u64 {
        self.chunks as u64 * self.chunk_size
    }

    /// Ideal multicast time on the master's link.
    pub fn ideal_seconds(&self) -> f64 {
        self.data_bytes() as f64 / self.master_rate.unwrap_or(self.rate)
    }
}

/// Summary of a run (`--json` prints this).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimResult {
    pub policy: Policy,
    pub peers: usize,
    pub chunks: usize,
    pub data_bytes: u64,
    /// Virtual time until the last peer verified its last chunk.
    pub seconds: f64,
    /// When every chunk had reached at least one peer (end of the master's injection).
    pub seeded_seconds: f64,
    /// Kumar–Ross bound, extended by join times: max(F/u_s, max_i(join_i + F/d_i),
    /// N·F/(u_s + Σu_i)), peers with 0 upload slots counting u_i = 0.
    pub bound_seconds: f64,
    pub efficiency: f64,
    pub master_upload_bytes: u64,
    pub all_complete: bool,
    pub orders: u64,
    pub aborted: u64,
    pub injected_failures: u64,
    pub rounds: u64,
    /// Planner promise checks; all must be 0.
    pub duplicate_orders: u64,
    pub slot_violations: u64,
    pub bad_source_orders: u64,
    pub zero_slot_uploads: u64,
    /// Longest planning round (plan + check_timeouts) in wall-clock milliseconds.
    pub max_round_ms: f64,
    pub wall_seconds: f64,
}

/// What the simulator shows each frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub t: f64,
    pub chunks: usize,
    pub rows: Vec<Row>,
}

/// One node in a frame.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub online: bool,
    /// Per chunk: 2 = has, 1 = incoming, 0 = missing.
    pub cells: Vec<u8>,
    pub downloads: usize,
    pub uploads: usize,
    /// Average download rate since joining, bytes/s.
    pub avg_down: f64,
}
