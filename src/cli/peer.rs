//! `lanscatter peer <server-address> <dst-dir>`: mirror the master's folder.
//!
//! Progress: an indicatif bar (bytes, rate, ETA) on a terminal, a plain line every 5 s
//! otherwise, one JSON snapshot per second on stdout with `--json`. With `--exit-when-done`
//! the process exits 0 as soon as the folder matches the master's current manifest; a fatal
//! error (refused by the master, protocol mismatch, bad destination) exits 1 with the reason.
//! SIGTERM, Ctrl-C or a service stop (`service::stop_signal`) stop it cleanly: fetches in
//! flight are dropped unwritten, verified chunks stay, one line
//! `lanscatter peer: stopped on <signal>; …` and exit 0; a restart fetches only the rest.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::engine::{is_done, Engine};
use crate::manifest::CacheMode;
use crate::peer::PeerConfig;
use crate::status::{NodeState, Snapshot};
use crate::units::{human_rate, parse_rate};

#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// Master address, `host` or `host:port` (default port 10564), or `auto` to find the
    /// master on the LAN (mDNS; several masters: pick one with --swarm).
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
    /// host uses to talk to the master). An IP address or DNS name only; the master accepts it
    /// only if it resolves to the address this peer connects from (or with
    /// `--trust-advertised-hosts`).
    #[arg(long, value_parser = advertise_arg)]
    pub advertise: Option<String>,
    /// Concurrent uploads to other peers (0 = never upload).
    #[arg(long, default_value_t = 8)]
    pub upload_slots: u32,
    /// Concurrent chunk downloads.
    #[arg(long, default_value_t = 8)]
    pub download_slots: u32,
    /// Upload limit in bytes/s as 12MB/s, or a link speed as 100Mbit/s (README: Units).
    #[arg(long)]
    pub max_upload: Option<String>,
    /// Download limit in bytes/s as 12MB/s, or a link speed as 100Mbit/s (README: Units).
    #[arg(long)]
    pub max_download: Option<String>,
    /// Do not ask for LZ4-compressed chunks nor serve them.
    #[arg(long)]
    pub no_compress: bool,
    /// Exit 0 once the folder matches the master's current manifest.
    #[arg(long)]
    pub exit_when_done: bool,
    /// Sync into a folder that holds files but was not a lanscatter peer folder before (an old
    /// copy to seed from): its content is reused, files the master lacks are deleted.
    #[arg(long)]
    pub adopt: bool,
    /// With `auto`: the swarm to join when several masters answer.
    #[arg(long, value_name = "NAME")]
    pub swarm: Option<String>,
    #[command(flatten)]
    pub node: super::node::NodeArgs,
}

pub fn run(args: PeerArgs) -> anyhow::Result<ExitCode> {
    let (server, swarm) = server(&args)?;
    let cfg = config(&args, server)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let peer = Engine::start(cfg).await?;
        // Only now: the engine has checked the folder (never a root, home or system folder).
        if let Some(swarm) = swarm {
            let folder = peer.status().borrow().folder.clone();
            if let Err(e) = remember_swarm(&folder, &swarm) {
                eprintln!("lanscatter peer: cannot note swarm {swarm:?} in {}: {e}", folder.display());
            }
        }
        // Dropping `follow` mid-report is fine: it only reads snapshots and prints.
        let outcome = tokio::select! {
            code = follow(&peer, &args) => Err(code),
            why = super::service::stop_signal() => Ok(why),
        };
        peer.shutdown().await;
        match outcome {
            Ok(why) => {
                eprintln!(
                    "lanscatter peer: stopped on {why}; verified chunks are kept, a restart fetches only the rest"
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => code,
        }
    })
}

/// `--advertise`: refused at parse time (exit 2) with what is allowed.
fn advertise_arg(arg: &str) -> Result<String, String> {
    crate::transport::validate_host(arg.trim()).map_err(|e| e.to_string())
}

