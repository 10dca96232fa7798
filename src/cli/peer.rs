//! `lanscatter peer <server-address> <dst-dir>`: mirror the master's folder.
//!
//! Progress: an indicatif bar (bytes, rate, ETA) on a terminal, a plain line every 5 s
//! otherwise, one JSON snapshot per second on stdout with `--json`. With `--exit-when-done`
//! the process exits 0 as soon as the folder matches the master's current manifest; a fatal
//! error (refused by the master, protocol mismatch, bad destination) exits 1 with the reason.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::engine::{is_done, Engine};
use crate::manifest::CacheMode;
use crate::peer::PeerConfig;
use crate::status::NodeState;
use crate::units::parse_rate;

#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// Master address, `host` or `host:port` (default port 10564).
    pub server: String,
    /// Folder to mirror the master's folder into. Files the master lacks are deleted.
    pub dst_dir: PathBuf,
    /// Port this peer serves chunks to other peers on.
    #[arg(long, default_value_t = crate::transport::PEER_PORT)]
    pub port: u16,
    /// Address to listen on (default: all interfaces).
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Host name or IP other peers should use to reach this one (default: the address this
    /// host uses to talk to the master).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Concurrent uploads to other peers (0 = never upload).
    #[arg(long, default_value_t = 8)]
    pub upload_slots: u32,
    /// Concurrent chunk downloads.
    #[arg(long, default_value_t = 8)]
    pub download_slots: u32,
    /// Upload limit in bit/s with an optional k, M or G suffix (e.g. 100M = 100 Mbit/s).
    #[arg(long)]
    pub max_upload: Option<String>,
    /// Download limit in bit/s with an optional k, M or G suffix.
    #[arg(long)]
    pub max_download: Option<String>,
    /// Do not ask for LZ4-compressed chunks nor serve them.
    #[arg(long)]
    pub no_compress: bool,
    /// Exit 0 once the folder matches the master's current manifest.
    #[arg(long)]
    pub exit_when_done: bool,
    /// Print status snapshots as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not use the hash cache.
    #[arg(long)]
    pub no_cache: bool,
}

pub fn run(args: PeerArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = PeerConfig::new(args.server.clone(), args.dst_dir.clone());
    cfg.bind = SocketAddr::new(args.bind.unwrap_or(IpAddr::from([0, 0, 0, 0])), args.port);
    cfg.advertise = args.advertise.clone();
    cfg.upload_slots = args.upload_slots;
    cfg.download_slots = args.download_slots.max(1);
    cfg.max_upload_bps = args.max_upload.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
    cfg.max_download_bps = args.max_download.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
    cfg.compress = !args.no_compress;
    if args.no_cache {
        cfg.cache = CacheMode::Disabled;
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let peer = Engine::start(cfg).await?;
        let mut rx = peer.status();
        let tty = !args.json && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n = 0u64;
        let mut shown_detail: Option<String> = None;
        let code = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
                _ = tick.tick() => {}
                // --exit-when-done reacts to the engine's status at once rather than at the
                // next 1 s tick (scripts and the LAN bench time the exit).
                Ok(()) = rx.changed(), if args.exit_when_done => {
                    let s = rx.borrow_and_update().clone();
                    if !is_done(&s) {
                        continue;
                    }
                }
            }
            n += 1;
            let s = rx.borrow_and_update().clone();
            if args.json {
                println!("{}", serde_json::to_string(&s)?);
            }
            let label = match &s.state {
                NodeState::Starting => "starting",
                NodeState::Indexing { .. } => "indexing",
                NodeState::Connecting => "connecting",
                NodeState::Syncing => "syncing",
                NodeState::UpToDate => "up to date",
                NodeState::Error { .. } => "error",
            };
            if let Some(b) = &bar {
                b.set_length(s.bytes_total);
                b.set_position(s.bytes_done);
                b.set_message(label);
                if s.detail.is_some() && s.detail != shown_detail {
                    b.println(format!("lanscatter peer: {}", s.detail.as_deref().unwrap_or_default()));
                }
                shown_detail = s.detail.clone();
            } else if let (false, Some(d)) = (args.json, &s.detail) {
                if n % 5 == 1 || s.detail != shown_detail {
                    eprintln!("lanscatter peer: {label}: {d}");
                }
                shown_detail = s.detail.clone();
            } else if !args.json && n % 5 == 1 && s.bytes_total == 0 {
                eprintln!("lanscatter peer: {label} ({})", args.server);
            } else if !args.json && n % 5 == 1 {
                eprintln!(
                    "lanscatter peer: {label}: {}/{} bytes ({:.1} %), {:.1} MB/s down, {:.1} MB/s up",
                    s.bytes_done,
                    s.bytes_total,
                    s.progress() * 100.0,
                    s.download_bps / 1e6,
                    s.upload_bps / 1e6
                );
            }
            if let NodeState::Error { message: e } = &s.state {
                if !peer.is_running() {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    eprintln!("lanscatter peer: error: {e}");
                    break ExitCode::FAILURE;
                }
            }
            if args.exit_when_done && is_done(&s) {
                if let Some(b) = &bar {
                    b.finish_with_message("up to date");
                }
                eprintln!(
                    "lanscatter peer: up to date: {} files, {} bytes in {}",
                    s.files_total,
                    s.folder_bytes,
                    s.folder.display()
                );
                break ExitCode::SUCCESS;
            }
        };
        peer.shutdown().await;
        Ok(code)
    })
}
