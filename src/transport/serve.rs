//! The one HTTP serve loop behind the master, the peer and the tray app's settings page.
//!
//! `axum::serve` sets no timeout for reading request headers, so a client that opens
//! connections and never finishes its headers (slowloris) holds a socket and a task each for as
//! long as it likes. This loop is the same thing on hyper-util with a header-read timeout, plus
//! what the routers rely on: websocket upgrades, the client's address as axum's `ConnectInfo`,
//! and a graceful shutdown that lets running requests finish.

use std::future::Future;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long a client may take to send its request headers (each request, keep-alive included).
/// A LAN client sends them in one packet; ten seconds leaves room for a loaded machine.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
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
        // Chunk answers end with a small final write; Nagle would hold it back.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            router.clone().oneshot(req)
        });
        let conn = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned());
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("{what}: connection from {addr} ended: {e}");
            }
        });
    }
    drop(listener);
    // Streams such as the status page's event stream never end by themselves: give running
    // requests a moment, then close what is left (the GUI's runtime outlives an engine).
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::debug!("{what}: {} connection(s) still open after {SHUTDOWN_GRACE:?}; closing them", conns.len());
    }
    conns.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(
        header_timeout: Duration,
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
        let task = tokio::spawn(serve(listener, app, header_timeout, "test", async move {
            let _ = rx.await;
        }));
        (addr, tx, task)
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
