//! The control channel between a master and each of its peers, one type for both ends.
//!
//! A [`Channel`] is a websocket over any byte stream (today plain TCP; TLS later wraps the
//! stream in [`connect`] and [`upgrade`] and nothing else). Framing is the same both ways: the
//! handshake is one JSON text frame each way (so a version mismatch can always be read and
//! explained), after it every message is one binary frame in the [`crate::protocol`] encoding.
//! Incoming messages are bounded from their frame headers before anything is buffered
//! ([`super::frames`]: [`HANDSHAKE_MAX`] for the handshake, then [`Channel::set_frame_limit`],
//! at most [`MAX_FRAME`]), then per kind of message ([`Bounded`]).
//!
//! Liveness: a side that has heard nothing for [`PING_AFTER`] sends a websocket ping (the
//! other side's library answers it while reading), and [`Channel::recv`] fails with
//! [`ChannelError::Timeout`] once nothing at all arrived for [`DEAD_AFTER`]. Both ends run the
//! same code, so a frozen peer leaves the master's swarm, and a frozen master is left by its
//! peers, within seconds instead of when TCP gives up (15-30 minutes). "Heard" counts bytes,
//! not messages ([`frames::Liveness`]): a 40 MB manifest arriving over a slow link for minutes
//! is a live connection, although no whole message arrives meanwhile, and a pong is a 2-byte
//! frame, so a peer busy uploading chunks on other connections answers in time.
//!
//! Neither end stops reading while it writes: [`Channel::send`] keeps taking in frames (kept
//! for the next [`Channel::recv`], pings answered) while its message drains, so two ends that
//! send big messages at once (a manifest one way, a have-set the other) cannot block each
//! other. A send fails once no byte moved either way for [`DEAD_AFTER`]. Text a message carries
//! is cut before it leaves ([`Bounded::truncate_text`]), so a long error cannot push a message
//! over its kind's limit at the receiver.
//!
//! The server side does the websocket upgrade itself on the request hyper hands to the router
//! (no axum extractor), so master and peer run the same tungstenite code.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::frames::{self, FrameGuard, Liveness};
use super::tls::Tls;
use super::Security;
use crate::protocol::{self, Bounded, HANDSHAKE_MAX, MAX_FRAME, MIN_FRAME_LIMIT};

/// Any stream a channel can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("connection closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// A message over its limit, refused from its frame header (nothing of it was buffered).
    #[error("{0}")]
    TooLarge(frames::TooLarge),
    /// The other side is not (or does not accept us as) a member of this swarm: retrying with
    /// the same settings cannot help.
    #[error("{0}")]
    Refused(String),
}

/// Silence after which a side pings the other.
pub const PING_AFTER: Duration = Duration::from_secs(1);
/// Silence after which the other side counts as gone: three pings unanswered, well under the
/// 10 s a hung node may keep chunks "available". A healthy peer is never that quiet: it
/// reports every 250 ms, and answers pings while it re-checks its folder. Silence is counted
/// in bytes, so a slow link still carrying a big frame is never silent.
pub const DEAD_AFTER: Duration = Duration::from_millis(3500);

/// Largest fragment of one outgoing message. The websocket library copies each frame it sends
/// into a write buffer that keeps its capacity afterwards: one unfragmented 100 MB manifest
/// would leave 100 MB resident per connection for the connection's life.
pub const FRAGMENT: usize = 64 << 10;

/// One end of a control connection.
pub struct Channel {
    ws: WebSocketStream<Box<dyn Io>>,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    /// The limit the [`FrameGuard`] under `ws` applies to messages after the handshake.
    limit: Arc<AtomicUsize>,
    /// When bytes last moved through the [`FrameGuard`] under `ws`.
    live: Arc<Liveness>,
    /// When the last frame of any kind arrived (or the handshake ended), and when we last
    /// pinged; bytes arriving since count too ([`Channel::heard`]).
    heard: Instant,
    pinged: Option<Instant>,
    /// When we last told the other side we are reading its unfinished frame ([`Channel::recv`]).
    acked: Instant,
    /// Frames read by [`Channel::keep_alive`] while the owner was busy, in arrival order.
    pending: VecDeque<Frame>,
}

/// What one read of the websocket gave.
type Frame = Option<Result<Message, WsError>>;

