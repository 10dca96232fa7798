//! `lanscatter demo`: the whole product on one machine in one command, so a new user sees what it
//! is for before setting up a LAN.
//!
//! A master and N peers run in this process through the [`Engine`] facade, exactly as
//! `lanscatter master` and `lanscatter peer` run them (secured with a fresh swarm secret,
//! 127.0.0.1, port 0), on a generated [`sample`] folder or a given one, with the peer folders and
//! caches in a temp folder. The demo waits until every peer is up to date ([`is_done`]), then
//! proves the result with an independent byte comparison ([`verify`]). The CLI (`cli/demo.rs`)
//! only renders; the integration test drives this module directly too.
//!
//! **The loopback bound.** Before the peers start, [`crate::transport::probe`] copies bytes
//! through N plain loopback TCP streams at once: no TLS, hashing or disk, the least work any
//! delivery to N receivers does on this machine. Every peer must receive the folder's unique chunk
//! bytes U over a socket (duplicates it copies locally), so no sync can finish before
//! `T_bound = N × U / R_loopback`; the demo reports `efficiency = T_bound / T_measured`, with
//! T_measured from the start of the peers to the last one up to date. On one machine the peers
//! share its cores (TLS, BLAKE2b, writes), so expect a fraction of 1; a real LAN's bound is its
//! links (README "Performance").

pub mod sample;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::engine::{is_done, Engine, EngineError};
use crate::manifest::CacheMode;
use crate::master::MasterConfig;
use crate::peer::PeerConfig;
use crate::secret::{SecretError, SwarmSecret};
use crate::status::{NodeState, Snapshot};
use crate::transport::probe::{Probe, ProbeError};
use crate::transport::tls::TlsError;
use crate::transport::Security;

pub use verify::Verified;

/// Default size of the generated sample.
pub const DEFAULT_SIZE: u64 = 32 * 1024 * 1024;
/// The probe sends at least this much per stream (a shorter probe is mostly connection set-up,
/// which would understate the rate and flatter the efficiency) and at most this much.
const PROBE_MIN: u64 = 16 * 1024 * 1024;
const PROBE_MAX: u64 = 128 * 1024 * 1024;

/// What to demonstrate.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Sync this folder (only read) instead of a generated sample.
    pub source: Option<PathBuf>,
    /// Size of the generated sample.
    pub size: u64,
    pub peers: usize,
    /// Give up when the peers are not all up to date by then.
    pub timeout: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig { source: None, size: DEFAULT_SIZE, peers: 3, timeout: Duration::from_secs(600) }
    }
}

/// Why the demo did not show identical peers; the text says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot make the demo's temp folder: {0}; point TMPDIR at a writable folder")]
    TempDir(std::io::Error),
    #[error("cannot write the sample folder {path}: {source}; free some space or give a smaller --size")]
    Sample { path: PathBuf, source: std::io::Error },
    #[error("--source {0} is not a folder; give an existing folder (it is only read, never written)")]
    Source(PathBuf),
    #[error("cannot make a swarm secret: {0}")]
    Secret(#[from] SecretError),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("{name} stopped: {message}")]
    Stopped { name: String, message: String },
    #[error(
        "after {secs} s only {done} of {peers} peers are up to date; raise --timeout for a big --source, or run with \
         -v to see what the peers are waiting for"
    )]
    Timeout { secs: u64, done: usize, peers: usize },
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error(
        "{} differences between the source and the peers (a bug: please report it with this output): {}",
        .0.len(),
        .0.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    )]
    Differs(Vec<String>),
}

/// A running demo: the master, its peers and the temp folder they live in.
pub struct Demo {
    work: Option<tempfile::TempDir>,
    work_path: PathBuf,
    source: PathBuf,
    generated: Option<sample::Sample>,
    master: Engine,
    peers: Vec<(String, Engine, PathBuf)>,
    url: String,
    probe: Probe,
    unique_bytes: u64,
    started: Instant,
}

/// What a finished demo measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub peers: usize,
    pub verified: Verified,
    /// Start of the peers to the last one up to date.
    pub secs: f64,
    /// Unique chunk bytes every peer had to receive.
    pub unique_bytes: u64,
    pub probe: Probe,
    /// `peers × unique_bytes / probe rate`.
    pub bound_secs: f64,
    pub master_uploaded: u64,
    pub peers_uploaded: u64,
}

