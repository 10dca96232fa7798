//! The master engine: index a read-only folder, coordinate the swarm, serve chunks.
//!
//! Driven through [`crate::engine::Engine`]: `Master::start` binds the port and
//! returns at once (indexing continues in the background and is visible in the status stream),
//! `status` is a `watch` receiver of [`Snapshot`]s, `shutdown` stops
//! accepting work, closes peer connections and lets in-flight chunk uploads finish briefly.
//!
//! Tasks (each in its own file):
//! - [`index`]: initial scan, then again on debounced folder events, a stale chunk, or the
//!   periodic rescan; a changed folder becomes a new [`ManifestState`] sent to the coordinator.
//!   A folder that vanished, cannot be read or shrank suspiciously keeps the last good index
//!   ([`shrink`]), and files still being written wait for a later scan.
//! - [`coord`]: the single owner of the planner and the node table. Everything that changes
//!   swarm state is a message to it, so there are no locks around planner state and event
//!   order is the order of arrival. It ticks every 100 ms: timeouts, a planning round, orders
//!   out, and a status snapshot every few ticks.
//! - [`outbox`] picks what a peer is sent of a new manifest (a delta when it holds the one
//!   before), [`maps`] keeps the status rows' chunk maps and rebuilds only those that changed.
//! - [`conn`]: one task per peer websocket: handshake (version check), then frames in and
//!   out; malformed input closes that connection, nothing else.
//! - the chunk route (`crate::transfer::server`) reads from the source folder, re-verifying
//!   every chunk it serves; a mismatch requests a rescan.
//!
//! The master never writes inside its folder: it only opens files for reading, and its hash
//! cache lives in the user cache dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::manifest::delta::Delta;
use crate::manifest::{CacheMode, ChunkHash, ChunkRule, Manifest};
use crate::status::{NodeState, Role, Snapshot};
use crate::transfer::ratelimit::RateLimiter;
use crate::transfer::server::{ChunkLoc, ChunkServer, ChunkSource, ServerConfig};
use crate::transport::Security;

pub mod conn;
pub mod coord;
pub mod expect;
pub mod index;
pub mod maps;
pub mod outbox;
pub mod shrink;

pub use index::{FolderScanner, Scanner};
pub use shrink::shrink_fault;

#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub source_dir: PathBuf,
    pub bind: SocketAddr,
    pub chunk_rule: ChunkRule,
    /// Concurrent chunk uploads the master serves.
    pub upload_slots: u32,
    /// Bytes per second.
    pub max_upload_bps: Option<u64>,
    pub compress: bool,
    /// Full rescan period (the folder watcher usually notices changes sooner).
    pub rescan_interval: Duration,
    pub cache: CacheMode,
    /// Shown to peers and on the status page.
    pub name: String,
    /// Watch the folder with `notify` (in addition to the periodic rescan).
    pub watch: bool,
    /// Planner seed.
    pub seed: u64,
    /// Small chunks travel in batches of up to 1 MiB per order and request
    /// (`planner::batch`); off only for tests that count orders chunk by chunk.
    pub batch: bool,
    /// Open swarm, or members only (see [`Security`]). The CLI makes it secured by default.
    pub security: Security,
    /// Publish a scan even when the folder emptied or lost more than half its files or bytes
    /// since the last index ([`shrink_fault`]); off by default, so peers keep their copies.
    pub allow_shrink: bool,
    /// Peers the admin expects (`--expect`): reported per entry in the snapshot's `expected`.
    pub expect: Option<expect::Expect>,
    /// A file modified this recently (or changing while hashed) is still being written: the
    /// index keeps its previous version (or leaves it out, if new) and looks again later.
    pub settle: Duration,
    /// How the folder is read into a manifest ([`FolderScanner`]; tests inject faults here, a
    /// proxy publishes its upstream leg's verified files).
    pub scanner: Arc<dyn Scanner>,
    /// Control connections served at once (`--max-peers`); the HTTP connection caps of the
    /// serve loop follow from it ([`crate::transport::ServeLimits::for_peers`]).
    pub max_peers: usize,
    /// Take a peer's advertised host as it is (`--trust-advertised-hosts`). Off: it is used
    /// only if it resolves to the address the peer connects from (see [`conn`]).
    pub trust_advertised_hosts: bool,
    /// A proxy's upstream leg, shown in every snapshot ([`Snapshot::upstream`]).
    pub upstream: Option<watch::Receiver<Snapshot>>,
    /// Announce the swarm on the LAN under this name (`crate::transport::discovery`); the CLI
    /// sets it unless `--no-announce`.
    pub announce: Option<String>,
}

