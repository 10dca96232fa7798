//! Fetch one chunk over HTTP and verify it.
//!
//! The returned bytes always hash to the requested chunk: a source that sends anything else
//! (wrong bytes, too many or too few, invalid LZ4) gets [`FetchError::BadData`], which the peer
//! reports so the planner penalises the source. A transfer that makes no progress for the
//! stall timeout, or stays below the planner's minimum rate after a grace period, is aborted
//! with [`FetchError::TooSlow`] so it can be re-planned from a better source.
//!
//! [`Fetcher::fetch_batch`] fetches a planner batch of small chunks in one `POST /chunks`
//! (format: [`crate::transfer::batch`]): the same stall, rate and size rules apply to the
//! whole answer, and every chunk in it is verified on its own, so one bad or missing chunk
//! fails alone while the others are used.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{tls::Tls, Security};
use crate::manifest::ChunkHash;
use crate::protocol::FailKind;
use crate::transfer::compress::{decompress_exact, max_compressed_len};
use crate::transfer::ratelimit::RateLimiter;
use crate::transfer::LZ4_ENCODING;

/// The slowest disk read a source may take before it answers (bytes/s; the planner's
/// `Tuning::slow_read_bps` is the same figure).
pub const SLOW_READ_BPS: f64 = 20e6;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("source sent bad data: {0}")]
    BadData(String),
    #[error("network error: {0}")]
    Network(String),
    #[error("transfer too slow: {0}")]
    TooSlow(String),
    #[error("source busy: {0}")]
    Busy(String),
}

impl FetchError {
    pub fn kind(&self) -> FailKind {
        match self {
            FetchError::BadData(_) => FailKind::BadData,
            FetchError::Network(_) => FailKind::Network,
            FetchError::TooSlow(_) => FailKind::TooSlow,
            FetchError::Busy(_) => FailKind::Busy,
        }
    }
}

/// Shared HTTP client of one node, with its download limiter.
#[derive(Clone)]
pub struct Fetcher {
    client: Client<Connector, Full<Bytes>>,
    limiter: Option<Arc<RateLimiter>>,
    compress: bool,
    /// No byte for this long aborts the transfer.
    pub stall_timeout: Duration,
    /// Minimum-rate checks start after this long.
    pub rate_grace: Duration,
}