impl Report {
    pub fn efficiency(&self) -> f64 {
        self.bound_secs / self.secs.max(1e-9)
    }
}

impl Demo {
    /// Make the temp folder and the sample, start the master, wait for its index, probe the
    /// loopback rate, then start the peers.
    pub async fn start(cfg: &DemoConfig) -> Result<Demo, DemoError> {
        let work = tempfile::Builder::new().prefix("lanscatter-demo-").tempdir().map_err(DemoError::TempDir)?;
        let work_path = work.path().to_path_buf();
        let (source, generated) = match &cfg.source {
            Some(s) if s.is_dir() => (s.clone(), None),
            Some(s) => return Err(DemoError::Source(s.clone())),
            None => {
                let s = work_path.join("source");
                // Writing tens of MB blocks; off the runtime, so Ctrl-C is still heard meanwhile.
                let (dir, size) = (s.clone(), cfg.size);
                let made = tokio::task::spawn_blocking(move || sample::write(&dir, size))
                    .await
                    .map_err(|e| DemoError::Sample { path: s.clone(), source: std::io::Error::other(e) })?
                    .map_err(|source| DemoError::Sample { path: s.clone(), source })?;
                (s, Some(made))
            }
        };
        let secret = SwarmSecret::generate()?;
        let security = Security::from_secret(&secret)?;
        let master = Engine::start(master_config(&source, &work_path, &security)).await?;
        let url = format!("http://{}/?token={}", master.local_addr(), secret.web_token());
        let unique_bytes = match wait_indexed(&master).await {
            Ok(u) => u,
            Err(e) => {
                master.shutdown().await;
                return Err(e);
            }
        };
        let peers = cfg.peers.max(1);
        let probe = crate::transport::probe::loopback(peers, unique_bytes.clamp(PROBE_MIN, PROBE_MAX)).await;
        let mut demo = Demo {
            work: Some(work),
            work_path,
            source,
            generated,
            master,
            peers: Vec::new(),
            url,
            probe: Probe { bytes: 0, secs: 0.0 },
            unique_bytes,
            started: Instant::now(),
        };
        match probe {
            Ok(p) => demo.probe = p,
            Err(e) => return Err(demo.fail(e.into()).await),
        }
        demo.started = Instant::now();
        for i in 1..=peers {
            let name = format!("peer-{i}");
            let dir = demo.work_path.join("peers").join(&name);
            match Engine::start(peer_config(&demo, &name, &dir, &security)).await {
                Ok(p) => demo.peers.push((name, p, dir)),
                Err(e) => return Err(demo.fail(e.into()).await),
            }
        }
        Ok(demo)
    }

