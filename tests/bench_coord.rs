//! Coordinator benchmark (issue 19, "a coordinator that scales"): one real master engine over a
//! synthetic N-file manifest (no files on disk: a [`Scanner`] makes it), and P protocol-level
//! fake peers in a child process, over real loopback websockets.
//!
//! Why a child process: the master's CPU (`getrusage(RUSAGE_SELF)`) and peak RSS (`VmHWM`)
//! are then the master's alone, not the fakes' decoding. The child is this test binary run
//! again on [`coord_bench_peers`] (ignored, so `cargo test` never runs either).
//!
//! The fakes speak the real handshake and messages: a `Hello`, the manifest (full or delta, as
//! the master sends it), a `HaveBits` claiming every chunk (they never fetch data), `Stats`
//! once a second like an idle real peer. They count every control byte each way. They decode
//! each manifest once between them, not once each: the child's memory and CPU stay small
//! even at a million files.
//!
//! The master's connection caps follow from `max_peers` (`ServeLimits::for_peers`): the
//! bench raises it so that all fakes, on one loopback address, may connect at once (the
//! default caps connections from one address that have not sent a request yet).
//!
//! Run (numbers are only meaningful with optimisations; the test profile builds dependencies
//! at opt-level 3 and this crate at 1):
//! `BENCH_PEERS=50 BENCH_FILES=100000 cargo test --test bench_coord -- --ignored --nocapture coord_bench`
//! Prints one table row. Measures, never asserts on time. Linux only (`/proc`, `getrusage`).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanscatter::engine::Engine;
use lanscatter::manifest::chunking::{chunk_ranges, file_hash};
use lanscatter::manifest::{
    Chunk, ChunkHash, ChunkRule, DirEntry, FileEntry, Manifest, Mtime, ScanError, ScanOptions, Scanned,
};
use lanscatter::master::{MasterConfig, Scanner};
use lanscatter::status::{NodeState, Snapshot};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A folder of `files` files of 1 KiB in 1000-file directories; file `changed` gets `version`.
#[derive(Debug)]
struct Synthetic {
    base: Manifest,
    version: AtomicU64,
}

fn file(path: String, seed: u64) -> FileEntry {
    let size = 1024;
    let cs = ChunkRule::Auto.chunk_size_for(size);
    let chunks: Vec<Chunk> = chunk_ranges(size, cs)
        .map(|(offset, size)| Chunk { offset, size, hash: ChunkHash::of(&seed.to_le_bytes()) })
        .collect();
    let hash = file_hash(size, cs, chunks.iter().map(|c| c.hash));
    FileEntry { path, size, mtime: Mtime { secs: 1_700_000_000, nanos: 0 }, chunk_size: cs, chunks, hash }
}

impl Synthetic {
    fn new(files: u64) -> Self {
        let dirs = files.div_ceil(1000);
        let dirs = (0..dirs).map(|d| DirEntry { path: format!("d{d:05}") }).collect();
        let files = (0..files).map(|i| file(format!("d{:05}/f{i:08}", i / 1000), i)).collect();
        let base = Manifest { files, dirs, chunk_rule: ChunkRule::Auto, warnings: vec![] };
        Synthetic { base, version: AtomicU64::new(0) }
    }
}

impl Scanner for Synthetic {
    fn scan(&self, _root: &Path, _opts: &ScanOptions) -> Result<Scanned, ScanError> {
        let mut manifest = self.base.clone();
        let v = self.version.load(Ordering::Relaxed);
        if v > 0 {
            let f = &mut manifest.files[0];
            *f = file(f.path.clone(), u64::MAX - v);
        }
        Ok(Scanned { manifest, skipped: vec![], unsettled: vec![] })
    }
}

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Peak resident set of this process, MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn wait_for(rx: &mut tokio::sync::watch::Receiver<Snapshot>, what: &str, f: impl Fn(&Snapshot) -> bool) {
    let deadline = Duration::from_secs(env_num("BENCH_TIMEOUT", 900));
    let r = tokio::time::timeout(deadline, rx.wait_for(|s| f(s))).await;
    assert!(matches!(r, Ok(Ok(_))), "timed out waiting for {what}");
}

