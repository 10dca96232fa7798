//! The web routes on real engines: a master and 3 peers on 127.0.0.1 port 0.
//!
//! - The page in headless Chromium shows every node reaching 100 % (screenshots in `target/`).
//! - `/api/status` and `/metrics` of master and peer parse and agree with the engines.
//! - Unknown paths, huge headers, garbage and slowloris clients hitting the master and a peer
//!   while a sync runs do not stop the sync from completing with identical trees.

mod common;
mod web_common;

use std::net::SocketAddr;
use std::time::Duration;

use common::sync::*;
use lanscatter::status::Snapshot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use web_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_shows_master_and_three_peers_reaching_100() {
    let chromium = match chromium_path() {
        Some(p) => p,
        None if std::env::var_os("CI").is_some() => panic!("chromium is required in CI (.ci/run installs it)"),
        None => {
            eprintln!("SKIPPED status_page_shows_master_and_three_peers_reaching_100: no chromium on PATH (apt-get install chromium)");
            return;
        }
    };
    let (t, mdir, cache) = sync_source(6, 3);
    let master = start_master(&mdir, &cache).await;
    let url = format!("http://{}/", master.local_addr());
    let mut b = Browser::launch(&chromium).await;
    b.emulate(1280, 900, false, false).await;
    b.navigate(&url).await;
    wait_page(&mut b, "document.getElementById('live').classList.contains('on')", Duration::from_secs(30)).await;

    let peers =
        start_peers_with(master.local_addr(), t.path(), &cache, 3, |i, cfg| cfg.name = format!("peer-{i}")).await;
    // All four nodes listed, every peer at 100 %, from the live DOM (no reloads).
    let done = "(() => { const rows = [...document.querySelectorAll('#nodes [data-node]')]; \
        const names = rows.map(r => r.querySelector('.n-name span').textContent); \
        return rows.length === 4 && ['master','peer-0','peer-1','peer-2'].every(n => names.includes(n)) \
          && rows.every(r => r.querySelector('.n-progress').textContent === '100%'); })()";
    wait_page(&mut b, done, Duration::from_secs(120)).await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(60)).await;
    wait_page(&mut b, "document.getElementById('t-progress').textContent === '100%'", Duration::from_secs(30)).await;
    let states = b
        .eval("JSON.stringify([...document.querySelectorAll('#nodes .pillcell .pill')].map(e => e.textContent))")
        .await;
    assert_eq!(states.as_str().unwrap(), r#"["up to date","up to date","up to date","up to date"]"#);
    let dir = target_dir();
    b.screenshot(&dir.join("status-page.png"), false).await;
    b.emulate(390, 844, true, true).await;
    b.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))").await;
    b.screenshot(&dir.join("status-page-phone-dark.png"), true).await;
    assert_eq!(b.eval("document.documentElement.scrollWidth <= window.innerWidth + 1").await, true, "fits a phone");

    // The peer's own small page.
    b.emulate(1280, 900, false, false).await;
    b.navigate(&format!("http://{}/", peers[0].0.local_addr())).await;
    wait_page(&mut b, "document.getElementById('t-progress').textContent === '100%' && document.getElementById('live').classList.contains('on')", Duration::from_secs(30)).await;
    b.screenshot(&dir.join("status-page-peer.png"), false).await;
    assert!(b.exceptions.is_empty(), "script errors: {:?}", b.exceptions);
    b.close().await;
    eprintln!("screenshots: {}", dir.join("status-page*.png").display());
    shutdown_all(peers, master).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_and_metrics_of_real_engines_parse() {
    let (t, mdir, cache) = sync_source(7, 2);
    let master = start_master(&mdir, &cache).await;
    let dir = t.path().join("p");
    let peer = start_peer(master.local_addr(), &dir, &cache, "p \"quoted\"").await;
    wait_synced(&peer, &master, &mdir, &dir, Duration::from_secs(60)).await;
    let m = master.local_addr();
    let mut rx = master.status();
    let engine = wait_status(&mut rx, Duration::from_secs(30), "master up to date with the peer", |s| {
        lanscatter::engine::is_done(s) && s.nodes.len() == 2
    })
    .await;

    let api: Snapshot = serde_json::from_value(get_json(m, "/api/status").await).unwrap();
    assert_eq!(api.role, lanscatter::status::Role::Master);
    assert_eq!(api.nodes.len(), 2);
    assert_eq!(api.listen, m.to_string(), "the master says where it listens");
    assert_eq!(api.nodes[0].address, m.to_string(), "and so does its own row");
    assert_eq!(api.manifest_id, engine.manifest_id);
    assert_eq!(api.nodes[1].name, "p \"quoted\"");
    assert_eq!(api.nodes[1].bytes_done, api.nodes[1].bytes_total);

    let text = String::from_utf8(get(m, "/metrics").await.2.to_vec()).unwrap();
    let samples = parse_prometheus(&text);
    let peer_done = samples
        .iter()
        .find(|(n, l, _)| {
            n == "lanscatter_node_bytes_done" && l.iter().any(|(k, v)| k == "name" && v == "p \"quoted\"")
        })
        .expect("per-node series for the peer");
    assert_eq!(peer_done.2, api.nodes[1].bytes_total as f64);
    assert!(samples.iter().any(|(n, _, _)| n == "lanscatter_chunk_verify_failures_total"));
    assert!(
        samples.iter().any(|(n, _, v)| n == "lanscatter_planner_round_seconds_count" && *v >= 1.0),
        "planner rounds are counted"
    );

    let p = peer.local_addr();
    let pj = get_json(p, "/api/status?maps=packed").await;
    assert_eq!(pj["role"], "peer");
    assert!(parse_prometheus(core::str::from_utf8(&get(p, "/metrics").await.2).unwrap())
        .iter()
        .any(|(n, _, v)| n == "lanscatter_progress_ratio" && *v == 1.0));
    peer.shutdown().await;
    master.shutdown().await;
}