    /// The status page, with the web token so it opens in a browser.
    pub fn status_url(&self) -> &str {
        &self.url
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The generated sample, if the demo made one.
    pub fn sample(&self) -> Option<sample::Sample> {
        self.generated
    }

    /// The temp folder holding the sample, the peer folders and the caches.
    pub fn work_dir(&self) -> &Path {
        &self.work_path
    }

    pub fn peer_dirs(&self) -> Vec<(String, PathBuf)> {
        self.peers.iter().map(|(n, _, d)| (n.clone(), d.clone())).collect()
    }

    pub fn master_status(&self) -> watch::Receiver<Snapshot> {
        self.master.status()
    }

    /// Wait until every peer is up to date with the master's current manifest, calling
    /// `progress` with the master's snapshot about once a second. Returns the seconds since the
    /// peers started.
    pub async fn wait(&self, timeout: Duration, mut progress: impl FnMut(&Snapshot)) -> Result<f64, DemoError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut rxs: Vec<_> = self.peers.iter().map(|(_, p, _)| p.status()).collect();
        loop {
            let done = self.peers_done()?;
            if done == self.peers.len() {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            let any_change = futures_util::future::select_all(rxs.iter_mut().map(|r| Box::pin(r.changed())));
            tokio::select! {
                _ = tick.tick() => progress(&self.master.status().borrow()),
                (r, _, _) = any_change => {
                    // A closed channel means its engine stopped: the next round says why.
                    if r.is_err() {
                        tick.tick().await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(DemoError::Timeout { secs: timeout.as_secs(), done, peers: self.peers.len() });
                }
            }
        }
    }

    /// How many peers are up to date; an error when the master or a peer stopped.
    fn peers_done(&self) -> Result<usize, DemoError> {
        let m = self.master.status().borrow().clone();
        if !self.master.is_running() {
            return Err(DemoError::Stopped { name: "the master".into(), message: state_text(&m.state) });
        }
        let mut done = 0;
        for (name, p, _) in &self.peers {
            let s = p.status().borrow().clone();
            if !p.is_running() {
                return Err(DemoError::Stopped { name: name.clone(), message: state_text(&s.state) });
            }
            if is_done(&s) && m.manifest_id != 0 && s.manifest_id == m.manifest_id {
                done += 1;
            }
        }
        Ok(done)
    }

    /// Compare every peer folder with the source, byte for byte.
    pub fn verify(&self, secs: f64) -> Result<Report, DemoError> {
        let verified = verify::compare(&self.source, &self.peer_dirs())?;
        if !verified.differences.is_empty() {
            return Err(DemoError::Differs(verified.differences));
        }
        let m = self.master.status().borrow().clone();
        let bound_secs = self.peers.len() as f64 * self.unique_bytes as f64 / self.probe.rate();
        Ok(Report {
            peers: self.peers.len(),
            verified,
            secs,
            unique_bytes: self.unique_bytes,
            probe: self.probe,
            bound_secs,
            master_uploaded: m.master_uploaded,
            peers_uploaded: m.peers_uploaded,
        })
    }

    /// Stop the peers, then the master; remove the temp folder unless `keep`. Returns the temp
    /// folder when it was kept.
    pub async fn finish(mut self, keep: bool) -> Option<PathBuf> {
        for (_, p, _) in self.peers.drain(..) {
            p.shutdown().await;
        }
        self.master.shutdown().await;
        let work = self.work.take()?;
        if keep {
            return Some(work.keep());
        }
        if let Err(e) = work.close() {
            tracing::warn!("cannot remove the demo's temp folder {}: {e}", self.work_path.display());
        }
        None
    }

    /// Shut down what runs and hand back `e` (the temp folder goes with `self`).
    async fn fail(self, e: DemoError) -> DemoError {
        self.finish(false).await;
        e
    }
}

fn state_text(s: &NodeState) -> String {
    match s {
        NodeState::Error { message } => message.clone(),
        other => format!("stopped while {other:?}"),
    }
}

/// Wait until the master has published its first index; returns its unique chunk bytes.
async fn wait_indexed(master: &Engine) -> Result<u64, DemoError> {
    let mut rx = master.status();
    loop {
        {
            let s = rx.borrow_and_update();
            if s.manifest_id != 0 {
                return Ok(s.nodes.first().map(|n| n.bytes_total).unwrap_or(0));
            }
            if let NodeState::Error { message } = &s.state {
                return Err(DemoError::Stopped { name: "the master".into(), message: message.clone() });
            }
        }
        if rx.changed().await.is_err() {
            let message = state_text(&rx.borrow().state);
            return Err(DemoError::Stopped { name: "the master".into(), message });
        }
    }
}

fn master_config(source: &Path, work: &Path, security: &Security) -> MasterConfig {
    let mut cfg = MasterConfig::new(source.to_path_buf());
    cfg.bind = ([127, 0, 0, 1], 0).into();
    cfg.cache = CacheMode::Dir(work.join("cache").join("master"));
    cfg.name = "demo-master".into();
    cfg.security = security.clone();
    cfg
}

fn peer_config(demo: &Demo, name: &str, dir: &Path, security: &Security) -> PeerConfig {
    let mut cfg = PeerConfig::new(demo.master.local_addr().to_string(), dir.to_path_buf());
    cfg.bind = ([127, 0, 0, 1], 0).into();
    cfg.advertise = Some("127.0.0.1".into());
    cfg.cache = CacheMode::Dir(demo.work_path.join("cache").join(name));
    cfg.name = name.to_string();
    cfg.security = security.clone();
    cfg
}
