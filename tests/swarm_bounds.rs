//! Greedy and hostile clients cannot exhaust a master (issue 13, Done-when (c) and (d)).
//!
//! (c) A real `lanscatter master` process on 127.0.0.1 is hit at once by a 128 MiB hello,
//! 10,000 idle connections, peers that never read and a 100 MB `Failed.message`, while three
//! real peers (engines in this process) sync from it: the master's resident memory, sampled
//! from `/proc/<pid>/status` all along, stays under [`RSS_BOUND`] (README "Security and
//! limits") and every peer ends with the master's folder. Linux only, for `/proc`.
//! (d) `--advertise` values with a scheme, path, port or user info are refused by the CLI
//! (exit 2, saying what is allowed), and a hello carrying one is refused by the master.

// The hostile clients serve only the Linux-only test (c); other targets compile them unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use common::sync::{paths, start_master, tmp};
use common::{cli, random_tree, TreeSpec};
use lanscatter::protocol::{self, FailKind, PeerMsg, PROTOCOL_VERSION};

/// The documented bound (README "Security and limits"): the master's RSS under this attack.
/// Either big frame alone, had it been buffered, would pass it.
const RSS_BOUND: u64 = 80 << 20;

/// A websocket to the master's `/join`, as a hostile client drives it (raw frames allowed).
async fn join(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    join_with(addr, None).await
}

/// [`join`], with the socket's receive buffer set to `rcvbuf` bytes. Retried for up to a
/// minute like a peer would: while the master's pre-auth places are taken by idle
/// connections, it closes new ones until the header timeout frees places.
async fn join_with(addr: SocketAddr, rcvbuf: Option<u32>) -> WebSocketStream<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).expect("receive buffer");
        }
        let attempt = async {
            let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
            let url = format!("ws://{addr}/join");
            tokio_tungstenite::client_async(url, tcp).await.map(|(ws, _)| ws).map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(ws) => return ws,
            Err(e) => assert!(Instant::now() < deadline, "cannot join the master within a minute: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A hello as a peer sends it; `download_slots` 0 keeps a hostile client from holding
/// transfers (a hung downloader is the planner's concern, not this file's).
fn hello(name: &str, advertise: Option<&str>) -> Message {
    let h = serde_json::json!({
        "app": "lanscatter", "protocol": PROTOCOL_VERSION, "name": name,
        "advertise_host": advertise, "port": 9, "upload_slots": 1, "download_slots": 0,
    });
    Message::Text(h.to_string().into())
}

/// The header of one masked client frame announcing `len` payload bytes (mask key 0, so the
/// payload goes out as it is).
fn frame_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![0x80 | opcode, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

/// Write `total` payload bytes after a frame header until the master cuts the connection;
/// how many went out. A master that buffered the frame would take all of them.
async fn stream_until_cut(tcp: &mut TcpStream, total: u64) -> u64 {
    let block = vec![0u8; 1 << 20];
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent < total && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), tcp.write_all(&block)).await {
            Ok(Ok(())) => sent += block.len() as u64,
            _ => break,
        }
    }
    sent
}

/// The text of the first text frame the master sends (its greeting or refusal).
async fn first_text(ws: &mut WebSocketStream<TcpStream>) -> String {
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                return t.as_str().to_owned();
            }
        }
        String::new()
    };
    tokio::time::timeout(Duration::from_secs(15), read).await.expect("the master answers")
}

#[cfg(target_os = "linux")]
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kb.and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// The 128 MiB hello: refused from its header with the limit named, and cut off long before
/// its payload is in.
async fn huge_hello(addr: SocketAddr) {
    let mut ws = join(addr).await;
    ws.get_mut().write_all(&frame_header(1, 128 << 20)).await.expect("header");
    let refusal = first_text(&mut ws).await;
    assert!(refusal.contains("exceeds the 65536 byte limit"), "{refusal}");
    let sent = stream_until_cut(ws.get_mut(), 128 << 20).await;
    assert!(sent < 64 << 20, "the master took {sent} bytes of a refused 128 MiB hello");
}

/// A member that joins properly, then sends a 100 MB `Failed`: cut off at the frame header.
async fn huge_failed_message(addr: SocketAddr) {
    let mut ws = join(addr).await;
    ws.send(hello("greedy", None)).await.expect("hello");
    let welcome = first_text(&mut ws).await;
    assert!(welcome.contains("node_id"), "{welcome}");
    let small = PeerMsg::Failed { id: 1, reason: FailKind::Network, message: "x".repeat(100) };
    ws.send(Message::Binary(protocol::encode(&small).into())).await.expect("a small Failed passes");
    ws.get_mut().write_all(&frame_header(2, 100_000_000)).await.expect("header");
    let sent = stream_until_cut(ws.get_mut(), 100_000_000).await;
    assert!(sent < 64 << 20, "the master took {sent} bytes of a 100 MB Failed");
}

/// Peers that join and then never read a byte (their receive buffer kept small).
async fn never_reading(addr: SocketAddr, n: usize) -> Vec<WebSocketStream<TcpStream>> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut ws = join_with(addr, Some(4096)).await;
        ws.send(hello(&format!("deaf{i}"), None)).await.expect("hello");
        let have = PeerMsg::HaveAll { manifest_id: 1, chunks: vec![] };
        ws.send(Message::Binary(protocol::encode(&have).into())).await.expect("have-set");
        out.push(ws);
    }
    out
}

