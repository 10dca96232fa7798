//! The shrink guard: an emptied folder, or one that lost most of its content in one scan, is a
//! fault, not a change (issue 14).
//!
//! A peer deletes whatever the master's index lacks, so publishing a scan of an unmounted share
//! (an empty mount point) would make every workstation delete its copy. [`shrink_fault`] says
//! when a scan looks like that; the indexer ([`super::index`]) then keeps the last good index,
//! parks the scan in [`Shared::held`] and reports why. The shrink is published only when
//! confirmed: `--allow-shrink` at start ([`super::MasterConfig::allow_shrink`]), or once, from
//! the status page, by `POST /api/shrink?held=<id>` ([`router`]). That route is an action,
//! so it needs an authenticated caller: a member of the swarm (TLS), or a plain request with
//! the web token, which the transport's gate already demands of every web route of a secured
//! master. An open swarm has no token, so nobody there can be told apart from a stranger on
//! the network: the route refuses and says to restart with `--allow-shrink`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use super::{coord::CoordMsg, Shared};
use crate::manifest::Manifest;
use crate::status::HeldShrink;
use crate::transport::serve::Access;

/// Route of the confirmed shrink.
pub const SHRINK_ROUTE: &str = "/api/shrink";

/// Why a new scan looks like a fault rather than a change: the folder emptied (an unmounted
/// share leaves an empty mount point), or lost more than half of its files or bytes at once.
/// Publishing it would make every peer delete its copy, so the master keeps the last good index.
pub fn shrink_fault(old: &Manifest, new: &Manifest) -> Option<String> {
    let (of, nf) = (old.files.len() as u64, new.files.len() as u64);
    let (ob, nb) = (old.total_bytes(), new.total_bytes());
    if of == 0 || (nf * 2 >= of && nb * 2 >= ob) {
        return None;
    }
    let what = if nf == 0 { "is now empty" } else { "lost more than half of its content in one scan" };
    Some(format!(
        "the source folder {what} ({of} files, {ob} bytes before; {nf} files, {nb} bytes now): keeping the last good \
         index, so peers keep their copies. Is the share unmounted or the folder emptied by mistake? If the change is \
         intended, publish it from the status page (Publish the shrink) or restart the master with --allow-shrink"
    ))
}

/// The shrink held back, if any, and the number the last one got (numbers are never reused,
/// so a page still showing a shrink that was released cannot confirm a later one).
#[derive(Debug, Default)]
pub(crate) struct HeldSlot {
    last_id: u64,
    shrink: Option<(HeldShrink, Manifest)>,
}

/// Park `new` as the held shrink and return how the page names it. A scan equal to the one
/// already held keeps its number, so a page showing it stays valid across rescans.
pub(super) fn hold(shared: &Shared, old: &Manifest, new: Manifest) -> HeldShrink {
    let mut slot = shared.held.lock().unwrap_or_else(|p| p.into_inner());
    let id = match slot.shrink.as_ref() {
        Some((h, m)) if m.files == new.files && m.dirs == new.dirs => h.id,
        _ => slot.last_id + 1,
    };
    slot.last_id = id;
    let h = HeldShrink {
        id,
        files_before: old.files.len() as u64,
        bytes_before: old.total_bytes(),
        files_now: new.files.len() as u64,
        bytes_now: new.total_bytes(),
    };
    slot.shrink = Some((h.clone(), new));
    h
}

/// Forget the held shrink (the folder reads as before, changed otherwise, or cannot be read).
pub(super) fn release(shared: &Shared) {
    shared.held.lock().unwrap_or_else(|p| p.into_inner()).shrink = None;
}

/// Why a confirmation published nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    #[error("no shrink is held back (the folder reads as before, or it was published already); nothing to do")]
    NothingHeld,
    #[error(
        "the held shrink changed since it was shown (now number {now}, you confirmed {asked}); reload the status \
         page and look again"
    )]
    Changed { asked: u64, now: u64 },
}

/// Publish the held shrink `asked`, once. Returns the id of the published manifest.
pub(super) fn confirm(shared: &Shared, asked: u64, by: &str) -> Result<u64, ConfirmError> {
    let (h, m) = {
        let mut slot = shared.held.lock().unwrap_or_else(|p| p.into_inner());
        match slot.shrink.as_ref() {
            None => return Err(ConfirmError::NothingHeld),
            Some((h, _)) if h.id != asked => return Err(ConfirmError::Changed { asked, now: h.id }),
            Some(_) => {}
        }
        slot.shrink.take().ok_or(ConfirmError::NothingHeld)?
    };
    let _ = shared.coord.send(CoordMsg::Note(format!(
        "shrink confirmed by {by}: publishing {} files, {} bytes (were {} files, {} bytes); peers delete the rest",
        h.files_now, h.bytes_now, h.files_before, h.bytes_before
    )));
    tracing::warn!("shrink confirmed by {by}; publishing it");
    Ok(super::index::publish(shared, m))
}

