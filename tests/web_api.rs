//! `/api/status`, `/api/events` and `/metrics` parsed by real clients, over a hand-built
//! snapshot stream (so every field has a known value) served on 127.0.0.1 port 0.

mod web_common;

use std::time::Duration;

use lanscatter::status::{Snapshot, CELL_HAS};
use lanscatter::web::{master_router, peer_router, view::unpack_map};
use tokio::sync::watch;
use web_common::*;

#[tokio::test]
async fn api_status_round_trips_the_snapshot() {
    let mut snap = sample_master_snapshot(5, 300);
    // A time that serde_json's default float parser reads back one ulp off (CI saw one); the
    // crate enables `float_roundtrip` so API clients get back exactly what was sent.
    snap.time = 1_796_016_480.971_204_5;
    let (_tx, rx) = watch::channel(snap.clone());
    let addr = serve(master_router(rx)).await;

    let full: Snapshot = serde_json::from_value(get_json(addr, "/api/status").await).unwrap();
    assert_eq!(full, snap, "default form is the snapshot itself");

    let packed = get_json(addr, "/api/status?maps=packed").await;
    let nodes = packed["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    for (n, orig) in nodes.iter().zip(&snap.nodes) {
        assert_eq!(n["name"], orig.name.as_str());
        assert_eq!(n["chunks"], 300);
        assert_eq!(n["chunk_map"], serde_json::json!([]));
        let cells = unpack_map(n["chunk_map_packed"].as_str().unwrap(), 300).unwrap();
        assert_eq!(cells, orig.chunk_map);
    }
    assert_eq!(packed["eta_secs"], 321.0);
    assert_eq!(packed["counters"]["verify_failures"], 2);

    let none = get_json(addr, "/api/status?maps=none").await;
    assert!(none["nodes"][1].get("chunk_map_packed").is_none());
    assert_eq!(none["nodes"][1]["bytes_total"], snap.nodes[1].bytes_total);

    let (st, _, body) = get(addr, "/api/status?maps=bogus").await;
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("maps=packed"));
}

#[tokio::test]
async fn metrics_parse_and_carry_per_node_series() {
    let snap = sample_master_snapshot(4, 50);
    let (_tx, rx) = watch::channel(snap.clone());
    let addr = serve(master_router(rx)).await;
    let (st, h, body) = get(addr, "/metrics").await;
    assert_eq!(st, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let samples = parse_prometheus(std::str::from_utf8(&body).unwrap());
    let find = |name: &str, id: Option<&str>| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && id.is_none_or(|id| l.iter().any(|(k, v)| k == "id" && v == id)))
            .unwrap_or_else(|| panic!("no sample {name} {id:?}"))
            .2
    };
    let up_to_date = snap.nodes.iter().filter(|n| n.state == lanscatter::status::NodeState::UpToDate).count();
    let nodes_up: f64 =
        samples.iter().filter(|(n, l, _)| n == "lanscatter_nodes" && l[0].1 == "up_to_date").map(|s| s.2).sum();
    assert_eq!(nodes_up as usize, up_to_date);
    assert_eq!(find("lanscatter_chunk_verify_failures_total", None), 2.0);
    assert_eq!(find("lanscatter_planner_round_seconds_count", None), 10.0);
    assert_eq!(find("lanscatter_planner_round_seconds_sum", None), 0.25);
    for n in &snap.nodes {
        let id = n.id.to_string();
        assert_eq!(find("lanscatter_node_bytes_done", Some(&id)), n.bytes_done as f64);
        assert_eq!(find("lanscatter_node_uploaded_bytes_total", Some(&id)), n.bytes_uploaded as f64);
        assert_eq!(find("lanscatter_node_download_bytes_per_second", Some(&id)), n.download_bps);
    }
    // The hostile name survives escaping and parsing intact.
    let evil = samples
        .iter()
        .find(|(n, l, _)| n == "lanscatter_node_up" && l.iter().any(|(k, v)| k == "id" && v == "2"))
        .unwrap();
    assert_eq!(evil.1.iter().find(|(k, _)| k == "name").unwrap().1, snap.nodes[2].name);
}

