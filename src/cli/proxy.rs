//! `lanscatter proxy <upstream-master> <dir>` (or an executable named `lanscatter_proxy`):
//! relay a master's folder to a site behind a slow link (see `crate::proxy`).
//!
//! Secrets: the upstream leg joins with `--secret`/`--secret-file` (or `--open`), as a peer
//! does; the downstream swarm uses the same secret unless `--downstream-secret`,
//! `--downstream-secret-file` or `--downstream-open` gives it its own.
//!
//! Output contract (scripts and tests depend on it): once both legs are started, one line on
//! stderr, `lanscatter proxy: ready: downstream listening on <addr:port>, upstream <master>`;
//! then `lanscatter proxy: serving <N> files, <B> bytes downstream` whenever the downstream
//! index changes. `--json` prints a snapshot (the downstream master's, the upstream leg's in
//! its `upstream`) every second on stdout. SIGTERM, Ctrl-C or a service stop end it cleanly
//! with `lanscatter proxy: stopped on <signal>` and exit 0.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::engine::Engine;
use crate::manifest::CacheMode;
use crate::proxy::ProxyConfig;
use crate::secret::SwarmSecret;
use crate::transport::Security;
use crate::units::parse_rate;

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The upstream master, `host` or `host:port` (default port 10564).
    pub upstream: String,
    /// Folder to mirror the upstream folder into and serve downstream. Files the upstream
    /// master lacks are deleted.
    pub dir: PathBuf,
    /// Port downstream peers connect to (as a master's).
    #[arg(long, default_value_t = crate::transport::MASTER_PORT)]
    pub port: u16,
    /// Port of the upstream leg's chunk server (as a peer's).
    #[arg(long, default_value_t = crate::transport::PEER_PORT)]
    pub peer_port: u16,
    /// Address to listen on (default: all interfaces).
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Concurrent uploads to other upstream peers (0, the default: do not feed the upstream
    /// swarm over the slow link).
    #[arg(long, default_value_t = 0)]
    pub upstream_upload_slots: u32,
    /// Concurrent chunk downloads from the upstream swarm.
    #[arg(long, default_value_t = 8)]
    pub download_slots: u32,
    /// Download limit on the upstream link, as 12MB/s or 10Mbit/s (README: Units).
    #[arg(long)]
    pub max_download: Option<String>,
    /// Concurrent chunk uploads served to downstream peers.
    #[arg(long, default_value_t = 8)]
    pub upload_slots: u32,
    /// Upload limit to downstream peers, as 12MB/s or 100Mbit/s (README: Units).
    #[arg(long)]
    pub max_upload: Option<String>,
    /// Neither ask for nor serve LZ4-compressed chunks.
    #[arg(long)]
    pub no_compress: bool,
    /// Sync into a folder that holds files but was not a lanscatter folder before.
    #[arg(long)]
    pub adopt: bool,
    /// The downstream swarm's own secret (default: the upstream one).
    #[arg(long, env = "LANSCATTER_DOWNSTREAM_SECRET", hide_env_values = true, conflicts_with_all = ["downstream_secret_file", "downstream_open"])]
    pub downstream_secret: Option<String>,
    /// Read the downstream swarm's secret from this file.
    #[arg(long, conflicts_with = "downstream_open")]
    pub downstream_secret_file: Option<PathBuf>,
    /// Run the downstream swarm open: anyone on the site's network may join and read.
    #[arg(long)]
    pub downstream_open: bool,
    /// Do not announce the downstream swarm on the site's LAN (mDNS, for `peer auto`).
    #[arg(long)]
    pub no_announce: bool,
    /// Downstream swarm name announced on the LAN (default: this host's name).
    #[arg(long, value_name = "NAME")]
    pub swarm: Option<String>,
    #[command(flatten)]
    pub node: super::node::NodeArgs,
}

/// The downstream swarm's security and its secret (to print how peers join).
fn downstream_security(
    args: &ProxyArgs,
    upstream: (&Security, Option<SwarmSecret>),
) -> anyhow::Result<(Security, Option<SwarmSecret>)> {
    if args.downstream_open {
        return Ok((Security::Open, None));
    }
    let own = match (&args.downstream_secret, &args.downstream_secret_file) {
        (Some(s), _) => Some(SwarmSecret::parse(s)?),
        (None, Some(f)) => Some(SwarmSecret::from_file(f)?),
        (None, None) => None,
    };
    match own {
        Some(s) => Ok((Security::from_secret(&s).context("cannot set up TLS")?, Some(s))),
        None => Ok((upstream.0.clone(), upstream.1)),
    }
}

fn config(args: &ProxyArgs) -> anyhow::Result<(ProxyConfig, Option<SwarmSecret>)> {
    let mut cfg = ProxyConfig::new(args.upstream.clone(), args.dir.clone());
    let ip = args.bind.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let up = &mut cfg.upstream;
    up.bind = SocketAddr::new(ip, args.peer_port);
    up.upload_slots = args.upstream_upload_slots;
    up.download_slots = args.download_slots.max(1);
    up.max_download_bps = args.max_download.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
    up.compress = !args.no_compress;
    up.adopt = args.adopt;
    up.security = args.node.security.for_peer()?;
    let down = &mut cfg.downstream;
    down.bind = SocketAddr::new(ip, args.port);
    down.upload_slots = args.upload_slots;
    down.max_upload_bps = args.max_upload.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
    down.compress = !args.no_compress;
    down.announce = (!args.no_announce).then(|| args.swarm.clone().unwrap_or_else(|| down.name.clone()));
    if args.node.no_cache {
        cfg.upstream.cache = CacheMode::Disabled;
    }
    let upstream_secret = args.node.security.given()?;
    let (security, secret) = downstream_security(args, (&cfg.upstream.security, upstream_secret))?;
    cfg.downstream.security = security;
    Ok((cfg, secret))
}

pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let (cfg, secret) = config(&args)?;
    let upstream = cfg.upstream.server.clone();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let proxy = Engine::start(cfg).await?;
        super::master::announce_join("proxy", "downstream swarm", proxy.local_addr(), secret.as_ref());
        eprintln!("lanscatter proxy: ready: downstream listening on {}, upstream {upstream}", proxy.local_addr());
        let outcome = tokio::select! {
            r = follow(&proxy, args.node.json) => r.map(|()| None),
            why = super::service::stop_signal() => Ok(Some(why)),
        };
        proxy.shutdown().await;
        if let Some(why) = outcome? {
            eprintln!("lanscatter proxy: stopped on {why}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Report the downstream index as it changes (and JSON snapshots) until the engine stops.
async fn follow(proxy: &Engine, json: bool) -> anyhow::Result<()> {
    let mut rx = proxy.status();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut shown = 0;
    loop {
        tick.tick().await;
        let s = rx.borrow_and_update().clone();
        if json {
            println!("{}", serde_json::to_string(&s)?);
        }
        if s.manifest_id != shown {
            shown = s.manifest_id;
            eprintln!("lanscatter proxy: serving {} files, {} bytes downstream", s.files_total, s.folder_bytes);
        }
        if !proxy.is_running() {
            let why = match s.upstream.as_ref().map(|u| &u.state) {
                Some(crate::status::NodeState::Error { message }) => message.clone(),
                _ => "see the messages above".into(),
            };
            anyhow::bail!("the proxy stopped: {why}");
        }
    }
}
