//! A session's periodic work: progress reports to the master, retries of files that were
//! locked or a layout that a planted symlink spoiled, local rescans, and the status snapshot.
//!
//! Part of the peer session (`session/mod.rs` owns the state; the message loop in `messages`
//! runs [`Session::on_tick`] every 250 ms; an idle peer reports its figures once a second).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{send, End, Session, Transfers, LOCKED_RETRY};

/// How often an idle peer (up to date, nothing in flight) sends its `Stats`.
const IDLE_STATS: std::time::Duration = std::time::Duration::from_secs(1);
use crate::protocol::PeerMsg;
use crate::status::{Counters, NodeState, NodeStatus, Snapshot};
use crate::transport::channel::Channel;

impl Session {
    pub(super) async fn on_tick(&mut self, ch: &mut Channel, tr: &mut Transfers) -> Result<(), String> {
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
        self.retry_finish().await;
        let snap = self.publish();
        // An idle peer reports once a second, a busy one every tick: a thousand idle peers
        // were 4,000 messages a second at the master for figures that did not change. A second
        // stays well inside the planner's `silent_after_s` (2 s), after which a peer that
        // sends nothing counts as gone quiet.
        let busy = !tr.active.is_empty() || !matches!(snap.state, NodeState::UpToDate);
        let changed = self.stats_sent.as_ref().is_none_or(|(_, e)| *e != self.error);
        let stats_due = self.stats_sent.as_ref().is_none_or(|(t, _)| t.elapsed() >= IDLE_STATS);
        if busy || changed || stats_due {
            let stats = PeerMsg::Stats {
                download_bps: snap.download_bps,
                upload_bps: snap.upload_bps,
                error: self.error.clone(),
            };
            send(ch, &stats).await?;
            self.stats_sent = Some((Instant::now(), self.error.clone()));
        }
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
            self.events.push(crate::peer::names::locked_message(&p));
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

    /// Every [`LOCKED_RETRY`], finish again the files whose fsync failed: their last chunk is
    /// in, so no fetch would ever do it, and the peer is not complete until they are on disk.
    async fn retry_finish(&mut self) {
        let due = self.last_finish_retry.elapsed() >= LOCKED_RETRY;
        if !due || !self.with_layout(|l| l.needs_finish()).unwrap_or(false) {
            return;
        }
        self.last_finish_retry = Instant::now();
        let failed = crate::peer::finisher::finish_pass(&self.ctx).await.err();
        // As a failed or working chunk write says it (the same `disk_error`).
        match failed {
            None if self.disk_error => {
                self.disk_error = false;
                self.error = None;
                self.events.push("writing works again");
            }
            None => {}
            Some(message) => {
                if self.error.as_ref() != Some(&message) {
                    self.events.push(message.clone());
                }
                self.error = Some(message);
                self.disk_error = true;
            }
        }
    }

    pub(super) fn publish_state(&mut self, state: NodeState) {
        let mut s = self.build_snapshot();
        s.state = state;
        self.ctx.status.send_replace(s);
    }

    pub(super) fn publish(&mut self) -> Snapshot {
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
            manifests_full: self.manifests_full,
            manifest_deltas: self.manifest_deltas,
            manifest_bytes: self.manifest_bytes,
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
