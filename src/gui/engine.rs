//! The tray app's view of the sync engines: start one from [`Settings`], watch it, stop it.
//!
//! The engine ([`crate::engine::Engine`]) is the same one the CLI runs;
//! this adapter only translates settings into their configs and their status snapshots into the
//! GUI's [`StatusView`] (plus the raw snapshot as JSON for `--json`). It runs on the app's tokio
//! runtime. A small forwarding task per engine converts snapshots, so the tray never sees engine
//! types and the engines never see GUI types.
//!
//! Security, as on the command line (the master and peer subcommands): a master uses the secret set
//! in the settings, else the machine's stored one beside the settings file; a peer uses the
//! secret set in the settings and does not start without one; `open` runs an open swarm.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::sync::watch;

use super::config::{Mode, Settings};
use super::view::StatusView;
use crate::engine::{Engine, EngineConfig};
use crate::master::MasterConfig;
use crate::peer::PeerConfig;
use crate::secret::SwarmSecret;
use crate::status::Snapshot;
use crate::transport::Security;

/// One status update: the GUI digest and the engine's full snapshot as JSON.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    pub view: StatusView,
    pub snapshot: Value,
    /// Event messages of the snapshot (unix time, message; most recent last), for the log file.
    pub events: Vec<(f64, String)>,
}

/// What the tray may show of a node's security (never written to the log or `--json`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Master of a secured swarm: the code peers join with.
    pub join_code: Option<String>,
    /// Secured swarm: the token that opens this node's status page.
    pub web_token: Option<String>,
    /// The master's secret was made (and stored beside the settings) by this start.
    pub made_secret: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Access(secured: {}, made_secret: {})", self.web_token.is_some(), self.made_secret)
    }
}

/// A started engine.
pub struct RunningEngine {
    pub mode: Mode,
    pub status: watch::Receiver<EngineStatus>,
    pub access: Access,
    engine: Engine,
}

impl RunningEngine {
    /// Graceful shutdown (the engine finishes or aborts transfers cleanly).
    pub async fn shutdown(self) {
        self.engine.shutdown().await
    }

    /// Pause or resume transfers ([`Engine::set_paused`]).
    pub fn set_paused(&self, paused: bool) {
        self.engine.set_paused(paused)
    }
}

/// The security a secret gives (none: open), and what the tray may show of it.
fn secure(secret: Option<&SwarmSecret>) -> Result<(Security, Access), String> {
    let Some(secret) = secret else { return Ok((Security::Open, Access::default())) };
    let security = Security::from_secret(secret).map_err(|e| format!("cannot set up TLS for the swarm: {e}"))?;
    let access = Access { join_code: None, web_token: security.web_token().map(String::from), made_secret: false };
    Ok((security, access))
}

/// Engine configs from settings (separate from [`start`] so the mapping is unit-tested).
/// `config_dir` is the settings file's directory, where the master's stored secret lives.
pub fn master_config(s: &Settings, config_dir: &Path) -> Result<(MasterConfig, Access), String> {
    let secret = s.master_secret(config_dir).map_err(|e| e.to_string())?;
    let (security, mut access) = secure(secret.as_ref().map(|(k, _)| k))?;
    if let Some((k, made)) = &secret {
        access.join_code = Some(k.join_code());
        access.made_secret = *made;
    }
    let folder = s.master_folder.clone().unwrap_or_default();
    let mut cfg = MasterConfig::new(folder);
    if s.local_port != 0 {
        cfg.bind = SocketAddr::from(([0, 0, 0, 0], s.local_port));
    }
    cfg.upload_slots = s.upload_slots;
    cfg.max_upload_bps = s.max_upload_bps;
    if s.chunk_size != 0 {
        cfg.chunk_rule = crate::manifest::ChunkRule::Fixed(s.chunk_size);
    }
    cfg.security = security;
    Ok((cfg, access))
}

/// A peer needs the master's secret from the settings, or `open`.
pub fn peer_config(s: &Settings, server: String) -> Result<(PeerConfig, Access), String> {
    let secret = match s.open {
        true => None,
        false => Some(s.swarm_secret().map_err(|e| e.to_string())?.ok_or(super::config::NO_PEER_SECRET)?),
    };
    let (security, access) = secure(secret.as_ref())?;
    let folder = s.peer_folder.clone().unwrap_or_default();
    let mut cfg = PeerConfig::new(server, folder);
    // 0 = any free port: a desktop peer should not fail because something else took 10565.
    cfg.bind = SocketAddr::from(([0, 0, 0, 0], s.local_port));
    cfg.upload_slots = s.upload_slots;
    cfg.download_slots = s.download_slots;
    cfg.max_upload_bps = s.max_upload_bps;
    cfg.max_download_bps = s.max_download_bps;
    cfg.security = security;
    Ok((cfg, access))
}