#[tokio::test]
async fn event_stream_sends_full_then_changed_maps_only() {
    let snap = sample_master_snapshot(3, 40);
    let (tx, rx) = watch::channel(snap.clone());
    let addr = serve(master_router(rx)).await;
    let changer = tokio::spawn(async move {
        // Keep publishing until the reader has what it needs (bounded).
        for i in 0..200u32 {
            tx.send_modify(|s| {
                s.time += 1.0;
                s.nodes[3].chunk_map[(i % 40) as usize] = CELL_HAS;
                s.nodes[3].bytes_done += 1;
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let events = sse_until(addr, Duration::from_secs(20), |ev| ev.len() >= 3).await;
    changer.abort();
    let first = &events[0];
    assert_eq!(first["role"], "master");
    assert_eq!(first["nodes"].as_array().unwrap().len(), 4);
    for (n, orig) in first["nodes"].as_array().unwrap().iter().zip(&snap.nodes).take(3) {
        assert_eq!(unpack_map(n["map"].as_str().unwrap(), 40).unwrap(), orig.chunk_map, "first event has every map");
    }
    // Node 3 may already have changed (the publisher runs concurrently), but is sent too.
    assert!(unpack_map(first["nodes"][3]["map"].as_str().unwrap(), 40).is_some());
    assert!(!first["history"].as_array().unwrap().is_empty(), "first event carries the history");
    let later = &events[2];
    assert!(later["nodes"][0]["map"].is_null(), "unchanged master map is not resent");
    assert!(later["nodes"][1]["map"].is_null());
    assert!(later["nodes"][3]["map"].is_string(), "changed map is resent");
    assert!(later["nodes"][3]["bytes_done"].as_u64().unwrap() > snap.nodes[3].bytes_done);
}

#[tokio::test]
async fn unknown_paths_and_assets_are_404_and_pages_are_served() {
    let (_tx, rx) = watch::channel(sample_master_snapshot(1, 4));
    let addr = serve(master_router(rx)).await;
    for p in ["/nope", "/assets/../Cargo.toml", "/assets/secret.js", "/api", "/api/status/x", "/metrics/x"] {
        let (st, _, _) = get(addr, p).await;
        assert_eq!(st, 404, "{p}");
    }
    let (st, h, body) = get(addr, "/").await;
    assert_eq!(st, 200);
    assert!(h["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(std::str::from_utf8(&body).unwrap().contains("data-page=\"master\""));
    for a in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
        let (st, _, body) = get(addr, a).await;
        assert_eq!(st, 200, "{a}");
        assert!(!body.is_empty());
    }

    let (_tx2, rx2) = watch::channel(Snapshot::new(lanscatter::status::Role::Peer, "p".into(), "/x".into()));
    let peer = serve(peer_router(rx2)).await;
    let (st, _, body) = get(peer, "/").await;
    assert_eq!(st, 200);
    assert!(std::str::from_utf8(&body).unwrap().contains("data-page=\"peer\""));
    let samples = parse_prometheus(std::str::from_utf8(&get(peer, "/metrics").await.2).unwrap());
    assert!(samples
        .iter()
        .any(|(n, l, _)| n == "lanscatter_info" && l.iter().any(|(k, v)| k == "role" && v == "peer")));
}

#[test]
fn prometheus_checker_rejects_malformed_lines() {
    // The checker itself must be able to fail, or the metrics test proves nothing.
    for bad in ["x{a=\"1} 2", "x{a=1} 2", "x 1 2 3", "x{a=\"\\q\"} 1", "1x 2", "x notanumber", "x{a=\"b\"}3"] {
        let r = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
    let ok = parse_prometheus("# HELP x y\n# TYPE x gauge\nx{a=\"q\\\"\\n\\\\\",b=\"\"} +Inf\nx 1.5e3 1700000000\n");
    assert_eq!(ok[0].1[0].1, "q\"\n\\");
    assert_eq!(ok[1].2, 1500.0);
}
