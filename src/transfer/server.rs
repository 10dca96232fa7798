//! The `GET /chunk/<hex>` route served by every node.
//!
//! The engine supplies a [`ChunkSource`] that maps a hash to a place on disk holding verified
//! content. The bytes are re-hashed after reading (BLAKE2b runs at >1 GB/s, far above a LAN
//! link) so a file edited behind the engine's back is reported through
//! [`ChunkSource::stale`] and answered with `404`, never served as the old content.
//! Upload slots are a semaphore: when all are taken the answer is an immediate `503` rather
//! than a queue, because the planner, not the server, decides who waits for whom.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::compress::compress_if_worth;
use super::ratelimit::RateLimiter;
use super::{LZ4_ENCODING, PIECE};
use crate::manifest::ChunkHash;
use crate::storage::Storage;

/// Where verified content of a chunk can be read.
#[derive(Debug, Clone)]
pub struct ChunkLoc {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// The engine's view of what it may serve.
pub trait ChunkSource: Send + Sync + 'static {
    fn locate(&self, hash: &ChunkHash) -> Option<ChunkLoc>;
    /// The bytes at the located place no longer match `hash` (file changed on disk).
    fn stale(&self, _hash: &ChunkHash) {}
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// 0 = never serve (every request gets 503).
    pub upload_slots: u32,
    pub limiter: Option<Arc<RateLimiter>>,
    pub compress: bool,
    /// Where chunk bytes are read (the engine's storage seam).
    pub storage: Arc<dyn Storage>,
}

/// Counters of one node's chunk server.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub gets_served: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub busy_rejections: AtomicU64,
}

pub struct ChunkServer {
    source: Arc<dyn ChunkSource>,
    cfg: ServerConfig,
    slots: Arc<Semaphore>,
    pub stats: Arc<ServerStats>,
}

impl ChunkServer {
    pub fn new(source: Arc<dyn ChunkSource>, cfg: ServerConfig) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(cfg.upload_slots as usize));
        Arc::new(ChunkServer { source, cfg, slots, stats: Arc::default() })
    }

    pub fn active_uploads(&self) -> u32 {
        self.cfg.upload_slots.saturating_sub(self.slots.available_permits() as u32)
    }
}

/// Router with the chunk and batch routes, to be merged into the engine's router.
pub fn router(server: Arc<ChunkServer>) -> axum::Router {
    axum::Router::new()
        .route("/chunk/{hash}", axum::routing::get(get_chunk))
        .route(super::batch::BATCH_ROUTE, axum::routing::post(get_batch))
        .with_state(server)
}

fn accepts_lz4(s: &ChunkServer, headers: &HeaderMap) -> bool {
    s.cfg.compress
        && headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(LZ4_ENCODING)))
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    (status, msg).into_response()
}

async fn get_chunk(State(s): State<Arc<ChunkServer>>, Path(hex): Path<String>, headers: HeaderMap) -> Response {
    let Ok(hash) = hex.parse::<ChunkHash>() else {
        return plain(StatusCode::BAD_REQUEST, "invalid chunk hash: expected 32 hex digits\n");
    };
    let Ok(permit) = s.slots.clone().try_acquire_owned() else {
        s.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "no free upload slot\n");
    };
    let Some(loc) = s.source.locate(&hash) else {
        return plain(StatusCode::NOT_FOUND, "chunk not held by this node\n");
    };
    let accept_lz4 = accepts_lz4(&s, &headers);
    let storage = s.cfg.storage.clone();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<(Vec<u8>, bool)>> {
        let Some(data) = storage.read_for_upload(&loc.path, loc.offset, loc.size, &hash)? else {
            return Ok(None);
        };
        if accept_lz4 {
            if let Some(c) = compress_if_worth(&data) {
                return Ok(Some((c, true)));
            }
        }
        Ok(Some((data, false)))
    })
    .await;
    let (body, compressed) = match read {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => {
            s.source.stale(&hash);
            return plain(StatusCode::NOT_FOUND, "chunk changed on disk\n");
        }
        Ok(Err(e)) => {
            tracing::warn!("reading chunk {hash} failed: {e}");
            s.source.stale(&hash);
            return plain(StatusCode::NOT_FOUND, "chunk unreadable\n");
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
    };
    s.stats.gets_served.fetch_add(1, Ordering::Relaxed);
    let mut resp = stream(&s, body, permit);
    if compressed {
        resp.headers_mut().insert(header::CONTENT_ENCODING, header::HeaderValue::from_static(LZ4_ENCODING));
    }
    resp
}