fn all_up(s: &Snapshot, peers: usize, id: u64) -> bool {
    s.manifest_id == id && s.nodes.len() == peers + 1 && s.nodes.iter().all(|n| matches!(n.state, NodeState::UpToDate))
}

/// One line from the child, parsed as `key=value` pairs.
fn child_report(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Vec<(String, f64)> {
    for l in lines.by_ref() {
        let l = l.expect("child stdout");
        // Anywhere in the line: libtest's "test coord_bench_peers ... " has no newline.
        if let Some((_, rest)) = l.split_once("REPORT ") {
            return rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
                .collect();
        }
    }
    panic!("the peer process ended without a report");
}

fn get(r: &[(String, f64)], k: &str) -> f64 {
    r.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand with --ignored --nocapture (see the module doc)"]
async fn coord_bench() {
    let peers = env_num("BENCH_PEERS", 50) as usize;
    let files = env_num("BENCH_FILES", 100_000);
    let src = tempfile::tempdir().unwrap();
    let synth = Arc::new(Synthetic::new(files));
    let manifest_len = synth.base.to_bytes().len() as f64;
    let mut cfg = MasterConfig::new(src.path().to_path_buf());
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    cfg.watch = true;
    cfg.settle = Duration::ZERO;
    cfg.rescan_interval = Duration::from_secs(3600);
    // 16 x: the per-address cap of not-yet-requesting connections is then above `peers`.
    cfg.max_peers = (peers + 16) * 16;
    cfg.scanner = synth.clone();
    let master = Engine::start(cfg).await.unwrap();
    let mut rx = master.status();
    wait_for(&mut rx, "the first index", |s| s.manifest_id == 1).await;
    let cpu0 = cpu_seconds();

    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "coord_bench_peers", "--nocapture", "--test-threads=1"])
        .env("BENCH_MASTER", master.local_addr().to_string())
        .env("BENCH_PEERS", peers.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let t0 = Instant::now();
    wait_for(&mut rx, "every peer up to date", |s| all_up(s, peers, 1)).await;
    let join_s = t0.elapsed().as_secs_f64();
    let join_cpu = cpu_seconds() - cpu0;
    writeln!(stdin, "report").unwrap();
    let joined = child_report(&mut lines);

    let (c1, w1) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(env_num("BENCH_STEADY_SECS", 10))).await;
    let steady = (cpu_seconds() - c1) / w1.elapsed().as_secs_f64();

    synth.version.store(1, Ordering::Relaxed);
    std::fs::write(src.path().join("touch"), b"x").unwrap(); // the watcher starts a scan
    wait_for(&mut rx, "every peer up to date on manifest 2", |s| all_up(s, peers, 2)).await;
    writeln!(stdin, "report").unwrap();
    let changed = child_report(&mut lines);
    drop(stdin);
    let _ = child.wait();
    let rss = peak_rss_mib();
    println!(
        "| peers | files | manifest MB | join s | join master CPU s | steady CPU % of a core | change bytes/peer (down+up) | manifest upload (x manifest) | master VmHWM MiB |"
    );
    println!(
        "| {peers} | {files} | {:.1} | {join_s:.1} | {join_cpu:.1} | {:.1} | {:.0} ({:.0}+{:.0}) | {:.2} | {rss:.0} |",
        manifest_len / 1e6,
        steady * 100.0,
        get(&changed, "change_rx") + get(&changed, "change_tx"),
        get(&changed, "change_rx"),
        get(&changed, "change_tx"),
        get(&changed, "manifest_rx_total") / manifest_len,
    );
    println!("joined: {joined:?}\nafter the change: {changed:?}");
    master.shutdown().await;
}

/// Per fake peer: bytes received and sent since the last manifest arrived, and manifest bytes.
#[derive(Default)]
struct Counts {
    rx: AtomicU64,
    tx: AtomicU64,
    manifest_rx: AtomicU64,
}