impl Fetcher {
    /// A client whose connections are TLS with the swarm identity when `security` says so.
    pub fn new(limiter: Option<Arc<RateLimiter>>, compress: bool, security: &Security) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let conn = Connector { http, tls: security.tls().map(|t| t.connector()) };
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(conn);
        Fetcher {
            client,
            limiter,
            compress,
            stall_timeout: Duration::from_secs(10),
            rate_grace: Duration::from_secs(4),
        }
    }

    /// Fetch chunk `hash` of `size` bytes from `base` (`http://host:port`). `progress` receives
    /// the wire bytes of this transfer, `net_total` the node's total received bytes.
    pub async fn fetch(
        &self,
        base: &str,
        hash: &ChunkHash,
        size: u64,
        min_rate_bps: u64,
        progress: &AtomicU64,
        net_total: &AtomicU64,
    ) -> Result<Vec<u8>, FetchError> {
        let size = usize::try_from(size).map_err(|_| FetchError::BadData("chunk too large".into()))?;
        let start = Instant::now();
        let resp = self.request(base, hash, self.first_byte_timeout(size as u64)).await?;
        let compressed = resp
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(LZ4_ENCODING));
        let limit = if compressed { max_compressed_len(size) } else { size };
        let body = Body { base, start, size, limit, min_rate_bps, progress, net_total };
        let buf = self.read_body(resp.into_body(), &body).await?;
        let data = if compressed {
            tokio::task::spawn_blocking(move || decompress_exact(&buf, size))
                .await
                .map_err(|e| FetchError::Network(e.to_string()))?
                .map_err(|e| FetchError::BadData(format!("{base}: {e}")))?
        } else {
            if buf.len() != size {
                return Err(FetchError::BadData(format!("{base} sent {} bytes for a {size} byte chunk", buf.len())));
            }
            buf
        };
        verify(base, *hash, data).await
    }

    /// How long the answer to a GET for a chunk of `size` bytes may take: the stall timeout
    /// plus the chunk's read at [`SLOW_READ_BPS`], since a source reads (and may compress)
    /// the whole chunk before it answers; a fixed time would abort big chunks on a busy HDD.
    pub fn first_byte_timeout(&self, size: u64) -> Duration {
        self.stall_timeout + Duration::from_secs_f64(size as f64 / SLOW_READ_BPS)
    }

    /// Send the GET and check the answer's status.
    async fn request(
        &self,
        base: &str,
        hash: &ChunkHash,
        first_byte: Duration,
    ) -> Result<hyper::Response<Incoming>, FetchError> {
        let uri = super::chunk_uri(base, hash).map_err(|e| FetchError::Network(format!("bad source URL: {e}")))?;
        let mut req = hyper::Request::get(uri);
        if self.compress {
            req = req.header(header::ACCEPT_ENCODING, LZ4_ENCODING);
        }
        let req = req.body(Full::new(Bytes::new())).map_err(|e| FetchError::Network(e.to_string()))?;
        self.send(base, req, first_byte).await
    }

    /// Send a request and check the answer's status; the answer's head may take `first_byte`.
    async fn send(
        &self,
        base: &str,
        req: hyper::Request<Full<Bytes>>,
        first_byte: Duration,
    ) -> Result<hyper::Response<Incoming>, FetchError> {
        let resp = tokio::time::timeout(first_byte, self.client.request(req))
            .await
            .map_err(|_| FetchError::TooSlow(format!("no response from {base} within {first_byte:?}")))?
            .map_err(|e| FetchError::Network(format!("{base}: {e}")))?;
        if resp.status() == hyper::StatusCode::SERVICE_UNAVAILABLE {
            // All upload slots taken (e.g. the previous upload's slot not yet released): the
            // source still holds the chunk, so this must not read as "source lost it".
            return Err(FetchError::Busy(format!("{base} has no free upload slot")));
        }
        if !resp.status().is_success() {
            return Err(FetchError::Network(format!("{base} answered {}", resp.status())));
        }
        Ok(resp)
    }

    /// Read the body up to `b.limit` bytes, throttled, with stall and minimum-rate checks.
    async fn read_body(&self, mut body: Incoming, b: &Body<'_>) -> Result<Vec<u8>, FetchError> {
        let base = b.base;
        let mut buf: Vec<u8> = Vec::with_capacity(b.limit.min(b.size));
        loop {
            let frame = match tokio::time::timeout(self.stall_timeout, body.frame()).await {
                Err(_) => return Err(FetchError::TooSlow(format!("{base} stalled for {:?}", self.stall_timeout))),
                Ok(None) => return Ok(buf),
                Ok(Some(Err(e))) => return Err(FetchError::Network(format!("{base}: {e}"))),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else { continue };
            if buf.len() + data.len() > b.limit {
                let (limit, size) = (b.limit, b.size);
                return Err(FetchError::BadData(format!(
                    "{base} sent more than {limit} bytes for a {size} byte chunk"
                )));
            }
            if let Some(l) = &self.limiter {
                l.acquire(data.len()).await;
            }
            buf.extend_from_slice(&data);
            b.progress.store(buf.len() as u64, Ordering::Relaxed);
            b.net_total.fetch_add(data.len() as u64, Ordering::Relaxed);
            let elapsed = b.start.elapsed();
            if b.min_rate_bps > 0 && elapsed > self.rate_grace {
                let rate = buf.len() as f64 / elapsed.as_secs_f64();
                if rate < b.min_rate_bps as f64 {
                    let min = b.min_rate_bps;
                    return Err(FetchError::TooSlow(format!(
                        "{base} delivered {rate:.0} B/s, below the required {min} B/s"
                    )));
                }
            }
        }
    }
}

/// Per chunk of a batch: its verified bytes, or why it cannot be used.
pub type BatchResult = Vec<Result<Vec<u8>, FetchError>>;

