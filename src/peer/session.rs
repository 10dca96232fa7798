//! The peer's connection loop and one session per connection to the master.
//!
//! [`run`] retries the connection with exponential backoff (200 ms doubling to 5 s) until
//! shutdown or a fatal refusal (protocol mismatch, destination is the master's folder). A
//! session is a `select!` loop over: frames from the master, results of fetch tasks, and a
//! 250 ms tick that reports progress, publishes the status snapshot and triggers local
//! rescans. Fetch tasks run concurrently (the planner bounds them by our download slots);
//! each verifies before writing and reports `Finished` or `Failed` through a channel.
//!
//! On a new manifest all fetches are cancelled (reported as `Failed{Cancelled}` so the
//! planner re-plans them at once), then the layout is rebuilt under the relayout write lock,
//! which waits for chunk writes already under way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::layout::{write_chunk, Layout, LayoutError, WriteOutcome};
use super::Ctx;
use crate::manifest::{ChunkHash, Manifest};
use crate::protocol::{self, FailKind, Hello, MasterGreeting, MasterMsg, PeerMsg, MAX_FRAME, PROTOCOL_VERSION};
use crate::status::{Counters, EventLog, NodeState, NodeStatus, RateMeter, Snapshot};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A finished transfer as its task reports it: order id, and why it failed if it did.
type TransferResult = (u64, Result<(), (FailKind, String)>);

enum End {
    Shutdown,
    Disconnected(String),
    Fatal(String),
}

struct Active {
    task: JoinHandle<()>,
    progress: Arc<AtomicU64>,
    reported: u64,
}

struct Session {
    ctx: Arc<Ctx>,
    events: EventLog,
    connected: bool,
    waiting: Option<String>,
    /// Why the last connection attempt failed (shown while not connected).
    unreachable: Option<String>,
    error: Option<String>,
    /// `error` is a full or failing disk: kept across reconnects until a write succeeds.
    disk_error: bool,
    down_meter: RateMeter,
    up_meter: RateMeter,
    last_rescan: Instant,
}

