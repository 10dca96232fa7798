//! The proxy engine (`lanscatter proxy`): a peer of an upstream swarm and the master of a
//! downstream swarm over the same folder, for a site behind a slow link (a VPN to the head
//! office) whose machines should fetch the data over that link about once.
//!
//! It is the two engines it relays, wired through hooks they already have, so nothing of
//! either is duplicated:
//! - the upstream leg is a [`Peer`] into the folder (upload slots 0 by default: it does not
//!   feed the upstream swarm over the slow link);
//! - the downstream leg is a [`Master`] of the same folder whose [`Scanner`] does not read the
//!   folder at all: it publishes the files the upstream leg's layout holds *complete* (every
//!   chunk verified and written, the data synced, the master's mtime set), with the upstream
//!   manifest's entries. A file still being fetched is never indexed, since its half-written
//!   bytes never enter a scan. A file that is being rewritten (changed upstream) keeps the
//!   version published before, so downstream peers keep their copy rather than delete it; its
//!   chunks may no longer be on the disk, and the master's chunk route, which re-verifies every
//!   chunk it serves, refuses them until the new version is complete. A file removed upstream
//!   leaves the downstream index at the next poll.
//!
//! The downstream master serves the folder read-only, like every master (`ReadOnlyDisk`); only
//! the upstream peer writes into it. The downstream index is recomputed every [`POLL`] (cheap:
//! no hashing), so an upstream change reaches downstream peers within that of its completion.
//! The shrink guard is off downstream: the upstream master already guards its folder, and a
//! shrink it confirmed must not wait for a second confirmation here.
//!
//! Downstream peers are not done while the proxy is not: until the upstream leg is up to date
//! *and* the downstream index is the whole upstream manifest, the downstream master follows each
//! manifest with "more files follow" (the leg snapshot [`leg`] computes is what it watches).
//!
//! Before the upstream leg has its first manifest the downstream index is not published (the
//! scanner reports why), so downstream peers wait and keep their copies; while the upstream
//! leg lays out a new manifest, the last published index stays. That index is also kept in
//! the folder's `.lanscatter/` ([`INDEX_FILE`]) so a restarted proxy still knows the previous
//! version of a file it was rewriting; without it, downstream peers would delete their copy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::manifest::{Manifest, ScanError, ScanOptions, Scanned};
use crate::master::{Master, MasterConfig, MasterError, Scanner};
use crate::peer::layout::Layout;
use crate::peer::{Peer, PeerConfig, PeerError};
use crate::status::Snapshot;
use crate::storage::Storage;

/// How often the downstream index is recomputed from the upstream leg's verified files.
pub const POLL: Duration = Duration::from_millis(500);

/// The two legs' configs. `upstream.dst_dir` is the folder; `downstream.source_dir` is set to
/// it at start, as are the downstream settings only a proxy uses (scanner, no watcher, [`POLL`]).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub upstream: PeerConfig,
    pub downstream: MasterConfig,
}

impl ProxyConfig {
    /// Defaults for a relay site: the upstream leg uploads nothing, the downstream master
    /// listens on the master port.
    pub fn new(upstream_master: String, dir: PathBuf) -> Self {
        let mut upstream = PeerConfig::new(upstream_master, dir.clone());
        upstream.upload_slots = 0;
        let downstream = MasterConfig::new(dir);
        ProxyConfig { upstream, downstream }
    }
}

/// Why a proxy did not start; the text says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream leg: {0}")]
    Upstream(#[from] PeerError),
    #[error("downstream leg: {0}")]
    Downstream(#[from] MasterError),
    #[error("cannot create the proxy folder {path}: {source}; give a folder this user may create")]
    Folder { path: PathBuf, source: std::io::Error },
}

/// The downstream index as last published, in the folder's state dir (length-prefixed
/// [`Manifest::to_bytes`]).
pub const INDEX_FILE: &str = "proxy-index.bin";

fn index_path(root: &Path) -> PathBuf {
    root.join(crate::paths::STATE_DIR).join(INDEX_FILE)
}

/// Keep `m` as the published index, through the folder's storage; a failure is only logged (a
/// restart then starts without the previous versions).
fn save_index(storage: &dyn Storage, root: &Path, m: &Manifest) {
    let (path, bytes) = (index_path(root), m.to_bytes());
    let mut data = (bytes.len() as u64).to_le_bytes().to_vec();
    data.extend_from_slice(&bytes);
    if let Err(e) = write_synced(storage, &path, &data) {
        tracing::warn!("cannot keep the downstream index in {}: {e}", path.display());
    }
}

fn write_synced(storage: &dyn Storage, path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        storage.create_dir_all(dir)?;
    }
    storage.set_len(path, data.len() as u64)?;
    storage.write_at(path, 0, data)?;
    storage.sync(path)
}

