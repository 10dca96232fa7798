//! Finishing files off the fetch path: the flush and mtimes that make a file count as done run
//! in one task of their own, which takes every file completed meanwhile into one flush.
//!
//! Why: a batch of small files used to be flushed (`syncfs`, 20-45 ms on ext4) by the fetch
//! that completed them, and that fetch's flow could not ask for its next batch until the flush
//! was back, so on a disk the peer moved half of tmpfs's files per second while its CPU idled.
//! Now a batch's chunks are placed (verified, readable, served to others) and the fetch ends;
//! the finisher flushes what all flows completed since its last pass. Nothing changes about
//! what "done" means (see "Durable before done" in `layout`): a file counts as done only after
//! its data and entry are on the disk and it has the master's mtime; a crash before that leaves
//! a file the next scan hashes again.
//!
//! One finisher runs at a time ([`Finisher::kick`] starts one if none is running, else the
//! running one sees the new files on its next pass). A pass that fails leaves its files on
//! `to_finish` and stops: the session's timed retry (`tick::retry_finish`) owns retrying and
//! showing the error, so a disk that keeps failing is not flushed in a hot loop. After every
//! pass the session is woken ([`Finisher::passed`]) so "up to date" shows when the last file is
//! done, not at the next tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::layout::finish_pending;
use super::Ctx;

/// Whether a finisher runs, and how it tells the session it made a pass.
#[derive(Default)]
pub struct Finisher {
    running: AtomicBool,
    passed: Notify,
}

impl Finisher {
    /// Make sure the files on `to_finish` get finished soon: start a finisher unless one runs.
    pub(crate) fn kick(ctx: &Arc<Ctx>) {
        if ctx.finisher.running.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(run(ctx.clone()));
    }

    /// Resolves after a finisher pass (at once if one ended since the last call).
    pub(crate) async fn passed(&self) {
        self.passed.notified().await;
    }
}

/// One pass of [`finish_pending`] on a blocking thread, under the relayout read lock (a new
/// layout waits for it); `Err` says why it failed. The finisher's and the session's retries.
pub(crate) async fn finish_pass(ctx: &Ctx) -> Result<(), String> {
    let guard = ctx.relayout.clone().read_owned().await;
    let layout = ctx.layout.clone();
    let r = tokio::task::spawn_blocking(move || {
        let r = finish_pending(&layout);
        drop(guard);
        r
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("finishing files failed: {e}")),
    }
}

/// Finish what is queued, again while more was queued meanwhile, until nothing is left or a
/// pass fails.
async fn run(ctx: Arc<Ctx>) {
    loop {
        let ok = match finish_pass(&ctx).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("finishing files failed, retried shortly: {e}");
                false
            }
        };
        ctx.finisher.running.store(false, Ordering::SeqCst);
        ctx.finisher.passed.notify_one();
        // Files queued after the pass took its list: a writer that saw `running` set left
        // them to this finisher. A `kick` after the store above may have started another one.
        let more = ctx.layout.lock().ok().and_then(|g| g.as_ref().map(|l| l.has_unfinished())).unwrap_or(false);
        if !ok || !more || ctx.finisher.running.swap(true, Ordering::SeqCst) {
            return;
        }
    }
}
