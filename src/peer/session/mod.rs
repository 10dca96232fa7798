//! The peer's connection loop and one session per connection to the master.
//!
//! [`run`] retries the connection with exponential backoff (200 ms doubling to 5 s) until
//! shutdown or a fatal refusal (protocol mismatch, destination is the master's folder). A
//! session is a `select!` loop over: frames from the master, results of fetch tasks, and a
//! 250 ms tick that reports progress, publishes the status snapshot and triggers local
//! rescans. Fetch tasks run concurrently (the planner bounds them by our download slots);
//! each verifies before writing and reports `Finished` or `Failed` through a channel.
//!
//! On a new manifest the fetches of chunks it no longer holds are cancelled (reported as
//! `Failed{Cancelled}` so the planner re-plans at once); fetches of chunks it still holds go on
//! (the master's planner keeps those transfers too), so a file added mid-sync does not throw
//! away every download in flight. Then the layout is rebuilt under the relayout write lock,
//! which waits for chunk writes already under way; a fetch that lands afterwards is written
//! into the new layout's places for its chunk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::layout::{write_chunk, Layout, LayoutError};
use super::Ctx;
use crate::manifest::{ChunkHash, Manifest};
use crate::protocol::{self, FailKind, Hello, MasterGreeting, MasterMsg, PeerMsg, PROTOCOL_VERSION};
use crate::status::{Counters, EventLog, NodeState, NodeStatus, RateMeter, Snapshot};
use crate::transport::channel::{self, Channel, ChannelError};

/// A finished transfer as its task reports it: order id, and why it failed if it did.
type TransferResult = (u64, Result<(), (FailKind, String)>);

enum End {
    Shutdown,
    /// Paused ([`super::Peer::set_paused`]): left the master; rejoin on resume.
    Paused,
    Disconnected(String),
    Fatal(String),
}

struct Active {
    task: JoinHandle<()>,
    chunk: ChunkHash,
    progress: Arc<AtomicU64>,
    reported: u64,
}

/// The fetch tasks of one connection and the channel they report on.
struct Transfers {
    active: HashMap<u64, Active>,
    tx: mpsc::UnboundedSender<TransferResult>,
    rx: mpsc::UnboundedReceiver<TransferResult>,
}

impl Transfers {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Transfers { active: HashMap::new(), tx, rx }
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        for (_, a) in self.active.drain() {
            a.task.abort();
        }
    }
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
    /// Fetches a new manifest cancelled, and fetches that went on across one (`Counters`).
    fetches_cancelled: u64,
    fetches_kept: u64,
}

/// How often files skipped as locked by another program are tried again.
const LOCKED_RETRY: Duration = Duration::from_secs(2);