/// Frames [`Channel::keep_alive`] holds before it stops reading (the other side then sees
/// back-pressure, as it would without it, and our pongs say we are alive).
const MAX_PENDING: usize = 4096;

fn is_terminal(f: &Frame) -> bool {
    matches!(f, None | Some(Err(_)) | Some(Ok(Message::Close(_))))
}

/// tungstenite's own limits, a backstop behind the [`FrameGuard`]'s.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_FRAME)).max_frame_size(Some(MAX_FRAME))
}

/// A websocket error in the channel's terms (an oversized message says so).
fn ws_error(e: WsError) -> ChannelError {
    match e {
        WsError::Io(io) => match frames::too_large(&io) {
            Some(t) => ChannelError::TooLarge(t),
            None => ChannelError::Io(io.to_string()),
        },
        WsError::Capacity(c) => ChannelError::Malformed(c.to_string()),
        e => ChannelError::Io(e.to_string()),
    }
}

impl Channel {
    fn new(
        ws: WebSocketStream<Box<dyn Io>>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        guard: (Arc<AtomicUsize>, Arc<Liveness>),
    ) -> Self {
        let (limit, live) = guard;
        let (heard, pending) = (Instant::now(), VecDeque::new());
        Channel { ws, local, remote, limit, live, heard, pinged: None, acked: heard, pending }
    }

    /// When the other side was last heard from: a whole frame, or any byte of one.
    fn heard(&self) -> Instant {
        self.heard.max(self.live.last_read())
    }

    /// The local address of the underlying connection (what the peer tells others to use).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Bound every message received after the handshake to `bytes` (clamped to [`MAX_FRAME`]);
    /// it applies from the next frame header on.
    pub fn set_frame_limit(&self, bytes: usize) {
        self.limit.store(bytes.min(MAX_FRAME), Ordering::Relaxed);
    }

    /// Send a handshake value as one JSON text frame.
    pub async fn send_handshake<T: Serialize>(&mut self, v: &T) -> Result<(), ChannelError> {
        let text = serde_json::to_string(v).map_err(|e| ChannelError::Io(e.to_string()))?;
        self.ws.send(Message::Text(text.into())).await.map_err(|e| ChannelError::Io(e.to_string()))?;
        // The handshake may take a while (the master checks an advertised name): silence is
        // measured from its end.
        self.heard = Instant::now();
        Ok(())
    }

