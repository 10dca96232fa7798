//! The peer engine: mirror the master's folder into a local folder and help spread it.
//!
//! Same shape as the master's, behind [`crate::engine::Engine`]: `Peer::start` checks the
//! destination, binds the chunk server and returns; a background task connects to the master
//! with retry and exponential backoff (the master may start later or restart), and each
//! connection is a [`session`]: handshake, manifest, [`layout`] preparation (scan, cleanup,
//! pre-size, local copies), have-set report, then fetch orders until the connection ends.
//! `status` streams snapshots; `shutdown` aborts in-flight fetches (their unverified bytes are
//! never written) and closes the connection.
//!
//! Safety rules enforced here and in [`layout`]: every path comes from a validated manifest
//! through `crate::paths::to_local`, so nothing is written or deleted outside `dst_dir`; the
//! destination may not be a file, a dangerous folder (`crate::folders`: a root, the home
//! folder, a system folder) or the master's own folder; a non-empty folder is synced only if
//! it is the peer's already or adopted on purpose ([`adopt`]); chunk bytes are verified before
//! they are written, served, or reported, and a file counts as done only once its data is on
//! the disk ([`layout`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, RwLock};
use tokio::task::JoinHandle;

use crate::manifest::{CacheMode, ChunkHash};
use crate::status::{Role, Snapshot};
use crate::storage::{Disk, Storage};
use crate::transfer::ratelimit::RateLimiter;
use crate::transfer::server::{ChunkLoc, ChunkServer, ChunkSource, ServerConfig};
use crate::transport::fetch::Fetcher;
use crate::transport::Security;

pub mod adopt;
pub(crate) mod batch;
pub mod finisher;
pub mod layout;
pub mod names;
pub mod session;

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Master address: `host` or `host:port` (default port 10564).
    pub server: String,
    pub dst_dir: PathBuf,
    /// Where this peer's chunk server listens.
    pub bind: SocketAddr,
    /// Host other peers should use to reach this one (default: the local address of the
    /// connection to the master).
    pub advertise: Option<String>,
    /// 0 = never serve chunks to others.
    pub upload_slots: u32,
    pub download_slots: u32,
    /// Bytes per second.
    pub max_upload_bps: Option<u64>,
    pub max_download_bps: Option<u64>,
    pub compress: bool,
    pub cache: CacheMode,
    pub name: String,
    /// Re-check the local folder this often (hand edits, deleted files); cheap with the cache.
    pub rescan_interval: Duration,
    /// A fetch with no progress for this long is aborted.
    pub stall_timeout: Duration,
    /// Every byte the peer reads or writes in `dst_dir` goes through it ([`Disk`] unless a test
    /// injects faults).
    pub storage: Arc<dyn Storage>,
    /// Open swarm, or members only (see [`Security`]); must match the master's.
    pub security: Security,
    /// Sync into `dst_dir` even if it holds content and was not a lanscatter peer folder before
    /// (its content is reused; what the master lacks is deleted). See [`adopt`].
    pub adopt: bool,
}