pub(crate) async fn run(ctx: Arc<Ctx>) {
    let mut s = Session {
        ctx: ctx.clone(),
        events: EventLog::default(),
        connected: false,
        waiting: None,
        unreachable: None,
        error: None,
        disk_error: false,
        down_meter: RateMeter::default(),
        up_meter: RateMeter::default(),
        last_rescan: Instant::now(),
    };
    let mut backoff = Duration::from_millis(200);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        s.connected = false;
        s.publish();
        let url = format!("{}/join", ctx.master_base.replacen("http://", "ws://", 1));
        let cfg = WebSocketConfig::default().max_message_size(Some(MAX_FRAME)).max_frame_size(Some(MAX_FRAME));
        let attempt = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async_with_config(url.as_str(), Some(cfg), true)) => r,
            _ = crate::status::stopped(&mut shutdown) => return,
        };
        match attempt {
            Ok(Ok((ws, _))) => {
                backoff = Duration::from_millis(200);
                s.unreachable = None;
                match s.session(ws).await {
                    End::Shutdown => return,
                    End::Fatal(msg) => {
                        s.events.push(msg.clone());
                        s.error = Some(msg);
                        s.connected = false;
                        s.publish();
                        return;
                    }
                    End::Disconnected(why) => {
                        s.events.push(format!("disconnected from the master: {why}; reconnecting"))
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::info!("cannot reach the master at {url}: {e}; retrying in {backoff:?}");
                s.unreachable = Some(format!("cannot reach the master at {}: {e}; retrying", ctx.master_base));
            }
            Err(_) => {
                tracing::info!("connecting to {url} timed out; retrying");
                s.unreachable = Some(format!("no answer from the master at {} within 10 s; retrying", ctx.master_base));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::status::stopped(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn send(ws: &mut Ws, msg: &PeerMsg) -> Result<(), String> {
    ws.send(Message::Binary(protocol::encode(msg).into())).await.map_err(|e| e.to_string())
}

impl Session {
    async fn session(&mut self, mut ws: Ws) -> End {
        let ctx = self.ctx.clone();
        let local = match ws.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(t) => t.local_addr().ok(),
            _ => None,
        };
        let hello = Hello {
            app: Hello::APP.into(),
            protocol: PROTOCOL_VERSION,
            name: ctx.cfg.name.clone(),
            advertise_host: ctx.cfg.advertise.clone().or_else(|| local.map(|a| a.ip().to_string())),
            port: ctx.listen.port(),
            upload_slots: ctx.cfg.upload_slots,
            download_slots: ctx.cfg.download_slots.max(1),
            max_upload_bps: ctx.cfg.max_upload_bps,
            max_download_bps: ctx.cfg.max_download_bps,
            version: crate::VERSION.into(),
        };
        let text = serde_json::to_string(&hello).unwrap_or_default();
        if let Err(e) = ws.send(Message::Text(text.into())).await {
            return End::Disconnected(e.to_string());
        }
        let greeting = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => protocol::parse_greeting(t.as_str()),
            Ok(Some(Ok(other))) => {
                return End::Disconnected(format!("unexpected first frame from the master: {other:?}"))
            }
            Ok(Some(Err(e))) => return End::Disconnected(e.to_string()),
            Ok(None) => return End::Disconnected("connection closed during the handshake".into()),
            Err(_) => return End::Disconnected("no answer to the handshake".into()),
        };
        match greeting {
            Ok(MasterGreeting::Welcome(w)) => {
                if w.host == crate::master::host_name() && !w.folder.is_empty() {
                    let mine = ctx.root.display().to_string();
                    let theirs = std::path::Path::new(&w.folder);
                    if ctx.root.starts_with(theirs) || theirs.starts_with(&ctx.root) {
                        return End::Fatal(format!(
                            "refusing to sync: destination {mine} is (inside) the master's own folder {}; choose another folder",
                            w.folder
                        ));
                    }
                }
                self.events.push(format!("connected to master {} as node {}", w.master_name, w.node_id));
            }
            Ok(MasterGreeting::Refused(m)) => return End::Fatal(format!("the master refused this peer: {m}")),
            Err(e) => return End::Fatal(format!("cannot talk to the master: {e}")),
        }
        self.connected = true;
        if !self.disk_error {
            self.error = None;
        }
        let (res_tx, mut res_rx) = mpsc::unbounded_channel::<TransferResult>();
        let mut active: HashMap<u64, Active> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut shutdown = ctx.shutdown.clone();
        let end = loop {
            tokio::select! {
                frame = ws.next() => {
                    let msg = match frame {
                        Some(Ok(Message::Binary(b))) => match protocol::decode::<MasterMsg>(&b) {
                            Ok(m) => m,
                            Err(e) => break End::Disconnected(format!("malformed message from the master: {e}")),
                        },
                        Some(Ok(Message::Close(_))) | None => break End::Disconnected("connection closed".into()),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => break End::Disconnected(e.to_string()),
                    };
                    if let Err(e) = self.on_master(&mut ws, msg, &mut active, &res_tx).await {
                        break e;
                    }
                }
                Some((id, res)) = res_rx.recv() => {
                    if active.remove(&id).is_none() {
                        continue; // cancelled meanwhile
                    }
                    let mut disk_failed = None;
                    let msg = match res {
                        Ok(()) => {
                            if self.disk_error {
                                self.disk_error = false;
                                self.error = None;
                                self.events.push(String::from("writing works again"));
                            }
                            PeerMsg::Finished { id }
                        }
                        Err((reason, message)) => {
                            if reason == FailKind::LocalDisk {
                                self.error = Some(message.clone());
                                self.disk_error = true;
                                self.events.push(message.clone());
                                disk_failed = Some(message.clone());
                            }
                            PeerMsg::Failed { id, reason, message }
                        }
                    };
                    if let Err(e) = send(&mut ws, &msg).await {
                        break End::Disconnected(e);
                    }
                    let complete = self.ctx.layout.lock().ok().is_some_and(|g| g.as_ref().is_some_and(|l| l.is_complete()));
                    if complete && active.is_empty() {
                        self.publish(); // "up to date" now, not at the next tick
                    }
                    if let Some(m) = disk_failed {
                        // Step out instead of failing every order the master sends meanwhile:
                        // the reconnect backoff paces the retries until space returns, and
                        // the re-check on reconnect keeps every verified chunk.
                        break End::Disconnected(m);
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.on_tick(&mut ws, &mut active).await {
                        break End::Disconnected(e);
                    }
                }
                _ = crate::status::stopped(&mut shutdown) => {
                    let _ = ws.close(None).await;
                    break End::Shutdown;
                }
            }
        };
        for (_, a) in active.drain() {
            a.task.abort();
        }
        self.connected = false;
        end
    }

    async fn on_master(
        &mut self,
        ws: &mut Ws,
        msg: MasterMsg,
        active: &mut HashMap<u64, Active>,
        res_tx: &mpsc::UnboundedSender<TransferResult>,
    ) -> Result<(), End> {
        let ctx = self.ctx.clone();
        match msg {
            MasterMsg::Wait { message } => {
                self.waiting = Some(message);
            }
            MasterMsg::Error { message } => {
                tracing::warn!("the master reported: {message}");
            }
            MasterMsg::Cancel { id } => {
                if let Some(a) = active.remove(&id) {
                    a.task.abort();
                }
            }
            MasterMsg::Manifest { id, bytes } => {
                self.waiting = None;
                let manifest = match Manifest::from_bytes(&bytes) {
                    Ok(m) => m,
                    Err(e) => return Err(End::Disconnected(format!("the master sent an invalid manifest: {e}"))),
                };
                for (tid, a) in active.drain() {
                    a.task.abort();
                    send(ws, &PeerMsg::Failed { id: tid, reason: FailKind::Cancelled, message: "new manifest".into() })
                        .await
                        .map_err(End::Disconnected)?;
                }
                let same =
                    ctx.layout.lock().ok().and_then(|g| g.as_ref().map(|l| *l.manifest == manifest)).unwrap_or(false);
                if same {
                    if let Ok(mut g) = ctx.layout.lock() {
                        if let Some(l) = g.as_mut() {
                            l.manifest_id = id;
                        }
                    }
                } else {
                    self.events.push(format!(
                        "manifest {id}: {} files, {} bytes",
                        manifest.files.len(),
                        manifest.total_bytes()
                    ));
                    self.relayout(id, Arc::new(manifest)).await?;
                }
                self.send_have_all(ws).await.map_err(End::Disconnected)?;
            }
            MasterMsg::Fetch { id, chunk, size, url, min_rate_bps } => {
                let (needed, known) = match ctx
                    .layout
                    .lock()
                    .ok()
                    .and_then(|g| g.as_ref().map(|l| (l.has(&chunk), l.chunk_size(&chunk))))
                {
                    Some((has, sz)) => (!has, sz == Some(size)),
                    None => (false, false),
                };
                if !known {
                    let m = PeerMsg::Failed {
                        id,
                        reason: FailKind::Cancelled,
                        message: "chunk not in the current manifest".into(),
                    };
                    return send(ws, &m).await.map_err(End::Disconnected);
                }
                if !needed {
                    return send(ws, &PeerMsg::Finished { id }).await.map_err(End::Disconnected);
                }
                let base = url.unwrap_or_else(|| ctx.master_base.clone());
                let progress = Arc::new(AtomicU64::new(0));
                let (p, tx, c) = (progress.clone(), res_tx.clone(), ctx.clone());
                let task = tokio::spawn(async move {
                    let r = fetch_and_write(&c, &base, chunk, size, min_rate_bps, &p).await;
                    let _ = tx.send((id, r));
                });
                active.insert(id, Active { task, progress, reported: 0 });
            }
        }
        Ok(())
    }

    async fn relayout(&mut self, id: u64, manifest: Arc<Manifest>) -> Result<(), End> {
        let ctx = self.ctx.clone();
        let _w = ctx.relayout.write().await;
        if let Ok(mut g) = ctx.layout.lock() {
            *g = None; // stop serving the old layout while the folder changes
        }
        self.publish_state(NodeState::Indexing { done: 0, total: manifest.total_bytes() });
        let (root, cache) = (ctx.root.clone(), ctx.cfg.cache.clone());
        let res = tokio::task::spawn_blocking(move || Layout::prepare(&root, id, manifest, &cache)).await;
        match res {
            Ok(Ok(l)) => {
                if self.disk_error && l.is_complete() {
                    self.disk_error = false;
                    self.error = None;
                }
                for u in &l.unsyncable {
                    self.events.push(format!("cannot create {u}"));
                }
                if !l.unsyncable.is_empty() {
                    self.error = Some(format!("cannot create on this system: {}", l.unsyncable.join("; ")));
                }
                if let Ok(mut g) = ctx.layout.lock() {
                    *g = Some(l);
                }
                self.last_rescan = Instant::now();
                Ok(())
            }
            Ok(Err(e @ LayoutError::DiskFull { .. }))
            | Ok(Err(e @ LayoutError::Io { .. }))
            | Ok(Err(e @ LayoutError::Scan(_))) => {
                let msg = e.to_string();
                self.events.push(msg.clone());
                self.disk_error = matches!(e, LayoutError::DiskFull { .. });
                self.error = Some(msg.clone());
                self.publish();
                // Retry the whole connection later: a full disk may get space again.
                tokio::time::sleep(Duration::from_secs(2)).await;
                Err(End::Disconnected(msg))
            }
            Err(e) => Err(End::Fatal(format!("folder preparation crashed: {e}"))),
        }
    }

    async fn send_have_all(&mut self, ws: &mut Ws) -> Result<(), String> {
        let Some((manifest_id, chunks)) =
            self.ctx.layout.lock().ok().and_then(|g| g.as_ref().map(|l| (l.manifest_id, l.held_chunks())))
        else {
            return Ok(());
        };
        send(ws, &PeerMsg::HaveAll { manifest_id, chunks }).await
    }

    async fn on_tick(&mut self, ws: &mut Ws, active: &mut HashMap<u64, Active>) -> Result<(), String> {
        for (id, a) in active.iter_mut() {
            let p = a.progress.load(Ordering::Relaxed);
            if p > a.reported {
                a.reported = p;
                send(ws, &PeerMsg::Progress { id: *id, bytes_done: p }).await?;
            }
        }
        let lost = self
            .ctx
            .layout
            .lock()
            .ok()
            .and_then(|mut g| g.as_mut().map(|l| std::mem::take(&mut l.lost)))
            .unwrap_or_default();
        if !lost.is_empty() {
            send(ws, &PeerMsg::Lost { chunks: lost }).await?;
            self.last_rescan = Instant::now() - self.ctx.cfg.rescan_interval; // re-check the folder now
        }
        let snap = self.publish();
        send(
            ws,
            &PeerMsg::Stats {
                download_bps: snap.download_bps,
                upload_bps: snap.upload_bps,
                bytes_uploaded: snap.counters.bytes_uploaded,
                complete: matches!(snap.state, NodeState::UpToDate),
                error: self.error.clone(),
            },
        )
        .await?;
        // Only an up-to-date peer re-checks its folder on the timer: mid-sync a full re-check
        // would stop serving and fetching for seconds (measured: ~10 % of a 1 GiB LAN sync),
        // and everything a sync writes is verified anyway. Hand edits made mid-sync are found
        // by the first re-check after completion.
        let due = self.last_rescan.elapsed() >= self.ctx.cfg.rescan_interval;
        if due && active.is_empty() && matches!(snap.state, NodeState::UpToDate) {
            let current =
                self.ctx.layout.lock().ok().and_then(|g| g.as_ref().map(|l| (l.manifest_id, l.manifest.clone())));
            if let Some((id, m)) = current {
                tracing::debug!("periodic re-check of {}", self.ctx.root.display());
                if let Err(End::Disconnected(e) | End::Fatal(e)) = self.relayout(id, m).await {
                    return Err(e);
                }
                self.send_have_all(ws).await?;
            }
            self.last_rescan = Instant::now();
        }
        Ok(())
    }

    fn publish_state(&mut self, state: NodeState) {
        let mut s = self.build_snapshot();
        s.state = state;
        self.ctx.status.send_replace(s);
    }

    fn publish(&mut self) -> Snapshot {
        let s = self.build_snapshot();
        self.ctx.status.send_replace(s.clone());
        s
    }

    fn build_snapshot(&mut self) -> Snapshot {
        let ctx = &self.ctx;
        let mut s = Snapshot::new(crate::status::Role::Peer, ctx.cfg.name.clone(), ctx.root.clone());
        s.listen = ctx.listen.to_string();
        let st = &ctx.server.stats;
        let c = &ctx.counters;
        s.counters = Counters {
            chunk_gets_served: st.gets_served.load(Ordering::Relaxed),
            bytes_uploaded: st.bytes_uploaded.load(Ordering::Relaxed),
            chunk_gets_made: c.gets_made.load(Ordering::Relaxed),
            bytes_downloaded: c.bytes_downloaded.load(Ordering::Relaxed),
            verify_failures: c.verify_failures.load(Ordering::Relaxed),
            slow_aborts: c.slow_aborts.load(Ordering::Relaxed),
            local_copies: 0,
            ..Default::default()
        };
        s.download_bps = self.down_meter.update(s.counters.bytes_downloaded);
        s.upload_bps = self.up_meter.update(s.counters.bytes_uploaded);
        s.events = self.events.to_vec();
        let mut me = NodeStatus {
            name: ctx.cfg.name.clone(),
            address: ctx.listen.to_string(),
            download_bps: s.download_bps,
            upload_bps: s.upload_bps,
            active_uploads: ctx.server.active_uploads(),
            bytes_uploaded: s.counters.bytes_uploaded,
            ..Default::default()
        };
        let mut complete = false;
        if let Ok(g) = ctx.layout.lock() {
            if let Some(l) = g.as_ref() {
                s.manifest_id = l.manifest_id;
                s.bytes_total = l.bytes_total;
                s.bytes_done = l.bytes_done;
                s.files_total = l.manifest.files.len() as u64;
                s.folder_bytes = l.manifest.total_bytes();
                s.counters.local_copies = l.local_copies;
                me.chunk_map = l.chunk_map();
                complete = l.is_complete();
            }
        }
        if s.download_bps > 0.0 && s.bytes_done < s.bytes_total {
            s.eta_secs = Some((s.bytes_total - s.bytes_done) as f64 / s.download_bps);
        }
        s.state = match (&self.error, self.connected, s.manifest_id) {
            (Some(e), _, _) => NodeState::Error { message: e.clone() },
            (None, false, _) => NodeState::Connecting,
            (None, true, 0) => NodeState::Connecting,
            (None, true, _) if complete => NodeState::UpToDate,
            _ => NodeState::Syncing,
        };
        if self.waiting.is_some() && s.manifest_id == 0 {
            s.state = NodeState::Connecting;
        }
        s.detail = match (&s.state, self.connected) {
            (NodeState::Connecting, false) => self.unreachable.clone(),
            (NodeState::Connecting, true) => self.waiting.clone(),
            _ => None,
        };
        me.state = s.state.clone();
        me.bytes_done = s.bytes_done;
        me.bytes_total = s.bytes_total;
        s.nodes = vec![me];
        s
    }
}

/// Fetch, verify, write one chunk. Errors carry the reason the master needs.
async fn fetch_and_write(
    ctx: &Arc<Ctx>,
    base: &str,
    chunk: ChunkHash,
    size: u64,
    min_rate_bps: u64,
    progress: &AtomicU64,
) -> Result<(), (FailKind, String)> {
    ctx.counters.gets_made.fetch_add(1, Ordering::Relaxed);
    let data = match ctx.fetcher.fetch(base, &chunk, size, min_rate_bps, progress, &ctx.counters.bytes_downloaded).await
    {
        Ok(d) => d,
        Err(e) => {
            match e.kind() {
                FailKind::BadData => {
                    ctx.counters.verify_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("rejected chunk {chunk}: {e}");
                }
                FailKind::TooSlow => {
                    ctx.counters.slow_aborts.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            return Err((e.kind(), e.to_string()));
        }
    };
    let guard = ctx.relayout.clone().read_owned().await;
    let layout = ctx.layout.clone();
    let res = tokio::task::spawn_blocking(move || {
        let r = write_chunk(&layout, &chunk, &data);
        drop(guard);
        r
    })
    .await;
    match res {
        Ok(Ok(WriteOutcome::Written | WriteOutcome::NotNeeded)) => Ok(()),
        Ok(Err(e)) => Err((FailKind::LocalDisk, e.to_string())),
        Err(e) => Err((FailKind::LocalDisk, format!("write task failed: {e}"))),
    }
}
