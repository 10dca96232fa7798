//! A secured swarm (issue 18): a host without the secret gets nothing and changes nothing, and
//! the wire shows neither content nor names. Real engines on loopback; the eavesdropper and the
//! broken switch are a TCP proxy between them (`common::proxy`).

mod common;
mod web_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::sync::*;
use lanscatter::engine::Engine;
use lanscatter::manifest::ChunkRule;
use lanscatter::secret::SwarmSecret;
use lanscatter::status::NodeState;
use lanscatter::transport::Security;

const MARKER: &[u8] = b"MARKER-4f1c9e-PLANTED-IN-CLEAR";
const NAME: &str = "very-secret-plans.bin";

fn security(s: &str) -> Security {
    Security::from_secret(&SwarmSecret::parse(s).unwrap()).unwrap()
}

fn swarm_a() -> Security {
    security("the secret of swarm A, test only")
}

/// A temp folder whose `master/` holds incompressible content with a marker in the middle,
/// under a telling name: (temp folder, master folder, cache folder).
fn source() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(18);
    let mut data = rng.bytes(300 * 1024);
    data.splice(150_000..150_000, MARKER.iter().copied());
    write_file(&mdir, NAME, &data, 1_600_000_000);
    write_file(&mdir, "other/notes.txt", &rng.bytes(70_000), 1_600_000_001);
    (t, mdir, cache)
}

async fn master_with(mdir: &Path, cache: &Path, sec: Security, slow: bool) -> Engine {
    let mut cfg = master_config(mdir, cache);
    cfg.security = sec;
    if slow {
        // A slow master with one slot makes another peer the attractive source.
        cfg.upload_slots = 1;
        cfg.max_upload_bps = Some(2_000_000);
    }
    Engine::start(cfg).await.expect("master starts")
}

async fn peer_with(server: SocketAddr, dir: &Path, cache: &Path, name: &str, sec: Security) -> Engine {
    let mut cfg = peer_config(server, dir, cache, name);
    cfg.security = sec;
    // The destinations here may hold the user's files on purpose (`occupied`): what is tested
    // is that a refused swarm changes nothing, past the adoption check.
    cfg.adopt = true;
    Engine::start(cfg).await.expect("peer starts")
}

/// A destination that already holds the user's files.
fn occupied(dir: &Path) {
    write_file(dir, "mine.txt", b"the user's own file", 1_500_000_000);
    write_file(dir, NAME, b"an older version", 1_500_000_000);
}