fn config(args: &PeerArgs, server: String) -> anyhow::Result<PeerConfig> {
    let mut cfg = PeerConfig::new(server, args.dst_dir.clone());
    cfg.bind = SocketAddr::new(args.bind.unwrap_or(IpAddr::from([0, 0, 0, 0])), args.port);
    cfg.advertise = args.advertise.clone();
    cfg.upload_slots = args.upload_slots;
    cfg.download_slots = args.download_slots.max(1);
    cfg.max_upload_bps = args.max_upload.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
    cfg.max_download_bps = args.max_download.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
    cfg.compress = !args.no_compress;
    cfg.adopt = args.adopt;
    if args.node.no_cache {
        cfg.cache = CacheMode::Disabled;
    }
    cfg.security = args.node.security.for_peer()?;
    Ok(cfg)
}

/// The master's address: as given, or found on the LAN for `auto` (with the swarm it
/// belongs to, to remember in the folder).
fn server(args: &PeerArgs) -> anyhow::Result<(String, Option<String>)> {
    use crate::transport::discovery;
    if !args.server.eq_ignore_ascii_case("auto") {
        return Ok((args.server.clone(), None));
    }
    let want = auto_swarm(args.swarm.as_deref(), &args.dst_dir);
    eprintln!("lanscatter peer: looking for masters on the LAN (mDNS)…");
    let found = discovery::browse(discovery::BROWSE_TIME)?;
    let m = discovery::choose(&found, want.as_deref())?;
    eprintln!("lanscatter peer: found master {} at {}", m.swarm, m.addr);
    Ok((m.addr, Some(m.swarm)))
}

/// Where `auto` notes the swarm it joined, beside the peer's marker.
const SWARM_FILE: &str = "swarm.txt";

/// The swarm `auto` looks for: `--swarm`, else the one this folder was synced from before.
/// In an open swarm no secret tells masters apart, so without this a later `auto` would follow
/// any other master that happens to be the only one answering, and sync the folder to it.
fn auto_swarm(given: Option<&str>, dst: &std::path::Path) -> Option<String> {
    if let Some(g) = given {
        return Some(g.to_owned());
    }
    let path = dst.join(crate::paths::STATE_DIR).join(SWARM_FILE);
    let text = std::fs::read_to_string(path).ok()?;
    let name = text.trim();
    (!name.is_empty() && name.len() <= crate::protocol::MAX_NAME_LEN).then(|| name.to_owned())
}

/// Note `swarm` in `folder` for the next `auto` ([`auto_swarm`]).
fn remember_swarm(folder: &std::path::Path, swarm: &str) -> std::io::Result<()> {
    let dir = folder.join(crate::paths::STATE_DIR);
    let file = dir.join(SWARM_FILE);
    // Never through a link planted in the folder.
    for p in [&dir, &file] {
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other(format!("{} is a symbolic link", p.display())));
        }
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(file, format!("{swarm}\n"))
}

