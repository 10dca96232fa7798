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
//!
//! This file holds the connection loop, the session's state and the handshake; the message
//! loop and fetches are in `messages`, the tick (progress, retries, status) in `tick`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::batch::{Done, Failure};
use super::Ctx;
use crate::manifest::ChunkHash;
use crate::protocol::{self, Hello, MasterGreeting, PeerMsg, PROTOCOL_VERSION};
use crate::status::{EventLog, RateMeter};
use crate::transport::channel::{self, Channel, ChannelError};

mod messages;
#[cfg(test)]
mod tests;
mod tick;

/// A finished transfer as its task reports it: order id, and why it failed if it did.
type TransferResult = (u64, Result<Done, Failure>);

enum End {
    Shutdown,
    /// Paused ([`super::Peer::set_paused`]): left the master; rejoin on resume.
    Paused,
    Disconnected(String),
    Fatal(String),
}

struct Active {
    task: JoinHandle<()>,
    /// Its chunk, or a batch's chunks.
    chunks: Vec<ChunkHash>,
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
    /// When files whose finishing failed (an fsync error) were last tried again.
    last_finish_retry: Instant,
    /// Fetches a new manifest cancelled, and fetches that went on across one (`Counters`).
    fetches_cancelled: u64,
    fetches_kept: u64,
    /// Manifests received whole and as deltas, and their bytes (`Counters`).
    manifests_full: u64,
    manifest_deltas: u64,
    manifest_bytes: u64,
    /// When `Stats` last went out, with the error it carried (`tick`).
    stats_sent: Option<(Instant, Option<String>)>,
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
        last_finish_retry: Instant::now(),
        fetches_cancelled: 0,
        fetches_kept: 0,
        manifests_full: 0,
        manifest_deltas: 0,
        manifest_bytes: 0,
        stats_sent: None,
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
        self.stats_sent = None;
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
}