/// The peer stops by itself with an error that says why.
async fn refused(peer: &Engine) -> String {
    let mut rx = peer.status();
    let s = wait_status(&mut rx, Duration::from_secs(20), "a refusal", |s| matches!(s.state, NodeState::Error { .. }))
        .await;
    let NodeState::Error { message } = s.state else { unreachable!() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer.is_running() {
        assert!(Instant::now() < deadline, "a refused peer stops (retrying cannot help)");
        let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_without_the_secret_are_refused_and_change_nothing() {
    let (t, mdir, cache) = source();
    let master = master_with(&mdir, &cache, swarm_a(), false).await;
    for (name, sec, says) in
        [("open", Security::Open, "secured"), ("wrong", security("the secret of another swarm B"), "secret")]
    {
        let dst = t.path().join(name);
        occupied(&dst);
        let before = tree_state(&dst);
        let peer = peer_with(master.local_addr(), &dst, &cache, name, sec).await;
        let why = refused(&peer).await;
        assert!(why.contains(says) && why.contains("--"), "{name}: says what to do: {why}");
        peer.shutdown().await;
        assert_eq!(tree_state(&dst), before, "{name}: nothing written or deleted");
    }
    let strangers = master.status().borrow().nodes.iter().filter(|n| !n.is_master).count();
    assert_eq!(strangers, 0, "no stranger became a node");
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_impostor_master_makes_the_peer_change_nothing() {
    let t = tmp();
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    // Impostors that would make a trusting peer delete everything: an empty folder, served
    // openly or under another secret.
    for (name, sec) in [("open", Security::Open), ("other", security("the secret of another swarm B"))] {
        let impostor = master_with(&empty, &t.path().join("cache"), sec, false).await;
        let dst = t.path().join(format!("dst-{name}"));
        occupied(&dst);
        let before = tree_state(&dst);
        let peer = peer_with(impostor.local_addr(), &dst, &t.path().join("cache"), name, swarm_a()).await;
        let why = refused(&peer).await;
        assert!(why.contains("--"), "{name}: says what to do: {why}");
        peer.shutdown().await;
        let open =
            wait_status(&mut impostor.status(), Duration::from_secs(10), "a published snapshot", |s| s.manifest_id > 0)
                .await
                .open;
        assert_eq!(open, name == "open", "the status says whether the swarm is open");
        impostor.shutdown().await;
        assert_eq!(tree_state(&dst), before, "{name}: the impostor made the peer change nothing");
    }
}

/// `GET path` on a fresh plain (not TLS) connection with `headers`; the status code and the
/// answer's headers and body as text.
async fn plain_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, head, body) = web_common::fetch(addr, "GET", path, &[&[("host", "x")], headers].concat(), b"").await;
    let head: String =
        head.iter().map(|(k, v)| format!("{k}: {}\r\n", String::from_utf8_lossy(v.as_bytes()))).collect();
    (status.as_u16(), head + &String::from_utf8_lossy(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_gets_only_the_status_page_and_only_with_the_token() {
    let (t, mdir, cache) = source();
    let sec = swarm_a();
    let token = sec.web_token().unwrap().to_string();
    let master = master_with(&mdir, &cache, sec.clone(), false).await;
    let pdir = t.path().join("peer");
    let peer = peer_with(master.local_addr(), &pdir, &cache, "peer", sec).await;
    wait_synced(&peer, &master, &mdir, &pdir, Duration::from_secs(60)).await;
    let chunk = lanscatter::manifest::ChunkHash::of(MARKER).to_hex();
    for node in [master.local_addr(), peer.local_addr()] {
        assert_eq!(plain_get(node, &format!("/chunk/{chunk}"), &[]).await.0, 403, "{node}: chunks are for members");
        assert_eq!(
            plain_get(node, &format!("/chunk/{chunk}?token={token}"), &[]).await.0,
            403,
            "even with the web token"
        );
        for path in ["/api/status", "/api/events", "/metrics", "/"] {
            let (code, body) = plain_get(node, path, &[]).await;
            assert_eq!(code, 401, "{node}{path}: {body}");
            assert!(!body.contains(&mdir.display().to_string()), "no folder path for strangers");
        }
    }
    let m = master.local_addr();
    let (code, body) = plain_get(m, &format!("/api/status?token={token}"), &[]).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.to_ascii_lowercase().contains("set-cookie: lanscatter_token="), "the link's token becomes a cookie");
    let bearer = format!("Bearer {token}");
    let (code, _) = plain_get(m, "/metrics", &[("authorization", &bearer)]).await;
    assert_eq!(code, 200, "Prometheus scrapes with a bearer token");
    let cookie = format!("lanscatter_token={token}");
    let (code, _) = plain_get(m, "/api/status", &[("cookie", &cookie)]).await;
    assert_eq!(code, 200, "the page's own requests carry the cookie");
    peer.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_eavesdropper_sees_neither_content_nor_names() {
    for secured in [true, false] {
        let (t, mdir, cache) = source();
        let sec = if secured { swarm_a() } else { Security::Open };
        let master = master_with(&mdir, &cache, sec.clone(), true).await;
        // Peer a reaches the master through a recording proxy.
        let (via, to_master) = common::proxy::start("127.0.0.1:0".parse().unwrap(), master.local_addr(), None).await;
        let adir = t.path().join("a");
        let a = peer_with(via, &adir, &cache, "a", sec.clone()).await;
        wait_synced(&a, &master, &mdir, &adir, Duration::from_secs(60)).await;
        // Peer b fetches from a through another one: a advertises the proxy's loopback address.
        let a_addr = a.local_addr();
        let (_, between_peers) =
            common::proxy::start(format!("127.0.0.2:{}", a_addr.port()).parse().unwrap(), a_addr, None).await;
        a.shutdown().await;
        let mut acfg = peer_config(via, &adir, &cache, "a");
        acfg.security = sec.clone();
        acfg.bind = a_addr;
        acfg.advertise = Some("127.0.0.2".into());
        let a = Engine::start(acfg).await.expect("a restarts on its port");
        wait_synced(&a, &master, &mdir, &adir, Duration::from_secs(60)).await;
        let bdir = t.path().join("b");
        let b = peer_with(master.local_addr(), &bdir, &cache, "b", sec).await;
        wait_synced(&b, &master, &mdir, &bdir, Duration::from_secs(90)).await;
        assert!(to_master.len() > 300_000, "the content crossed the first proxy ({} bytes)", to_master.len());
        assert!(between_peers.len() > 0, "b fetched from a through the second proxy");
        for (what, rec) in [("peer-master", &to_master), ("peer-peer", &between_peers)] {
            let seen = rec.contains(MARKER) || rec.contains(NAME.as_bytes());
            if secured {
                assert!(!seen, "{what}: content or names in clear");
            } else if what == "peer-master" {
                assert!(seen, "an open swarm shows them (else this test could not fail)");
            }
        }
        for p in [a, b] {
            p.shutdown().await;
        }
        master.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_bit_fails_the_transfer_and_nothing_wrong_is_written() {
    let (t, mdir, cache) = source();
    // Chunks above the batching limit (64 KiB), so every chunk is a request of its own and a
    // repeated request shows: the source is then 4 chunks (3 + 1) of up to 128 KiB.
    let mut cfg = master_config(&mdir, &cache);
    cfg.security = swarm_a();
    cfg.chunk_rule = ChunkRule::Fixed(128 * 1024);
    let master = Engine::start(cfg).await.expect("master starts");
    let (via, rec) = common::proxy::start("127.0.0.1:0".parse().unwrap(), master.local_addr(), Some(200_000)).await;
    let dst = t.path().join("peer");
    let peer = peer_with(via, &dst, &cache, "peer", swarm_a()).await;
    wait_synced(&peer, &master, &mdir, &dst, Duration::from_secs(90)).await;
    assert!(rec.flipped.load(Ordering::SeqCst), "the proxy flipped a bit");
    let s = peer.status().borrow().clone();
    assert_eq!(s.counters.verify_failures, 0, "TLS caught it before any chunk check");
    // The connection that carried the flipped bit failed: a chunk GET was made again, or the
    // control channel broke and the peer reconnected.
    let refetched = s.counters.chunk_gets_made > 4;
    let reconnected = s.events.iter().any(|e| e.message.contains("disconnected from the master"));
    assert!(refetched || reconnected, "the transfer failed: {:?}", s.events);
    assert_same_tree(&mdir, &dst);
    peer.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_command_exits_1_at_once_when_refused() {
    let (t, mdir, cache) = source();
    let master = master_with(&mdir, &cache, swarm_a(), false).await;
    let dst = t.path().join("dst");
    let addr = master.local_addr().to_string();
    let dst_s = dst.display().to_string();
    let args =
        ["peer", &addr, &dst_s, "--bind", "127.0.0.1", "--port", "0", "--secret", "the secret of another swarm B"];
    let out = tokio::time::timeout(Duration::from_secs(30), tokio::process::Command::from(common::cli(args)).output())
        .await
        .expect("exits at once, not retrying")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("secret"), "{err}");
    assert!(!dst.exists(), "nothing created");
    // No secret at all: refused before anything starts, with the ways out.
    let out = common::cli(["peer", &addr, &dst_s, "--bind", "127.0.0.1", "--port", "0"])
        .env_remove("LANSCATTER_SECRET")
        .env_remove("LANSCATTER_SECRET_FILE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no swarm secret") && err.contains("--secret") && err.contains("--open"), "{err}");
    // A secret that is too short says how to make one.
    let out = common::cli(["peer", &addr, &dst_s, "--secret", "hunter2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
    assert!(!dst.exists(), "nothing created");
    master.shutdown().await;
}
