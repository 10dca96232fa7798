//! A batch order (`MasterMsg::FetchBatch`): fetch a run of small chunks in one request, write
//! the verified ones, and say which failed.
//!
//! Why a module of its own: the single-chunk path in `session` answers `Finished` or `Failed`;
//! a batch can also end in part (`PeerMsg::FinishedExcept`): a source that lies about one
//! chunk, or lost one, must not cost the other thousand. Every chunk is verified by the
//! fetcher before it reaches [`place_chunks`](super::layout::place_chunks), which writes the
//! whole batch under one lock; the files it completes are made durable by the `finisher`,
//! together with those of every other batch meanwhile (see "Durable before done" in `layout`),
//! so the fetch does not wait for the disk flush and a flush serves many batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::finisher::Finisher;
use super::layout::place_chunks;
use super::Ctx;
use crate::manifest::ChunkHash;
use crate::protocol::FailKind;
use crate::transport::fetch::FetchError;

/// How a transfer that delivered something ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Done {
    /// Every chunk verified and written.
    All,
    /// All but `failed`, which failed for `reason`.
    Except { failed: Vec<ChunkHash>, reason: FailKind, message: String },
}

/// A failed transfer: why, for the master.
pub(crate) type Failure = (FailKind, String);

/// Count a failed fetch where the status page shows it.
pub(crate) fn count_failure(ctx: &Ctx, e: &FetchError, what: &dyn std::fmt::Display) {
    match e.kind() {
        FailKind::BadData => {
            ctx.counters.verify_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("rejected chunk {what}: {e}");
        }
        FailKind::TooSlow => {
            ctx.counters.slow_aborts.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// The failure that speaks for a batch's failed chunks: bad data if any chunk was bad (the
/// source lied), else the first one's.
fn worst(failed: &[(ChunkHash, FetchError)]) -> (FailKind, String) {
    let e = failed.iter().find(|(_, e)| e.kind() == FailKind::BadData).or(failed.first());
    e.map_or((FailKind::Network, String::new()), |(_, e)| (e.kind(), e.to_string()))
}

/// Fetch, verify and write the batch `chunks` (hash, size) from `base`.
pub(crate) async fn fetch_and_write_batch(
    ctx: &Arc<Ctx>,
    base: &str,
    chunks: Vec<(ChunkHash, u64)>,
    min_rate_bps: u64,
    progress: &AtomicU64,
) -> Result<Done, Failure> {
    ctx.counters.gets_made.fetch_add(1, Ordering::Relaxed);
    let results =
        ctx.fetcher.fetch_batch(base, &chunks, min_rate_bps, progress, &ctx.counters.bytes_downloaded).await.map_err(
            |e| {
                count_failure(ctx, &e, &format!("batch of {}", chunks.len()));
                (e.kind(), e.to_string())
            },
        )?;
    let mut good = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for ((hash, _), r) in chunks.into_iter().zip(results) {
        match r {
            Ok(data) => good.push((hash, data)),
            Err(e) => {
                count_failure(ctx, &e, &hash);
                failed.push((hash, e));
            }
        }
    }
    if good.is_empty() {
        return Err(worst(&failed));
    }
    let guard = ctx.relayout.clone().read_owned().await;
    let layout = ctx.layout.clone();
    let res = tokio::task::spawn_blocking(move || {
        let r = place_chunks(&layout, &good);
        drop(guard);
        r
    })
    .await;
    // Even after a write error: the chunks before it are placed and may complete files.
    Finisher::kick(ctx);
    match res {
        Ok(Ok(())) if failed.is_empty() => Ok(Done::All),
        Ok(Ok(())) => {
            let (reason, message) = worst(&failed);
            Ok(Done::Except { failed: failed.into_iter().map(|f| f.0).collect(), reason, message })
        }
        Ok(Err(e)) => Err((FailKind::LocalDisk, e.to_string())),
        Err(e) => Err((FailKind::LocalDisk, format!("write task failed: {e}"))),
    }
}
