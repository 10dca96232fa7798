//! The one HTTP serve loop behind the master, the peer and the tray app's settings page.
//!
//! `axum::serve` sets no timeout for reading request headers, so a client that opens
//! connections and never finishes its headers (slowloris) holds a socket and a task each for as
//! long as it likes. This loop is the same thing on hyper-util with a header-read timeout, plus
//! what the routers rely on: websocket upgrades, the client's address as axum's `ConnectInfo`,
//! and a graceful shutdown that lets running requests finish. HTTP/1.1 only: every client of
//! ours (peers, the tray, browsers on plain `http://`) speaks it, and leaving HTTP/2 out keeps
//! `h2` and its dependencies out of the binary (README "Dependency notes").
//!
//! Bounded ([`ServeLimits`]): the header timeout runs from the moment a connection is accepted
//! (hyper arms it before the first byte), so a connection that sends nothing is closed like
//! one that sends half a header; at most `max_connections` connections are served at once,
//! and at most `max_pre_auth` of them may still be waiting for their first request head (or
//! TLS handshake), at most `max_pre_auth_per_ip` of those from one address, so one host
//! holding idle sockets cannot lock the others out. A connection over a cap is closed at
//! once, unread, instead of queueing: 10,000 idle sockets cost the node a few hundred pre-auth
//! tasks, not 10,000.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::pace::{Paced, Pacer};
use super::Security;

/// How long a client may take to send its request headers (each request, keep-alive included).
/// A LAN client sends them in one packet; ten seconds leaves room for a loaded machine.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `--max-peers` default: room for 1000 peers and as many again reconnecting.
pub const DEFAULT_MAX_PEERS: usize = 2000;

/// The bounds of one serve loop (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time from accept (and from each response on keep-alive) to a complete request head.
    pub header_timeout: Duration,
    /// HTTP connections served at once (an upgraded websocket leaves this count; the master
    /// counts those against `--max-peers` itself).
    pub max_connections: usize,
    /// Connections still waiting for their first request head.
    pub max_pre_auth: usize,
    /// Of those, from one IP address.
    pub max_pre_auth_per_ip: usize,
}

impl ServeLimits {
    /// The limits of a node serving `max_peers` peers: each peer keeps a control connection
    /// and a few chunk connections, and a whole swarm may (re)connect at once.
    pub fn for_peers(max_peers: usize) -> Self {
        let max_pre_auth = max_peers / 2 + 64;
        ServeLimits {
            header_timeout: HEADER_READ_TIMEOUT,
            max_connections: max_peers.saturating_mul(2).saturating_add(256),
            max_pre_auth,
            // An honest host opens its control channel and a few chunk connections at once
            // (more on a proxy, or many test peers on loopback): far under an eighth.
            max_pre_auth_per_ip: (max_pre_auth / 8).max(32),
        }
    }
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits::for_peers(DEFAULT_MAX_PEERS)
    }
}

/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Serve `router` on `listener` until `shutdown` completes, then wait (briefly) for open requests.
/// `what` names the server in log lines ("master", "peer chunk server").
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
) {
    let limits = ServeLimits { header_timeout, ..ServeLimits::default() };
    serve_secured(listener, router, limits, what, Security::Open, shutdown).await
}

/// [`serve`] for a node of a swarm with `security`: in a secured swarm a connection that starts
/// with a TLS handshake must present the swarm identity and may use every route; any other
/// connection gets only the web routes, and only with the web token ([`gate`]).
pub async fn serve_secured(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    what: &'static str,
    security: Security,
    shutdown: impl Future<Output = ()>,
) {
    let header_timeout = limits.header_timeout;
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let caps = Caps::new(&limits);
    // Caps each upload flow at its share of the link once flows lose packets (pace.rs).
    let pacer = Pacer::default();
    let _pacing = AbortOnDrop(tokio::spawn(pacer.clone().run()));
    // `true` once the server stops: each connection then finishes its request and closes.
    let (stopping, stop) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: say so and retry shortly instead of
                    // spinning or taking the whole node down.
                    tracing::warn!("{what}: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(permits) = caps.admit(what, addr.ip()) else { continue };
        // Chunk answers end with a small final write; Nagle would hold it back.
        let _ = stream.set_nodelay(true);
        let conn = Conn { router: router.clone(), builder: builder.clone(), addr, what, header_timeout, permits };
        conns.spawn(conn.run(stream, pacer.clone(), security.clone(), stop.clone()));
    }
    drop(listener);
    let _ = stopping.send(true);
    // Streams such as the status page's event stream never end by themselves: give running
    // requests a moment, then close what is left (the GUI's runtime outlives an engine).
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::debug!("{what}: {} connection(s) still open after {SHUTDOWN_GRACE:?}; closing them", conns.len());
    }
    conns.shutdown().await;
}