impl MasterConfig {
    pub fn new(source_dir: PathBuf) -> Self {
        MasterConfig {
            source_dir,
            bind: SocketAddr::from(([0, 0, 0, 0], crate::transport::MASTER_PORT)),
            chunk_rule: ChunkRule::Auto,
            upload_slots: 8,
            max_upload_bps: None,
            compress: true,
            rescan_interval: Duration::from_secs(60),
            cache: CacheMode::Default,
            name: crate::host::host_name(),
            watch: true,
            seed: 0x5eed,
            batch: true,
            security: Security::Open,
            allow_shrink: false,
            expect: None,
            settle: Duration::from_secs(2),
            scanner: Arc::new(FolderScanner),
            max_peers: crate::transport::DEFAULT_MAX_PEERS,
            trust_advertised_hosts: false,
            upstream: None,
            announce: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("source folder {0} does not exist or is not a folder; give the folder to distribute")]
    SourceDir(PathBuf),
    #[error("cannot listen on {addr}: {source}; is another master running? choose another --port or --bind")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// One indexed version of the folder, shared read-only by all tasks.
///
/// Per-chunk lookups go through `unique` (sorted by hash) by binary search rather than hash
/// maps of their own: at a million files the maps cost ~90 bytes a chunk, the search ~20
/// comparisons per lookup, and lookups are per order or per served chunk, not per byte.
pub struct ManifestState {
    pub id: u64,
    pub manifest: Arc<Manifest>,
    /// `Manifest::to_bytes`, encoded once for all peers.
    pub bytes: Arc<Vec<u8>>,
    /// Unique chunks, sorted by hash; a chunk's place in this list is its cell in chunk maps.
    pub unique: Vec<(ChunkHash, u64)>,
    /// One place in the folder holding each chunk of `unique`, index for index.
    locs: Vec<Place>,
    /// What a peer checks a manifest rebuilt from a delta against (`delta::manifest_hash`).
    pub hash: ChunkHash,
    /// The change from the manifest published before this one: that one's id and the
    /// encoded [`Delta`], built once for every peer that holds it.
    pub delta: Option<(u64, Arc<Vec<u8>>)>,
}

impl ManifestState {
    /// Manifest `id` published after `prev`: with the delta from it.
    pub fn after(prev: Option<&ManifestState>, id: u64, manifest: Manifest) -> Self {
        let mut st = Self::new(id, manifest);
        st.delta = prev.map(|p| (p.id, Arc::new(Delta::between(&p.manifest, &st.manifest).to_bytes())));
        st
    }

    pub fn new(id: u64, manifest: Manifest) -> Self {
        let (unique, locs) = unique_chunks_and_places(&manifest);
        let bytes = Arc::new(manifest.to_bytes());
        let hash = crate::manifest::delta::manifest_hash(&bytes);
        ManifestState { id, bytes, manifest: Arc::new(manifest), unique, locs, hash, delta: None }
    }

    pub fn unique_bytes(&self) -> u64 {
        self.unique.iter().map(|(_, s)| s).sum()
    }

    /// The chunk's place in `unique` (its chunk-map cell), if the manifest has it.
    pub fn position(&self, hash: &ChunkHash) -> Option<usize> {
        self.unique.binary_search_by(|(h, _)| h.cmp(hash)).ok()
    }

    /// Whether the manifest has this chunk.
    pub fn has_chunk(&self, hash: &ChunkHash) -> bool {
        self.position(hash).is_some()
    }

    /// One place holding the chunk: (file index, offset, size).
    pub fn locate(&self, hash: &ChunkHash) -> Option<(usize, u64, u64)> {
        let &(fi, ci) = self.locs.get(self.position(hash)?)?;
        let c = self.manifest.files.get(fi as usize)?.chunks.get(ci as usize)?;
        Some((fi as usize, c.offset, u64::from(c.size)))
    }
}

/// Where a chunk is: (file index, chunk index in that file).
type Place = (u32, u32);

/// The manifest's distinct chunks sorted by hash (as [`Manifest::unique_chunks`]) and, index
/// for index, the first place holding each. One sort of 24-byte records; no map.
fn unique_chunks_and_places(m: &Manifest) -> (Vec<(ChunkHash, u64)>, Vec<Place>) {
    let mut all: Vec<(ChunkHash, u32, u32)> = Vec::with_capacity(m.chunk_count());
    for (fi, f) in m.files.iter().enumerate() {
        // A manifest off the wire is bounded far below 2^32 files or chunks per file.
        all.extend(f.chunks.iter().enumerate().map(|(ci, c)| (c.hash, fi as u32, ci as u32)));
    }
    // Sorted on the whole record: within a hash the first place in file order comes first.
    all.sort_unstable();
    all.dedup_by_key(|(h, _, _)| *h);
    let size = |&(h, fi, ci): &(ChunkHash, u32, u32)| (h, u64::from(m.files[fi as usize].chunks[ci as usize].size));
    let unique = all.iter().map(size).collect();
    let locs = all.iter().map(|&(_, fi, ci)| (fi, ci)).collect();
    (unique, locs)
}

/// State shared between the master's tasks.
pub(crate) struct Shared {
    pub cfg: MasterConfig,
    /// The bound address (the port is real even when the config asked for port 0).
    pub listen: SocketAddr,
    pub current: RwLock<Option<Arc<ManifestState>>>,
    pub rescan: mpsc::Sender<()>,
    pub coord: mpsc::UnboundedSender<coord::CoordMsg>,
    pub shutdown: watch::Receiver<bool>,
    /// The shrink the guard holds back (what it would publish, and how the page names it):
    /// set by the indexer, taken by a confirmation on the status page.
    pub held: Mutex<shrink::HeldSlot>,
    /// Id of the next manifest published (the indexer and a confirmed shrink both publish).
    pub next_manifest: std::sync::atomic::AtomicU64,
    /// One permit per control connection (`MasterConfig::max_peers`), taken before the
    /// websocket upgrade.
    pub peer_slots: Arc<tokio::sync::Semaphore>,
    /// Paused: the coordinator plans no new transfers (see [`Master::set_paused`]).
    pub paused: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        cfg: MasterConfig,
        listen: SocketAddr,
        rescan: mpsc::Sender<()>,
        coord: mpsc::UnboundedSender<coord::CoordMsg>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Shared {
            peer_slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_peers.max(1))),
            cfg,
            listen,
            current: RwLock::new(None),
            rescan,
            coord,
            shutdown,
            held: Mutex::new(shrink::HeldSlot::default()),
            next_manifest: std::sync::atomic::AtomicU64::new(1),
            paused: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The index peers are served now.
    pub(crate) fn current(&self) -> Option<Arc<ManifestState>> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

struct MasterSource(Arc<Shared>);

impl ChunkSource for MasterSource {
    fn locate(&self, hash: &ChunkHash) -> Option<ChunkLoc> {
        let cur = self.0.current.read().ok()?.clone()?;
        let (fi, offset, size) = cur.locate(hash)?;
        let path = crate::paths::to_local(&self.0.cfg.source_dir, &cur.manifest.files[fi].path).ok()?;
        Some(ChunkLoc { path, offset, size })
    }

    fn stale(&self, hash: &ChunkHash) {
        tracing::info!("chunk {hash} changed on disk; rescanning");
        let _ = self.0.rescan.try_send(());
    }
}

pub(crate) struct Master {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    status: watch::Receiver<Snapshot>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
    /// Withdrawn when the master stops.
    _announcer: Option<crate::transport::discovery::Announcer>,
}

/// Announce the swarm if asked; a host where mDNS does not work still serves (with a warning).
fn announce(cfg: &MasterConfig, listen: SocketAddr) -> Option<crate::transport::discovery::Announcer> {
    let swarm = cfg.announce.as_ref()?;
    crate::transport::discovery::Announcer::start(swarm, listen)
        .inspect_err(|e| tracing::warn!("not announcing the swarm on the LAN: {e}"))
        .ok()
        .flatten()
}

impl Master {
    pub(crate) async fn start(cfg: MasterConfig) -> Result<Master, MasterError> {
        if !std::fs::metadata(&cfg.source_dir).map(|m| m.is_dir()).unwrap_or(false) {
            return Err(MasterError::SourceDir(cfg.source_dir.clone()));
        }
        crate::transport::fdlimit::check_for(cfg.max_peers, "master");
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| MasterError::Bind { addr: cfg.bind, source })?;
        let local_addr = listener.local_addr().map_err(|source| MasterError::Bind { addr: cfg.bind, source })?;
        let mut snap = Snapshot::new(Role::Master, cfg.name.clone(), cfg.source_dir.clone());
        snap.listen = local_addr.to_string();
        snap.state = NodeState::Indexing { done: 0, total: 0 };
        let (status_tx, status_rx) = watch::channel(snap);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (rescan_tx, rescan_rx) = mpsc::channel(1);
        let (coord_tx, coord_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(cfg.clone(), local_addr, rescan_tx, coord_tx, shutdown_rx.clone()));

        let server = ChunkServer::new(
            Arc::new(MasterSource(shared.clone())),
            ServerConfig {
                upload_slots: cfg.upload_slots,
                limiter: cfg.max_upload_bps.map(|r| Arc::new(RateLimiter::with_rate(r))),
                compress: cfg.compress,
                storage: Arc::new(crate::storage::ReadOnlyDisk),
            },
        );
        let app = crate::transfer::server::router(server.clone())
            .merge(conn::router(shared.clone()))
            .merge(shrink::router(shared.clone()))
            .merge(crate::web::master_router(status_rx.clone()));
        let mut sd = shutdown_rx.clone();
        let server_task = tokio::spawn(crate::transport::serve_secured(
            listener,
            app,
            crate::transport::ServeLimits::for_peers(cfg.max_peers),
            "master",
            cfg.security.clone(),
            async move { crate::status::stopped(&mut sd).await },
        ));
        let coord_task = tokio::spawn(coord::run(shared.clone(), coord_rx, status_tx, server));
        let index_task = tokio::spawn(index::run(shared.clone(), rescan_rx));
        Ok(Master {
            _announcer: announce(&cfg, local_addr),
            shared,
            local_addr,
            status: status_rx,
            shutdown: shutdown_tx,
            tasks: vec![coord_task, index_task],
            server: server_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn status(&self) -> watch::Receiver<Snapshot> {
        self.status.clone()
    }

    /// The index peers are served now (none before the first one).
    pub fn manifest(&self) -> Option<Arc<Manifest>> {
        self.shared.current().map(|c| c.manifest.clone())
    }

    /// What [`Master::manifest`] reads, for a task that outlives this borrow (a proxy's).
    pub(crate) fn index(&self) -> impl Fn() -> Option<Arc<Manifest>> + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.current().map(|c| c.manifest.clone())
    }

    /// Paused, the planner orders no new transfers; those in flight finish (a chunk each), the
    /// index keeps following the folder and peers stay connected, so resuming is immediate.
    pub fn set_paused(&self, paused: bool) {
        self.shared.paused.store(paused, std::sync::atomic::Ordering::Relaxed);
    }

    /// False once a task of the engine ended by itself (it runs until shutdown otherwise).
    pub fn is_running(&self) -> bool {
        !self.server.is_finished() && self.tasks.iter().all(|t| !t.is_finished())
    }

    /// Stop: peers are disconnected (they will retry), uploads in flight get a few seconds.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
            server.abort();
        }
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