impl Fetcher {
    /// Fetch a batch of `chunks` (hash, size) from `base` in one request. `Err` when the answer
    /// as a whole is unusable (network, busy, too slow, broken framing); otherwise one result
    /// per chunk in order: its verified bytes, `BadData` (wrong bytes) or `Network` (the
    /// source does not hold it).
    pub async fn fetch_batch(
        &self,
        base: &str,
        chunks: &[(ChunkHash, u64)],
        min_rate_bps: u64,
        progress: &AtomicU64,
        net_total: &AtomicU64,
    ) -> Result<BatchResult, FetchError> {
        use crate::transfer::batch;
        if chunks.is_empty() || chunks.len() > batch::BATCH_MAX {
            return Err(FetchError::Network(format!("a batch of {} chunks cannot be asked for", chunks.len())));
        }
        let sizes: Vec<u64> = chunks.iter().map(|c| c.1).collect();
        let total = sizes.iter().copied().fold(0u64, u64::saturating_add);
        let size = usize::try_from(total).map_err(|_| FetchError::BadData("batch too large".into()))?;
        let start = Instant::now();
        let hashes: Vec<ChunkHash> = chunks.iter().map(|c| c.0).collect();
        let uri = super::batch_uri(base).map_err(|e| FetchError::Network(format!("bad source URL: {e}")))?;
        let mut req = hyper::Request::post(uri).header(header::CONTENT_TYPE, "application/octet-stream");
        if self.compress {
            req = req.header(header::ACCEPT_ENCODING, LZ4_ENCODING);
        }
        let body = Full::new(Bytes::from(batch::encode_request(&hashes)));
        let req = req.body(body).map_err(|e| FetchError::Network(e.to_string()))?;
        let resp = self.send(base, req, self.first_byte_timeout(total)).await?;
        let limit = batch::max_answer_len(&sizes);
        let b = Body { base, start, size, limit, min_rate_bps, progress, net_total };
        let buf = self.read_body(resp.into_body(), &b).await?;
        let owner = base.to_string();
        tokio::task::spawn_blocking(move || check_batch(&owner, &buf, &hashes, &sizes))
            .await
            .map_err(|e| FetchError::Network(e.to_string()))?
    }
}

/// Decode a batch answer and verify each chunk (blocking: it hashes).
fn check_batch(base: &str, buf: &[u8], hashes: &[ChunkHash], sizes: &[u64]) -> Result<BatchResult, FetchError> {
    use crate::transfer::batch::{decode_answer, Entry};
    let entries = decode_answer(buf, sizes).map_err(|e| FetchError::BadData(format!("{base}: {e}")))?;
    Ok(entries
        .into_iter()
        .zip(hashes)
        .map(|(e, &want)| match e {
            Ok(Entry::Data(data)) => {
                let got = ChunkHash::of(&data);
                if got == want {
                    Ok(data)
                } else {
                    Err(FetchError::BadData(format!("{base} sent content hashing to {got}, expected {want}")))
                }
            }
            Ok(Entry::Missing) => Err(FetchError::Network(format!("{base} does not hold chunk {want}"))),
            Err(e) => Err(FetchError::BadData(format!("{base}: chunk {want}: {e}"))),
        })
        .collect())
}

/// One transfer's body limits and counters.
struct Body<'a> {
    base: &'a str,
    start: Instant,
    size: usize,
    limit: usize,
    min_rate_bps: u64,
    progress: &'a AtomicU64,
    net_total: &'a AtomicU64,
}

/// The bytes, only if they hash to `want` (hashed off the async threads).
async fn verify(base: &str, want: ChunkHash, data: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    let (data, got) = tokio::task::spawn_blocking(move || {
        let got = ChunkHash::of(&data);
        (data, got)
    })
    .await
    .map_err(|e| FetchError::Network(e.to_string()))?;
    if got != want {
        return Err(FetchError::BadData(format!("{base} sent content hashing to {got}, expected {want}")));
    }
    Ok(data)
}

/// Opens the chunk client's connections: plain TCP, wrapped in TLS for a secured swarm.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<hyper::Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let tcp = self.http.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tcp.await?;
            match tls {
                None => Ok(Conn::Plain(tcp)),
                Some(c) => {
                    Ok(Conn::Tls(Box::new(TokioIo::new(c.connect(Tls::server_name(), tcp.into_inner()).await?))))
                }
            }
        })
    }
}

/// One client connection, plain or TLS.
pub enum Conn {
    Plain(TokioIo<tokio::net::TcpStream>),
    /// Boxed: a TLS session is ~1 KiB of state, a plain socket a few words.
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_byte_may_take_longer_for_a_bigger_chunk() {
        let f = Fetcher::new(None, false, &Security::Open);
        assert!(f.first_byte_timeout(1 << 20) < f.stall_timeout + Duration::from_millis(100));
        // 128 MiB at the slowest allowed read: the answer may take ~6.7 s more than a small one.
        let big = f.first_byte_timeout(128 << 20);
        assert!(big > f.stall_timeout + Duration::from_secs(6), "{big:?}");
    }
}