/// Report the engine's progress until it is done (with `--exit-when-done`) or fails.
async fn follow(peer: &Engine, args: &PeerArgs) -> anyhow::Result<ExitCode> {
    let mut rx = peer.status();
    let mut out = Reporter::new(args);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // --exit-when-done reacts to the engine's status at once rather than at the
            // next 1 s tick (scripts and the LAN bench time the exit).
            Ok(()) = rx.changed(), if args.exit_when_done => {
                if !is_done(&rx.borrow_and_update()) {
                    continue;
                }
            }
        }
        let s = rx.borrow_and_update().clone();
        out.show(&s)?;
        if let NodeState::Error { message: e } = &s.state {
            if !peer.is_running() {
                out.abandon();
                eprintln!("lanscatter peer: error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
        if args.exit_when_done && is_done(&s) {
            out.finish();
            eprintln!(
                "lanscatter peer: up to date: {} files, {} bytes in {}",
                s.files_total,
                s.folder_bytes,
                s.folder.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Progress output: a bar on a terminal, a plain line every 5 s otherwise, JSON with `--json`.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    json: bool,
    server: String,
    shown: u64,
    shown_detail: Option<String>,
    /// The error state's reason last printed: each new reason is printed once, in full.
    shown_error: Option<String>,
}

impl Reporter {
    fn new(args: &PeerArgs) -> Self {
        let tty = !args.node.json && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:12} [{bar:40}] {bytes}/{total_bytes} {decimal_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Reporter {
            bar,
            json: args.node.json,
            server: args.server.clone(),
            shown: 0,
            shown_detail: None,
            shown_error: None,
        }
    }

    fn show(&mut self, s: &Snapshot) -> anyhow::Result<()> {
        self.shown += 1;
        if self.json {
            println!("{}", serde_json::to_string(s)?);
            return Ok(());
        }
        self.show_error(s);
        let label = s.state.label();
        let new_detail = s.detail.is_some() && s.detail != self.shown_detail;
        let every_5 = self.shown % 5 == 1;
        if let Some(b) = &self.bar {
            b.set_length(s.bytes_total);
            b.set_position(s.bytes_done);
            b.set_message(label);
            if new_detail {
                b.println(format!("lanscatter peer: {}", s.detail.as_deref().unwrap_or_default()));
            }
        } else if let Some(d) = &s.detail {
            if every_5 || new_detail {
                eprintln!("lanscatter peer: {label}: {d}");
            }
        } else if every_5 && s.bytes_total == 0 {
            eprintln!("lanscatter peer: {label} ({})", self.server);
        } else if every_5 {
            eprintln!(
                "lanscatter peer: {label}: {}/{} bytes ({:.1} %), {} down, {} up",
                s.bytes_done,
                s.bytes_total,
                s.progress() * 100.0,
                human_rate(s.download_bps),
                human_rate(s.upload_bps)
            );
        }
        self.shown_detail = s.detail.clone();
        Ok(())
    }

    /// A non-fatal error says why once per change, not only the word "error" every 5 s (the
    /// message names the file and the space for a full disk, see `peer::layout::LayoutError`).
    fn show_error(&mut self, s: &Snapshot) {
        let now = match &s.state {
            NodeState::Error { message } => Some(message.clone()),
            _ => None,
        };
        if now == self.shown_error {
            return;
        }
        let line = match (&now, &self.shown_error) {
            (Some(m), _) => format!("lanscatter peer: error: {m}"),
            (None, Some(_)) => format!("lanscatter peer: {} (the error cleared)", s.state.label()),
            (None, None) => return,
        };
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
        self.shown_error = now;
    }

    fn abandon(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_with_message("up to date");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::discovery::{choose, ChoiceError, Found};

    /// `auto` into a folder synced from swarm "lab" looks for "lab" again: a foreign open
    /// master that is the only one answering is refused, not followed.
    #[test]
    fn auto_remembers_the_swarm_of_the_folder() {
        let dst = tempfile::tempdir().unwrap();
        assert_eq!(auto_swarm(None, dst.path()), None, "a new folder takes any single master");
        remember_swarm(dst.path(), "lab").unwrap();
        assert_eq!(auto_swarm(None, dst.path()).as_deref(), Some("lab"));
        assert_eq!(auto_swarm(Some("office"), dst.path()).as_deref(), Some("office"), "--swarm wins");
        let foreign = [Found { swarm: "someone-else".into(), addr: "198.18.0.9:10564".into() }];
        let want = auto_swarm(None, dst.path());
        assert!(matches!(choose(&foreign, want.as_deref()), Err(ChoiceError::NoSuchSwarm { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn the_swarm_note_is_never_written_through_a_link() {
        let (dst, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::os::unix::fs::symlink(outside.path(), dst.path().join(crate::paths::STATE_DIR)).unwrap();
        assert!(remember_swarm(dst.path(), "lab").is_err());
        assert!(!outside.path().join(SWARM_FILE).exists());
    }
}
