//! `lanscatter master <source-dir>`: serve a folder (read-only) and coordinate peers.
//!
//! Output contract (scripts depend on it): once the folder is indexed and the port is open,
//! exactly one line goes to stderr:
//! `lanscatter master: ready: <N> files, <B> bytes, listening on <addr:port>`.
//! With `--json`, a status snapshot is printed as one JSON line on stdout every second (the
//! first right after the ready line); otherwise a short progress line every 10 s.
//! Stops cleanly on SIGTERM, Ctrl-C or a service stop (`service::stop_signal`): peers are told
//! by the closing connections, uploads in flight get a few seconds, then one line
//! `lanscatter master: stopped on <signal>` and exit 0.
//! With `--expect` and `--exit-when-all-done` it exits 0 once every expected peer is up to
//! date with the current manifest, after the line
//! `lanscatter master: every expected peer is up to date; exiting (--exit-when-all-done)`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::engine::Engine;
use crate::manifest::{CacheMode, ChunkRule};
use crate::master::expect::Expect;
use crate::master::MasterConfig;
use crate::secret::SwarmSecret;
use crate::status::{NodeState, Snapshot};
use crate::units::{human_rate, parse_rate};

#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// Folder to distribute. It is never written to.
    pub source_dir: PathBuf,
    /// Port for peers (control websocket and chunk downloads).
    #[arg(long, default_value_t = crate::transport::MASTER_PORT)]
    pub port: u16,
    /// Address to listen on (default: all interfaces).
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Chunk size: `auto` (default; per file, 1-128 MiB) or a size like 8M.
    #[arg(long, default_value = "auto")]
    pub chunk_size: String,
    /// Concurrent chunk uploads served by the master.
    #[arg(long, default_value_t = 8)]
    pub upload_slots: u32,
    /// Upload limit in bytes/s as 12MB/s, or a link speed as 100Mbit/s (README: Units).
    #[arg(long)]
    pub max_upload: Option<String>,
    /// Never LZ4-compress chunks in flight.
    #[arg(long)]
    pub no_compress: bool,
    /// Full rescan period in seconds (changes are usually noticed at once by the folder watcher).
    #[arg(long, default_value_t = 60)]
    pub rescan_interval: u64,
    /// Publish a scan even when the folder emptied or lost more than half of its files or bytes
    /// at once (by default the master keeps the last good index, so peers keep their copies).
    #[arg(long)]
    pub allow_shrink: bool,
    /// Peers to expect: a file of host names or IP addresses (one per line, `#` comments) or a
    /// count. The status page, /api/status, /metrics and `lanscatter status` then say which are
    /// done, syncing, stuck (connected, no progress for 60 s) or missing.
    #[arg(long, value_name = "FILE|N")]
    pub expect: Option<String>,
    /// Exit 0 once every expected peer is up to date with the current folder (needs --expect).
    #[arg(long, requires = "expect")]
    pub exit_when_all_done: bool,
    /// Peers served at once (control connections); the caps on HTTP connections (2x + 256)
    /// and on connections that have not sent a request yet (1/2 + 64) follow from it. The
    /// default is sized for 1000 peers (README: Security and limits).
    #[arg(long, default_value_t = crate::transport::DEFAULT_MAX_PEERS as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_peers: u32,
    /// Let other peers fetch from whatever host a peer advertises (--advertise). Default: an
    /// advertised host is used only if it resolves to the address the peer connects from.
    #[arg(long)]
    pub trust_advertised_hosts: bool,
    /// Do not announce this master on the LAN (mDNS), which `lanscatter peer auto` looks for.
    #[arg(long)]
    pub no_announce: bool,
    /// Swarm name announced on the LAN, which `peer auto --swarm NAME` picks (default: this
    /// master's host name).
    #[arg(long, value_name = "NAME")]
    pub swarm: Option<String>,
    #[command(flatten)]
    pub node: super::node::NodeArgs,
}

/// Say how peers join and where the status page is (before the ready line); `prog` is
/// "master" or "proxy", `swarm` names the swarm it serves ("swarm", "downstream swarm").
pub(super) fn announce_join(prog: &str, swarm: &str, addr: SocketAddr, secret: Option<&SwarmSecret>) {
    let host = if addr.ip().is_unspecified() { crate::host::host_name() } else { addr.ip().to_string() };
    let hostport = crate::transport::host_port(&host, addr.port());
    match secret {
        Some(s) => {
            eprintln!("lanscatter {prog}: secured {swarm}; peers join with:");
            eprintln!("  lanscatter peer {hostport} <dst-dir> --secret {}", s.join_code());
            eprintln!("lanscatter {prog}: status page: http://{hostport}/?token={}", s.web_token());
        }
        None => {
            eprintln!("lanscatter {prog}: OPEN {swarm}: anyone on this network can join, fetch and read it");
            eprintln!("lanscatter {prog}: status page: http://{hostport}/");
        }
    }
}