/// `POST /api/shrink?held=<id>`: publish the held shrink the page showed.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route(SHRINK_ROUTE, post(confirm_route)).with_state(shared)
}

#[derive(Debug, Deserialize)]
struct ConfirmQuery {
    held: u64,
}

async fn confirm_route(
    State(shared): State<Arc<Shared>>,
    ext: Extensions,
    q: Result<Query<ConfirmQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let text = |code: StatusCode, msg: String| crate::web::harden((code, msg + "\n").into_response());
    // The serve loop says who is asking; without that word the caller is nobody in particular.
    if !matches!(ext.get::<Access>(), Some(Access::Member | Access::Web)) {
        let msg = "this swarm is open: nobody can be authenticated to confirm a shrink; restart the master with \
                   --allow-shrink to publish it (or run the swarm with a --secret to confirm it from the status page)";
        return text(StatusCode::FORBIDDEN, msg.into());
    }
    let Ok(Query(q)) = q else {
        let msg = format!("say which held shrink to publish: POST {SHRINK_ROUTE}?held=<id>, the id from /api/status");
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let by = match ext.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(a)) => format!("{} on the status page", a.ip()),
        None => "the status page".into(),
    };
    let s = shared.clone();
    match tokio::task::spawn_blocking(move || confirm(&s, q.held, &by)).await {
        Ok(Ok(id)) => text(StatusCode::OK, format!("published the shrink as manifest {id}")),
        Ok(Err(e)) => text(StatusCode::CONFLICT, e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("publishing failed: {e}; try again")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CacheMode, ScanOptions};

    /// The manifest of a folder with files of these sizes.
    fn folder(sizes: &[usize]) -> Manifest {
        let d = tempfile::tempdir().unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            std::fs::write(d.path().join(format!("f{i}")), vec![i as u8; n]).unwrap();
        }
        crate::manifest::scan(d.path(), &ScanOptions { cache: CacheMode::Disabled, ..Default::default() }).unwrap()
    }

    #[test]
    fn emptied_or_halved_folders_are_faults_ordinary_changes_are_not() {
        let before = folder(&[100, 100, 100, 100]);
        assert!(shrink_fault(&before, &folder(&[])).is_some_and(|w| w.contains("is now empty")));
        assert!(shrink_fault(&before, &folder(&[100])).is_some_and(|w| w.contains("more than half")));
        assert!(shrink_fault(&before, &folder(&[400, 1])).is_none(), "fewer files but the bytes are there");
        assert!(shrink_fault(&before, &folder(&[10, 10, 10, 10])).is_some(), "same files, most bytes gone");
        assert!(shrink_fault(&before, &folder(&[100, 100])).is_none(), "half is still believable");
        assert!(shrink_fault(&folder(&[]), &folder(&[1])).is_none(), "growing from empty is fine");
        assert!(shrink_fault(&folder(&[]), &folder(&[])).is_none());
    }

    fn shared() -> (Shared, tokio::sync::mpsc::UnboundedReceiver<CoordMsg>) {
        let cfg = super::super::MasterConfig::new(std::path::PathBuf::from("/nonexistent"));
        let (rescan, _) = tokio::sync::mpsc::channel(1);
        let (coord, rx) = tokio::sync::mpsc::unbounded_channel();
        let (_, shutdown) = tokio::sync::watch::channel(false);
        (Shared::new(cfg, SocketAddr::from(([127, 0, 0, 1], 1)), rescan, coord, shutdown), rx)
    }

    #[test]
    fn a_held_shrink_is_published_once_and_only_the_one_shown() {
        let (s, mut rx) = shared();
        let before = folder(&[100, 100, 100, 100]);
        assert_eq!(confirm(&s, 1, "test"), Err(ConfirmError::NothingHeld));
        let first = hold(&s, &before, folder(&[]));
        assert_eq!((first.id, first.files_before, first.files_now), (1, 4, 0));
        assert_eq!(hold(&s, &before, folder(&[])).id, 1, "the same scan keeps its number");
        let second = hold(&s, &before, folder(&[1]));
        assert_eq!(second.id, 2, "a different scan is a different shrink");
        assert_eq!(confirm(&s, 1, "test"), Err(ConfirmError::Changed { asked: 1, now: 2 }));
        let id = confirm(&s, 2, "test").expect("published");
        assert_eq!(s.current().map(|c| (c.id, c.manifest.files.len())), Some((id, 1)));
        assert_eq!(confirm(&s, 2, "test"), Err(ConfirmError::NothingHeld), "once");
        let msgs: Vec<CoordMsg> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(matches!(&msgs[..], [CoordMsg::Note(n), CoordMsg::Manifest(m)] if n.contains("test") && m.id == id));
        let third = hold(&s, &before, folder(&[]));
        assert_eq!(third.id, 3, "numbers are never reused");
        release(&s);
        assert_eq!(confirm(&s, 3, "test"), Err(ConfirmError::NothingHeld));
    }
}
