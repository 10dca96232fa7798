//! The web status page, JSON API and Prometheus metrics, mounted on the engines' HTTP servers.
//!
//! Admins watch a distribution from a browser at `http://<master>:<port>/`; each peer serves a
//! smaller page of its own on its chunk port. Everything here is a read-only *view* of the
//! engine's [`Snapshot`] stream (`tokio::sync::watch`), the single source of truth shared with
//! the CLI and the tray app: this module never touches engine state and adds no locks to it.
//!
//! Routes (both roles):
//! - `GET /` — the page (`assets/web/*`, embedded with `include_str!`: no CDN, works offline,
//!   no JavaScript build step). The master serves the swarm page, a peer the small page.
//! - `GET /api/status` — the latest snapshot as JSON (documented in the README).
//! - `GET /api/events` — server-sent events: a compact, delta-encoded [`view`] of each snapshot
//!   (chunk maps 2-bit packed and sent only when changed, throughput history appended), at most
//!   a few per second per client so a slow browser cannot make the engine do more work.
//! - `GET /metrics` — Prometheus text format ([`metrics`]).
//!
//! Design choices:
//! - SSE rather than a websocket: one-way, plain HTTP, automatic reconnect in the browser.
//! - Per-client work is bounded: each SSE client waits on the watch channel and is rate limited;
//!   a client that stops reading only fills its own TCP buffer.
//! - Throughput history is kept here (sampled from the snapshot stream by one task per router),
//!   so the engines need not keep it.
//! - Responses carry a strict `Content-Security-Policy`; the page inserts node names and event
//!   texts with `textContent` only, so a hostile peer name cannot inject markup.

pub mod assets;
pub mod history;
pub mod metrics;
pub mod sse;
pub mod view;

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::watch;

use crate::status::Snapshot;
use history::History;

/// Which page `GET /` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The swarm page: every node, chunk maps, totals, chart, events.
    Master,
    /// The small page: this peer's progress, rates, sources.
    Peer,
}

/// Shared state of one node's web routes.
#[derive(Clone)]
pub(crate) struct WebState {
    pub status: watch::Receiver<Snapshot>,
    pub history: Arc<Mutex<History>>,
    pub page: Page,
    pub sse_slots: Arc<tokio::sync::Semaphore>,
}

/// Routes of the master's status page, API and metrics; merge into the master's router.
pub fn master_router(status: watch::Receiver<Snapshot>) -> axum::Router {
    router(status, Page::Master)
}

/// Routes of a peer's small status page, API and metrics; merge into the peer's router.
pub fn peer_router(status: watch::Receiver<Snapshot>) -> axum::Router {
    router(status, Page::Peer)
}

/// Build the routes. Must be called inside a tokio runtime (it spawns the history sampler, which
/// ends by itself when the engine drops its status sender).
pub fn router(status: watch::Receiver<Snapshot>, page: Page) -> axum::Router {
    let history = Arc::new(Mutex::new(History::default()));
    history::spawn_sampler(status.clone(), history.clone());
    let state = WebState { status, history, page, sse_slots: sse::slots() };
    axum::Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{file}", get(assets::serve))
        .route("/api/status", get(api_status))
        .route("/api/events", get(sse::events))
        .route("/metrics", get(metrics_route))
        .with_state(state)
}

/// Headers every response of this module carries.
pub(crate) fn harden(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    resp
}

async fn index(State(s): State<WebState>) -> Response {
    let html = match s.page {
        Page::Master => assets::MASTER_HTML,
        Page::Peer => assets::PEER_HTML,
    };
    harden(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

/// Query of `/api/status`.
#[derive(Debug, Deserialize)]
pub(crate) struct StatusQuery {
    /// `array` (default): chunk maps as arrays of cell codes; `packed`: base64 of 2-bit cells;
    /// `none`: chunk maps left empty (small answers for scripts polling often).
    #[serde(default)]
    maps: MapFormat,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MapFormat {
    #[default]
    Array,
    Packed,
    None,
}

async fn api_status(
    State(s): State<WebState>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return harden(
            (
                StatusCode::BAD_REQUEST,
                "invalid query: use /api/status, /api/status?maps=packed or /api/status?maps=none\n",
            )
                .into_response(),
        );
    };
    let snap = s.status.borrow().clone();
    let body = match q.maps {
        MapFormat::Array => serde_json::to_vec(&snap),
        MapFormat::Packed | MapFormat::None => {
            view::api_status(snap, q.maps == MapFormat::Packed).and_then(|v| serde_json::to_vec(&v))
        }
    };
    match body {
        Ok(b) => harden(([(header::CONTENT_TYPE, "application/json")], b).into_response()),
        Err(e) => {
            tracing::error!("serializing status failed: {e}");
            harden((StatusCode::INTERNAL_SERVER_ERROR, "internal error serializing status\n").into_response())
        }
    }
}

async fn metrics_route(State(s): State<WebState>) -> Response {
    let text = metrics::render(&s.status.borrow());
    harden(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}