/// Open `n` connections that send a request line and then one header byte at a time.
async fn slowloris(addr: SocketAddr, n: usize, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut conns = Vec::new();
    for _ in 0..n {
        if let Ok(mut c) = TcpStream::connect(addr).await {
            if c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.is_ok() {
                conns.push(c);
            }
        }
    }
    let opened = conns.len();
    // Bounded: at most 600 trickles, fewer if the sync finishes first.
    for _ in 0..600 {
        if *stop.borrow() {
            break;
        }
        for c in &mut conns {
            let _ = c.write_all(b"a").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    opened
}

/// A request with `size` bytes of headers; returns the status code, if any answer came.
async fn huge_header(addr: SocketAddr, size: usize) -> Option<u16> {
    let mut c = TcpStream::connect(addr).await.ok()?;
    let mut req = b"GET /api/status HTTP/1.1\r\nHost: x\r\n".to_vec();
    while req.len() < size {
        req.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    req.extend_from_slice(b"\r\n");
    // The server may close before reading everything: that is a rejection too.
    let _ = c.write_all(&req).await;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await.ok()?.ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ').nth(1)?.parse().ok()
}

async fn garbage(addr: SocketAddr) -> Option<u16> {
    let mut c = TcpStream::connect(addr).await.ok()?;
    let _ = c.write_all(b"\x00\xff\xfeNOT HTTP AT ALL\r\n\r\n").await;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await.ok()?.ok()?;
    String::from_utf8_lossy(&buf[..n]).split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_do_not_disturb_a_sync() {
    let (t, mdir, cache) = sync_source(8, 4);
    let master = start_master(&mdir, &cache).await;
    let m = master.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loris_m = tokio::spawn(slowloris(m, 40, stop_rx.clone()));

    let peers = start_peers(m, t.path(), &cache, 3).await;
    let loris_p = tokio::spawn(slowloris(peers[0].0.local_addr(), 20, stop_rx.clone()));
    let p0 = peers[0].0.local_addr();
    let abuse = tokio::spawn(async move {
        let mut answers = Vec::new();
        for round in 0..20 {
            for target in [m, p0] {
                for path in ["/nope", "/chunk/zz", "/chunk/00000000000000000000000000000000", "/api/status?maps=%ff"] {
                    answers.push((path, get(target, path).await.0.as_u16()));
                }
                answers.push(("huge", huge_header(target, 2 << 20).await.unwrap_or(0)));
                answers.push(("garbage", garbage(target).await.unwrap_or(0)));
                if round % 5 == 0 {
                    // Stream clients that connect and go away at once.
                    for _ in 0..5 {
                        drop(TcpStream::connect(target).await);
                    }
                }
            }
        }
        answers
    });

    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    for (_, dir) in &peers {
        assert_same_tree(&mdir, dir);
    }
    let answers = abuse.await.unwrap();
    let _ = stop_tx.send(true);
    assert!(loris_m.await.unwrap() > 0 && loris_p.await.unwrap() > 0, "slowloris connections were opened");
    for (what, code) in answers {
        match what {
            "/nope" => assert_eq!(code, 404, "{what}"),
            "/chunk/zz" | "/api/status?maps=%ff" => assert_eq!(code, 400, "{what}"),
            // Unknown chunk: 404, or 503 while all upload slots are busy with the sync.
            "/chunk/00000000000000000000000000000000" => assert!(code == 404 || code == 503, "{what}: {code}"),
            // Rejected with 431/400, or the connection closed (0); never served.
            "huge" => assert!(code == 431 || code == 400 || code == 0, "{what}: {code}"),
            "garbage" => assert!(code == 400 || code == 0, "{what}: {code}"),
            _ => unreachable!(),
        }
    }
    shutdown_all(peers, master).await;
}
