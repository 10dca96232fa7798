//! The tray app's view of the sync engines: start one from [`Settings`], watch it, stop it.
//!
//! The engine ([`crate::engine::Engine`]) is the same one the CLI runs;
//! this adapter only translates settings into their configs and their status snapshots into the
//! GUI's [`StatusView`] (plus the raw snapshot as JSON for `--json`). It runs on the app's tokio
//! runtime. A small forwarding task per engine converts snapshots, so the tray never sees engine
//! types and the engines never see GUI types.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;
use tokio::sync::watch;

use super::config::{Mode, Settings};
use super::view::StatusView;
use crate::engine::{Engine, EngineConfig};
use crate::master::MasterConfig;
use crate::peer::PeerConfig;
use crate::status::Snapshot;

/// One status update: the GUI digest and the engine's full snapshot as JSON.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    pub view: StatusView,
    pub snapshot: Value,
    /// Event messages of the snapshot (unix time, message; most recent last), for the log file.
    pub events: Vec<(f64, String)>,
}

/// A started engine.
pub struct RunningEngine {
    pub mode: Mode,
    pub status: watch::Receiver<EngineStatus>,
    engine: Engine,
}

impl RunningEngine {
    /// Graceful shutdown (the engine finishes or aborts transfers cleanly).
    pub async fn shutdown(self) {
        self.engine.shutdown().await
    }
}

/// Engine configs from settings (separate from [`start`] so the mapping is unit-tested).
pub fn master_config(s: &Settings) -> MasterConfig {
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
    cfg
}

pub fn peer_config(s: &Settings, server: String) -> PeerConfig {
    let folder = s.peer_folder.clone().unwrap_or_default();
    let mut cfg = PeerConfig::new(server, folder);
    // 0 = any free port: a desktop peer should not fail because something else took 10565.
    cfg.bind = SocketAddr::from(([0, 0, 0, 0], s.local_port));
    cfg.upload_slots = s.upload_slots;
    cfg.download_slots = s.download_slots;
    cfg.max_upload_bps = s.max_upload_bps;
    cfg.max_download_bps = s.max_download_bps;
    cfg
}

/// Start the engine the settings ask for. The error text is shown to the user as is.
pub async fn start(settings: Settings) -> Result<RunningEngine, String> {
    settings.validate_for_start().map_err(|e| e.to_string())?;
    let mode = settings.mode;
    let cfg = match mode {
        Mode::Master => EngineConfig::Master(master_config(&settings)),
        Mode::Peer => EngineConfig::Peer(peer_config(&settings, settings.server_addr().map_err(|e| e.to_string())?)),
    };
    let engine = Engine::start(cfg).await.map_err(|e| e.to_string())?;
    let rx = engine.status();
    let first = convert(mode, &rx.borrow());
    let (tx, status) = watch::channel(first);
    tokio::spawn(forward(mode, rx, tx));
    Ok(RunningEngine { mode, status, engine })
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
        let m = master_config(&s);
        assert_eq!(m.source_dir, PathBuf::from("/srv/share"));
        assert_eq!(m.bind.port(), crate::transport::MASTER_PORT, "0 = master's default port");
        assert_eq!((m.upload_slots, m.max_upload_bps), (3, Some(1000)));
        assert_eq!(m.chunk_rule, crate::manifest::ChunkRule::Fixed(8 << 20));
        let p = peer_config(&s, "h:1".into());
        assert_eq!((p.server.as_str(), p.dst_dir.as_path()), ("h:1", std::path::Path::new("/data/mirror")));
        assert_eq!(p.bind.port(), 0);
        assert_eq!((p.upload_slots, p.download_slots, p.max_download_bps), (3, 5, Some(2000)));
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