/// A task that ends with its owner (the pacer's ticker ends with its serve loop, however that
/// loop's future ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Who is on the other end of a connection, as far as the transport could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An open swarm: everyone is welcome.
    Open,
    /// Presented the swarm identity over TLS.
    Member,
    /// Plain HTTP to a secured node: the web routes, with the token.
    Web,
}

/// The connection caps of a serve loop, as semaphores.
struct Caps {
    conns: Arc<Semaphore>,
    pre_auth: Arc<Semaphore>,
    /// Pre-auth connections per address (entries removed at zero).
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    limits: ServeLimits,
    /// When a refusal was last logged (a flood must not become a flood of log lines).
    warned: Mutex<Option<Instant>>,
}

/// What an admitted connection holds: its place among all connections for its lifetime, and
/// its pre-auth place until its first request head arrives.
struct Permits {
    conn: OwnedSemaphorePermit,
    pre_auth: Arc<Mutex<Option<PreAuth>>>,
}

/// A pre-auth place: one of all, and one of its address's (given back when dropped).
struct PreAuth {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Caps {
    fn new(limits: &ServeLimits) -> Self {
        Caps {
            conns: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            pre_auth: Arc::new(Semaphore::new(limits.max_pre_auth.max(1))),
            per_ip: Arc::default(),
            limits: *limits,
            warned: Mutex::new(None),
        }
    }

    /// Places for one more connection from `ip`, or `None` (it is then dropped unread).
    fn admit(&self, what: &str, ip: IpAddr) -> Option<Permits> {
        let conn = self.conns.clone().try_acquire_owned();
        let pre = self.pre_auth.clone().try_acquire_owned();
        let refused = match (conn, pre) {
            (Ok(c), Ok(p)) if self.take_ip(ip) => {
                let pre = PreAuth { _permit: p, ip, per_ip: self.per_ip.clone() };
                return Some(Permits { conn: c, pre_auth: Arc::new(Mutex::new(Some(pre))) });
            }
            (Ok(_), Ok(_)) => {
                (self.limits.max_pre_auth_per_ip, "connections from one address that have not sent a request yet")
            }
            (Err(_), _) => (self.limits.max_connections, "connections"),
            (Ok(_), Err(_)) => (self.limits.max_pre_auth, "connections that have not sent a request yet"),
        };
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *warned = Some(Instant::now());
            let (n, which) = refused;
            tracing::warn!(
                "{what}: {n} {which} open ({ip} now), the most it serves; closing new ones until some end \
                 (more peers need a higher --max-peers)"
            );
        }
        None
    }

    /// Count one more pre-auth connection from `ip`, unless it has its share already.
    fn take_ip(&self, ip: IpAddr) -> bool {
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.limits.max_pre_auth_per_ip.max(1) {
            return false;
        }
        *n += 1;
        true
    }
}

/// One accepted connection and what serving it needs.
struct Conn {
    router: Router,
    builder: http1::Builder,
    addr: SocketAddr,
    what: &'static str,
    header_timeout: Duration,
    permits: Permits,
}

/// First byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

