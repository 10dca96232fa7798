//! A session's message loop: orders from the master, a new manifest (and the relayout it
//! brings), and the fetch tasks that verify and write chunks and report back.
//!
//! Part of the peer session (`session/mod.rs` connects and shakes hands, then hands the channel
//! to [`Session::serve`] here; the periodic tick is in `tick`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{send, Active, Done, End, Failure, Session, Transfers};
use crate::manifest::delta::{manifest_hash, Delta};
use crate::manifest::{ChunkHash, Manifest};
use crate::peer::layout::{write_chunk, Layout, LayoutError};
use crate::peer::Ctx;
use crate::protocol::{FailKind, MasterMsg, PeerMsg};
use crate::status::NodeState;
use crate::transport::channel::{Channel, ChannelError};

impl Session {
    /// Orders from the master, results of fetch tasks and the tick, until the connection ends.
    pub(super) async fn serve(&mut self, ch: &mut Channel, tr: &mut Transfers) -> End {
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
                _ = self.ctx.finisher.passed() => {
                    self.publish_if_done(tr);
                    Ok(())
                }
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
        res: Result<Done, Failure>,
        tr: &mut Transfers,
    ) -> Result<(), End> {
        if tr.active.remove(&id).is_none() {
            // Cancelled meanwhile. Bad data is still news: the master counts it, though the
            // order it could blame is gone.
            if let Some(msg) = late_rejection(id, &res) {
                send(ch, &msg).await.map_err(End::Disconnected)?;
            }
            return Ok(());
        }
        let msg = match res {
            Ok(done) => {
                if self.disk_error {
                    self.disk_error = false;
                    self.error = None;
                    self.events.push(String::from("writing works again"));
                }
                match done {
                    Done::All => PeerMsg::Finished { id },
                    Done::Except { failed, reason, message } => PeerMsg::FinishedExcept { id, failed, reason, message },
                }
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
        self.publish_if_done(tr);
        // A failed write (disk full) keeps the connection: the master pauses this peer's downloads
        // (`FailReason::LocalDisk`) and shows why; the next order after the pause is the retry.
        Ok(())
    }

    /// After a fetch ended or the finisher made a pass, the last files may be done: "up to
    /// date" at once, not at the next tick.
    fn publish_if_done(&mut self, tr: &Transfers) {
        if tr.active.is_empty() && self.with_layout(|l| l.is_complete()).unwrap_or(false) {
            self.publish();
        }
    }

    /// Run `f` on the current layout, if there is one.
    pub(super) fn with_layout<R>(&self, f: impl FnOnce(&mut Layout) -> R) -> Option<R> {
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
            MasterMsg::Manifest { id, bytes } => {
                (self.manifests_full, self.manifest_bytes) =
                    (self.manifests_full + 1, self.manifest_bytes + bytes.len() as u64);
                let manifest = Manifest::from_bytes(&bytes)
                    .map_err(|e| End::Disconnected(format!("the master sent an invalid manifest: {e}")))?;
                // Not held through the relayout: ~70 bytes a file.
                drop(bytes);
                self.on_manifest(ch, id, manifest, false, tr).await?
            }
            MasterMsg::ManifestDelta { id, base, hash, delta } => {
                (self.manifest_deltas, self.manifest_bytes) =
                    (self.manifest_deltas + 1, self.manifest_bytes + delta.len() as u64);
                let manifest = self.apply_delta(base, hash, &delta)?;
                self.on_manifest(ch, id, manifest, true, tr).await?
            }
            MasterMsg::Fetch { id, chunk, size, url, min_rate_bps } => {
                let base = url.unwrap_or_else(|| crate::transport::chunk_base(&self.ctx.master));
                self.on_fetch(ch, id, chunk, size, base, min_rate_bps, tr).await.map_err(End::Disconnected)?
            }
            MasterMsg::FetchBatch { id, chunks, url, min_rate_bps } => {
                let base = url.unwrap_or_else(|| crate::transport::chunk_base(&self.ctx.master));
                self.on_fetch_batch(ch, id, chunks, base, min_rate_bps, tr).await.map_err(End::Disconnected)?
            }
        }
        Ok(())
    }

    /// The master's change (`delta`) of manifest `base` applied to the manifest held, checked
    /// against the master's `hash`. Anything off drops the connection: the next one starts
    /// with the whole manifest.
    fn apply_delta(&self, base: u64, hash: ChunkHash, delta: &[u8]) -> Result<Manifest, End> {
        let again = "; reconnecting for the whole manifest";
        let held = self.with_layout(|l| (l.manifest_id, l.manifest.clone()));
        let Some((_, m)) = held.as_ref().filter(|(id, _)| *id == base) else {
            let have = held.map_or("none".to_string(), |(id, _)| id.to_string());
            return Err(End::Disconnected(format!(
                "the master sent a change of manifest {base}, this peer holds {have}{again}"
            )));
        };
        let new = Delta::from_bytes(delta)
            .and_then(|d| d.apply(m))
            .map_err(|e| End::Disconnected(format!("the master sent a bad manifest change: {e}{again}")))?;
        if manifest_hash(&new.to_bytes()) != hash {
            return Err(End::Disconnected(format!(
                "the manifest rebuilt from the master's change is not the master's{again}"
            )));
        }
        Ok(new)
    }

    /// A new manifest (`delta`: rebuilt from a change of the one held): cancel what left it,
    /// lay the folder out for it, tell the master what is held.
    async fn on_manifest(
        &mut self,
        ch: &mut Channel,
        id: u64,
        manifest: Manifest,
        delta: bool,
        tr: &mut Transfers,
    ) -> Result<(), End> {
        self.waiting = None;
        let before = if delta { self.with_layout(|l| l.held_chunks()) } else { None };
        let gone: Vec<u64> = if tr.active.is_empty() {
            Vec::new() // and no set of every chunk, held through the relayout
        } else {
            let still: std::collections::HashSet<ChunkHash> =
                manifest.files.iter().flat_map(|f| f.chunks.iter().map(|c| c.hash)).collect();
            tr.active.iter().filter(|(_, a)| !a.chunks.iter().all(|c| still.contains(c))).map(|(&id, _)| id).collect()
        };
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
        match before {
            Some(before) => self.report_change(ch, before).await,
            None => self.send_have_all(ch).await,
        }
        .map_err(End::Disconnected)
    }

    /// After a delta, what the master's planner must learn: it keeps this peer's have-set
    /// across manifests, so chunks lost on the way are a `Lost`, and only chunks found that
    /// were not held before (copies made outside lanscatter) need a whole `HaveAll`. Usually
    /// nothing: a one-file change costs the peer no upload at all.
    async fn report_change(&mut self, ch: &mut Channel, before: Vec<ChunkHash>) -> Result<(), String> {
        let after: HashSet<ChunkHash> = self.with_layout(|l| l.held_chunks()).unwrap_or_default().into_iter().collect();
        let before: HashSet<ChunkHash> = before.into_iter().collect();
        if after.iter().any(|h| !before.contains(h)) {
            return self.send_have_all(ch).await;
        }
        let lost: Vec<ChunkHash> = before.into_iter().filter(|h| !after.contains(h)).collect();
        match lost.is_empty() {
            true => Ok(()),
            false => send(ch, &PeerMsg::Lost { chunks: lost }).await,
        }
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
            let _ = tx.send((id, r.map(|()| Done::All)));
        });
        tr.active.insert(id, Active { task, chunks: vec![chunk], progress, reported: 0 });
        Ok(())
    }

    /// Start a batch fetch (`FetchBatch`) of the chunks the layout still needs, in one request;
    /// a batch with a chunk the current manifest lacks is refused whole, like a single order.
    async fn on_fetch_batch(
        &mut self,
        ch: &mut Channel,
        id: u64,
        chunks: Vec<(ChunkHash, u64)>,
        base: String,
        min_rate_bps: u64,
        tr: &mut Transfers,
    ) -> Result<(), String> {
        let checked = self.with_layout(|l| {
            let known = chunks.iter().all(|(h, size)| l.chunk_size(h) == Some(*size));
            (known, chunks.iter().filter(|(h, _)| !l.has(h)).copied().collect::<Vec<_>>())
        });
        let bounded = !chunks.is_empty() && chunks.len() <= crate::transfer::batch::BATCH_MAX;
        let Some((true, needed)) = checked.filter(|_| bounded) else {
            let message = "batch not in the current manifest".into();
            return send(ch, &PeerMsg::Failed { id, reason: FailKind::Cancelled, message }).await;
        };
        if needed.is_empty() {
            return send(ch, &PeerMsg::Finished { id }).await;
        }
        let progress = Arc::new(AtomicU64::new(0));
        let (p, tx, c) = (progress.clone(), tr.tx.clone(), self.ctx.clone());
        let hashes = chunks.iter().map(|c| c.0).collect();
        let task = tokio::spawn(async move {
            let r = crate::peer::batch::fetch_and_write_batch(&c, &base, needed, min_rate_bps, &p).await;
            let _ = tx.send((id, r));
        });
        tr.active.insert(id, Active { task, chunks: hashes, progress, reported: 0 });
        Ok(())
    }

    pub(super) async fn relayout(&mut self, id: u64, manifest: Arc<Manifest>) -> Result<(), End> {
        let ctx = self.ctx.clone();
        let _w = ctx.relayout.write().await;
        // Stop serving the old layout while the folder changes.
        let old = ctx.layout.lock().ok().and_then(|mut g| g.take());
        // A re-check of the manifest we hold (the periodic one, a locked-file retry) is not
        // news: publishing "indexing" would make the tray announce a finished sync and a
        // proxy resend its manifest every time. What it finds shows once it is done.
        if old.as_ref().is_none_or(|l| l.manifest_id != id) {
            self.publish_state(NodeState::Indexing { done: 0, total: manifest.total_bytes() });
        }
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
                    self.events.push(crate::peer::names::locked_message(&p));
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

    /// Tell the master everything held, as one bit per unique chunk of the manifest
    /// (`PeerMsg::HaveBits`): an eighth of a byte per chunk instead of its 32-byte hash.
    pub(super) async fn send_have_all(&mut self, ch: &mut Channel) -> Result<(), String> {
        let Some(msg) = self.with_layout(|l| {
            let unique = l.manifest.unique_chunks();
            let bits = crate::protocol::have_bits(unique.len(), |i| l.has(&unique[i].0));
            PeerMsg::HaveBits { manifest_id: l.manifest_id, chunks: unique.len() as u64, bits }
        }) else {
            return Ok(());
        };
        send(ch, &msg).await
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
            crate::peer::batch::count_failure(ctx, &e, &chunk);
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

/// The report of a cancelled transfer that found bad data, if it did.
fn late_rejection(id: u64, res: &Result<Done, Failure>) -> Option<PeerMsg> {
    match res {
        Ok(Done::Except { failed, reason: FailKind::BadData, message }) => Some(PeerMsg::FinishedExcept {
            id,
            failed: failed.clone(),
            reason: FailKind::BadData,
            message: message.clone(),
        }),
        Err((FailKind::BadData, message)) => {
            Some(PeerMsg::Failed { id, reason: FailKind::BadData, message: message.clone() })
        }
        _ => None,
    }
}