/// The index a previous run kept, if it is there and valid (bounded by what the wire carries).
fn load_index(storage: &dyn Storage, root: &Path) -> Option<Manifest> {
    let path = index_path(root);
    let head = storage.read_at(&path, 0, 8).ok()?;
    let len = u64::from_le_bytes(head.try_into().ok()?);
    if len > crate::protocol::MAX_FRAME as u64 {
        return None;
    }
    let bytes = storage.read_at(&path, 8, len).ok()?;
    Manifest::from_bytes(&bytes).map_err(|e| tracing::warn!("ignoring {}: {e}", path.display())).ok()
}

/// The downstream master's [`Scanner`]: the upstream layout's complete files.
struct VerifiedFiles {
    layout: Arc<Mutex<Option<Layout>>>,
    /// The folder's storage (the upstream leg's) and root, where the index is kept.
    storage: Arc<dyn Storage>,
    root: PathBuf,
    /// What the last scan returned: kept while a new upstream manifest is laid out, and the
    /// source of the previous version of a file being rewritten.
    last: Mutex<Option<Manifest>>,
}

impl std::fmt::Debug for VerifiedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedFiles")
    }
}

impl Scanner for VerifiedFiles {
    fn scan(&self, root: &Path, _opts: &ScanOptions) -> Result<Scanned, ScanError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = {
            let g = self.layout.lock().unwrap_or_else(|p| p.into_inner());
            g.as_ref().map(|l| verified_manifest(l, last.as_ref()))
        };
        let manifest = match (now, last.as_ref()) {
            (Some(m), _) => m,
            (None, Some(prev)) => prev.clone(),
            (None, None) => {
                return Err(ScanError::Io {
                    path: root.to_path_buf(),
                    source: std::io::Error::other(
                        "the proxy has no manifest from its upstream master yet (see the upstream leg's state); \
                         downstream peers wait and keep their copies",
                    ),
                })
            }
        };
        if last.as_ref().is_none_or(|l| l.files != manifest.files || l.dirs != manifest.dirs) {
            save_index(&*self.storage, &self.root, &manifest);
        }
        *last = Some(manifest.clone());
        Ok(Scanned { manifest, skipped: Vec::new(), unsettled: Vec::new() })
    }
}

/// The downstream index for layout `l`: its complete files, and for a file it is still
/// writing the version `prev` published (none if it is new), in the upstream order.
fn verified_manifest(l: &Layout, prev: Option<&Manifest>) -> Manifest {
    let up = &l.manifest;
    let complete: std::collections::HashSet<&str> = l.complete_files().map(|f| f.path.as_str()).collect();
    let files = up
        .files
        .iter()
        .filter_map(|f| {
            if complete.contains(f.path.as_str()) {
                Some(f.clone())
            } else {
                prev.and_then(|p| p.file(&f.path)).cloned()
            }
        })
        .collect();
    Manifest { files, dirs: up.dirs.clone(), chunk_rule: up.chunk_rule, warnings: Vec::new() }
}

/// A running proxy: both legs, and the task that reports the upstream one downstream.
pub(crate) struct Proxy {
    peer: Peer,
    master: Master,
    leg: tokio::task::JoinHandle<()>,
}

/// The upstream leg as the downstream master sees it: the peer's snapshot, but up to date only
/// once the downstream index lists every upstream file as the upstream manifest has it (the
/// index polls the layout, so it trails the peer by up to [`POLL`]).
async fn leg(
    mut peer: watch::Receiver<Snapshot>,
    layout: Arc<Mutex<Option<Layout>>>,
    index: impl Fn() -> Option<Arc<Manifest>>,
    out: watch::Sender<Snapshot>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            r = peer.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let mut s = peer.borrow_and_update().clone();
        if s.state == crate::status::NodeState::UpToDate {
            let covered = {
                let g = layout.lock().unwrap_or_else(|p| p.into_inner());
                let down = index();
                matches!((g.as_ref(), down), (Some(l), Some(d)) if l.manifest.files == d.files)
            };
            if !covered {
                s.state = crate::status::NodeState::Syncing;
                s.detail = Some("publishing the last files downstream".into());
            }
        }
        out.send_if_modified(|o| {
            let changed = *o != s;
            if changed {
                *o = s;
            }
            changed
        });
    }
}

impl Proxy {
    pub(crate) async fn start(cfg: ProxyConfig) -> Result<Proxy, ProxyError> {
        let storage = cfg.upstream.storage.clone();
        let peer = Peer::start(cfg.upstream).await?;
        // The peer checked the folder (not a file, root, dangerous or foreign folder) and
        // resolved it; the downstream master needs it to exist now, before the upstream
        // master's greeting, which is when a peer would create it.
        let root = peer.status().borrow().folder.clone();
        if let Err(source) = std::fs::create_dir_all(&root) {
            peer.shutdown().await;
            return Err(ProxyError::Folder { path: root, source });
        }
        let mut down = cfg.downstream;
        let last = Mutex::new(load_index(&*storage, &root));
        down.scanner = Arc::new(VerifiedFiles { layout: peer.layout(), storage, root: root.clone(), last });
        down.source_dir = root;
        down.watch = false;
        down.rescan_interval = POLL;
        down.allow_shrink = true;
        let (leg_tx, leg_rx) = watch::channel(peer.status().borrow().clone());
        down.upstream = Some(leg_rx);
        match Master::start(down).await {
            Ok(master) => {
                let leg = tokio::spawn(leg(peer.status(), peer.layout(), master.index(), leg_tx));
                Ok(Proxy { peer, master, leg })
            }
            Err(e) => {
                peer.shutdown().await;
                Err(e.into())
            }
        }
    }