/// Start the engine the settings ask for. The error text is shown to the user as is.
/// `config_dir`: see [`master_config`]. `adopt`: the user confirmed syncing a peer into its
/// non-empty folder (see `crate::peer::adopt`).
/// What saving the settings does to the engine: one that runs (or is starting) restarts in
/// the saved mode to pick them up, paused if the user had paused it (saving is not "resume");
/// `None`: nothing runs, nothing starts.
pub fn restart_after_save(running: bool, paused: bool) -> Option<StartPaused> {
    running.then_some(StartPaused(paused))
}

/// Whether an engine starts with its transfers paused ([`Engine::set_paused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartPaused(pub bool);

/// Start the engine `settings` describe, paused if `paused` says so.
pub async fn start(
    settings: Settings,
    config_dir: PathBuf,
    adopt: bool,
    paused: StartPaused,
) -> Result<RunningEngine, String> {
    settings.validate_for_start().map_err(|e| e.to_string())?;
    let mode = settings.mode;
    let (cfg, access) = match mode {
        Mode::Master => {
            let (cfg, access) = master_config(&settings, &config_dir)?;
            (EngineConfig::Master(cfg), access)
        }
        Mode::Peer => {
            let (mut cfg, access) = peer_config(&settings, settings.server_addr().map_err(|e| e.to_string())?)?;
            cfg.adopt = adopt;
            (EngineConfig::Peer(cfg), access)
        }
    };
    let engine = Engine::start(cfg).await.map_err(start_error)?;
    if paused.0 {
        engine.set_paused(true);
    }
    let rx = engine.status();
    let first = convert(mode, &rx.borrow());
    let (tx, status) = watch::channel(first);
    tokio::spawn(forward(mode, rx, tx));
    Ok(RunningEngine { mode, status, access, engine })
}

/// The engine's reason, in the tray's terms where the CLI's differ.
fn start_error(e: crate::engine::EngineError) -> String {
    match e {
        crate::engine::EngineError::Peer(crate::peer::PeerError::NotAdopted(dir)) => format!(
            "{} is not empty and was not synced by lanscatter before; to sync into it (files the master lacks \
             will be deleted), choose it with \"Choose folder…\" and confirm",
            dir.display()
        ),
        e => e.to_string(),
    }
}

/// Convert every engine snapshot until the engine (or the GUI side) goes away.
async fn forward(mode: Mode, mut rx: watch::Receiver<Snapshot>, tx: watch::Sender<EngineStatus>) {
    loop {
        if rx.changed().await.is_err() {
            break;
        }
        let st = convert(mode, &rx.borrow_and_update());
        if tx.send(st).is_err() {
            break;
        }
    }
}