impl Conn {
    async fn run(self, stream: TcpStream, pacer: Pacer, security: Security, stop: watch::Receiver<bool>) {
        let Some(tls) = security.tls() else {
            return self.http(TokioIo::new(Paced::new(&pacer, stream)), Access::Open, None, stop).await;
        };
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.header_timeout, stream.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
            Ok(Ok(1)) => {
                let token = security.web_token().map(str::to_owned);
                return self.http(TokioIo::new(Paced::new(&pacer, stream)), Access::Web, token, stop).await;
            }
            _ => return,
        }
        let stream = Paced::new(&pacer, stream);
        match tokio::time::timeout(self.header_timeout, tls.acceptor().accept(stream)).await {
            Ok(Ok(s)) => self.http(TokioIo::new(s), Access::Member, None, stop).await,
            Ok(Err(e)) => {
                tracing::warn!("{}: refused {}: not a member of this swarm ({e})", self.what, self.addr)
            }
            Err(_) => tracing::info!("{}: TLS handshake from {} timed out", self.what, self.addr),
        }
    }

    async fn http<I>(self, io: TokioIo<I>, access: Access, token: Option<String>, stop: watch::Receiver<bool>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (router, addr, what) = (self.router, self.addr, self.what);
        let (_conn_permit, pre_auth) = (self.permits.conn, self.permits.pre_auth);
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // A complete request head: this connection is past the pre-auth stage.
            pre_auth.lock().unwrap_or_else(|p| p.into_inner()).take();
            req.extensions_mut().insert(ConnectInfo(addr));
            req.extensions_mut().insert(access);
            let router = router.clone();
            let token = token.clone();
            async move {
                match gate(&req, access, token.as_deref()) {
                    Gate::Pass { set_cookie } => {
                        let mut resp = router.oneshot(req).await?;
                        if let Some(c) = set_cookie {
                            resp.headers_mut().insert(header::SET_COOKIE, c);
                        }
                        Ok(resp)
                    }
                    Gate::Refuse(resp) => Ok::<_, std::convert::Infallible>(resp),
                }
            }
        });
        let conn = self.builder.serve_connection(io, svc).with_upgrades();
        tokio::pin!(conn);
        let mut stop = stop;
        let res = tokio::select! {
            r = conn.as_mut() => r,
            // The guard `wait_for` returns must not live across the await below (not `Send`).
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = res {
            tracing::debug!("{what}: connection from {addr} ended: {e}");
        }
    }
}

enum Gate {
    Pass { set_cookie: Option<HeaderValue> },
    Refuse(axum::response::Response),
}

/// Name of the cookie that carries the web token after a `?token=` visit.
const TOKEN_COOKIE: &str = "lanscatter_token";

