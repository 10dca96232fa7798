//! Shared helpers for integration tests: random folder trees, tree snapshots (content and
//! mtimes), engines on 127.0.0.1 port 0 with a small chunk size, and condition polling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lanscatter::engine::{is_done, Engine};
use lanscatter::manifest::{CacheMode, ChunkRule};
use lanscatter::master::MasterConfig;
use lanscatter::peer::PeerConfig;
use lanscatter::status::Snapshot;

/// Small chunks give many chunks from little data.
pub const CHUNK: u64 = 64 * 1024;

pub use super::Rng;

/// Write `root/rel` (parents created) with a fixed mtime of `mtime_secs` plus 123456789 ns.
pub fn write_file(root: &Path, rel: &str, data: &[u8], mtime_secs: i64) {
    super::write_file_at(root, rel, data, mtime_secs);
}

pub use super::{random_tree, TreeSpec};

/// The tree a sync must get right: nested dirs, empty files and dirs, unicode names, files
/// smaller than, exactly and just over a chunk and much larger, identical files
/// (`copies/a.bin`, `copies/b.bin`), fixed mtimes; 12 × `scale` files plus the special ones.
pub fn sync_tree(scale: usize) -> TreeSpec {
    TreeSpec {
        files: 12 * scale,
        sizes: vec![1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17, 20 * CHUNK + 5],
        dup_fraction: 0.0,
        empty_dirs: 1,
        compressible: true,
        mtime: Some(1_500_000_000),
        special_files: true,
        ..TreeSpec::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { hash: String, size: u64, mtime: (i64, u32) },
}

/// Every entry under `root` with content hash and mtime (see [`super::walk`] for entries that
/// vanish meanwhile).
pub fn tree_state(root: &Path) -> BTreeMap<String, Entry> {
    let entry = |f: &super::Found| {
        if f.meta.is_dir() {
            return Some(Entry::Dir);
        }
        let data = std::fs::read(&f.path).ok()?;
        let t = f.meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
        let hash = lanscatter::manifest::ChunkHash::of(&data).to_hex();
        Some(Entry::File { hash, size: data.len() as u64, mtime: (t.as_secs() as i64, t.subsec_nanos()) })
    };
    super::walk(root)
        .into_iter()
        .filter_map(|f| {
            let e = entry(&f)?;
            Some((f.rel, e))
        })
        .collect()
}

pub fn assert_same_tree(master: &Path, peer: &Path) {
    let a = tree_state(master);
    let b = tree_state(peer);
    if a != b {
        let mut diff = String::new();
        for (k, v) in &a {
            match b.get(k) {
                None => diff.push_str(&format!("missing on peer: {k}\n")),
                Some(w) if w != v => diff.push_str(&format!("differs: {k}: {v:?} vs {w:?}\n")),
                _ => {}
            }
        }
        for k in b.keys() {
            if !a.contains_key(k) {
                diff.push_str(&format!("extra on peer: {k}\n"));
            }
        }
        panic!("trees differ ({} vs {}):\n{diff}", master.display(), peer.display());
    }
}

pub fn trees_equal(master: &Path, peer: &Path) -> bool {
    tree_state(master) == tree_state(peer)
}

pub struct TestCache(pub tempfile::TempDir);

pub fn master_config(dir: &Path, cache: &Path) -> MasterConfig {
    let mut cfg = MasterConfig::new(dir.to_path_buf());
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    cfg.chunk_rule = ChunkRule::Fixed(CHUNK);
    cfg.cache = CacheMode::Dir(cache.join("master"));
    cfg.rescan_interval = Duration::from_secs(2);
    cfg.name = "master".into();
    cfg
}

pub fn peer_config(master: std::net::SocketAddr, dir: &Path, cache: &Path, name: &str) -> PeerConfig {
    let mut cfg = PeerConfig::new(master.to_string(), dir.to_path_buf());
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    cfg.advertise = Some("127.0.0.1".into());
    cfg.cache = CacheMode::Dir(cache.join(name));
    cfg.name = name.into();
    cfg
}

pub async fn start_master(dir: &Path, cache: &Path) -> Engine {
    Engine::start(master_config(dir, cache)).await.expect("master starts")
}

pub async fn start_peer(master: std::net::SocketAddr, dir: &Path, cache: &Path, name: &str) -> Engine {
    Engine::start(peer_config(master, dir, cache, name)).await.expect("peer starts")
}

/// Peers with their folders.
pub type Peers = Vec<(Engine, PathBuf)>;

/// Start `n` peers of `master` in `root/peer0`, `root/peer1`, … (named like their folders),
/// `tweak` changing each one's config first.
pub async fn start_peers_with(
    master: std::net::SocketAddr,
    root: &Path,
    cache: &Path,
    n: usize,
    tweak: impl Fn(usize, &mut PeerConfig),
) -> Peers {
    let mut peers = Vec::new();
    for i in 0..n {
        let (name, dir) = (format!("peer{i}"), root.join(format!("peer{i}")));
        let mut cfg = peer_config(master, &dir, cache, &name);
        tweak(i, &mut cfg);
        peers.push((Engine::start(cfg).await.expect("peer starts"), dir));
    }
    peers
}

/// [`start_peers_with`] the test config as it is.
pub async fn start_peers(master: std::net::SocketAddr, root: &Path, cache: &Path, n: usize) -> Peers {
    start_peers_with(master, root, cache, n, |_, _| {}).await
}

/// [`wait_synced`] for every peer.
pub async fn wait_all_synced(peers: &Peers, master: &Engine, master_dir: &Path, timeout: Duration) {
    for (p, dir) in peers {
        wait_synced(p, master, master_dir, dir, timeout).await;
    }
}

/// Shut the peers down, then the master.
pub async fn shutdown_all(peers: Peers, master: Engine) {
    for (p, _) in peers {
        p.shutdown().await;
    }
    master.shutdown().await;
}

/// Poll `cond` on the latest snapshot until it holds or `timeout` passes.
pub async fn wait_status(
    rx: &mut tokio::sync::watch::Receiver<Snapshot>,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = Instant::now() + timeout;
    loop {
        let s = rx.borrow_and_update().clone();
        if cond(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last status: state {:?}, {}/{} bytes, events {:?}",
                s.state,
                s.bytes_done,
                s.bytes_total,
                s.events.iter().rev().take(5).collect::<Vec<_>>()
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

/// Poll an arbitrary condition.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A peer is done for the master's *current* content when it is up to date and its manifest is
/// the master's latest.
pub async fn wait_synced(peer: &Engine, master: &Engine, master_dir: &Path, peer_dir: &Path, timeout: Duration) {
    let mut prx = peer.status();
    let mrx = master.status();
    let deadline = Instant::now() + timeout;
    loop {
        let m = mrx.borrow().manifest_id;
        let p = prx.borrow_and_update().clone();
        if m != 0 && p.manifest_id == m && is_done(&p) && trees_equal(master_dir, peer_dir) {
            return;
        }
        if Instant::now() > deadline {
            assert_same_tree(master_dir, peer_dir);
            panic!(
                "peer {} not up to date after {timeout:?}: {:?} manifest {} vs {}",
                p.name, p.state, p.manifest_id, m
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), prx.changed()).await;
    }
}

/// A temp folder whose `master/` holds [`sync_tree`]`(scale)` from `seed`: (temp folder,
/// master folder, cache folder).
pub fn sync_source(seed: u64, scale: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    random_tree(&mdir, seed, &sync_tree(scale));
    (t, mdir, cache)
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn paths(t: &tempfile::TempDir) -> (PathBuf, PathBuf) {
    (t.path().join("master"), t.path().join("cache"))
}

/// `LANSCATTER_TRUST_BENCH=1`: the swarm tests that compare a run with a bad node against one
/// without (`swarm_liar`, `swarm_frozen`) run at a size where a sync takes ~10 s, so fixed
/// detection delays cannot hide behind a short baseline; `bench/trust` runs them in release.
pub fn trust_bench() -> bool {
    std::env::var("LANSCATTER_TRUST_BENCH").is_ok_and(|v| v == "1")
}

/// Log to the test's output as `RUST_LOG` says (e.g. `lanscatter=debug`); once per process.
pub fn trace_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}
