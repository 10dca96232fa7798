//! Helpers for the web status tests: an HTTP/1.1 client on hyper, an SSE reader, a Prometheus
//! text-format checker, hand-built snapshots, and a minimal Chrome DevTools Protocol driver for
//! Debian's headless `chromium`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use lanscatter::status::{NodeState, NodeStatus, Role, Snapshot, StatusEvent, CELL_HAS, CELL_INCOMING, CELL_MISSING};
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// Serve `router` on 127.0.0.1 port 0 for the rest of the test, on the project's own serve loop.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let header_timeout = lanscatter::transport::HEADER_READ_TIMEOUT;
    tokio::spawn(lanscatter::transport::serve(l, router, header_timeout, "test", std::future::pending()));
    addr
}

/// Send one request on a new HTTP/1.1 connection. Exactly the given headers go out (not even
/// `Host` is added), so a test controls what the server sees.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> hyper::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    sender.send_request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await.unwrap()
}

/// [`send`] and read the whole answer (10 s bound).
pub async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (StatusCode, HeaderMap, Bytes) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let resp = send(addr, method, path, headers, body).await;
        let (parts, body) = resp.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path} timed out"))
}

/// `GET path` (Host: the address) and the whole body (10 s bound).
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    fetch(addr, "GET", path, &[("host", &addr.to_string())], b"").await
}

pub async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (st, h, body) = get(addr, path).await;
    assert_eq!(st, StatusCode::OK, "GET {path}: {}", String::from_utf8_lossy(&body));
    assert_eq!(h["content-type"], "application/json");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: invalid JSON: {e}"))
}

/// Open `/api/events` and parse `status` events until `stop` says so (or `limit` passes).
pub async fn sse_until(addr: SocketAddr, limit: Duration, mut stop: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let resp = send(addr, "GET", "/api/events", &[("host", &addr.to_string())], b"").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + limit;
    while !stop(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, body.frame()).await {
            Ok(Some(f)) => f.unwrap(),
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("condition on the event stream not met within {limit:?}; got {} events", events.len()),
        };
        if let Ok(data) = frame.into_data() {
            buf.push_str(std::str::from_utf8(&data).unwrap());
        }
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = if v.trim() == "status" { "status" } else { "other" };
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if name == "status" {
                events.push(serde_json::from_str(&data).expect("status event is JSON"));
            }
        }
    }
    events
}

/// One Prometheus sample: metric name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Check every line of a Prometheus text exposition: blank, `# HELP`/`# TYPE`/comment, or
/// `name{label="value",…} number`, with label values properly escaped. Returns the samples.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let ctx = || format!("line {}: {line:?}", no + 1);
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.split(' ').nth(1).unwrap_or("");
                assert!(["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind), "{}", ctx());
            }
            continue;
        }
        let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()), "bad metric name, {}", ctx());
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let consumed;
            loop {
                let Some((i, c)) = chars.next() else { panic!("unterminated labels, {}", ctx()) };
                if c == '}' {
                    consumed = i + 1;
                    break;
                }
                if c == ',' {
                    continue;
                }
                let start = i;
                let mut eq = None;
                for (j, c2) in chars.by_ref() {
                    if c2 == '=' {
                        eq = Some(j);
                        break;
                    }
                }
                let eq = eq.unwrap_or_else(|| panic!("label without '=', {}", ctx()));
                let lname = &r[start..eq];
                assert!(
                    lname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !lname.is_empty(),
                    "bad label name, {}",
                    ctx()
                );
                assert_eq!(chars.next().map(|x| x.1), Some('"'), "label value must be quoted, {}", ctx());
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => panic!("bad escape in label value, {}", ctx()),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) | None => panic!("unterminated label value, {}", ctx()),
                        Some((_, c)) => value.push(c),
                    }
                }
                labels.push((lname.to_string(), value));
            }
            rest = &r[consumed..];
        }
        let rest = rest.strip_prefix(' ').unwrap_or_else(|| panic!("expected a space before the value, {}", ctx()));
        let mut parts = rest.split(' ');
        let v = parts.next().unwrap();
        let value = match v {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().unwrap_or_else(|_| panic!("bad value, {}", ctx())),
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp, {}", ctx()));
        }
        assert!(parts.next().is_none(), "trailing data, {}", ctx());
        samples.push((name.to_string(), labels, value));
    }
    samples
}

