//! `lanscatter simulate`: run the planner against a simulated swarm in virtual time.
//!
//! Sizes and rates are read by [`crate::units`] like everywhere else: `4M` = 4 MiB, `4MB` =
//! 4,000,000 bytes; `100Mbit/s` = 12,500,000 bytes/s,
//! `12MB/s` = 12,000,000 bytes/s. `--table` runs the
//! issue's reference scenarios with both policies; `--bench-round` times planning rounds.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::planner::Policy;
use crate::sim::{self, render::Painter, SimConfig, SimResult};
use crate::units;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Number of peers (the master comes on top).
    #[arg(long, default_value_t = 8)]
    peers: usize,
    /// Data size (1G = 1 GiB, 1GB = 10^9 bytes); chunk count = size / chunk size, rounded up.
    #[arg(long, default_value = "1G", value_parser = positive_size)]
    size: u64,
    /// Chunk size (4M = 4 MiB, 4MB = 4,000,000 bytes).
    #[arg(long, default_value = "4M", value_parser = positive_size)]
    chunk_size: u64,
    /// Chunk count (overrides --size).
    #[arg(long)]
    chunks: Option<usize>,
    /// Link rate of every node, both directions: 100Mbit/s (bits) or 12MB/s (bytes), README: Units.
    #[arg(long, default_value = "100Mbit/s", value_parser = rate_bytes)]
    rate: f64,
    /// Master link rate if different (same units as --rate).
    #[arg(long, value_parser = rate_bytes)]
    master_rate: Option<f64>,
    /// Number of slow peers.
    #[arg(long, default_value_t = 0)]
    slow: usize,
    /// Link rate of slow peers (same units as --rate).
    #[arg(long, default_value = "10Mbit/s", value_parser = rate_bytes)]
    slow_rate: f64,
    /// Fraction of peers joining late, at a uniform time in [0, --late-window].
    #[arg(long, default_value_t = 0.0)]
    late_fraction: f64,
    /// Seconds; default half the ideal multicast time.
    #[arg(long)]
    late_window: Option<f64>,
    /// Peers that leave once mid-run and come back with their data.
    #[arg(long, default_value_t = 0)]
    leave: usize,
    /// Seconds a leaving peer stays away; default 0.2 x the ideal multicast time.
    #[arg(long)]
    offline: Option<f64>,
    /// Probability that a transfer fails (half mid-transfer resets, half bad data).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Peers with 0 upload slots.
    #[arg(long, default_value_t = 0)]
    zero_upload: usize,
    /// Extra members that claim every chunk and answer every chunk request "busy".
    #[arg(long, default_value_t = 0)]
    liars: usize,
    /// Extra peers that freeze at 0.3 x the ideal time (dropped by the ping after --hung-detect).
    #[arg(long, default_value_t = 0)]
    hung: usize,
    /// Seconds until a frozen peer is dropped (the control channel's ping timeout).
    #[arg(long, default_value_t = 7.0)]
    hung_detect: f64,
    #[arg(long, default_value_t = 4)]
    upload_slots: u32,
    #[arg(long, default_value_t = 4)]
    download_slots: u32,
    #[arg(long, default_value_t = 4)]
    master_slots: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// swarm (the planner) or naive (everyone downloads from the master).
    #[arg(long, default_value = "swarm", value_parser = parse_policy)]
    policy: Policy,
    /// Virtual seconds between timer-driven planning rounds.
    #[arg(long, default_value_t = 0.1)]
    round_interval: f64,
    /// Minimum virtual seconds between event-driven rounds (after a finish/failure report);
    /// 0 plans on the timer only.
    #[arg(long, default_value_t = 0.01)]
    event_round_gap: f64,
    /// One-way control latency in seconds (order to start, finish to report).
    #[arg(long, default_value_t = 0.005)]
    latency: f64,
    /// Fixed cost of one order before its bytes flow, in seconds (control message and HTTP
    /// request at both ends); what batching small chunks amortises.
    #[arg(long, default_value_t = 0.0)]
    request_cost: f64,
    /// Plan small chunks in batches, as the master engine does (`planner::batch`).
    #[arg(long)]
    batch: bool,
    /// Print the summary as one JSON object (no drawing).
    #[arg(long)]
    json: bool,
    /// Virtual seconds between drawings of the swarm.
    #[arg(long, default_value_t = 2.0)]
    draw_every: f64,
    /// Do not draw the swarm, only print the summary.
    #[arg(long, short)]
    quiet: bool,
    /// Max chunk cells per row (chunks are grouped to fit).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Run the reference scenarios (planner vs naive) and print a table.
    #[arg(long)]
    table: bool,
    /// Time planning rounds at growing swarm sizes instead of simulating (use a release build).
    #[arg(long)]
    bench_round: bool,
}

