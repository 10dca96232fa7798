//! Issue 16, the relay proxy: master → proxy → peers on loopback. The downstream peers end
//! byte-identical to the master, changes made on the master mid-sync reach them, the upstream
//! master sees only the proxy, the proxy's downstream index never lists a file it does not
//! hold complete, a proxy killed with SIGKILL mid-sync and restarted lets everyone finish, and
//! proxies chain.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sync::*;
use lanscatter::engine::{is_done, Engine};
use lanscatter::manifest::{CacheMode, Manifest};
use lanscatter::proxy::ProxyConfig;

fn proxy_config(upstream: std::net::SocketAddr, dir: &Path, cache: &Path, name: &str) -> ProxyConfig {
    let mut cfg = ProxyConfig::new(upstream.to_string(), dir.to_path_buf());
    cfg.upstream.bind = "127.0.0.1:0".parse().unwrap();
    cfg.upstream.advertise = Some("127.0.0.1".into());
    cfg.upstream.cache = CacheMode::Dir(cache.join(name));
    cfg.upstream.name = name.into();
    cfg.downstream.bind = "127.0.0.1:0".parse().unwrap();
    cfg.downstream.name = name.into();
    cfg
}

/// Every downstream index a proxy published, as the test saw them, and what was wrong with any.
#[derive(Default)]
struct IndexWatch {
    seen: Vec<Arc<Manifest>>,
    entries: HashSet<(String, String)>,
    violations: Vec<String>,
}

impl IndexWatch {
    /// Look at the proxy's current downstream index: a file entry seen for the first time must
    /// be complete in the proxy's folder (checked for files the test never changes, whose
    /// content is fixed: `stable`).
    fn sample(&mut self, proxy: &Engine, proxy_dir: &Path, stable: &BTreeMap<String, Vec<u8>>) {
        let Some(m) = proxy.manifest() else { return };
        if self.seen.last().is_some_and(|l| Arc::ptr_eq(l, &m)) {
            return;
        }
        for f in &m.files {
            if !self.entries.insert((f.path.clone(), f.hash.to_hex())) {
                continue;
            }
            if let Some(want) = stable.get(&f.path) {
                let have = std::fs::read(proxy_dir.join(&f.path)).unwrap_or_default();
                if &have != want {
                    self.violations.push(format!(
                        "{} listed downstream while the proxy holds {} of {} bytes right",
                        f.path,
                        common_prefix(&have, want),
                        want.len()
                    ));
                }
            }
        }
        self.seen.push(m);
    }

