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
//! peers, within seconds instead of when TCP gives up (15-30 minutes).
//!
//! The server side does the websocket upgrade itself on the request hyper hands to the router
//! (no axum extractor), so master and peer run the same tungstenite code.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
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

use super::frames::{self, FrameGuard};
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
pub const PING_AFTER: Duration = Duration::from_secs(2);
/// Silence after which the other side counts as gone (three pings unanswered, well under the
/// 10 s a hung node may keep chunks "available").
pub const DEAD_AFTER: Duration = Duration::from_secs(7);

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
    /// When the last frame of any kind arrived, and when we last pinged.
    heard: Instant,
    pinged: Option<Instant>,
    /// Frames read by [`Channel::keep_alive`] while the owner was busy, in arrival order.
    pending: VecDeque<Frame>,
}

/// What one read of the websocket gave.
type Frame = Option<Result<Message, WsError>>;

/// Frames [`Channel::keep_alive`] holds before it stops reading (the other side then sees
/// back-pressure, as it would without it).
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
        limit: Arc<AtomicUsize>,
    ) -> Self {
        Channel { ws, local, remote, limit, heard: Instant::now(), pinged: None, pending: VecDeque::new() }
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
        self.ws.send(Message::Text(text.into())).await.map_err(|e| ChannelError::Io(e.to_string()))
    }

    /// The other side's handshake text frame, within `timeout`.
    pub async fn recv_handshake(&mut self, timeout: Duration) -> Result<String, ChannelError> {
        loop {
            let frame =
                tokio::time::timeout(timeout, self.ws.next()).await.map_err(|_| ChannelError::Timeout(timeout))?;
            match frame {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Binary(_))) => return Err(ChannelError::Unexpected("binary")),
                Some(Ok(_)) | None => return Err(ChannelError::Closed),
                Some(Err(e)) => return Err(ws_error(e)),
            }
        }
    }

    /// Send one message as a binary message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ChannelError> {
        self.write_parts(&protocol::encode(msg), &[]).await
    }

    /// Send a master message whose manifest bytes are shared (see
    /// [`protocol::encode_shared`]): written from the one copy, a fragment at a time.
    pub async fn send_shared(&mut self, msg: &protocol::MasterMsg) -> Result<(), ChannelError> {
        let (head, tail) = protocol::encode_shared(msg);
        self.write_parts(&head, tail.as_deref().map(Vec::as_slice).unwrap_or_default()).await
    }

    /// `head ++ tail` as one binary message, in fragments of at most [`FRAGMENT`] bytes.
    async fn write_parts(&mut self, head: &[u8], tail: &[u8]) -> Result<(), ChannelError> {
        let io = |e: WsError| ChannelError::Io(e.to_string());
        let total = head.len() + tail.len();
        if total <= FRAGMENT {
            return self.ws.send(Message::Binary([head, tail].concat().into())).await.map_err(io);
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
            self.ws.feed(Message::Frame(WsFrame::message(data, opcode, at == total))).await.map_err(io)?;
        }
        self.ws.flush().await.map_err(io)
    }

    /// The next message (pings are answered by the library and skipped here), within its
    /// kind's frame limit and with its text cut to the documented lengths; pings the other
    /// side after [`PING_AFTER`] of silence and gives up after [`DEAD_AFTER`]. Cancel-safe, so
    /// it can sit in a `select!`: the silence is measured from the last frame, not the call.
    pub async fn recv<T: DeserializeOwned + Bounded>(&mut self) -> Result<T, ChannelError> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                match Self::message(frame)? {
                    Some(msg) => return Ok(msg),
                    None => continue,
                }
            }
            let ping_due = self.pinged.map_or(self.heard, |p| p.max(self.heard)) + PING_AFTER;
            let dead_at = self.heard + DEAD_AFTER;
            let frame = match tokio::time::timeout_at(ping_due.min(dead_at), self.ws.next()).await {
                Ok(f) => {
                    self.heard = Instant::now();
                    f
                }
                Err(_) if Instant::now() >= dead_at => return Err(ChannelError::Timeout(DEAD_AFTER)),
                Err(_) => {
                    self.pinged = Some(Instant::now());
                    self.ws
                        .send(Message::Ping(Vec::new().into()))
                        .await
                        .map_err(|e| ChannelError::Io(e.to_string()))?;
                    continue;
                }
            };
            if let Some(msg) = Self::message(frame)? {
                return Ok(msg);
            }
        }
    }

    /// A read frame as a message (`None` for control frames), within its kind's frame limit
    /// and with its text cut to the documented lengths.
    fn message<T: DeserializeOwned + Bounded>(frame: Frame) -> Result<Option<T>, ChannelError> {
        match frame {
            Some(Ok(Message::Binary(b))) => {
                let mut msg = protocol::decode::<T>(&b).map_err(|e| ChannelError::Malformed(e.to_string()))?;
                if let Some(limit) = msg.frame_limit().filter(|l| b.len() > *l) {
                    let what = format!("{} message", msg.kind());
                    return Err(ChannelError::Malformed(format!(
                        "a {what} of {} bytes exceeds its {limit} byte limit",
                        b.len()
                    )));
                }
                msg.truncate_text();
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
            let stop = self.pending.len() >= MAX_PENDING || self.pending.back().is_some_and(is_terminal);
            if stop {
                return work.await;
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

    /// Close politely (errors are irrelevant: the connection is going away either way).
    pub async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Open a channel to the master at `hostport` (see [`super::normalize_addr`]), over TLS with the
/// swarm identity when `security` says so.
pub async fn connect(hostport: &str, timeout: Duration, security: &Security) -> Result<Channel, ChannelError> {
    let open = async {
        let tcp = tokio::net::TcpStream::connect(hostport).await.map_err(|e| ChannelError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (local, remote) = (tcp.local_addr().ok(), tcp.peer_addr().ok());
        let limit = Arc::new(AtomicUsize::new(MAX_FRAME));
        let io: Box<dyn Io> = match security.tls() {
            None => Box::new(FrameGuard::client(tcp, HANDSHAKE_MAX, limit.clone())),
            Some(tls) => {
                let tls = tls.connector().connect(Tls::server_name(), tcp).await.map_err(tls_refusal)?;
                Box::new(FrameGuard::client(tls, HANDSHAKE_MAX, limit.clone()))
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
        Ok(Channel::new(ws, local, remote, limit))
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
                let limit = Arc::new(AtomicUsize::new(MIN_FRAME_LIMIT));
                let io: Box<dyn Io> = Box::new(FrameGuard::server(TokioIo::new(up), HANDSHAKE_MAX, limit.clone()));
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
                handle(Channel::new(ws, None, remote, limit)).await;
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
    let end = |io, role| async move {
        let limit = Arc::new(AtomicUsize::new(MAX_FRAME));
        let io: Box<dyn Io> = Box::new(FrameGuard::server(io, MAX_FRAME, limit.clone()));
        let ws = WebSocketStream::from_raw_socket(io, role, Some(ws_config())).await;
        Channel::new(ws, None, None, limit)
    };
    (end(a, Role::Server).await, end(b, Role::Client).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ChunkHash;
    use crate::protocol::{MasterMsg, PeerMsg};

    /// A real server (the project's serve loop) and a real client exchange a handshake and
    /// messages both ways, then a malformed frame is reported as such.
    #[tokio::test]
    async fn handshake_and_messages_cross_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route(
            super::super::JOIN_ROUTE,
            axum::routing::get(|req: Request| async move {
                upgrade(req, |mut ch| async move {
                    let hello = ch.recv_handshake(Duration::from_secs(5)).await.expect("hello");
                    ch.send_handshake(&format!("welcome {hello}")).await.expect("welcome");
                    let m: PeerMsg = ch.recv().await.expect("peer message");
                    assert!(matches!(m, PeerMsg::Finished { id: 7 }), "{m:?}");
                    assert!(ch.remote_addr().is_some());
                    ch.send(&MasterMsg::Cancel { id: 9 }).await.expect("send");
                    ch.ws.send(Message::Binary(vec![0xff; 3].into())).await.expect("raw send");
                })
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(super::super::serve(listener, app, Duration::from_secs(5), "test", async move {
            let _ = stopped.await;
        }));
        let mut ch = connect(&addr.to_string(), Duration::from_secs(5), &Security::Open).await.expect("connect");
        assert_eq!(ch.local_addr().map(|a| a.ip()), Some("127.0.0.1".parse().unwrap()));
        ch.send_handshake(&"hi").await.expect("hello");
        assert_eq!(ch.recv_handshake(Duration::from_secs(5)).await.expect("welcome"), "\"welcome \\\"hi\\\"\"");
        ch.send(&PeerMsg::Finished { id: 7 }).await.expect("send");
        assert!(matches!(ch.recv::<MasterMsg>().await.expect("cancel"), MasterMsg::Cancel { id: 9 }));
        assert!(matches!(ch.recv::<MasterMsg>().await, Err(ChannelError::Malformed(_))));
        stop.send(()).expect("server running");
        server.await.expect("server stops");
    }

    /// A message many fragments long arrives whole, from the server's shared encoding and from
    /// the client's plain one (its fragments masked), and the channel carries on after it.
    #[tokio::test]
    async fn a_large_message_crosses_in_fragments() {
        let (mut server, mut client) = pair(1 << 20).await;
        let bytes = Arc::new((0..5 * FRAGMENT + 17).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        let big = MasterMsg::Manifest { id: 3, bytes: bytes.clone() };
        let chunks: Vec<_> = (0..(3 * FRAGMENT / 32) as u64).map(|i| ChunkHash::of(&i.to_le_bytes())).collect();
        let have = PeerMsg::HaveAll { manifest_id: 3, chunks };
        let (sent, got) = tokio::join!(
            async {
                server.send_shared(&big).await.expect("send manifest");
                server.send_shared(&MasterMsg::Cancel { id: 1 }).await.expect("send cancel");
                server.recv::<PeerMsg>().await.expect("have-set")
            },
            async {
                let m = client.recv::<MasterMsg>().await.expect("manifest");
                let c = client.recv::<MasterMsg>().await.expect("cancel");
                client.send(&have).await.expect("send have-set");
                (m, c)
            }
        );
        assert_eq!(got, (big, MasterMsg::Cancel { id: 1 }));
        assert_eq!(sent, have);
    }

    /// The other side stops reading (a frozen process keeps its socket open): `recv` pings,
    /// hears nothing and gives up after `DEAD_AFTER`, not when TCP would.
    #[tokio::test]
    async fn a_side_that_stops_answering_is_given_up() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (frozen_tx, frozen_rx) = tokio::sync::oneshot::channel::<Channel>();
        let frozen_tx = std::sync::Mutex::new(Some(frozen_tx));
        let frozen_tx = std::sync::Arc::new(frozen_tx);
        let app = axum::Router::new().route(
            super::super::JOIN_ROUTE,
            axum::routing::get(move |req: Request| {
                let frozen_tx = frozen_tx.clone();
                async move {
                    upgrade(req, move |ch| async move {
                        // Park the channel unread, like a process under SIGSTOP.
                        if let Some(tx) = frozen_tx.lock().ok().and_then(|mut g| g.take()) {
                            let _ = tx.send(ch);
                        }
                    })
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(super::super::serve(listener, app, Duration::from_secs(5), "test", async move {
            let _ = stopped.await;
        }));
        let mut ch = connect(&addr.to_string(), Duration::from_secs(5), &Security::Open).await.expect("connect");
        let _parked = frozen_rx.await.expect("server side parked");
        let t0 = std::time::Instant::now();
        let r = tokio::time::timeout(DEAD_AFTER * 3, ch.recv::<MasterMsg>()).await.expect("gives up by itself");
        assert!(matches!(r, Err(ChannelError::Timeout(_))), "{:?}", r.err());
        eprintln!("silent side given up after {:?}", t0.elapsed());
        stop.send(()).expect("server running");
        server.await.expect("server stops");
    }

    #[tokio::test]
    async fn a_plain_get_is_not_upgraded() {
        let req = Request::builder().uri("/join").body(Body::empty()).expect("request");
        let resp = upgrade(req, |_| async {});
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
