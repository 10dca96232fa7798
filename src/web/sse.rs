//! `GET /api/events`: the live stream behind the page (server-sent events).
//!
//! Each client gets a `status` event right away (full chunk maps and history) and then one
//! whenever the snapshot changes, at most every [`MIN_INTERVAL`]; later events carry only the
//! chunk maps that changed and the new history points ([`super::view::page_view`]). The number of
//! concurrent streams is capped ([`MAX_CLIENTS`]) so that browsers left open, or a client
//! opening streams in a loop, cannot make the engine serialize snapshots without bound.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::history::History;
use super::view::{page_view, MapMemory};
use super::{harden, WebState};
use crate::status::Snapshot;

/// Minimum time between two events to one client.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Concurrent event streams per node.
pub const MAX_CLIENTS: usize = 64;

/// Streams currently open on one router (shared by its clones).
pub(crate) fn slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_CLIENTS))
}

struct Client {
    status: watch::Receiver<Snapshot>,
    history: Arc<Mutex<History>>,
    mem: MapMemory,
    history_after: f64,
    last_sent: Option<Instant>,
    _permit: OwnedSemaphorePermit,
}

impl Client {
    /// Wait for the next snapshot worth sending; `None` when the engine has stopped.
    async fn next(&mut self) -> Option<Event> {
        if let Some(last) = self.last_sent {
            self.status.changed().await.ok()?;
            // Coalesce bursts: whatever arrives during the pause is folded into one event.
            tokio::time::sleep_until(last + MIN_INTERVAL).await;
        }
        self.last_sent = Some(Instant::now());
        let snap = self.status.borrow_and_update().clone();
        let history = match self.history.lock() {
            Ok(h) => h.since(self.history_after),
            Err(_) => Vec::new(),
        };
        if let Some(p) = history.last() {
            self.history_after = p[0];
        }
        let event = match page_view(snap, &mut self.mem, history).map(|v| Event::default().event("status").json_data(v))
        {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::error!("encoding status event failed: {e}");
                Event::default().event("error").data("encoding failed")
            }
            Err(e) => {
                tracing::error!("building status view failed: {e}");
                Event::default().event("error").data("encoding failed")
            }
        };
        Some(event)
    }
}

pub(crate) async fn events(State(s): State<WebState>) -> Response {
    let Ok(permit) = s.sse_slots.clone().try_acquire_owned() else {
        return harden(
            (StatusCode::SERVICE_UNAVAILABLE, "too many open status streams; close some status pages and retry\n")
                .into_response(),
        );
    };
    let client = Client {
        status: s.status.clone(),
        history: s.history.clone(),
        mem: MapMemory::default(),
        history_after: f64::NEG_INFINITY,
        last_sent: None,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(client, |mut c| async move {
        let e = c.next().await?;
        Some((Ok::<_, Infallible>(e), c))
    });
    harden(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