impl PeerConfig {
    pub fn new(server: String, dst_dir: PathBuf) -> Self {
        PeerConfig {
            server,
            dst_dir,
            bind: SocketAddr::from(([0, 0, 0, 0], crate::transport::PEER_PORT)),
            advertise: None,
            upload_slots: 8,
            download_slots: 8,
            max_upload_bps: None,
            max_download_bps: None,
            compress: true,
            cache: CacheMode::Default,
            name: crate::host::host_name(),
            rescan_interval: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(10),
            storage: Arc::new(Disk),
            security: Security::Open,
            adopt: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("destination {0} is a file; give a folder (it is created if missing)")]
    DstIsFile(PathBuf),
    #[error("refusing to sync into {0}: it is a filesystem root; give a dedicated folder")]
    DstIsRoot(PathBuf),
    #[error(transparent)]
    Dangerous(#[from] crate::folders::FolderError),
    #[error("{} is not empty and was not synced by lanscatter before; pass --adopt to sync into it (files the master lacks will be deleted)", .0.display())]
    NotAdopted(PathBuf),
    #[error("cannot create or open destination folder {path}: {source}")]
    DstIo { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}; choose another --port or --bind")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    BadServer(#[from] crate::transport::AddrError),
}

/// Counters shared by the session and its fetch tasks.
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub gets_made: AtomicU64,
    pub bytes_downloaded: AtomicU64,
    pub verify_failures: AtomicU64,
    pub slow_aborts: AtomicU64,
}

/// Everything the peer's tasks share.
pub struct Ctx {
    pub cfg: PeerConfig,
    pub root: PathBuf,
    /// The master's `host:port`.
    pub master: String,
    pub listen: SocketAddr,
    pub layout: Arc<Mutex<Option<layout::Layout>>>,
    /// Chunk writes hold it for reading; a new layout takes it for writing.
    pub relayout: Arc<RwLock<()>>,
    /// Flushes completed files off the fetch path (`finisher`).
    pub finisher: finisher::Finisher,
    pub fetcher: Fetcher,
    pub server: Arc<ChunkServer>,
    pub counters: Arc<PeerCounters>,
    pub status: watch::Sender<Snapshot>,
    pub shutdown: watch::Receiver<bool>,
    /// True while paused ([`Peer::set_paused`]).
    pub paused: watch::Receiver<bool>,
}

struct PeerSource(Arc<Mutex<Option<layout::Layout>>>);

impl ChunkSource for PeerSource {
    fn locate(&self, hash: &ChunkHash) -> Option<ChunkLoc> {
        let g = self.0.lock().ok()?;
        let (path, offset, size) = g.as_ref()?.locate(hash)?;
        Some(ChunkLoc { path, offset, size })
    }