    /// The other side's handshake text frame, within `timeout`.
    pub async fn recv_handshake(&mut self, timeout: Duration) -> Result<String, ChannelError> {
        loop {
            let frame =
                tokio::time::timeout(timeout, self.ws.next()).await.map_err(|_| ChannelError::Timeout(timeout))?;
            match frame {
                Some(Ok(Message::Text(t))) => {
                    self.heard = Instant::now();
                    return Ok(t.as_str().to_owned());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Binary(_))) => return Err(ChannelError::Unexpected("binary")),
                Some(Ok(_)) | None => return Err(ChannelError::Closed),
                Some(Err(e)) => return Err(ws_error(e)),
            }
        }
    }

    /// Send one message, its text cut to the documented lengths first, reading what arrives
    /// meanwhile (see the module doc).
    pub async fn send<T: Serialize + Bounded + Clone>(&mut self, msg: &T) -> Result<(), ChannelError> {
        self.write_parts(&outgoing(msg), &[]).await
    }

    /// Send a master message whose manifest bytes are shared (see
    /// [`protocol::encode_shared`]): written from the one copy, a fragment at a time.
    pub async fn send_shared(&mut self, msg: &protocol::MasterMsg) -> Result<(), ChannelError> {
        match protocol::encode_shared(msg) {
            (head, Some(tail)) => self.write_parts(&head, &tail).await,
            (_, None) => self.send(msg).await,
        }
    }

    /// `head ++ tail` as one binary message, in fragments of at most [`FRAGMENT`] bytes: the
    /// websocket library keeps its write buffer's capacity, so a connection holds at most one
    /// fragment, never a whole manifest.
    async fn write_parts(&mut self, head: &[u8], tail: &[u8]) -> Result<(), ChannelError> {
        let total = head.len() + tail.len();
        if total <= FRAGMENT {
            return self.send_frame(Message::Binary([head, tail].concat().into())).await;
        }
        let piece = |at: usize| {
            let end = (at + FRAGMENT).min(total);
            let mut out = Vec::with_capacity(end - at);
            if at < head.len() {
                out.extend_from_slice(&head[at..end.min(head.len())]);
            }
            // The part of `tail` in [at, end), empty while still inside `head`.
            let (from, to) = (at.max(head.len()) - head.len(), end.max(head.len()) - head.len());
            out.extend_from_slice(&tail[from..to]);
            out
        };
        let mut at = 0;
        while at < total {
            let opcode = if at == 0 { OpCode::Data(Data::Binary) } else { OpCode::Data(Data::Continue) };
            let data = piece(at);
            at += data.len();
            self.send_frame(Message::Frame(WsFrame::message(data, opcode, at == total))).await?;
        }
        Ok(())
    }

    /// Send `frame` while taking in incoming frames into `pending`; fails once no byte moved
    /// either way for [`DEAD_AFTER`].
    async fn send_frame(&mut self, frame: Message) -> Result<(), ChannelError> {
        self.drive(|ws, cx| Pin::new(ws).poll_ready(cx)).await?;
        Pin::new(&mut self.ws).start_send(frame).map_err(|e| ChannelError::Io(e.to_string()))?;
        self.drive(|ws, cx| Pin::new(ws).poll_flush(cx)).await
    }

    /// Poll `op` on the socket to completion, reading frames into `pending` whenever it waits.
    async fn drive<F>(&mut self, mut op: F) -> Result<(), ChannelError>
    where
        F: FnMut(&mut WebSocketStream<Box<dyn Io>>, &mut std::task::Context<'_>) -> Poll<Result<(), WsError>>,
    {
        loop {
            let moved = self.live.last_moved().max(self.heard);
            let step = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = op(&mut self.ws, cx) {
                    return Poll::Ready(Some(r));
                }
                let room = self.pending.len() < MAX_PENDING && !self.pending.back().is_some_and(is_terminal);
                if room {
                    if let Poll::Ready(frame) = self.ws.poll_next_unpin(cx) {
                        self.pending.push_back(frame);
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            });
            match tokio::time::timeout_at(moved + DEAD_AFTER, step).await {
                Ok(Some(r)) => return r.map_err(|e| ChannelError::Io(e.to_string())),
                Ok(None) => self.heard = Instant::now(),
                Err(_) if self.live.last_moved() <= moved => return Err(ChannelError::Timeout(DEAD_AFTER)),
                Err(_) => {}
            }
        }
    }

    /// The next message (pings are answered by the library and skipped here), within its
    /// kind's frame limit and with its text cut to the documented lengths; pings the other
    /// side after [`PING_AFTER`] of silence and gives up after [`DEAD_AFTER`]. Cancel-safe, so
    /// it can sit in a `select!`: the silence is measured from the last frame, not the call.
    pub async fn recv<T: DeserializeOwned + Serialize + Bounded>(&mut self) -> Result<T, ChannelError> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                match Self::message(frame)? {
                    Some(msg) => return Ok(msg),
                    None => continue,
                }
            }
            let frame = match tokio::time::timeout_at(self.next_timer(), self.ws.next()).await {
                Ok(f) => {
                    self.heard = Instant::now();
                    f
                }
                Err(_) => {
                    self.on_timer().await?;
                    continue;
                }
            };
            if let Some(msg) = Self::message(frame)? {
                return Ok(msg);
            }
        }
    }

    /// Bytes arrived since the last whole frame: a frame is still coming in.
    fn partial(&self) -> bool {
        self.live.last_read() > self.heard
    }

    /// When [`Channel::recv`] must next act without a frame: ping, acknowledge, or give up.
    fn next_timer(&self) -> Instant {
        let heard = self.heard();
        let ping_due = self.pinged.map_or(heard, |p| p.max(heard)) + PING_AFTER;
        let mut due = ping_due.min(heard + DEAD_AFTER);
        if self.partial() {
            due = due.min(self.acked.max(self.heard) + PING_AFTER);
        }
        due
    }

    /// The timer of [`Channel::recv`] fired. While a big frame is still arriving we send an
    /// unsolicited pong every [`PING_AFTER`]: the sender's own message may sit in buffers
    /// ahead of any pong to its pings for longer than [`DEAD_AFTER`] on a slow link, and it
    /// must not take a reader for gone. Otherwise: ping after silence, give up after more.
    async fn on_timer(&mut self) -> Result<(), ChannelError> {
        let now = Instant::now();
        if now >= self.heard() + DEAD_AFTER {
            return Err(ChannelError::Timeout(DEAD_AFTER));
        }
        if self.partial() && now >= self.acked.max(self.heard) + PING_AFTER {
            self.acked = now;
            return self.send_frame(Message::Pong(Vec::new().into())).await;
        }
        if now >= self.heard() + PING_AFTER && now >= self.pinged.map_or(now, |p| p + PING_AFTER) {
            self.pinged = Some(now);
            return self.send_frame(Message::Ping(Vec::new().into())).await;
        }
        Ok(())
    }

    /// A read frame as a message (`None` for control frames), within its kind's frame limit
    /// and with its text cut to the documented lengths.
    fn message<T: DeserializeOwned + Serialize + Bounded>(frame: Frame) -> Result<Option<T>, ChannelError> {
        match frame {
            Some(Ok(Message::Binary(b))) => {
                let mut msg = protocol::decode::<T>(&b).map_err(|e| ChannelError::Malformed(e.to_string()))?;
                msg.truncate_text();
                // Over its kind's limit only by its text (an older sender that does not cut
                // it): the cut message is taken; otherwise the sender is not speaking the protocol.
                if let Some(limit) = msg.frame_limit().filter(|l| b.len() > *l) {
                    let cut = protocol::encode(&msg).len();
                    if cut > limit {
                        let what = format!("{} message", msg.kind());
                        return Err(ChannelError::Malformed(format!(
                            "a {what} of {cut} bytes (text cut) exceeds its {limit} byte limit"
                        )));
                    }
                }
                Ok(Some(msg))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(None),
            Some(Ok(Message::Text(_))) => Err(ChannelError::Unexpected("text")),
            Some(Ok(Message::Close(_))) | None => Err(ChannelError::Closed),
            Some(Err(e)) => Err(ws_error(e)),
        }
    }

    /// Run `work` (a long re-check of the folder, say) while still reading the channel, so
    /// the other side's pings are answered and this side is not taken for hung. What arrives
    /// meanwhile is kept for the next [`Channel::recv`].
    pub async fn keep_alive<F: Future>(&mut self, work: F) -> F::Output {
        tokio::pin!(work);
        loop {
            if self.pending.back().is_some_and(is_terminal) {
                return work.await;
            }
            if self.pending.len() >= MAX_PENDING {
                // Full: stop reading, so the other side feels back-pressure, but keep telling
                // it we are here, or its send would take the stall for a dead peer.
                tokio::select! {
                    out = &mut work => return out,
                    _ = self.pong_after_quiet() => {}
                }
                continue;
            }
            tokio::select! {
                out = &mut work => return out,
                frame = self.ws.next() => {
                    self.heard = Instant::now();
                    self.pending.push_back(frame);
                }
            }
        }
    }

    /// Wait [`PING_AFTER`], then send an unsolicited pong (a sign of life that needs no
    /// answer); a failure shows at the next [`Channel::recv`].
    async fn pong_after_quiet(&mut self) {
        tokio::time::sleep(PING_AFTER).await;
        let _ = self.send_frame(Message::Pong(Vec::new().into())).await;
    }

    /// Close politely (errors are irrelevant: the connection is going away either way).
    pub async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// `msg` encoded, its text cut first: the receiver would cut it anyway, and a long text (an
/// error listing hundreds of paths) must not push the message over its kind's limit there.
fn outgoing<T: Serialize + Bounded + Clone>(msg: &T) -> Vec<u8> {
    // Only messages with a kind limit carry text; have-sets and manifests are not copied.
    if msg.frame_limit().is_none() {
        return protocol::encode(msg);
    }
    let mut cut = msg.clone();
    cut.truncate_text();
    protocol::encode(&cut)
}

/// Open a channel to the master at `hostport` (see [`super::normalize_addr`]), over TLS with the
/// swarm identity when `security` says so.
pub async fn connect(hostport: &str, timeout: Duration, security: &Security) -> Result<Channel, ChannelError> {
    let open = async {
        let tcp = tokio::net::TcpStream::connect(hostport).await.map_err(|e| ChannelError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (local, remote) = (tcp.local_addr().ok(), tcp.peer_addr().ok());
        let (limit, live) = (Arc::new(AtomicUsize::new(MAX_FRAME)), Liveness::new());
        let io: Box<dyn Io> = match security.tls() {
            None => Box::new(FrameGuard::client(tcp, HANDSHAKE_MAX, limit.clone(), live.clone())),
            Some(tls) => {
                let tls = tls.connector().connect(Tls::server_name(), tcp).await.map_err(tls_refusal)?;
                Box::new(FrameGuard::client(tls, HANDSHAKE_MAX, limit.clone(), live.clone()))
            }
        };
        let (ws, _) = tokio_tungstenite::client_async_with_config(super::join_url(hostport), io, Some(ws_config()))
            .await
            .map_err(|e| match e {
                WsError::Http(resp) if resp.status() == StatusCode::FORBIDDEN => ChannelError::Refused(
                    "the master's swarm is secured: start this peer with the master's secret (--secret, \
                     --secret-file or LANSCATTER_SECRET; the master prints it)"
                        .into(),
                ),
                WsError::Http(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => ChannelError::Io(
                    "the master serves as many peers as it may (--max-peers on the master); retrying".into(),
                ),
                e => ChannelError::Io(e.to_string()),
            })?;
        Ok(Channel::new(ws, local, remote, (limit, live)))
    };
    tokio::time::timeout(timeout, open).await.map_err(|_| ChannelError::Timeout(timeout))?
}

/// A failed TLS handshake with the master, in words that say what to do.
fn tls_refusal(e: std::io::Error) -> ChannelError {
    let why = e.to_string();
    if why.contains("InvalidCertificate") || why.contains("certificate") || why.contains("DecryptError") {
        ChannelError::Refused(format!(
            "the master does not hold this swarm's secret, or refused ours ({why}): check --secret on both sides"
        ))
    } else if why.contains("corrupt message") || why.contains("InvalidContentType") || why.contains("InvalidMessage") {
        ChannelError::Refused(
            "the master does not speak TLS: it runs an open swarm (--open); start this peer with --open, or give the \
             master a secret"
                .into(),
        )
    } else {
        ChannelError::Io(format!("TLS handshake with the master failed: {why}"))
    }
}

/// Answer a websocket upgrade request and run `handle` on the channel once it is open. Anything
/// that is not a websocket request gets `400`.
pub fn upgrade<F, Fut>(mut req: Request, handle: F) -> Response
where
    F: FnOnce(Channel) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let headers = req.headers();
    let is_ws =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
            && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_ws).map(|k| derive_accept_key(k.as_bytes()))
    else {
        return (StatusCode::BAD_REQUEST, "expected a websocket upgrade (lanscatter peer)\n").into_response();
    };
    let remote = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let (limit, live) = (Arc::new(AtomicUsize::new(MIN_FRAME_LIMIT)), Liveness::new());
                let guard = FrameGuard::server(TokioIo::new(up), HANDSHAKE_MAX, limit.clone(), live.clone());
                let io: Box<dyn Io> = Box::new(guard);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
                handle(Channel::new(ws, None, remote, (limit, live))).await;
            }
            Err(e) => tracing::debug!("websocket upgrade from {remote:?} failed: {e}"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Two ends of a channel over an in-memory pipe holding `buffer` bytes each way, past the
/// handshake (tests of what runs on an open channel).
#[cfg(test)]
pub(crate) async fn pair(buffer: usize) -> (Channel, Channel) {
    let (a, b) = tokio::io::duplex(buffer);
    pair_over(a, b).await
}

/// Two ends of a channel over the streams `a` and `b` (connected to each other), past the
/// handshake.
#[cfg(test)]
pub(crate) async fn pair_over(a: impl Io, b: impl Io) -> (Channel, Channel) {
    async fn end(io: impl Io, role: Role) -> Channel {
        let (limit, live) = (Arc::new(AtomicUsize::new(MAX_FRAME)), Liveness::new());
        let io: Box<dyn Io> = Box::new(FrameGuard::server(io, MAX_FRAME, limit.clone(), live.clone()));
        let ws = WebSocketStream::from_raw_socket(io, role, Some(ws_config())).await;
        Channel::new(ws, None, None, (limit, live))
    }
    (end(a, Role::Server).await, end(b, Role::Client).await)
}

#[cfg(test)]
mod tests;
