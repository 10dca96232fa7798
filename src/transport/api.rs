//! The client side of a node's web API: one bounded `GET` of `/api/status`, `/metrics` and the
//! like, for `lanscatter status` and scripts written against the library.
//!
//! The web routes are plain HTTP even on a secured node ([`super::serve`] gates them with the web
//! token), so this is the hyper client the chunk fetcher uses, without TLS, sending the token as
//! `Authorization: Bearer`. What a node answers is untrusted: the body is read up to a limit the
//! caller sets, and every step has a timeout, so a wedged or hostile node cannot hang or flood
//! the caller.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a web API request failed; the texts say what to check.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad address {0:?}: {1}")]
    BadUrl(String, String),
    #[error("cannot reach {addr}: {why}; is the master running there, and is that its port (default 10564)?")]
    Unreachable { addr: String, why: String },
    #[error("{addr} did not answer within {secs} s; is the master overloaded, or is that another service?")]
    Timeout { addr: String, secs: u64 },
    #[error("{addr} sent more than {limit} bytes for {path}; is that a lanscatter node?")]
    TooLarge { addr: String, path: String, limit: usize },
    #[error("reading the answer from {addr} failed: {why}")]
    Body { addr: String, why: String },
}

/// A node's answer: status code and body.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET http://<hostport><path>` with the web token (if any), giving up after `timeout`, and
/// refusing a body longer than `limit` bytes.
pub async fn get(
    hostport: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    limit: usize,
) -> Result<ApiResponse, ApiError> {
    let url = format!("http://{hostport}{path}");
    let uri: hyper::Uri =
        url.parse().map_err(|e: hyper::http::uri::InvalidUri| ApiError::BadUrl(url.clone(), e.to_string()))?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(http);
    let mut req = hyper::Request::get(uri).header(header::ACCEPT, "application/json, text/plain");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Empty::new()).map_err(|e| ApiError::BadUrl(url.clone(), e.to_string()))?;
    let addr = hostport.to_string();
    let work = async {
        let resp =
            client.request(req).await.map_err(|e| ApiError::Unreachable { addr: addr.clone(), why: cause(&e) })?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), limit).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ApiError::TooLarge { addr: addr.clone(), path: path.to_string(), limit }
            } else {
                ApiError::Body { addr: addr.clone(), why: e.to_string() }
            }
        })?;
        Ok(ApiResponse { status, body: body.to_bytes().to_vec() })
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| ApiError::Timeout { addr, secs: timeout.as_secs().max(1) })?
}

/// The innermost cause of a client error ("Connection refused"), which is what a user can act on.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get as route;

    async fn serve(app: axum::Router) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(super::super::serve(listener, app, Duration::from_secs(5), "test", async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    #[tokio::test]
    async fn sends_the_token_and_bounds_the_body() {
        let app = axum::Router::new()
            .route(
                "/who",
                route(|h: axum::http::HeaderMap| async move {
                    h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string()
                }),
            )
            .route("/big", route(|| async { vec![b'x'; 10_000] }));
        let (addr, _stop) = serve(app).await;
        let hp = addr.to_string();
        let r = get(&hp, "/who", Some("abc"), Duration::from_secs(5), 1000).await.expect("answers");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"Bearer abc"[..]));
        let r = get(&hp, "/who", None, Duration::from_secs(5), 1000).await.expect("answers");
        assert_eq!(r.body, b"none");
        let e = get(&hp, "/big", None, Duration::from_secs(5), 1000).await.expect_err("too large");
        assert!(matches!(e, ApiError::TooLarge { limit: 1000, .. }), "{e}");
        assert_eq!(get(&hp, "/nope", None, Duration::from_secs(5), 1000).await.expect("answers").status, 404);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_advice() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        drop(l);
        let e = get(&addr, "/api/status", None, Duration::from_secs(5), 1000).await.expect_err("refused");
        assert!(matches!(e, ApiError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("is the master running"), "{e}");
    }
}