fn config(args: &MasterArgs) -> anyhow::Result<(MasterConfig, Option<SwarmSecret>)> {
    let mut cfg = MasterConfig::new(args.source_dir.clone());
    cfg.bind = SocketAddr::new(args.bind.unwrap_or(IpAddr::from([0, 0, 0, 0])), args.port);
    cfg.chunk_rule = args.chunk_size.parse::<ChunkRule>()?;
    cfg.upload_slots = args.upload_slots;
    cfg.max_upload_bps = args.max_upload.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
    cfg.compress = !args.no_compress;
    cfg.rescan_interval = Duration::from_secs(args.rescan_interval.max(1));
    if args.node.no_cache {
        cfg.cache = CacheMode::Disabled;
    }
    cfg.allow_shrink = args.allow_shrink;
    cfg.max_peers = args.max_peers as usize;
    cfg.trust_advertised_hosts = args.trust_advertised_hosts;
    cfg.announce = (!args.no_announce).then(|| args.swarm.clone().unwrap_or_else(|| cfg.name.clone()));
    cfg.expect = args.expect.as_deref().map(expect_arg).transpose()?;
    let (security, secret) = args.node.security.for_master()?;
    cfg.security = security;
    Ok((cfg, secret))
}

/// `--expect N` (a count) or `--expect FILE` (names or addresses, one per line).
fn expect_arg(arg: &str) -> anyhow::Result<Expect> {
    if let Ok(n) = arg.trim().parse::<u32>() {
        return Ok(Expect::count(n)?);
    }
    let text = std::fs::read_to_string(arg).with_context(|| {
        format!("cannot read the expected-peer list {arg}; give a file of host names or addresses (one per line), or a count")
    })?;
    Expect::parse_list(&text).with_context(|| format!("expected-peer list {arg}"))
}

/// The plain progress line, every 10 s.
fn progress_line(s: &Snapshot) -> String {
    let mut line = format!(
        "lanscatter master: {} peers, {:.1} % delivered, serving {}",
        s.nodes.len().saturating_sub(1),
        s.progress() * 100.0,
        human_rate(s.upload_bps)
    );
    if let Some(e) = &s.expected {
        line.push_str(&format!(
            "; expected: {} done, {} syncing, {} stuck, {} missing",
            e.done, e.syncing, e.stuck, e.missing
        ));
    }
    line
}

pub fn run(args: MasterArgs) -> anyhow::Result<ExitCode> {
    let (cfg, secret) = config(&args)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let master = Engine::start(cfg).await?;
        announce_join("master", "swarm", master.local_addr(), secret.as_ref());
        let mut rx = master.status();
        let mut ready = false;
        let mut last_plain = std::time::Instant::now();
        let mut errors = ErrorLines::default();
        let mut json_tick = tokio::time::interval(Duration::from_secs(1));
        let stop = super::service::stop_signal();
        tokio::pin!(stop);
        let stopped_by = loop {
            tokio::select! {
                why = &mut stop => break Some(why),
                r = rx.changed() => {
                    if r.is_err() {
                        break None;
                    }
                }
                _ = json_tick.tick(), if args.node.json && ready => {
                    let s = rx.borrow().clone();
                    println!("{}", serde_json::to_string(&s)?);
                    continue;
                }
            }
            let s = rx.borrow_and_update().clone();
            match &s.state {
                NodeState::Indexing { .. } | NodeState::Starting => {}
                NodeState::Error { message: e } if !ready => {
                    master.shutdown().await;
                    anyhow::bail!("{e}");
                }
                _ if !ready => {
                    ready = true;
                    eprintln!(
                        "lanscatter master: ready: {} files, {} bytes, listening on {}",
                        s.files_total,
                        s.folder_bytes,
                        master.local_addr()
                    );
                    if args.node.json {
                        println!("{}", serde_json::to_string(&s)?);
                    }
                }
                _ => {
                    if !args.node.json {
                        errors.show(&s);
                    }
                    if args.exit_when_all_done && s.expected.as_ref().is_some_and(|e| e.all_done()) {
                        eprintln!(
                            "lanscatter master: every expected peer is up to date; exiting (--exit-when-all-done)"
                        );
                        break None;
                    }
                    if !args.node.json && last_plain.elapsed() >= Duration::from_secs(10) {
                        last_plain = std::time::Instant::now();
                        eprintln!("{}", progress_line(&s));
                    }
                }
            }
        };
        master.shutdown().await;
        if let Some(why) = stopped_by {
            eprintln!("lanscatter master: stopped on {why}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The master's plain output names every error state's reason once per change: its own (an
/// emptied source folder, an indexing error) and each peer's (a full disk, names it cannot
/// create), which peers report in their stats and the status page shows per node.
#[derive(Default)]
struct ErrorLines {
    /// Last reason printed per node (`None` key: the master itself), by node name.
    shown: std::collections::HashMap<Option<String>, String>,
}

impl ErrorLines {
    fn show(&mut self, s: &Snapshot) {
        let mut now = std::collections::HashMap::new();
        if let NodeState::Error { message } = &s.state {
            now.insert(None, message.clone());
        }
        for n in s.nodes.iter().filter(|n| !n.is_master) {
            if let NodeState::Error { message } = &n.state {
                now.insert(Some(n.name.clone()), message.clone());
            }
        }
        for (who, message) in &now {
            if self.shown.get(who) != Some(message) {
                match who {
                    None => eprintln!("lanscatter master: error: {message}"),
                    Some(name) => eprintln!("lanscatter master: peer {name}: error: {message}"),
                }
            }
        }
        for who in self.shown.keys().filter(|w| !now.contains_key(*w)) {
            match who {
                None => eprintln!("lanscatter master: the error cleared"),
                Some(name) => eprintln!("lanscatter master: peer {name}: no longer reports an error"),
            }
        }
        self.shown = now;
    }
}
