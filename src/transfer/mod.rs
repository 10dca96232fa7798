//! Chunk semantics shared by both ends: the serving route, compression and throttling.
//!
//! Every node (master and peers) serves the chunks it holds verified at `GET /chunk/<hex>`;
//! the master's planner tells peers which URL to fetch each chunk from. Plain HTTP/1.1 on hyper
//! (through axum on the serving side) keeps the data path simple and debuggable with `curl`.
//!
//! - [`server`]: the `/chunk/<hex>` route, upload slots (a semaphore; when all are busy the
//!   answer is `503` and the planner re-plans), the upload token bucket, LZ4 when asked for.
//!   The server re-hashes a chunk before sending it so a file changed behind its back is never
//!   served as the old content.
//! - the fetching side is [`crate::transport::fetch`] (it owns the client connections): stall
//!   timeout, minimum rate, LZ4 decoding with a strict size bound, and BLAKE2b verification
//!   before anything is returned.
//! - [`compress`]: LZ4 block compression (`lz4_flex`), only when a probe says it pays.
//! - [`ratelimit`]: a token bucket shared by all transfers of one direction of one node.
//!
//! Content negotiation uses `Accept-Encoding: lz4` / `Content-Encoding: lz4`; the chunk size is
//! known to both sides from the manifest, so no length framing beyond HTTP's is needed.

pub mod batch;
pub mod compress;
pub mod ratelimit;
pub mod server;

/// Token used in `Accept-Encoding` / `Content-Encoding` for LZ4 block compression.
pub const LZ4_ENCODING: &str = "lz4";

/// Route prefix of chunk downloads on every node.
pub const CHUNK_ROUTE: &str = "/chunk/";

/// Piece size for streaming and throttling: small enough for smooth rate limiting and progress,
/// large enough to keep syscall overhead negligible.
pub const PIECE: usize = 256 * 1024;