    /// The downstream master's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.master.local_addr()
    }

    /// The downstream master's snapshots, each with the upstream leg's in `upstream`.
    pub fn status(&self) -> watch::Receiver<Snapshot> {
        self.master.status()
    }

    /// The index downstream peers are served now.
    pub fn manifest(&self) -> Option<Arc<Manifest>> {
        self.master.manifest()
    }

    pub fn is_running(&self) -> bool {
        self.master.is_running() && self.peer.is_running() && !self.leg.is_finished()
    }

    /// Pause both legs: no fetches upstream, no new transfers downstream.
    pub fn set_paused(&self, paused: bool) {
        self.peer.set_paused(paused);
        self.master.set_paused(paused);
    }

    /// Stop downstream first (its peers keep what they have), then the upstream leg.
    pub async fn shutdown(self) {
        self.leg.abort();
        self.master.shutdown().await;
        self.peer.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CacheMode, ChunkRule};

    fn manifest_of(dir: &Path) -> Arc<Manifest> {
        let opts =
            ScanOptions { chunk_rule: ChunkRule::Fixed(64 * 1024), cache: CacheMode::Disabled, ..Default::default() };
        Arc::new(crate::manifest::scan(dir, &opts).unwrap())
    }

    #[test]
    fn only_complete_files_are_published_and_a_rewritten_one_keeps_its_old_version() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(src.path().join("a.txt"), b"version 1").unwrap();
        let v1 = manifest_of(src.path());
        let storage: Arc<dyn crate::storage::Storage> = Arc::new(crate::storage::Disk);
        let l = Layout::prepare(dst.path(), 1, v1.clone(), &CacheMode::Disabled, storage.clone()).unwrap();
        assert!(verified_manifest(&l, None).files.is_empty(), "nothing written yet: nothing published");
        let layout = Mutex::new(Some(l));
        let h = v1.files[0].chunks[0].hash;
        crate::peer::layout::write_chunk(&layout, &h, b"version 1").unwrap();
        let l = layout.lock().unwrap().take().unwrap();
        let published = verified_manifest(&l, None);
        assert_eq!(published.files, v1.files, "complete: published with the upstream entry");

        std::fs::write(src.path().join("a.txt"), b"version 2, longer").unwrap();
        std::fs::write(src.path().join("new.txt"), b"new").unwrap();
        let v2 = manifest_of(src.path());
        let l = Layout::prepare(dst.path(), 2, v2, &CacheMode::Disabled, storage).unwrap();
        let m = verified_manifest(&l, Some(&published));
        assert_eq!(m.files, v1.files, "the rewritten file keeps version 1, the new one waits");
    }

    /// A restarted proxy still publishes the old version of a file it was rewriting: the
    /// published index is kept in the folder and read back at start.
    #[test]
    fn a_restart_keeps_the_previous_version_of_a_file_being_rewritten() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(src.path().join("a.txt"), b"version 1").unwrap();
        let v1 = manifest_of(src.path());
        let storage: Arc<dyn crate::storage::Storage> = Arc::new(crate::storage::Disk);
        let l = Layout::prepare(dst.path(), 1, v1.clone(), &CacheMode::Disabled, storage.clone()).unwrap();
        let layout = Arc::new(Mutex::new(Some(l)));
        crate::peer::layout::write_chunk(&layout, &v1.files[0].chunks[0].hash, b"version 1").unwrap();
        let root = dst.path().to_path_buf();
        let scanner = |layout| VerifiedFiles {
            layout,
            storage: storage.clone(),
            root: root.clone(),
            last: Mutex::new(load_index(&*storage, &root)),
        };
        let opts = ScanOptions::default();
        assert_eq!(scanner(layout).scan(&root, &opts).unwrap().manifest.files, v1.files);
        // "Restart" while version 2 is being written: a new scanner over a new layout.
        std::fs::write(src.path().join("a.txt"), b"version 2, longer").unwrap();
        let v2 = manifest_of(src.path());
        let l = Layout::prepare(dst.path(), 2, v2, &CacheMode::Disabled, storage.clone()).unwrap();
        let again = scanner(Arc::new(Mutex::new(Some(l)))).scan(&root, &opts).unwrap().manifest;
        assert_eq!(again.files, v1.files, "version 1 is still published after the restart");
    }
}