    fn stale(&self, hash: &ChunkHash) {
        if let Ok(mut g) = self.0.lock() {
            if let Some(l) = g.as_mut() {
                l.mark_stale(hash);
            }
        }
    }
}

/// `canonicalize` for a path whose tail may not exist yet: the deepest existing ancestor is
/// canonicalized and the missing components appended (`..` among them pops, `.` is dropped).
fn canonicalize_missing(p: &Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) };
    let mut existing = PathBuf::new();
    let mut missing: Vec<Component> = Vec::new();
    for c in abs.components() {
        if missing.is_empty() && std::fs::symlink_metadata(existing.join(c)).is_ok() {
            existing.push(c);
        } else {
            missing.push(c);
        }
    }
    let mut out = std::fs::canonicalize(&existing)?;
    for c in missing {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Refuse destinations that would be disastrous to mirror into, and resolve the destination to
/// an absolute, symlink-free path. A missing destination is *not* created here: it is created
/// only after the master's greeting, once we know it is not inside the master's own folder.
fn check_dst(dst: &Path) -> Result<PathBuf, PeerError> {
    if std::fs::metadata(dst).is_ok_and(|m| !m.is_dir()) {
        return Err(PeerError::DstIsFile(dst.into()));
    }
    let canon = canonicalize_missing(dst).map_err(|source| PeerError::DstIo { path: dst.into(), source })?;
    if canon.parent().is_none() {
        return Err(PeerError::DstIsRoot(canon));
    }
    Ok(canon)
}

pub(crate) struct Peer {
    layout: Arc<Mutex<Option<layout::Layout>>>,
    local_addr: SocketAddr,
    status: watch::Receiver<Snapshot>,
    shutdown: watch::Sender<bool>,
    paused: watch::Sender<bool>,
    task: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Peer {
    pub(crate) async fn start(cfg: PeerConfig) -> Result<Peer, PeerError> {
        let master = crate::transport::normalize_addr(&cfg.server, crate::transport::MASTER_PORT)?;
        let root = check_dst(&cfg.dst_dir)?;
        crate::folders::check_peer_folder(&root, None)?;
        let foreign = adopt::needs_adoption(&root).map_err(|source| PeerError::DstIo { path: root.clone(), source })?;
        if foreign && !cfg.adopt {
            return Err(PeerError::NotAdopted(root));
        }
        crate::transport::fdlimit::raise();
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| PeerError::Bind { addr: cfg.bind, source })?;
        let local_addr = listener.local_addr().map_err(|source| PeerError::Bind { addr: cfg.bind, source })?;
        let layout: Arc<Mutex<Option<layout::Layout>>> = Arc::default();
        let server = ChunkServer::new(
            Arc::new(PeerSource(layout.clone())),
            ServerConfig {
                upload_slots: cfg.upload_slots,
                limiter: cfg.max_upload_bps.map(|r| Arc::new(RateLimiter::with_rate(r))),
                compress: cfg.compress,
                storage: cfg.storage.clone(),
            },
        );
        let mut snap = Snapshot::new(Role::Peer, cfg.name.clone(), root.clone());
        snap.listen = local_addr.to_string();
        let (status_tx, status_rx) = watch::channel(snap);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (paused_tx, paused_rx) = watch::channel(false);
        let mut sd = shutdown_rx.clone();
        let app = crate::transfer::server::router(server.clone()).merge(crate::web::peer_router(status_rx.clone()));
        let server_task = tokio::spawn(crate::transport::serve_secured(
            listener,
            app,
            crate::transport::ServeLimits::default(),
            "peer chunk server",
            cfg.security.clone(),
            async move { crate::status::stopped(&mut sd).await },
        ));
        let limiter = cfg.max_download_bps.map(|r| Arc::new(RateLimiter::with_rate(r)));
        let mut fetcher = Fetcher::new(limiter, cfg.compress, &cfg.security);
        fetcher.stall_timeout = cfg.stall_timeout;
        let ctx = Arc::new(Ctx {
            cfg,
            root,
            master,
            listen: local_addr,
            layout: layout.clone(),
            relayout: Arc::default(),
            finisher: finisher::Finisher::default(),
            fetcher,
            server,
            counters: Arc::default(),
            status: status_tx,
            shutdown: shutdown_rx,
            paused: paused_rx,
        });
        let task = tokio::spawn(session::run(ctx));
        Ok(Peer {
            layout,
            local_addr,
            status: status_rx,
            shutdown: shutdown_tx,
            paused: paused_tx,
            task,
            server: server_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn status(&self) -> watch::Receiver<Snapshot> {
        self.status.clone()
    }

    /// The folder measured against the current manifest (`None` while a new one is laid out):
    /// what a proxy reads to publish only verified files downstream.
    pub(crate) fn layout(&self) -> Arc<Mutex<Option<layout::Layout>>> {
        self.layout.clone()
    }

    /// Paused, the session leaves the master (fetches in flight are dropped) and waits; the
    /// layout (the index of what the folder holds) and the chunk server stay.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// False once the engine stopped by itself (fatal error; the snapshot says why).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stop: in-flight fetches are dropped (nothing unverified was written), the connection
    /// and the chunk server close.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(10), &mut task).await.is_err() {
            task.abort();
        }
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
            server.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_destinations_are_refused() {
        assert!(matches!(check_dst(Path::new("/")), Err(PeerError::DstIsRoot(_))));
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(check_dst(&f), Err(PeerError::DstIsFile(_))));
        let canon = std::fs::canonicalize(d.path()).unwrap();
        assert_eq!(check_dst(&d.path().join("new/sub")).unwrap(), canon.join("new/sub"));
        assert!(!d.path().join("new").exists(), "checking does not create the folder");
        assert_eq!(check_dst(&d.path().join("new/x/../sub/.")).unwrap(), canon.join("new/sub"));
    }
}