    /// Every entry ever published downstream is one the upstream master published.
    fn check_against(&self, upstream: &[Arc<Manifest>]) {
        let known: HashSet<(String, String)> =
            upstream.iter().flat_map(|m| m.files.iter().map(|f| (f.path.clone(), f.hash.to_hex()))).collect();
        let mut bad = self.violations.clone();
        bad.extend(
            self.entries
                .iter()
                .filter(|e| !known.contains(*e))
                .map(|(p, h)| format!("{p} published as {h}, a version the master never had")),
        );
        assert!(bad.is_empty(), "the proxy published what it did not hold complete:\n{}", bad.join("\n"));
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A downstream peer is done when it is up to date and its folder is the master's.
fn all_done(peers: &Peers, mdir: &Path) -> bool {
    peers.iter().all(|(p, dir)| is_done(&p.status().borrow()) && trees_equal(mdir, dir))
}

/// The mid-sync changes: one file added, one rewritten, one deleted. Returns the paths touched.
fn change_master(mdir: &Path, contents: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut big: Vec<&String> = contents.iter().filter(|(_, d)| d.len() as u64 > 2 * CHUNK).map(|(p, _)| p).collect();
    big.sort();
    let (rewrite, delete) = (big[0].clone(), big[1].clone());
    let mut rng = Rng::new(99);
    write_file(mdir, "added mid-sync/new.bin", &rng.bytes(5 * CHUNK as usize + 3), 1_600_000_000);
    write_file(mdir, &rewrite, &rng.bytes(4 * CHUNK as usize + 9), 1_600_000_001);
    std::fs::remove_file(mdir.join(&delete)).unwrap();
    vec![rewrite, delete, "added mid-sync/new.bin".into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_relays_verified_files_and_mid_sync_changes_to_its_peers() {
    let (t, mdir, cache) = sync_source(16, 4);
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.max_upload_bps = Some(1_500_000); // the slow link: the sync is still going when we change the folder
    let master = Engine::start(mcfg).await.unwrap();
    let pdir = t.path().join("proxy");
    let proxy = Engine::start(proxy_config(master.local_addr(), &pdir, &cache, "proxy")).await.expect("proxy starts");
    let peers = start_peers(proxy.local_addr(), t.path(), &cache, 3).await;

    let contents = common::tree_contents(&mdir);
    // Each file the master ever published is in its first index or its last (the test writes
    // every changed file whole, once).
    let mut upstream = vec![wait_manifest(&master, 0).await];
    let mut watch = IndexWatch::default();
    let mut changed: Option<Vec<String>> = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let stable: BTreeMap<String, Vec<u8>> = match &changed {
            Some(c) => contents.iter().filter(|(p, _)| !c.contains(p)).map(|(p, d)| (p.clone(), d.clone())).collect(),
            None => contents.clone(),
        };
        watch.sample(&proxy, &pdir, &stable);
        let downstream_bytes: u64 = peers.iter().map(|(p, _)| p.status().borrow().bytes_done).sum();
        if changed.is_none() && downstream_bytes > 0 {
            let m = master.status().borrow().clone();
            assert!(m.bytes_done < m.bytes_total, "the change lands mid-sync (the proxy is still fetching)");
            changed = Some(change_master(&mdir, &contents));
        }
        if changed.is_some() && all_done(&peers, &mdir) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "downstream peers not done in time: {:?}",
            peers.iter().map(|(p, _)| p.status().borrow().state.clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    upstream.push(master.manifest().expect("the master has an index"));
    watch.check_against(&upstream);
    assert!(watch.seen.len() >= 2, "the downstream index grew as files completed ({} versions)", watch.seen.len());
    assert_same_tree(&mdir, &pdir);
    assert!(tree_state(&mdir).contains_key("added mid-sync/new.bin"));

    let status = api_status(master.local_addr()).await;
    let names: Vec<&str> = status["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["master", "proxy"], "the upstream master sees only the proxy");
    // The snapshot carrying the leg is published every 0.3 s: wait for the one after the end.
    let mut prx = proxy.status();
    wait_status(&mut prx, Duration::from_secs(10), "the proxy's upstream leg up to date in its status", |s| {
        s.upstream.as_ref().is_some_and(|u| is_done(u))
    })
    .await;
    let both = api_status(proxy.local_addr()).await;
    assert_eq!(both["nodes"].as_array().unwrap().len(), 4, "downstream: the proxy and its 3 peers");
    assert_eq!(both["upstream"]["role"], "peer", "the proxy's status shows its upstream leg too");
    assert_eq!(both["upstream"]["state"]["state"], "up_to_date");

    for (p, _) in peers {
        p.shutdown().await;
    }
    proxy.shutdown().await;
    master.shutdown().await;
}

/// The master's index once it has one with an id above `after`.
async fn wait_manifest(master: &Engine, after: u64) -> Arc<Manifest> {
    let mut rx = master.status();
    wait_status(&mut rx, Duration::from_secs(30), "the master's index", |s| s.manifest_id > after).await;
    master.manifest().expect("indexed")
}

/// `/api/status` of an open node, parsed.
async fn api_status(addr: std::net::SocketAddr) -> serde_json::Value {
    let r = lanscatter::transport::api::get(&addr.to_string(), "/api/status", None, Duration::from_secs(5), 1 << 20)
        .await
        .expect("status answers");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_killed_mid_sync_and_restarted_lets_everyone_finish() {
    let (t, mdir, cache) = sync_source(17, 4);
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.max_upload_bps = Some(1_000_000);
    let master = Engine::start(mcfg).await.unwrap();
    let pdir = t.path().join("proxy");
    let mut proxy = spawn_proxy(master.local_addr(), &pdir, 0);
    let line = proxy.wait_line("ready: downstream listening on", Duration::from_secs(30));
    let down: std::net::SocketAddr =
        line.split("listening on ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let peers = start_peers(down, t.path(), &cache, 3).await;

    wait_until(Duration::from_secs(60), "downstream peers got something", || {
        peers.iter().any(|(p, _)| p.status().borrow().bytes_done > 0)
    })
    .await;
    let m = master.status().borrow().clone();
    assert!(m.bytes_done < m.bytes_total, "the kill lands mid-sync");
    proxy.kill();

    let mut proxy = spawn_proxy(master.local_addr(), &pdir, down.port());
    proxy.wait_line("ready: downstream listening on", Duration::from_secs(30));
    wait_until(Duration::from_secs(180), "everyone finished after the restart", || all_done(&peers, &mdir)).await;
    assert_same_tree(&mdir, &pdir);
    let mut mrx = master.status();
    wait_status(&mut mrx, Duration::from_secs(20), "only the restarted proxy at the master", |s| s.nodes.len() == 2)
        .await;
    for (p, _) in peers {
        p.shutdown().await;
    }
    drop(proxy);
    master.shutdown().await;
}

/// `lanscatter proxy` as a real process on loopback (downstream `port`, 0 for any).
fn spawn_proxy(upstream: std::net::SocketAddr, dir: &Path, port: u16) -> common::Proc {
    let (up, port, d) = (upstream.to_string(), port.to_string(), dir.to_string_lossy().to_string());
    let cache: PathBuf = dir.with_extension("cache");
    let mut cmd = common::cli(["proxy", &up, &d, "--open", "--bind", "127.0.0.1", "--port", &port, "--peer-port", "0"]);
    cmd.env("XDG_CACHE_HOME", &cache).stdout(std::process::Stdio::null());
    common::Proc::start(cmd, common::Lines::Stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_holding_all_a_filling_proxy_publishes_is_not_done() {
    let (t, mdir, cache) = sync_source(19, 3);
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.max_upload_bps = Some(400_000);
    let master = Engine::start(mcfg).await.unwrap();
    let proxy =
        Engine::start(proxy_config(master.local_addr(), &t.path().join("proxy"), &cache, "proxy")).await.unwrap();
    let peers = start_peers(proxy.local_addr(), t.path(), &cache, 1).await;
    let (peer, _) = &peers[0];
    let mut rx = peer.status();
    let s = wait_status(&mut rx, Duration::from_secs(60), "the peer holds all the proxy publishes so far", |s| {
        s.manifest_id > 0 && s.bytes_total > 0 && s.bytes_done == s.bytes_total
    })
    .await;
    let up = proxy.status().borrow().upstream.as_ref().map(|u| u.state.clone());
    assert_ne!(up, Some(lanscatter::status::NodeState::UpToDate), "checked while the proxy still fetches");
    assert!(!is_done(&s), "not done while the proxy says more files follow: {:?}", s.state);
    assert!(s.detail.as_deref().unwrap_or_default().contains("more files follow"), "{:?}", s.detail);
    wait_until(Duration::from_secs(120), "done once the proxy is", || all_done(&peers, &mdir)).await;
    for (p, _) in peers {
        p.shutdown().await;
    }
    proxy.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxies_chain_three_levels_deep() {
    let (t, mdir, cache) = sync_source(18, 2);
    let master = Engine::start(master_config(&mdir, &cache)).await.unwrap();
    let p1 = Engine::start(proxy_config(master.local_addr(), &t.path().join("site"), &cache, "site")).await.unwrap();
    let p2 = Engine::start(proxy_config(p1.local_addr(), &t.path().join("floor"), &cache, "floor")).await.unwrap();
    let peers = start_peers(p2.local_addr(), t.path(), &cache, 2).await;
    wait_until(Duration::from_secs(120), "the leaves finished", || all_done(&peers, &mdir)).await;
    assert_same_tree(&mdir, &t.path().join("site"));
    assert_same_tree(&mdir, &t.path().join("floor"));
    for (p, _) in peers {
        p.shutdown().await;
    }
    p2.shutdown().await;
    p1.shutdown().await;
    master.shutdown().await;
}