/// A master snapshot with `peers` peers over `chunks` chunks, in varied states.
pub fn sample_master_snapshot(peers: u32, chunks: usize) -> Snapshot {
    let mut s = Snapshot::new(Role::Master, "master \"one\"".into(), PathBuf::from("/srv/data"));
    s.listen = "127.0.0.1:10564".into();
    s.state = NodeState::Syncing;
    s.files_total = 1234;
    s.manifest_id = 7;
    let chunk = 1u64 << 20;
    s.nodes.push(NodeStatus {
        id: 0,
        name: "master \"one\"".into(),
        address: s.listen.clone(),
        is_master: true,
        state: NodeState::UpToDate,
        bytes_done: chunk * chunks as u64,
        bytes_total: chunk * chunks as u64,
        upload_bps: 80e6,
        active_uploads: 4,
        bytes_uploaded: 3 << 30,
        chunk_map: vec![CELL_HAS; chunks],
        ..Default::default()
    });
    for i in 1..=peers {
        let frac = (i as usize * 37) % 101;
        let mut map = vec![CELL_MISSING; chunks];
        for (k, c) in map.iter_mut().enumerate() {
            if (k * 7919 + i as usize * 13) % 100 < frac {
                *c = CELL_HAS;
            } else if k % 97 == i as usize % 97 {
                *c = CELL_INCOMING;
            }
        }
        let done = map.iter().filter(|&&c| c == CELL_HAS).count() as u64 * chunk;
        s.nodes.push(NodeStatus {
            id: i,
            name: if i == 2 { "<b>evil</b>\n\"name\"\\".into() } else { format!("peer-{i:03}") },
            address: format!("10.0.0.{i}:10565"),
            is_master: false,
            state: if done == chunk * chunks as u64 { NodeState::UpToDate } else { NodeState::Syncing },
            bytes_done: done,
            bytes_total: chunk * chunks as u64,
            download_bps: 11e6 * (i % 5) as f64,
            upload_bps: 5e6 * (i % 3) as f64,
            active_downloads: i % 4,
            active_uploads: i % 3,
            bytes_uploaded: i as u64 * 1_000_000,
            chunk_map: map,
        });
        s.bytes_done += done;
        s.bytes_total += chunk * chunks as u64;
        s.download_bps += 11e6 * (i % 5) as f64;
    }
    s.upload_bps = 80e6;
    s.eta_secs = Some(321.0);
    s.master_uploaded = 3 << 30;
    s.peers_uploaded = 5 << 30;
    s.counters.verify_failures = 2;
    s.counters.planner_rounds = 10;
    s.counters.planner_round_seconds = 0.25;
    s.events = (0..5)
        .map(|i| StatusEvent { time: 1_700_000_000.0 + i as f64, message: format!("event {i} <i>not markup</i>") })
        .collect();
    s
}

// ---------- headless Chromium over the DevTools protocol ----------

/// Debian's `chromium` (or `$CHROMIUM`), if installed.
pub fn chromium_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A running headless Chromium and one page attached over the DevTools protocol.
pub struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: String,
    /// Uncaught page exceptions seen so far (`Runtime.exceptionThrown`).
    pub exceptions: Vec<String>,
}

impl Browser {
    pub async fn launch(binary: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        // Chromium writes "<port>\n<browser ws path>" here once DevTools listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                let mut l = s.lines();
                if let (Some(port), Some(path)) = (l.next(), l.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(Instant::now() < deadline, "chromium did not start DevTools within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        let mut b =
            Browser { child, _profile: profile, ws, next_id: 0, session: String::new(), exceptions: Vec::new() };
        let t = b.call("Target.createTarget", json!({"url": "about:blank"})).await;
        let target = t["targetId"].as_str().unwrap().to_string();
        let a = b.call("Target.attachToTarget", json!({"targetId": target, "flatten": true})).await;
        b.session = a["sessionId"].as_str().unwrap().to_string();
        b.call("Runtime.enable", json!({})).await;
        b.call("Page.enable", json!({})).await;
        b
    }

    /// Send a command (to the page once attached) and wait for its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(tokio_tungstenite::tungstenite::Message::text(msg.to_string())).await.unwrap();
        let fut = async {
            loop {
                let m = self.ws.next().await.expect("DevTools connection closed").unwrap();
                let Ok(text) = m.into_text() else { continue };
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if v["method"] == "Runtime.exceptionThrown" {
                    self.exceptions.push(v["params"]["exceptionDetails"].to_string());
                }
                if v["id"] == json!(id) {
                    if let Some(e) = v.get("error") {
                        panic!("DevTools {method} failed: {e}");
                    }
                    return v["result"].clone();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .unwrap_or_else(|_| panic!("DevTools {method} timed out"))
    }

    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// Evaluate a JS expression in the page and return its JSON value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}))
            .await;
        r["result"]["value"].clone()
    }

    /// Set the viewport and colour scheme (phone widths and dark mode are part of the brief).
    pub async fn emulate(&mut self, width: u32, height: u32, mobile: bool, dark: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
        let scheme = if dark { "dark" } else { "light" };
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// Save a PNG of the page (beyond the viewport if `full`).
    pub async fn screenshot(&mut self, path: &Path, full: bool) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": full})).await;
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Poll `expr` until it evaluates to `true` (bounded).
pub async fn wait_page(b: &mut Browser, expr: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if b.eval(expr).await == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "page condition not met within {limit:?}: {expr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where screenshots go: `target/` of this crate.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}