/// Up to `want` idle TCP connections (as many as this process's open-file limit leaves room
/// for); the master may close any of them at once.
async fn idle_connections(addr: SocketAddr, want: usize) -> Vec<TcpStream> {
    let limit = lanscatter::transport::fdlimit::raise().unwrap_or(1024) as usize;
    let n = want.min(limit.saturating_sub(1000));
    if n < want {
        eprintln!("open-file limit {limit}: {n} idle connections instead of {want}");
    }
    let mut conns = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(500) {
        let k = 500.min(n - batch * 500);
        let opened = futures_util::future::join_all((0..k).map(|_| TcpStream::connect(addr))).await;
        conns.extend(opened.into_iter().filter_map(Result::ok));
    }
    eprintln!("{} idle connections open", conns.len());
    assert!(conns.len() >= n * 9 / 10, "only {} of {n} connections opened", conns.len());
    conns
}

fn master_process(dir: &Path) -> (common::Proc, SocketAddr) {
    let d = dir.to_str().unwrap();
    let args = ["master", d, "--bind", "127.0.0.1", "--port", "0", "--no-cache", "--open", "--chunk-size", "256KiB"];
    let mut p = common::Proc::spawn(&args);
    let ready = p.wait_line("ready:", Duration::from_secs(60));
    let addr = ready.rsplit("listening on ").next().unwrap().trim().parse().expect("address");
    (p, addr)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_clients_leave_the_master_bounded_and_the_swarm_syncing() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    random_tree(&mdir, 13, &TreeSpec { files: 40, max_size: 400_000, ..TreeSpec::default() });
    let (mut master, addr) = master_process(&mdir);
    let pid = master.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_of(pid)));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_of(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    eprintln!("master RSS at start: {} KiB", rss_of(pid) >> 10);

    let idle = idle_connections(addr, 10_000).await;
    let deaf = never_reading(addr, 20).await;
    let attacks = tokio::spawn(async move {
        tokio::join!(huge_hello(addr), huge_failed_message(addr));
    });
    let peers = common::sync::start_peers(addr, t.path(), &cache, 3).await;
    attacks.await.expect("the attacks ran as expected");
    for (p, dir) in &peers {
        let mut rx = p.status();
        let deadline = Instant::now() + Duration::from_secs(180);
        while !(lanscatter::engine::is_done(&rx.borrow_and_update()) && common::sync::trees_equal(&mdir, dir)) {
            assert!(Instant::now() < deadline, "a peer did not sync beside the attack: {:?}", rx.borrow().state);
            let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
        }
    }
    assert!(master.is_running(), "the master survived");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("master RSS peak: {} KiB (bound {} KiB)", peak >> 10, RSS_BOUND >> 10);
    assert!(peak > 0 && peak < RSS_BOUND, "master RSS peaked at {peak} bytes, over the {RSS_BOUND} byte bound");
    drop((idle, deaf));
    for (p, _) in peers {
        p.shutdown().await;
    }
    master.kill();
}

/// Part (d), at the CLI: each bad value exits 2 and says what is allowed.
#[test]
fn the_cli_refuses_advertise_values_that_are_not_a_host() {
    let t = tmp();
    let dst = t.path().join("dst");
    for (bad, why) in [
        ("http://evil.example", "has a scheme"),
        ("evil.example/x", "has a path"),
        ("evil.example:8080", "has a port"),
        ("user@evil.example", "has user info"),
        ("evil.example?x=1", "has a query"),
    ] {
        let out = cli(["peer", "127.0.0.1:1", dst.to_str().unwrap(), "--open", "--advertise", bad])
            .env_remove("LANSCATTER_CONFIG")
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--advertise {bad}: {err}");
        assert!(err.contains(why) && err.contains("give only an IP address or a DNS name"), "--advertise {bad}: {err}");
    }
    assert!(!dst.exists(), "nothing was created for a refused command line");
}

/// Part (d), at the master: a hello advertising a URL is refused with the reason; one that
/// advertises another machine's address is served at its own source address instead.
#[tokio::test]
async fn the_master_refuses_a_url_as_advertised_host() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    common::write_file(&mdir, "a.txt", b"a");
    let master = start_master(&mdir, &cache).await;
    let addr = master.local_addr();
    let mut ws = join(addr).await;
    ws.send(hello("evil", Some("http://10.0.0.9:80/steal?x="))).await.expect("hello");
    let refusal = first_text(&mut ws).await;
    assert!(refusal.contains("has a scheme") && refusal.contains("give only an IP address"), "{refusal}");

    let mut ws = join(addr).await;
    ws.send(hello("elsewhere", Some("10.0.0.9"))).await.expect("hello");
    assert!(first_text(&mut ws).await.contains("node_id"));
    let mut rx = master.status();
    let s = common::sync::wait_status(&mut rx, Duration::from_secs(10), "the join event", |s| {
        s.events.iter().any(|e| e.message.starts_with("elsewhere joined"))
    })
    .await;
    let line = s.events.iter().find(|e| e.message.starts_with("elsewhere joined")).unwrap();
    assert!(line.message.ends_with("(serves at 127.0.0.1:9)"), "{}", line.message);
    master.shutdown().await;
}