/// How long connecting and each handshake step may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        fetches_cancelled: 0,
        fetches_kept: 0,
    };
    let mut backoff = Duration::from_millis(200);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        s.connected = false;
        s.publish();
        if !s.wait_while_paused().await {
            return;
        }
        let attempt = tokio::select! {
            r = channel::connect(&ctx.master, HANDSHAKE_TIMEOUT, &ctx.cfg.security) => r,
            _ = crate::status::stopped(&mut shutdown) => return,
        };
        match attempt {
            Ok(ch) => {
                backoff = Duration::from_millis(200);
                s.unreachable = None;
                match s.session(ch).await {
                    End::Shutdown => return,
                    End::Fatal(msg) => return s.fail(msg),
                    End::Paused => {
                        s.events.push("paused: left the master; the folder and its index stay as they are");
                        continue;
                    }
                    End::Disconnected(why) => {
                        s.events.push(format!("disconnected from the master: {why}; reconnecting"))
                    }
                }
            }
            Err(ChannelError::Refused(why)) => {
                return s.fail(format!("refused by the master at {}: {why}", ctx.master))
            }
            Err(e) => {
                tracing::info!("cannot reach the master at {}: {e}; retrying in {backoff:?}", ctx.master);
                s.unreachable = Some(match e {
                    ChannelError::Timeout(t) => {
                        format!("no answer from the master at {} within {t:?}; retrying", ctx.master)
                    }
                    e => format!("cannot reach the master at {}: {e}; retrying", ctx.master),
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::status::stopped(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn send(ch: &mut Channel, msg: &PeerMsg) -> Result<(), String> {
    ch.send(msg).await.map_err(|e| e.to_string())
}

impl Session {
    /// Returns at once unless paused; then waits for resume (true) or shutdown (false).
    async fn wait_while_paused(&mut self) -> bool {
        let mut paused = self.ctx.paused.clone();
        if !*paused.borrow_and_update() {
            return true;
        }
        self.publish();
        let mut shutdown = self.ctx.shutdown.clone();
        tokio::select! {
            r = paused.wait_for(|p| !*p) => {
                if r.is_ok() {
                    self.events.push("resumed: rejoining the master");
                }
                r.is_ok()
            }
            _ = crate::status::stopped(&mut shutdown) => false,
        }
    }

    /// A fatal error ends the engine: say why and stop.
    fn fail(&mut self, msg: String) {
        self.events.push(msg.clone());
        self.error = Some(msg);
        self.connected = false;
        self.publish();
    }

    async fn session(&mut self, mut ch: Channel) -> End {
        if let Err(end) = self.handshake(&mut ch).await {
            return end;
        }
        self.connected = true;
        if !self.disk_error {
            self.error = None;
        }
        let mut transfers = Transfers::new();
        let end = self.serve(&mut ch, &mut transfers).await;
        self.connected = false;
        end
    }

    fn hello(&self, ch: &Channel) -> Hello {
        let ctx = &self.ctx;
        Hello {
            app: Hello::APP.into(),
            protocol: PROTOCOL_VERSION,
            name: ctx.cfg.name.clone(),
            advertise_host: ctx.cfg.advertise.clone().or_else(|| ch.local_addr().map(|a| a.ip().to_string())),
            port: ctx.listen.port(),
            upload_slots: ctx.cfg.upload_slots,
            download_slots: ctx.cfg.download_slots.max(1),
            max_upload_bps: ctx.cfg.max_upload_bps,
            max_download_bps: ctx.cfg.max_download_bps,
            version: crate::VERSION.into(),
        }
    }

    /// Hello out, greeting in; refuses a master whose folder is (inside) our destination.
    async fn handshake(&mut self, ch: &mut Channel) -> Result<(), End> {
        ch.send_handshake(&self.hello(ch)).await.map_err(|e| End::Disconnected(e.to_string()))?;
        let greeting = match ch.recv_handshake(HANDSHAKE_TIMEOUT).await {
            Ok(t) => protocol::parse_greeting(&t),
            Err(ChannelError::Timeout(_)) => return Err(End::Disconnected("no answer to the handshake".into())),
            Err(ChannelError::Closed) => {
                return Err(End::Disconnected("connection closed during the handshake".into()))
            }
            Err(e) => return Err(End::Disconnected(format!("bad first frame from the master: {e}"))),
        };
        let w = match greeting {
            Ok(MasterGreeting::Welcome(w)) => w,
            Ok(MasterGreeting::Refused(m)) => return Err(End::Fatal(format!("the master refused this peer: {m}"))),
            Err(e) => return Err(End::Fatal(format!("cannot talk to the master: {e}"))),
        };
        let root = &self.ctx.root;
        if w.host == crate::host::host_name() && !w.folder.is_empty() {
            let theirs = std::path::Path::new(&w.folder);
            if root.starts_with(theirs) || theirs.starts_with(root) {
                return Err(End::Fatal(format!(
                    "refusing to sync: destination {} is (inside) the master's own folder {}; choose another folder",
                    root.display(),
                    w.folder
                )));
            }
        }
        self.events.push(format!("connected to master {} as node {}", w.master_name, w.node_id));
        Ok(())
    }

    /// Orders from the master, results of fetch tasks and the tick, until the connection ends.
    async fn serve(&mut self, ch: &mut Channel, tr: &mut Transfers) -> End {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut shutdown = self.ctx.shutdown.clone();
        let mut paused = self.ctx.paused.clone();
        loop {
            let step = tokio::select! {
                // Frames first: a proxy's "more files follow" right behind a manifest must land
                // before the next tick reports the peer done.
                biased;
                _ = crate::status::stopped(&mut shutdown) => {
                    ch.close().await;
                    Err(End::Shutdown)
                }
                msg = ch.recv::<MasterMsg>() => match msg {
                    Ok(m) => self.on_master(ch, m, tr).await,
                    Err(ChannelError::Closed) => Err(End::Disconnected("connection closed".into())),
                    Err(ChannelError::Malformed(e)) => Err(End::Disconnected(format!("malformed message from the master: {e}"))),
                    Err(e) => Err(End::Disconnected(e.to_string())),
                },
                Some((id, res)) = tr.rx.recv() => self.on_result(ch, id, res, tr).await,
                _ = tick.tick() => self.on_tick(ch, tr).await.map_err(End::Disconnected),
                _ = crate::status::stopped(&mut paused) => {
                    ch.close().await;
                    Err(End::Paused)
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// A fetch task ended: tell the master, track the disk's health.
    async fn on_result(
        &mut self,
        ch: &mut Channel,
        id: u64,
        res: Result<(), (FailKind, String)>,
        tr: &mut Transfers,
    ) -> Result<(), End> {
        if tr.active.remove(&id).is_none() {
            return Ok(()); // cancelled meanwhile
        }
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
                    if self.error.as_ref() != Some(&message) {
                        self.events.push(message.clone()); // once per change, not per retry
                    }
                    self.error = Some(message.clone());
                    self.disk_error = true;
                }
                PeerMsg::Failed { id, reason, message }
            }
        };
        send(ch, &msg).await.map_err(End::Disconnected)?;
        if tr.active.is_empty() && self.with_layout(|l| l.is_complete()).unwrap_or(false) {
            self.publish(); // "up to date" now, not at the next tick
        }
        // A failed write (disk full) keeps the connection: the master pauses this peer's downloads
        // (`FailReason::LocalDisk`) and shows why; the next order after the pause is the retry.
        Ok(())
    }

    /// Run `f` on the current layout, if there is one.
    fn with_layout<R>(&self, f: impl FnOnce(&mut Layout) -> R) -> Option<R> {
        let mut g = self.ctx.layout.lock().ok()?;
        g.as_mut().map(f)
    }

    async fn on_master(&mut self, ch: &mut Channel, msg: MasterMsg, tr: &mut Transfers) -> Result<(), End> {
        match msg {
            MasterMsg::Wait { message } => self.waiting = Some(message),
            MasterMsg::Error { message } => tracing::warn!("the master reported: {message}"),
            MasterMsg::Cancel { id } => {
                if let Some(a) = tr.active.remove(&id) {
                    a.task.abort();
                }
            }
            MasterMsg::Manifest { id, bytes } => self.on_manifest(ch, id, &bytes, tr).await?,
            MasterMsg::Fetch { id, chunk, size, url, min_rate_bps } => {
                let base = url.unwrap_or_else(|| crate::transport::chunk_base(&self.ctx.master));
                self.on_fetch(ch, id, chunk, size, base, min_rate_bps, tr).await.map_err(End::Disconnected)?
            }
        }
        Ok(())
    }

    async fn on_manifest(&mut self, ch: &mut Channel, id: u64, bytes: &[u8], tr: &mut Transfers) -> Result<(), End> {
        self.waiting = None;
        let manifest = Manifest::from_bytes(bytes)
            .map_err(|e| End::Disconnected(format!("the master sent an invalid manifest: {e}")))?;
        let still: std::collections::HashSet<ChunkHash> =
            manifest.files.iter().flat_map(|f| f.chunks.iter().map(|c| c.hash)).collect();
        let gone: Vec<u64> = tr.active.iter().filter(|(_, a)| !still.contains(&a.chunk)).map(|(&id, _)| id).collect();
        self.fetches_kept += (tr.active.len() - gone.len()) as u64;
        for tid in gone {
            if let Some(a) = tr.active.remove(&tid) {
                a.task.abort();
            }
            self.fetches_cancelled += 1;
            let m = PeerMsg::Failed { id: tid, reason: FailKind::Cancelled, message: "not in the new manifest".into() };
            send(ch, &m).await.map_err(End::Disconnected)?;
        }
        // A layout that met a planted symlink is rebuilt even for the same manifest.
        let same = self.with_layout(|l| !l.foreign && *l.manifest == manifest).unwrap_or(false);
        if same {
            self.with_layout(|l| l.manifest_id = id);
        } else {
            self.events.push(format!(
                "manifest {id}: {} files, {} bytes",
                manifest.files.len(),
                manifest.total_bytes()
            ));
            // Reading the channel meanwhile answers the master's pings: a long first check of
            // a big folder must not read as a hung peer.
            ch.keep_alive(self.relayout(id, Arc::new(manifest))).await?;
        }
        self.send_have_all(ch).await.map_err(End::Disconnected)
    }

    /// Start a fetch task for an order (or answer at once when there is nothing to fetch).
    #[allow(clippy::too_many_arguments)]
    async fn on_fetch(
        &mut self,
        ch: &mut Channel,
        id: u64,
        chunk: ChunkHash,
        size: u64,
        base: String,
        min_rate_bps: u64,
        tr: &mut Transfers,
    ) -> Result<(), String> {
        let (needed, known) = match self.with_layout(|l| (l.has(&chunk), l.chunk_size(&chunk))) {
            Some((has, sz)) => (!has, sz == Some(size)),
            None => (false, false),
        };
        if !known {
            let message = "chunk not in the current manifest".into();
            return send(ch, &PeerMsg::Failed { id, reason: FailKind::Cancelled, message }).await;
        }
        if !needed {
            return send(ch, &PeerMsg::Finished { id }).await;
        }
        let progress = Arc::new(AtomicU64::new(0));
        let (p, tx, c) = (progress.clone(), tr.tx.clone(), self.ctx.clone());
        let task = tokio::spawn(async move {
            let r = fetch_and_write(&c, &base, chunk, size, min_rate_bps, &p).await;
            let _ = tx.send((id, r));
        });
        tr.active.insert(id, Active { task, chunk, progress, reported: 0 });
        Ok(())
    }

    async fn relayout(&mut self, id: u64, manifest: Arc<Manifest>) -> Result<(), End> {
        let ctx = self.ctx.clone();
        let _w = ctx.relayout.write().await;
        // Stop serving the old layout while the folder changes.
        let old = ctx.layout.lock().ok().and_then(|mut g| g.take());
        self.publish_state(NodeState::Indexing { done: 0, total: manifest.total_bytes() });
        let (root, cache, storage) = (ctx.root.clone(), ctx.cfg.cache.clone(), ctx.cfg.storage.clone());
        let space = storage.clone();
        let res = tokio::task::spawn_blocking(move || {
            // The scan may cache the hashes of what the old layout wrote: on disk first.
            if let Some(old) = old {
                old.sync_unfinished();
            }
            Layout::prepare(&root, id, manifest, &cache, storage)
        })
        .await;
        match res {
            Ok(Ok(mut l)) => {
                if self.disk_error && l.is_complete() {
                    self.disk_error = false;
                    self.error = None;
                }
                for u in &l.unsyncable {
                    self.events.push(format!("cannot create {u}"));
                }
                for p in l.take_locked_news() {
                    self.events.push(super::names::locked_message(&p));
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
            | Ok(Err(e @ LayoutError::Locked { .. }))
            | Ok(Err(e @ LayoutError::Io { .. }))
            | Ok(Err(e @ LayoutError::Scan(_)))
            | Ok(Err(e @ LayoutError::Unreadable { .. })) => {
                self.disk_error = matches!(e, LayoutError::DiskFull { .. });
                let msg = e.with_space(&*space, None).to_string();
                self.events.push(msg.clone());
                self.error = Some(msg.clone());
                self.publish();
                // Retry the whole connection later: a full disk may get space again.
                tokio::time::sleep(Duration::from_secs(2)).await;
                Err(End::Disconnected(msg))
            }
            Err(e) => Err(End::Fatal(format!("folder preparation crashed: {e}"))),
        }
    }

    async fn send_have_all(&mut self, ch: &mut Channel) -> Result<(), String> {
        let Some((manifest_id, chunks)) =
            self.ctx.layout.lock().ok().and_then(|g| g.as_ref().map(|l| (l.manifest_id, l.held_chunks())))
        else {
            return Ok(());
        };
        send(ch, &PeerMsg::HaveAll { manifest_id, chunks }).await
    }

    async fn on_tick(&mut self, ch: &mut Channel, tr: &mut Transfers) -> Result<(), String> {
        for (id, a) in tr.active.iter_mut() {
            let p = a.progress.load(Ordering::Relaxed);
            if p > a.reported {
                a.reported = p;
                send(ch, &PeerMsg::Progress { id: *id, bytes_done: p }).await?;
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
            send(ch, &PeerMsg::Lost { chunks: lost }).await?;
            self.last_rescan = Instant::now() - self.ctx.cfg.rescan_interval; // re-check the folder now
        }
        self.retry_locked(ch, tr).await?;
        let snap = self.publish();
        send(
            ch,
            &PeerMsg::Stats { download_bps: snap.download_bps, upload_bps: snap.upload_bps, error: self.error.clone() },
        )
        .await?;
        // Only an up-to-date peer re-checks its folder on the timer: mid-sync a full re-check
        // would stop serving and fetching for seconds (measured: ~10 % of a 1 GiB LAN sync),
        // and everything a sync writes is verified anyway. Hand edits made mid-sync are found
        // by the first re-check after completion.
        let due = self.last_rescan.elapsed() >= self.ctx.cfg.rescan_interval;
        if due && tr.active.is_empty() && matches!(snap.state, NodeState::UpToDate) {
            let current =
                self.ctx.layout.lock().ok().and_then(|g| g.as_ref().map(|l| (l.manifest_id, l.manifest.clone())));
            if let Some((id, m)) = current {
                tracing::debug!("periodic re-check of {}", self.ctx.root.display());
                if let Err(End::Disconnected(e) | End::Fatal(e)) = ch.keep_alive(self.relayout(id, m)).await {
                    return Err(e);
                }
                self.send_have_all(ch).await?;
            }
            self.last_rescan = Instant::now();
        }
        Ok(())
    }

    /// Report files skipped as locked, and once the fetches drained, retry them with a new
    /// layout every [`LOCKED_RETRY`] (the program holding one may have let go). A layout that
    /// met a planted symlink is rebuilt the same way, which removes the link (the peer stays
    /// connected through write failures, so no reconnect would do it).
    async fn retry_locked(&mut self, ch: &mut Channel, tr: &Transfers) -> Result<(), String> {
        let news = self.with_layout(|l| l.take_locked_news()).unwrap_or_default();
        for p in news {
            self.events.push(super::names::locked_message(&p));
        }
        if !tr.active.is_empty() || self.last_rescan.elapsed() < LOCKED_RETRY {
            return Ok(());
        }
        let current =
            self.with_layout(|l| (!l.locked.is_empty() || l.foreign).then(|| (l.manifest_id, l.manifest.clone())));
        if let Some(Some((id, m))) = current {
            tracing::debug!("rebuilding the layout of {} (locked files or a planted link)", self.ctx.root.display());
            if let Err(End::Disconnected(e) | End::Fatal(e)) = ch.keep_alive(self.relayout(id, m)).await {
                return Err(e);
            }
            self.send_have_all(ch).await?;
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
        s.open = ctx.cfg.security.is_open();
        s.paused = *ctx.paused.borrow();
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
            fetches_cancelled: self.fetches_cancelled,
            fetches_kept: self.fetches_kept,
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
        } else if self.waiting.is_some() && s.state == NodeState::UpToDate {
            // A proxy said more is coming: holding its manifest is not done yet.
            s.state = NodeState::Syncing;
        }
        s.detail = match (&s.state, self.connected) {
            (NodeState::Connecting, false) => self.unreachable.clone(),
            (NodeState::Connecting | NodeState::Syncing, true) => self.waiting.clone(),
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
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((FailKind::LocalDisk, e.to_string())),
        Err(e) => Err((FailKind::LocalDisk, format!("write task failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    //! The session against a scripted master on a real socket: what the peer answers to
    //! orders it cannot, need not, or can fulfil, and what it refuses to accept.
    use super::*;
    use crate::engine::is_done;
    use crate::manifest::{CacheMode, ChunkRule, ScanOptions};
    use crate::peer::{Peer, PeerConfig};
    use crate::protocol::Welcome;
    use crate::transport::channel::upgrade;
    use axum::extract::Request;
    use std::net::SocketAddr;
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

    const WAIT: Duration = Duration::from_secs(10);

    /// Serve `router` on loopback until the test ends.
    async fn serve(router: axum::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::transport::serve(listener, router, Duration::from_secs(5), "test", std::future::pending()));
        addr
    }

    /// A master that hands each peer channel, after its welcome, to the test.
    async fn scripted_master() -> (SocketAddr, UnboundedReceiver<Channel>) {
        let (tx, rx) = mpsc::unbounded_channel::<Channel>();
        let join = move |req: Request| {
            let tx: UnboundedSender<Channel> = tx.clone();
            async move {
                upgrade(req, move |mut ch| async move {
                    ch.recv_handshake(WAIT).await.expect("hello");
                    let w = Welcome {
                        app: Hello::APP.into(),
                        protocol: PROTOCOL_VERSION,
                        node_id: 1,
                        master_name: "scripted".into(),
                        version: "test".into(),
                        host: "another-host".into(),
                        folder: String::new(),
                    };
                    ch.send_handshake(&w).await.expect("welcome");
                    let _ = tx.send(ch);
                })
            }
        };
        let addr = serve(axum::Router::new().route(crate::transport::JOIN_ROUTE, axum::routing::get(join))).await;
        (addr, rx)
    }

    /// A peer mirroring into `dst`, joined to a scripted master: the master's end of its channel.
    async fn joined_peer(dst: &std::path::Path) -> (Peer, Channel) {
        let (addr, mut joined) = scripted_master().await;
        let mut cfg = PeerConfig::new(addr.to_string(), dst.to_path_buf());
        cfg.bind = "127.0.0.1:0".parse().unwrap();
        cfg.cache = CacheMode::Disabled;
        let peer = Peer::start(cfg).await.unwrap();
        let ch = tokio::time::timeout(WAIT, joined.recv()).await.unwrap().unwrap();
        (peer, ch)
    }

    /// A chunk source that answers every chunk GET with `body`.
    async fn chunk_source(body: Vec<u8>) -> String {
        let route = move || {
            let body = body.clone();
            async move { body }
        };
        let addr = serve(axum::Router::new().route("/chunk/{hash}", axum::routing::get(route))).await;
        crate::transport::chunk_base(&addr.to_string())
    }

    /// The next message that is not a periodic report.
    async fn next(ch: &mut Channel) -> PeerMsg {
        loop {
            let m = tokio::time::timeout(WAIT, ch.recv::<PeerMsg>()).await.expect("a message in time").expect("open");
            if !matches!(m, PeerMsg::Stats { .. } | PeerMsg::Progress { .. }) {
                return m;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orders_are_answered_and_only_verified_bytes_are_written() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let content = b"the one chunk of this file".to_vec();
        std::fs::write(src.path().join("f.txt"), &content).unwrap();
        let opts = ScanOptions { chunk_rule: ChunkRule::Fixed(4096), cache: CacheMode::Disabled, ..Default::default() };
        let manifest = crate::manifest::scan(src.path(), &opts).unwrap();
        let chunk = manifest.files[0].chunks[0].hash;
        let (peer, mut ch) = joined_peer(&dst.path().join("mirror")).await;

        ch.send(&MasterMsg::Manifest { id: 1, bytes: manifest.to_bytes() }).await.unwrap();
        assert_eq!(next(&mut ch).await, PeerMsg::HaveAll { manifest_id: 1, chunks: vec![] });
        let stranger = ChunkHash::of(b"not in the manifest");
        ch.send(&MasterMsg::Fetch { id: 1, chunk: stranger, size: 3, url: None, min_rate_bps: 0 }).await.unwrap();
        assert!(matches!(next(&mut ch).await, PeerMsg::Failed { id: 1, reason: FailKind::Cancelled, .. }));

        let liar = chunk_source(b"the one chunk of this fil!".to_vec()).await;
        let size = content.len() as u64;
        ch.send(&MasterMsg::Fetch { id: 2, chunk, size, url: Some(liar), min_rate_bps: 0 }).await.unwrap();
        assert!(matches!(next(&mut ch).await, PeerMsg::Failed { id: 2, reason: FailKind::BadData, .. }));
        let on_disk = std::fs::read(dst.path().join("mirror/f.txt")).unwrap();
        assert_eq!(on_disk, vec![0; content.len()], "rejected bytes never reach the file");

        let honest = chunk_source(content.clone()).await;
        ch.send(&MasterMsg::Fetch { id: 3, chunk, size, url: Some(honest), min_rate_bps: 0 }).await.unwrap();
        assert_eq!(next(&mut ch).await, PeerMsg::Finished { id: 3 });
        assert_eq!(std::fs::read(dst.path().join("mirror/f.txt")).unwrap(), content);
        ch.send(&MasterMsg::Fetch { id: 4, chunk, size, url: None, min_rate_bps: 0 }).await.unwrap();
        assert_eq!(next(&mut ch).await, PeerMsg::Finished { id: 4 }, "a held chunk is answered at once");
        let mut rx = peer.status();
        tokio::time::timeout(WAIT, rx.wait_for(is_done)).await.expect("up to date in time").unwrap();
        peer.shutdown().await;
    }

    #[tokio::test]
    async fn an_invalid_manifest_ends_the_session_and_nothing_is_created() {
        let dst = tempfile::tempdir().unwrap();
        let (peer, mut ch) = joined_peer(&dst.path().join("mirror")).await;
        ch.send(&MasterMsg::Manifest { id: 1, bytes: vec![1, 2, 3] }).await.unwrap();
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                if ch.recv::<PeerMsg>().await.is_err() {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the peer hangs up on an invalid manifest");
        assert!(!dst.path().join("mirror").exists(), "no folder was created for it");
        let mut rx = peer.status();
        let why = tokio::time::timeout(
            WAIT,
            rx.wait_for(|s| s.events.iter().any(|e| e.message.contains("invalid manifest"))),
        )
        .await;
        assert!(why.is_ok(), "the reason is in the event log");
        peer.shutdown().await;
    }
}
