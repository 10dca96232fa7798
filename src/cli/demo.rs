//! `lanscatter demo`: a master and N peers in this process on loopback, a sample folder (or
//! `--source DIR`), progress, a byte-for-byte check of every peer and a one-line summary.
//!
//! Output: the status page URL and progress on stderr (an indicatif bar on a terminal, a line a
//! second otherwise); the summary on stdout, one line starting `lanscatter demo: ok:`. Exit 0 when
//! every peer is identical to the source, 1 with the reason otherwise, 130 on Ctrl-C. The work
//! itself is [`crate::demo`]; this file parses flags and prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::demo::{Demo, DemoConfig, Report};
use crate::status::Snapshot;
use crate::units::human_size;

#[derive(Debug, clap::Args)]
#[command(after_help = "Efficiency: before the peers start, the demo copies bytes through N plain loopback TCP \
                        streams at once (no TLS, hashing or disk) and measures the rate R. Each peer must receive \
                        the folder's unique bytes U, so no sync can end before N x U / R; efficiency is that bound \
                        over the measured time (start of the peers to the last one up to date). The peers share \
                        this machine's cores, so a fraction of 1 is expected.")]
pub struct DemoArgs {
    /// Distribute this folder instead of a generated sample (it is only read, never written).
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Size of the generated sample, e.g. 32M, 200MB, 1GiB (README: Units).
    #[arg(long, default_value = "32MiB", value_parser = crate::units::parse_size, conflicts_with = "source")]
    pub size: u64,
    /// Number of peers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub peers: u16,
    /// Keep the temp folder (sample, peer folders, caches) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Give up after this many seconds if the peers are not all up to date.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let cfg = DemoConfig {
        source: args.source.clone(),
        size: args.size,
        peers: usize::from(args.peers),
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let mut interrupt = Interrupt::listen().context("cannot listen for Ctrl-C")?;
        let demo = tokio::select! {
            biased;
            _ = interrupt.recv() => return Ok(interrupted()),
            d = Demo::start(&cfg) => d?,
        };
        announce(&demo, &cfg);
        let mut bar = Progress::new();
        let outcome = tokio::select! {
            biased;
            _ = interrupt.recv() => None,
            r = demo.wait(cfg.timeout, |s| bar.show(s, cfg.peers)) => Some(r),
        };
        bar.finish();
        let report = outcome.map(|r| r.and_then(|secs| demo.verify(secs)));
        if let Some(kept) = demo.finish(args.keep).await {
            eprintln!("lanscatter demo: kept the sample, peer folders and caches in {}", kept.display());
        }
        match report {
            None => Ok(interrupted()),
            Some(r) => {
                println!("{}", summary(&r?));
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn interrupted() -> ExitCode {
    eprintln!("lanscatter demo: interrupted; nothing was checked");
    ExitCode::from(130)
}

fn announce(demo: &Demo, cfg: &DemoConfig) {
    match demo.sample() {
        Some(s) => eprintln!(
            "lanscatter demo: made a sample folder: {} files, {} in {}",
            s.files,
            human_size(s.bytes),
            demo.source().display()
        ),
        None => eprintln!("lanscatter demo: distributing {} (read only)", demo.source().display()),
    }
    eprintln!("lanscatter demo: a master and {} peers on 127.0.0.1, secured with a fresh swarm secret", cfg.peers);
    eprintln!("lanscatter demo: status page: {}", demo.status_url());
}

/// The one-line result: what was delivered, how fast, against what bound.
pub fn summary(r: &Report) -> String {
    let v = &r.verified;
    let delivered = v.bytes * r.peers as u64;
    let skipped = match v.skipped {
        0 => String::new(),
        n => format!(" ({n} symlinks or special files left out, as always)"),
    };
    format!(
        "lanscatter demo: ok: {} peers identical to the source{skipped}: {} files, {} folders, {} each, {} delivered in \
         {:.2} s ({}/s); efficiency {:.2} of the loopback bound ({} x {} unique at {}/s plain loopback TCP = {:.2} s); \
         master sent {}, peers relayed {}",
        r.peers,
        v.files,
        v.dirs,
        human_size(v.bytes),
        human_size(delivered),
        r.secs,
        human_size((delivered as f64 / r.secs.max(1e-9)) as u64),
        r.efficiency(),
        r.peers,
        human_size(r.unique_bytes),
        human_size(r.probe.rate() as u64),
        r.bound_secs,
        human_size(r.master_uploaded),
        human_size(r.peers_uploaded),
    )
}

/// Ctrl-C, listened for from the start: the handler is installed when this is made, so a Ctrl-C
/// at any moment after it interrupts the demo cleanly instead of killing it with its temp folder.
struct Interrupt {
    #[cfg(unix)]
    inner: tokio::signal::unix::Signal,
    #[cfg(windows)]
    inner: tokio::signal::windows::CtrlC,
}

impl Interrupt {
    fn listen() -> std::io::Result<Interrupt> {
        #[cfg(unix)]
        let inner = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        #[cfg(windows)]
        let inner = tokio::signal::windows::ctrl_c()?;
        Ok(Interrupt { inner })
    }

    async fn recv(&mut self) {
        self.inner.recv().await;
    }
}

/// A bar on a terminal, else a line a second.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:20} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Progress { bar }
    }

    fn show(&mut self, s: &Snapshot, peers: usize) {
        let done = s.nodes.iter().filter(|n| !n.is_master && matches!(n.state, crate::status::NodeState::UpToDate));
        let msg = format!("{}/{peers} peers done", done.count());
        match &self.bar {
            None if s.bytes_total == 0 => eprintln!("lanscatter demo: {msg}, peers connecting"),
            Some(b) => {
                b.set_length(s.bytes_total);
                b.set_position(s.bytes_done);
                b.set_message(msg);
            }
            None => eprintln!(
                "lanscatter demo: {msg}, {:.1} % ({} of {}), {}/s",
                s.progress() * 100.0,
                human_size(s.bytes_done),
                human_size(s.bytes_total),
                human_size(s.download_bps as u64)
            ),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