/// The child: P fake peers against `BENCH_MASTER`; a `report` line on stdin prints the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the peer side of coord_bench, started by it"]
async fn coord_bench_peers() {
    let Ok(master) = std::env::var("BENCH_MASTER") else { return };
    let peers = env_num("BENCH_PEERS", 50) as usize;
    let cache = Arc::new(fake::Claims::default());
    let counts: Vec<Arc<Counts>> = (0..peers).map(|_| Arc::new(Counts::default())).collect();
    for (i, c) in counts.iter().enumerate() {
        let (m, c, cache) = (master.clone(), c.clone(), cache.clone());
        tokio::spawn(async move { fake::run(i, &m, c, cache).await });
    }
    let stdin = tokio::task::spawn_blocking(|| {
        let mut commands = Vec::new();
        for l in std::io::stdin().lock().lines() {
            match l {
                Ok(l) => commands.push(l),
                Err(_) => break,
            }
            let _ = COMMANDS.lock().map(|mut c| c.extend(commands.drain(..)));
        }
    });
    let mut reported = 0;
    loop {
        let n = COMMANDS.lock().map(|c| c.len()).unwrap_or(0);
        if n > reported {
            reported = n;
            let avg = |f: fn(&Counts) -> u64| counts.iter().map(|c| f(c)).sum::<u64>() as f64 / peers as f64;
            let total: u64 = counts.iter().map(|c| c.manifest_rx.load(Ordering::Relaxed)).sum();
            println!(
                "REPORT change_rx={:.0} change_tx={:.0} manifest_rx_total={total}",
                avg(|c| c.rx.load(Ordering::Relaxed)),
                avg(|c| c.tx.load(Ordering::Relaxed)),
            );
            let _ = std::io::stdout().flush();
        }
        if stdin.is_finished() {
            return;
        }
        // Polling stdin's commands; nothing here is timed or asserted.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

static COMMANDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The fake peers: protocol-level, claiming every chunk of each manifest, fetching nothing.
mod fake {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use lanscatter::manifest::delta::{manifest_hash, Delta};
    use lanscatter::manifest::Manifest;
    use lanscatter::protocol::{self, Hello, MasterGreeting, MasterMsg, PeerMsg, PROTOCOL_VERSION};
    use lanscatter::transport::channel::{self, Channel};
    use lanscatter::transport::Security;

    use super::Counts;

    /// One decoded manifest and the have-set claiming all of it, shared by every fake peer
    /// (decoded once, not once per fake: the fakes' CPU is not what is measured).
    pub struct Claim {
        pub manifest: Arc<Manifest>,
        pub have_all: PeerMsg,
    }

    #[derive(Default)]
    pub struct Claims(tokio::sync::Mutex<HashMap<u64, Arc<Claim>>>);

    impl Claims {
        async fn held(&self, id: u64) -> Option<Arc<Claim>> {
            self.0.lock().await.get(&id).cloned()
        }

        async fn get(&self, id: u64, make: impl FnOnce() -> Manifest + Send + 'static) -> Arc<Claim> {
            let mut g = self.0.lock().await;
            if let Some(c) = g.get(&id) {
                return c.clone();
            }
            let claim = tokio::task::spawn_blocking(move || {
                let m = make();
                let n = m.unique_chunks().len();
                let bits = protocol::have_bits(n, |_| true);
                let have_all = PeerMsg::HaveBits { manifest_id: id, chunks: n as u64, bits };
                Claim { manifest: Arc::new(m), have_all }
            })
            .await
            .expect("decoding task");
            let c = Arc::new(claim);
            g.insert(id, c.clone());
            c
        }
    }

    fn hello(i: usize) -> Hello {
        Hello {
            app: Hello::APP.into(),
            protocol: PROTOCOL_VERSION,
            name: format!("fake{i}"),
            advertise_host: Some("127.0.0.1".into()),
            port: 9,
            upload_slots: 2,
            download_slots: 2,
            max_upload_bps: None,
            max_download_bps: None,
            version: "bench".into(),
        }
    }

    async fn send(ch: &mut Channel, counts: &Counts, msg: &PeerMsg) {
        if !matches!(msg, PeerMsg::Stats { .. }) {
            counts.tx.fetch_add(protocol::encode(msg).len() as u64, Ordering::Relaxed);
        }
        if let Err(e) = ch.send(msg).await {
            eprintln!("a fake peer could not send: {e}");
        }
    }

    /// Connect, retrying like a real peer: a thousand connections at once may meet a full
    /// accept queue on loopback.
    async fn connect(master: &str) -> Channel {
        let mut wait = Duration::from_millis(200);
        for _ in 0..20 {
            match channel::connect(master, Duration::from_secs(60), &Security::Open).await {
                Ok(ch) => return ch,
                Err(e) => eprintln!("a fake peer could not connect: {e}; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        panic!("a fake peer could not connect to {master}");
    }

    /// One fake peer: like a real one, it connects again after its connection ends (a
    /// starved loopback can miss the channel's liveness deadline while manifests are large).
    pub async fn run(i: usize, master: &str, counts: Arc<Counts>, claims: Arc<Claims>) {
        for _ in 0..20 {
            session(i, master, &counts, &claims).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("fake peer {i} gave up");
    }

    async fn session(i: usize, master: &str, counts: &Counts, claims: &Claims) {
        let mut ch = connect(master).await;
        let welcome = match ch.send_handshake(&hello(i)).await {
            Ok(()) => ch.recv_handshake(Duration::from_secs(60)).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match welcome.map(|t| protocol::parse_greeting(&t)) {
            Ok(Ok(MasterGreeting::Welcome(_))) => {}
            other => return eprintln!("fake peer {i}: no welcome: {other:?}"),
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                m = ch.recv::<MasterMsg>() => match m {
                    Ok(m) => on_msg(&mut ch, counts, claims, m).await,
                    Err(e) => {
                        eprintln!("fake peer {i} left: {e}");
                        return;
                    }
                },
                _ = tick.tick() => {
                    let stats = PeerMsg::Stats { download_bps: 0.0, upload_bps: 0.0, error: None };
                    send(&mut ch, counts, &stats).await;
                }
            }
        }
    }

    /// A message's size on the wire.
    fn fetch_len(m: &MasterMsg) -> u64 {
        protocol::encode(m).len() as u64
    }

    async fn on_msg(ch: &mut Channel, counts: &Counts, claims: &Claims, m: MasterMsg) {
        match m {
            MasterMsg::Manifest { id, bytes } => {
                counts.rx.store(bytes.len() as u64 + 10, Ordering::Relaxed);
                counts.tx.store(0, Ordering::Relaxed);
                counts.manifest_rx.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                // Answering pings while another fake decodes: a silent peer is dropped after 7 s.
                let make = move || Manifest::from_bytes(&bytes).expect("a valid manifest");
                let claim = ch.keep_alive(claims.get(id, make)).await;
                send(ch, counts, &claim.have_all).await;
            }
            MasterMsg::ManifestDelta { id, base, hash, delta } => {
                counts.rx.store(delta.len() as u64 + 40, Ordering::Relaxed);
                counts.tx.store(0, Ordering::Relaxed);
                counts.manifest_rx.fetch_add(delta.len() as u64, Ordering::Relaxed);
                let Some(held) = claims.held(base).await else { panic!("a delta against unknown manifest {base}") };
                let make = move || {
                    let m = Delta::from_bytes(&delta).and_then(|d| d.apply(&held.manifest)).expect("the delta applies");
                    assert_eq!(manifest_hash(&m.to_bytes()), hash, "the rebuilt manifest is the master's");
                    m
                };
                // Like a real peer: nothing to report when the change lost it no chunk.
                ch.keep_alive(claims.get(id, make)).await;
            }
            m @ MasterMsg::Fetch { .. } => {
                let MasterMsg::Fetch { id, .. } = m else { return };
                // Claimed, never fetched: the fakes measure control traffic only.
                counts.rx.fetch_add(fetch_len(&m), Ordering::Relaxed);
                send(ch, counts, &PeerMsg::Finished { id }).await;
            }
            other => {
                counts.rx.fetch_add(protocol::encode(&other).len() as u64, Ordering::Relaxed);
            }
        }
    }
}