/// The body in [`PIECE`]s (the limiter's smaller grants when it has one) through the upload
/// limiter; the upload slot is held until the last piece is sent.
fn stream(s: &Arc<ChunkServer>, body: Vec<u8>, permit: tokio::sync::OwnedSemaphorePermit) -> Response {
    let len = body.len();
    let bytes = Bytes::from(body);
    let stream = futures_util::stream::unfold((bytes, 0usize, permit, s.clone()), |(b, pos, permit, s)| async move {
        if pos >= b.len() {
            return None;
        }
        let piece = s.cfg.limiter.as_ref().map_or(PIECE, |l| l.grant());
        let end = (pos + piece).min(b.len());
        if let Some(l) = &s.cfg.limiter {
            l.acquire(end - pos).await;
        }
        s.stats.bytes_uploaded.fetch_add((end - pos) as u64, Ordering::Relaxed);
        Some((Ok::<_, std::io::Error>(b.slice(pos..end)), (b, end, permit, s)))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    resp
}

/// `POST /chunks`: a run of chunks in one answer (format: [`super::batch`]), one upload slot
/// for all of them. Each chunk is re-hashed as it is read, like a single GET; one that is not
/// held or changed on disk is answered "missing" and the rest are still sent.
async fn get_batch(State(s): State<Arc<ChunkServer>>, headers: HeaderMap, body: Bytes) -> Response {
    let hashes = match super::batch::decode_request(&body) {
        Ok(h) => h,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let Ok(permit) = s.slots.clone().try_acquire_owned() else {
        s.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "no free upload slot\n");
    };
    let accept_lz4 = accepts_lz4(&s, &headers);
    let locs: Vec<Option<ChunkLoc>> = hashes.iter().map(|h| s.source.locate(h)).collect();
    let storage = s.cfg.storage.clone();
    let read = tokio::task::spawn_blocking(move || read_batch(&*storage, &hashes, locs, accept_lz4)).await;
    let Ok((answer, stale, served)) = read else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
    };
    for h in &stale {
        s.source.stale(h);
    }
    s.stats.gets_served.fetch_add(served, Ordering::Relaxed);
    stream(&s, answer, permit)
}

/// The batch answer, the chunks found changed or unreadable, and how many were sent.
fn read_batch(
    storage: &dyn Storage,
    hashes: &[ChunkHash],
    locs: Vec<Option<ChunkLoc>>,
    accept_lz4: bool,
) -> (Vec<u8>, Vec<ChunkHash>, u64) {
    use super::batch::encode_entry;
    let mut out = Vec::new();
    let (mut stale, mut served) = (Vec::new(), 0);
    for (hash, loc) in hashes.iter().zip(locs) {
        let data = loc.and_then(|loc| match storage.read_for_upload(&loc.path, loc.offset, loc.size, hash) {
            Ok(Some(d)) => Some(d),
            Ok(None) => {
                stale.push(*hash);
                None
            }
            Err(e) => {
                tracing::warn!("reading chunk {hash} failed: {e}");
                stale.push(*hash);
                None
            }
        });
        let Some(data) = data else {
            encode_entry(&mut out, None);
            continue;
        };
        served += 1;
        match accept_lz4.then(|| compress_if_worth(&data)).flatten() {
            Some(c) => encode_entry(&mut out, Some((&c, true))),
            None => encode_entry(&mut out, Some((&data, false))),
        }
    }
    (out, stale, served)
}
