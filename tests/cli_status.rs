//! `lanscatter status` against live swarms on 127.0.0.1, and the master's expected peers
//! (`--expect`, `--exit-when-all-done`): the real binary asks, real engines answer.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::sync::{self, trees_equal};
use common::{cli, Lines, Proc};
use lanscatter::engine::{is_done, Engine};
use lanscatter::secret::SwarmSecret;
use lanscatter::status::{ExpectState, Snapshot};
use lanscatter::transport::Security;

const SECRET: &str = "the status tests' swarm secret";
const LIMIT: Duration = Duration::from_secs(90);

fn security() -> Security {
    Security::from_secret(&SwarmSecret::parse(SECRET).unwrap()).unwrap()
}

/// Run `lanscatter <args>` to completion off the runtime's threads, with an empty config dir
/// (so no stored secret of this machine is found) and no secret in the environment.
async fn run(args: &[&str], config_home: &Path) -> Output {
    let mut c = cli(args);
    c.env_remove("LANSCATTER_SECRET").env_remove("LANSCATTER_SECRET_FILE");
    c.env("HOME", config_home).env("XDG_CONFIG_HOME", config_home).env("APPDATA", config_home);
    tokio::task::spawn_blocking(move || c.output().expect("lanscatter runs")).await.expect("no panic")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Wait until a peer engine is up to date and its folder matches `master_dir`.
async fn wait_peer_synced(peer: &Engine, master_dir: &Path, dir: &Path) {
    let mut rx = peer.status();
    let deadline = Instant::now() + LIMIT;
    while !(is_done(&rx.borrow_and_update()) && trees_equal(master_dir, dir)) {
        assert!(Instant::now() < deadline, "peer {} not synced within {LIMIT:?}", rx.borrow().name);
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_a_secured_swarm_as_a_table_and_as_json() {
    let (t, mdir, cache) = sync::sync_source(41, 1);
    let home = t.path().join("home");
    let mut mcfg = sync::master_config(&mdir, &cache);
    mcfg.security = security();
    let master = Engine::start(mcfg).await.expect("master starts");
    let peers = sync::start_peers_with(master.local_addr(), t.path(), &cache, 2, |_, c| c.security = security()).await;
    sync::wait_all_synced(&peers, &master, &mdir, LIMIT).await;
    let mut rx = master.status();
    sync::wait_status(&mut rx, LIMIT, "the master sees both peers done", |s| is_done(s) && s.nodes.len() == 3).await;
    let addr = master.local_addr().to_string();

    let out = run(&["status", &addr, "--secret", SECRET], &home).await;
    let table = text(&out.stdout);
    assert!(out.status.success(), "status failed: {}{table}", text(&out.stderr));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with(&format!("master master ({addr}): up to date")), "{table}");
    assert!(lines[0].contains("2/2 peers up to date"), "{table}");
    assert!(lines[1].starts_with("NAME") && lines[1].contains("PROGRESS") && lines[1].contains("ETA"), "{table}");
    for name in ["peer0", "peer1"] {
        let row = lines.iter().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no row for {name}: {table}"));
        assert!(row.contains("peer") && row.contains("up to date") && row.contains("100 %"), "{row}");
    }

    let out = run(&["status", &addr, "--json", "--secret", SECRET], &home).await;
    assert!(out.status.success(), "status --json failed: {}", text(&out.stderr));
    let snap: Snapshot = serde_json::from_slice(&out.stdout).expect("status --json prints a status snapshot");
    let mut names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["master", "peer0", "peer1"]);
    assert!(snap.expected.is_none(), "no --expect, no expected report");
    assert_eq!(text(&out.stdout).lines().count(), 1, "one JSON document on one line");

    // The status page URL the master printed carries the token instead.
    let token = SwarmSecret::parse(SECRET).unwrap().web_token();
    let out = run(&["status", &format!("http://{addr}/?token={token}")], &home).await;
    assert!(out.status.success(), "status with the page URL failed: {}", text(&out.stderr));

    // No secret (and none stored on this "machine"), or another swarm's: exit 1, saying what to pass.
    let out = run(&["status", &addr], &home).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("secured") && err.contains("--secret"), "{err}");
    let out = run(&["status", &addr, "--secret", "the secret of some other swarm"], &home).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not this swarm's"), "{}", text(&out.stderr));
    sync::shutdown_all(peers, master).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_master_is_a_clear_error() {
    let t = sync::tmp();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = run(&["status", &addr, "--open"], t.path()).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot reach {addr}")) && err.contains("is the master running"), "{err}");
    let out = run(&["status", "not a host", "--open"], t.path()).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_when_all_done_needs_an_expectation_that_makes_sense() {
    let t = sync::tmp();
    let dir = t.path().to_str().unwrap();
    let out = run(&["master", dir, "--open", "--exit-when-all-done"], t.path()).await;
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(text(&out.stderr).contains("--expect"), "{}", text(&out.stderr));
    let out = run(&["master", dir, "--open", "--expect", "0"], t.path()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("at least 1"), "{}", text(&out.stderr));
    let missing = t.path().join("no-such-list.txt");
    let out = run(&["master", dir, "--open", "--expect", missing.to_str().unwrap()], t.path()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the expected-peer list"), "{}", text(&out.stderr));
}

/// Ask `status --json` until `cond` holds for the master's expected report.
async fn wait_expected(addr: &str, home: &Path, what: &str, cond: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = run(&["status", addr, "--json", "--secret", SECRET], home).await;
        assert!(out.status.success(), "status --json failed: {}", text(&out.stderr));
        let snap: Snapshot = serde_json::from_slice(&out.stdout).expect("a status snapshot");
        if cond(&snap) {
            return snap;
        }
        assert!(Instant::now() < deadline, "no {what} within {LIMIT:?}; last: {:?}", snap.expected);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn states(s: &Snapshot) -> Vec<(String, ExpectState)> {
    s.expected.iter().flat_map(|e| &e.peers).map(|p| (p.want.clone(), p.state)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_peer_that_never_came_is_missing_until_it_joins_then_the_master_exits() {
    let (t, mdir, cache) = sync::sync_source(43, 1);
    let home = t.path().join("home");
    let list = t.path().join("expected.txt");
    std::fs::write(&list, "# the rollout\nalpha\nBETA   # the second box\n").unwrap();
    let mut cmd = cli(["master"]);
    cmd.arg(&mdir).args(["--bind", "127.0.0.1", "--port", "0", "--no-cache", "--chunk-size", "64K"]);
    cmd.args(["--secret", SECRET, "--exit-when-all-done", "--expect"]).arg(&list);
    cmd.stdout(std::process::Stdio::null());
    let mut master = Proc::start(cmd, Lines::Stderr);
    let ready = tokio::task::block_in_place(|| master.wait_line("ready:", LIMIT));
    let addr = ready.rsplit("listening on ").next().unwrap().trim().to_string();
    let maddr: std::net::SocketAddr = addr.parse().expect("the ready line ends with the address");

    let start = |name: &str| {
        let mut cfg = sync::peer_config(maddr, &t.path().join(name), &cache, name);
        cfg.security = security();
        Engine::start(cfg)
    };
    let alpha = start("alpha").await.expect("alpha starts");
    wait_peer_synced(&alpha, &mdir, &t.path().join("alpha")).await;
    let snap = wait_expected(&addr, &home, "alpha done, BETA missing", |s| {
        states(s) == [("alpha".into(), ExpectState::Done), ("BETA".into(), ExpectState::Missing)]
    })
    .await;
    let e = snap.expected.as_ref().unwrap();
    assert_eq!((e.done, e.syncing, e.stuck, e.missing), (1, 0, 0, 1));
    assert_eq!(e.stuck_after_secs, 60.0);
    assert_eq!(e.peers[0].name, "alpha");

    let token = SwarmSecret::parse(SECRET).unwrap().web_token();
    let metrics = lanscatter::transport::api::get(&addr, "/metrics", Some(&token), LIMIT, 1 << 20).await.unwrap();
    let metrics = text(&metrics.body);
    for line in ["lanscatter_expected_peers{state=\"missing\"} 1", "lanscatter_expected_peers{state=\"done\"} 1"] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in /metrics:\n{metrics}");
    }
    let out = run(&["status", &addr, "--secret", SECRET], &home).await;
    let table = text(&out.stdout);
    assert!(table.contains("expected peers: 1 done, 0 syncing, 0 stuck, 1 missing"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("BETA") && l.contains("missing")), "{table}");
    assert!(master.is_running(), "--exit-when-all-done must wait for BETA");

    let beta = start("beta").await.expect("beta starts");
    wait_peer_synced(&beta, &mdir, &t.path().join("beta")).await;
    let (status, lines) = tokio::task::block_in_place(|| master.wait_exit(LIMIT));
    assert!(status.success(), "the master exits 0 once both are done: {status:?}\n{lines}");
    assert!(lines.contains("every expected peer is up to date"), "{lines}");
    alpha.shutdown().await;
    beta.shutdown().await;
}