pub fn convert(mode: Mode, s: &Snapshot) -> EngineStatus {
    let phase = Some(s.state.clone());
    let peers = s.nodes.iter().filter(|n| !n.is_master).count();
    let view = StatusView {
        mode,
        phase,
        folder: PathBuf::from(&s.folder),
        bytes_done: s.bytes_done,
        bytes_total: s.bytes_total,
        download_bps: s.download_bps,
        upload_bps: s.upload_bps,
        eta_secs: s.eta_secs,
        listen: s.listen.clone(),
        peers,
    };
    EngineStatus {
        view,
        snapshot: serde_json::to_value(s).unwrap_or(Value::Null),
        events: s.events.iter().map(|e| (e.time, e.message.clone())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{NodeState, Role};

    /// Saving the settings of a paused engine restarts it paused (it used to resume it).
    #[test]
    fn saving_settings_keeps_a_pause() {
        assert_eq!(restart_after_save(true, true), Some(StartPaused(true)));
        assert_eq!(restart_after_save(true, false), Some(StartPaused(false)));
        assert_eq!(restart_after_save(false, false), None, "nothing running: nothing starts");
    }

    /// An engine started paused says so in its snapshots.
    #[tokio::test]
    async fn an_engine_started_paused_is_paused() {
        let (dir, folder) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // A peer (port 0 is its own) of a master that is not there: it need not connect.
        let s = Settings {
            mode: Mode::Peer,
            peer_folder: Some(folder.path().join("mirror")),
            server: "127.0.0.1:9".into(),
            open: true,
            ..Settings::default()
        };
        let run = start(s, dir.path().to_path_buf(), false, StartPaused(true)).await.expect("starts");
        let mut rx = run.engine.status();
        let paused = tokio::time::timeout(std::time::Duration::from_secs(10), rx.wait_for(|s| s.paused)).await;
        assert!(paused.is_ok(), "the engine runs paused");
        run.shutdown().await;
    }

    #[test]
    fn settings_map_to_engine_configs() {
        let s = Settings {
            master_folder: Some("/srv/share".into()),
            peer_folder: Some("/data/mirror".into()),
            local_port: 0,
            upload_slots: 3,
            download_slots: 5,
            max_upload_bps: Some(1000),
            max_download_bps: Some(2000),
            chunk_size: 8 << 20,
            ..Settings::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let (m, _) = master_config(&s, dir.path()).unwrap();
        assert_eq!(m.source_dir, PathBuf::from("/srv/share"));
        assert_eq!(m.bind.port(), crate::transport::MASTER_PORT, "0 = master's default port");
        assert_eq!((m.upload_slots, m.max_upload_bps), (3, Some(1000)));
        assert_eq!(m.chunk_rule, crate::manifest::ChunkRule::Fixed(8 << 20));
        let (p, _) = peer_config(&Settings { open: true, ..s.clone() }, "h:1".into()).unwrap();
        assert_eq!((p.server.as_str(), p.dst_dir.as_path()), ("h:1", std::path::Path::new("/data/mirror")));
        assert_eq!(p.bind.port(), 0);
        assert_eq!((p.upload_slots, p.download_slots, p.max_download_bps), (3, 5, Some(2000)));
    }

    #[test]
    fn security_follows_the_settings_like_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let given = SwarmSecret::parse("correct horse battery staple").unwrap();
        let master = Settings { mode: Mode::Master, ..Settings::default() };
        // No secret set: the machine's stored one, made beside the settings file.
        let (m, access) = master_config(&master, dir.path()).unwrap();
        let (stored, made) = SwarmSecret::load_or_create(dir.path()).unwrap();
        assert!(!made && access.made_secret, "made by master_config, in config_dir");
        assert_eq!(m.security.web_token(), Some(stored.web_token().as_str()));
        assert_eq!(access.join_code, Some(stored.join_code()));
        let (_, again) = master_config(&master, dir.path()).unwrap();
        assert!(!again.made_secret && again.join_code == access.join_code, "kept across starts");
        // A secret set in the settings wins; `open` is open.
        let with = Settings { secret: Some(" correct horse battery staple ".into()), ..master.clone() };
        let (m, access) = master_config(&with, dir.path()).unwrap();
        assert_eq!(m.security.web_token(), Some(given.web_token().as_str()));
        assert_eq!((access.join_code, access.web_token), (Some(given.join_code()), Some(given.web_token())));
        let (m, access) = master_config(&Settings { open: true, ..with.clone() }, dir.path()).unwrap();
        assert!(m.security.is_open() && access == Access::default());
        assert!(master_config(&Settings { secret: Some("short".into()), ..master }, dir.path())
            .unwrap_err()
            .contains("too short"));
        // A peer: the secret set, or open; nothing is an error that says what to do.
        let peer = Settings { secret: with.secret.clone(), ..Settings::default() };
        let (p, access) = peer_config(&peer, "h:1".into()).unwrap();
        assert_eq!(p.security.web_token(), Some(given.web_token().as_str()));
        assert_eq!((access.join_code.as_deref(), access.web_token.clone()), (None, Some(given.web_token())));
        let (p, _) = peer_config(&Settings { open: true, ..peer }, "h:1".into()).unwrap();
        assert!(p.security.is_open());
        let err = peer_config(&Settings::default(), "h:1".into()).unwrap_err();
        assert_eq!(err, crate::gui::config::NO_PEER_SECRET);
        assert!(!format!("{access:?}").contains(&given.web_token()));
    }

    #[test]
    fn snapshot_converts_to_view() {
        let mut snap = Snapshot::new(Role::Peer, "p".into(), PathBuf::from("/d"));
        snap.state = NodeState::Syncing;
        snap.bytes_total = 100;
        snap.bytes_done = 25;
        let st = convert(Mode::Peer, &snap);
        assert_eq!(st.view.phase, Some(NodeState::Syncing));
        assert_eq!(super::super::view::icon_kind(&st.view), super::super::view::IconKind::Syncing(2));
        assert_eq!(st.snapshot["bytes_done"], 25);
        snap.state = NodeState::Error { message: "boom".into() };
        assert_eq!(convert(Mode::Peer, &snap).view.phase, Some(NodeState::Error { message: "boom".into() }));
    }
}
