//! The one facade over the engines: start one from its config, watch it, stop it.
//!
//! The CLI, the tray app and the tests drive masters and peers only through [`Engine`], so
//! what they see is the same code path; the relay proxy (`crate::proxy`) is the third engine,
//! one more [`EngineConfig`] variant and one more arm here. Each engine binds its port in `start` and
//! runs in background tasks on the caller's tokio runtime; its state is a stream of
//! [`Snapshot`]s, the same ones the status page and `/api/status` serve.

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::master::{Master, MasterConfig, MasterError};
use crate::peer::{Peer, PeerConfig, PeerError};
use crate::proxy::{Proxy, ProxyConfig, ProxyError};
use crate::status::{NodeState, Role, Snapshot};

/// What to run.
#[derive(Debug, Clone)]
pub enum EngineConfig {
    Master(MasterConfig),
    Peer(PeerConfig),
    /// Boxed: two engines' configs in one.
    Proxy(Box<ProxyConfig>),
}

impl From<MasterConfig> for EngineConfig {
    fn from(c: MasterConfig) -> Self {
        EngineConfig::Master(c)
    }
}

impl From<PeerConfig> for EngineConfig {
    fn from(c: PeerConfig) -> Self {
        EngineConfig::Peer(c)
    }
}

impl From<ProxyConfig> for EngineConfig {
    fn from(c: ProxyConfig) -> Self {
        EngineConfig::Proxy(Box::new(c))
    }
}

/// Why an engine did not start; the text says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("master: {0}")]
    Master(#[from] MasterError),
    #[error("peer: {0}")]
    Peer(#[from] PeerError),
    #[error("proxy: {0}")]
    Proxy(#[from] ProxyError),
}

enum Inner {
    Master(Master),
    Peer(Peer),
    Proxy(Proxy),
}

/// A running engine.
pub struct Engine {
    inner: Inner,
}

impl Engine {
    /// Bind the engine's port and start its tasks. Returns at once: indexing and connecting
    /// go on in the background and show in [`Engine::status`].
    pub async fn start(cfg: impl Into<EngineConfig>) -> Result<Engine, EngineError> {
        let inner = match cfg.into() {
            EngineConfig::Master(c) => Inner::Master(Master::start(c).await?),
            EngineConfig::Peer(c) => Inner::Peer(Peer::start(c).await?),
            EngineConfig::Proxy(c) => Inner::Proxy(Proxy::start(*c).await?),
        };
        Ok(Engine { inner })
    }

    /// A proxy's snapshots are its downstream master's (the upstream leg is inside them).
    pub fn role(&self) -> Role {
        match &self.inner {
            Inner::Master(_) | Inner::Proxy(_) => Role::Master,
            Inner::Peer(_) => Role::Peer,
        }
    }

    /// The engine's snapshots (the latest one is always there to borrow).
    pub fn status(&self) -> watch::Receiver<Snapshot> {
        match &self.inner {
            Inner::Master(m) => m.status(),
            Inner::Peer(p) => p.status(),
            Inner::Proxy(p) => p.status(),
        }
    }

    /// The index a master (or a proxy's downstream leg) serves now; `None` for a peer and
    /// before the first index. Tests check what a proxy publishes with it.
    pub fn manifest(&self) -> Option<std::sync::Arc<crate::manifest::Manifest>> {
        match &self.inner {
            Inner::Master(m) => m.manifest(),
            Inner::Peer(_) => None,
            Inner::Proxy(p) => p.manifest(),
        }
    }

    /// Where it listens (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Master(m) => m.local_addr(),
            Inner::Peer(p) => p.local_addr(),
            Inner::Proxy(p) => p.local_addr(),
        }
    }

    /// Pause or resume transfers; the engine, its index and the folder stay as they are, and
    /// snapshots say `paused`. A paused master plans no new transfers (those in flight finish);
    /// a paused peer leaves the master, dropping its fetches in flight (nothing unverified is
    /// written), and rejoins on resume with the index it kept.
    pub fn set_paused(&self, paused: bool) {
        match &self.inner {
            Inner::Master(m) => m.set_paused(paused),
            Inner::Peer(p) => p.set_paused(paused),
            Inner::Proxy(p) => p.set_paused(paused),
        }
    }

    /// False once the engine stopped by itself (a fatal error; the snapshot says why).
    pub fn is_running(&self) -> bool {
        match &self.inner {
            Inner::Master(m) => m.is_running(),
            Inner::Peer(p) => p.is_running(),
            Inner::Proxy(p) => p.is_running(),
        }
    }

    /// Stop cleanly: connections close, nothing unverified is written, uploads in flight get
    /// a few seconds.
    pub async fn shutdown(self) {
        match self.inner {
            Inner::Master(m) => m.shutdown().await,
            Inner::Peer(p) => p.shutdown().await,
            Inner::Proxy(p) => p.shutdown().await,
        }
    }
}

/// True once a node has nothing left to do: a peer whose folder matches the master's manifest,
/// a master whose every peer does.
pub fn is_done(s: &Snapshot) -> bool {
    matches!(s.state, NodeState::UpToDate)
}