/// Decide whether a request may reach the router. Members and open swarms pass; plain requests
/// to a secured node reach only the web routes, and only with the web token (in `?token=`, an
/// `Authorization: Bearer` header, or the cookie a `?token=` visit sets).
fn gate<B>(req: &hyper::Request<B>, access: Access, token: Option<&str>) -> Gate {
    let (Access::Web, Some(token)) = (access, token) else { return Gate::Pass { set_cookie: None } };
    let path = req.uri().path();
    let data_route = |r: &str| path.starts_with(r);
    if data_route(super::JOIN_ROUTE)
        || data_route(crate::transfer::CHUNK_ROUTE)
        || data_route(crate::transfer::batch::BATCH_ROUTE)
    {
        let msg = "this swarm is secured: members connect with the swarm secret (--secret)\n";
        return Gate::Refuse((StatusCode::FORBIDDEN, msg).into_response());
    }
    let from_query = req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.strip_prefix("token=") == Some(token)));
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token);
    let cookie = req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(';').any(|c| c.trim().strip_prefix(TOKEN_COOKIE).and_then(|r| r.strip_prefix('=')) == Some(token))
    });
    if !(from_query || bearer || cookie) {
        let msg = "this swarm is secured: open the status page link the master printed (it ends in ?token=…), or \
                   send `Authorization: Bearer <token>`\n";
        return Gate::Refuse((StatusCode::UNAUTHORIZED, msg).into_response());
    }
    let set_cookie = (from_query && !cookie)
        .then(|| HeaderValue::from_str(&format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")).ok())
        .flatten();
    Gate::Pass { set_cookie }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(
        header_timeout: Duration,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        start_with(header_timeout, Security::Open).await
    }

    async fn start_with(
        header_timeout: Duration,
        security: Security,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let limits = ServeLimits { header_timeout, max_connections: 8, max_pre_auth: 4, max_pre_auth_per_ip: 4 };
        start_limits(limits, security).await
    }

    async fn start_limits(
        limits: ServeLimits,
        security: Security,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // A response that never ends, like the status page's event stream.
        let endless = || async {
            let ticks = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"tick\n")), ()))
            });
            axum::body::Body::from_stream(ticks)
        };
        let app = Router::new()
            .route("/who", get(|ConnectInfo(a): ConnectInfo<SocketAddr>| async move { a.to_string() }))
            .route("/endless", get(endless));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve_secured(listener, app, limits, "test", security, async move {
            let _ = rx.await;
        }));
        (addr, tx, task)
    }

    /// A secured server closes connections that start a TLS handshake and never finish it, or
    /// send nothing at all, within its header timeout.
    #[tokio::test]
    async fn unfinished_tls_handshakes_are_cut_off() {
        let secret = crate::secret::SwarmSecret::parse("the secret of the serve tests").unwrap();
        let (addr, _stop, _task) =
            start_with(Duration::from_millis(300), Security::from_secret(&secret).unwrap()).await;
        for opening in [&b"\x16\x03\x01"[..], &b""[..], &b"\x16garbage that is no ClientHello"[..]] {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(opening).await.expect("write");
            let mut buf = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
            assert!(read.is_ok(), "connection still open 10 s after a 300 ms timeout ({opening:?})");
            assert!(!String::from_utf8_lossy(&buf).contains(" 200 "));
        }
    }

    #[tokio::test]
    async fn answers_with_the_clients_address() {
        let (addr, stop, task) = start(Duration::from_secs(5)).await;
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let me = c.local_addr().expect("local addr");
        c.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
        let mut out = String::new();
        c.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with(&me.to_string()), "{out}");
        stop.send(()).expect("server running");
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("shuts down").expect("no panic");
    }

    #[tokio::test]
    async fn unfinished_headers_are_cut_off() {
        let (addr, _stop, _task) = start(Duration::from_millis(300)).await;
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
        // The server must close the connection (it may answer 408 first); a server without the
        // timeout keeps it open, and this read then runs into the test's own limit.
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "connection still open 10 s after a 300 ms header timeout");
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains(" 200 "), "{text}");
    }

    /// A connection that sends nothing at all is closed by the same timeout (hyper arms it at
    /// accept, before the first byte).
    #[tokio::test]
    async fn silent_connections_are_cut_off() {
        let (addr, _stop, _task) = start(Duration::from_millis(300)).await;
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a silent connection still open 10 s after a 300 ms header timeout");
    }

    /// Past the pre-auth cap (4 in these tests) a new connection is closed unread; one that has
    /// sent its request head no longer counts, so another is let in.
    #[tokio::test]
    async fn connections_past_the_pre_auth_cap_are_closed_unread() {
        let (addr, _stop, _task) = start(Duration::from_secs(60)).await;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0) | Err(_))), "the fifth idle connection is closed at once: {n:?}");
        idle[0].write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let n = idle[0].read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        let mut next = TcpStream::connect(addr).await.expect("connect");
        next.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
        let mut out = String::new();
        next.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200"), "a place freed up: {out}");
    }

    /// One host holding idle connections uses up its own pre-auth share, not everyone's: its
    /// next one is closed unread while another host (127.0.0.2, also loopback) is served.
    #[tokio::test]
    async fn one_host_cannot_take_every_pre_auth_place() {
        let limits = ServeLimits {
            header_timeout: Duration::from_secs(60),
            max_connections: 16,
            max_pre_auth: 8,
            max_pre_auth_per_ip: 2,
        };
        let (addr, _stop, _task) = start_limits(limits, Security::Open).await;
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0) | Err(_))), "the host's third idle connection is closed at once: {n:?}");
        let other = tokio::net::TcpSocket::new_v4().expect("socket");
        other.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
        let mut other = other.connect(addr).await.expect("connect from 127.0.0.2");
        other.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
        let mut out = String::new();
        other.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200"), "another host is served: {out}");
        assert!(out.contains("127.0.0.2:"), "{out}");
    }

    #[tokio::test]
    async fn stopping_closes_endless_responses() {
        let (addr, stop, task) = start(Duration::from_secs(5)).await;
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.expect("response starts");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        stop.send(()).expect("server running");
        tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), task)
            .await
            .expect("the server stops although a response is still streaming")
            .expect("no panic");
        // The stream is cut: the client reaches the end (or a reset) instead of ticking forever.
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "connection still open after the server stopped");
    }
}