/// A size that must not be 0 (no data, or chunks of no bytes, simulate nothing).
fn positive_size(s: &str) -> Result<u64, String> {
    match units::parse_size(s) {
        Ok(0) => Err(format!("{s:?} must be more than 0 bytes")),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The simulator works in bytes per second, as `f64`.
fn rate_bytes(s: &str) -> Result<f64, units::UnitsError> {
    units::parse_rate(s).map(|r| r as f64)
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    match s {
        "swarm" | "planner" => Ok(Policy::Swarm),
        "naive" => Ok(Policy::Naive),
        _ => Err(format!("unknown policy {s:?}: use swarm or naive")),
    }
}

impl SimulateArgs {
    fn config(&self) -> anyhow::Result<SimConfig> {
        let chunks = match self.chunks {
            Some(n) => n,
            None => self.size.div_ceil(self.chunk_size.max(1)) as usize,
        };
        if chunks == 0 || self.peers == 0 {
            bail!("nothing to simulate: need at least one peer and one chunk (check --peers, --size, --chunks)");
        }
        if !(0.0..=1.0).contains(&self.late_fraction) || !(0.0..=1.0).contains(&self.fail_rate) {
            bail!("--late-fraction and --fail-rate are probabilities between 0 and 1");
        }
        if self.slow + self.leave + self.zero_upload > self.peers {
            bail!("--slow + --leave + --zero-upload exceed --peers ({} peers)", self.peers);
        }
        if self.master_slots == 0 {
            bail!("--master-slots must be at least 1, or nothing can ever be sent");
        }
        Ok(SimConfig {
            peers: self.peers,
            chunks,
            chunk_size: self.chunk_size,
            rate: self.rate,
            master_rate: self.master_rate,
            slow: self.slow,
            slow_rate: self.slow_rate,
            late_fraction: self.late_fraction,
            late_window_s: self.late_window,
            leave: self.leave,
            offline_s: self.offline,
            fail_rate: self.fail_rate,
            zero_upload: self.zero_upload,
            liars: self.liars,
            hung: self.hung,
            hung_detect_s: self.hung_detect,
            upload_slots: self.upload_slots,
            download_slots: self.download_slots,
            master_slots: self.master_slots,
            seed: self.seed,
            policy: self.policy,
            round_interval_s: self.round_interval,
            event_round_gap_s: self.event_round_gap,
            latency_s: self.latency,
            request_cost_s: self.request_cost,
            batch: self.batch,
            ..SimConfig::default()
        })
    }
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.bench_round {
        return bench();
    }
    if args.table {
        return table(&args);
    }
    let cfg = args.config()?;
    let res = if args.json || args.quiet {
        sim::run(&cfg, f64::INFINITY, None)
    } else {
        let mut painter = Painter::new(std::io::stdout().is_terminal(), args.width);
        let mut draw = |f: &sim::Frame| painter.draw(f);
        sim::run(&cfg, args.draw_every, Some(&mut draw))
    };
    if args.json {
        out(&format!("{}\n", serde_json::to_string(&res).context("serializing the summary")?));
    } else {
        print_summary(&res);
    }
    Ok(if res.all_complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic, so it is ignored.
fn out(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(s.as_bytes());
}

fn print_summary(r: &SimResult) {
    out(&format!(
        "{:?}: {} peers, {} chunks, {:.0} MiB: {:.1} s simulated, bound {:.1} s, efficiency {:.3}, \
         master sent {:.2}x data, all complete: {}\n",
        r.policy,
        r.peers,
        r.chunks,
        r.data_bytes as f64 / (1 << 20) as f64,
        r.seconds,
        r.bound_seconds,
        r.efficiency,
        r.master_upload_bytes as f64 / r.data_bytes.max(1) as f64,
        r.all_complete
    ));
    out(&format!(
        "orders {}, aborted {}, injected failures {}, rounds {}, longest round {:.2} ms, wall {:.2} s; \
         violations: duplicate {}, slot {}, bad source {}, 0-slot upload {}\n",
        r.orders,
        r.aborted,
        r.injected_failures,
        r.rounds,
        r.max_round_ms,
        r.wall_seconds,
        r.duplicate_orders,
        r.slot_violations,
        r.bad_source_orders,
        r.zero_slot_uploads
    ));
}

/// The reference scenarios, each with the planner and the naive policy.
pub fn reference_scenarios(seed: u64) -> Vec<(&'static str, SimConfig)> {
    let base = SimConfig { seed, ..SimConfig::default() };
    vec![
        ("8 peers, 100 Mbit/s, 1 GiB / 256", SimConfig { peers: 8, ..base.clone() }),
        ("64 peers, 100 Mbit/s, 1 GiB / 256", SimConfig { peers: 64, ..base.clone() }),
        ("8 peers, 2 at 10 Mbit/s", SimConfig { peers: 8, slow: 2, ..base.clone() }),
        ("8 peers, 30% late", SimConfig { peers: 8, late_fraction: 0.3, ..base.clone() }),
        ("64 peers, 30% late", SimConfig { peers: 64, late_fraction: 0.3, ..base.clone() }),
        (
            "64 peers, 1 GiB / 512 (2 MiB chunks)",
            SimConfig { peers: 64, chunks: 512, chunk_size: 2 << 20, ..base.clone() },
        ),
        ("16 peers, 2 leave+rejoin, 5% failures", SimConfig { peers: 16, leave: 2, fail_rate: 0.05, ..base }),
    ]
}

fn table(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    println!("| scenario | policy | seconds | bound | efficiency | master sent / data | all complete |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for (name, cfg) in reference_scenarios(args.seed) {
        for policy in [Policy::Swarm, Policy::Naive] {
            let r = sim::run(&SimConfig { policy, ..cfg.clone() }, f64::INFINITY, None);
            println!(
                "| {name} | {:?} | {:.1} | {:.1} | {:.3} | {:.2} | {} |",
                policy,
                r.seconds,
                r.bound_seconds,
                r.efficiency,
                r.master_upload_bytes as f64 / r.data_bytes.max(1) as f64,
                r.all_complete
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench() -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; use `cargo run --release -- simulate --bench-round` for real figures");
    }
    println!("CPU ms per call (thread CPU time on Unix). Reference: one pass over a peers x chunks byte matrix.");
    println!("| peers | chunks | full round ms median / min (orders) | steady round ms median / p90 (orders) | check_timeouts ms | reference ms | steady / reference |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (peers, chunks) in [(100, 10_000), (300, 10_000), (1000, 10_000), (100, 30_000), (100, 100_000), (300, 100_000)]
    {
        let r = sim::bench::bench_round(peers, chunks, 40, 7);
        println!(
            "| {} | {} | {:.2} / {:.2} ({}) | {:.3} / {:.3} ({:.0}) | {:.3} | {:.2} | {:.3} |",
            r.peers,
            r.chunks,
            r.full_round_ms,
            r.full_round_ms_min,
            r.full_round_orders,
            r.steady_round_ms_median,
            r.steady_round_ms_p90,
            r.steady_round_orders,
            r.check_timeouts_ms_median,
            r.matrix_pass_ms,
            r.steady_round_ms_median / r.matrix_pass_ms.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(positive_size("4M").unwrap(), 4 << 20);
        assert_eq!(positive_size("4MB").unwrap(), 4_000_000);
        assert_eq!(positive_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(positive_size("1T").unwrap(), 1 << 40);
        assert_eq!(rate_bytes("100Mbit/s").unwrap(), 100e6 / 8.0);
        assert!(rate_bytes("100M").is_err(), "bits or bytes must be said");
        assert_eq!(rate_bytes("12MB/s").unwrap(), 12e6);
        assert!(rate_bytes("fast").is_err());
        assert!(positive_size("-1M").is_err());
        assert!(positive_size("0").is_err());
    }
}
