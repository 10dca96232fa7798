//! The master's indexer: scan the folder, decide what to publish, look again when it changes.
//!
//! A scan runs at start, after a burst of folder events has settled (a debounce: a quiet
//! [`QUIET`], or at most [`MAX_WAIT`] after the first event of a burst, so a long copy into the
//! folder neither re-indexes every fraction of a second nor starves the index), on a chunk that
//! no longer matches its hash, and every `rescan_interval` as a fallback for missed events.
//!
//! What a scan publishes is judged here, because a peer deletes whatever the index lacks:
//! - a folder that vanished or cannot be read keeps the last good index, with the reason in
//!   the status (log, page, `/metrics`, tray), and is retried every second until it reads again;
//! - a shrink ([`super::shrink`]) is held back until confirmed;
//! - a file still being written (modified within [`super::MasterConfig::settle`], or changing
//!   while hashed) keeps its previous version, or is left out if it is new, and the folder is
//!   scanned again once it should have settled; the first index waits (up to [`MAX_WAIT`]) for
//!   such files rather than publish a folder with holes.
//!
//! Every finished scan is counted ([`CoordMsg::Scanned`]), so tests and scripts can wait for
//! "the master has looked again" rather than for a time.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::coord::CoordMsg;
use super::{shrink, ManifestState, Shared};
use crate::manifest::{Manifest, ScanError, ScanOptions, Scanned, Unsettled};

/// A burst of folder events is over after this long without another.
pub const QUIET: Duration = Duration::from_secs(1);
/// A burst that does not stop is scanned this long after its first event anyway; the first
/// index waits at most this long for files still being written.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// How soon a folder that cannot be read is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// How the master reads its folder into a manifest. The real one is [`FolderScanner`]; tests
/// wrap it to make the folder unreadable where the OS will not (root ignores `chmod 000`).
pub trait Scanner: Send + Sync + std::fmt::Debug + 'static {
    fn scan(&self, root: &Path, opts: &ScanOptions) -> Result<Scanned, ScanError>;
}

/// [`crate::manifest::scan_dir`] on the folder itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct FolderScanner;

impl Scanner for FolderScanner {
    fn scan(&self, root: &Path, opts: &ScanOptions) -> Result<Scanned, ScanError> {
        crate::manifest::scan_dir(root, opts)
    }
}

/// Index now, then again whenever there is reason to (see the module doc), until shutdown.
pub(super) async fn run(shared: Arc<Shared>, mut rescan_rx: mpsc::Receiver<()>) {
    let mut watch = Watch::start(&shared);
    let mut shutdown = shared.shutdown.clone();
    let mut ix = Indexer { shared: shared.clone(), started: Instant::now(), faulted: false, last_fault: None };
    loop {
        let next = ix.scan_and_judge().await;
        if next.recovered {
            // The folder came back, perhaps as another directory at the same path (a remount):
            // a watch on the old one would see nothing.
            watch = Watch::start(&shared);
        }
        tokio::select! {
            _ = tokio::time::sleep(next.wait) => {}
            () = watch.settled() => {}
            // A stale chunk while files are still settling is expected (one of them changed
            // under a previous version); the settle rescan is due soon anyway.
            Some(()) = rescan_rx.recv(), if !next.settling => {}
            _ = crate::status::stopped(&mut shutdown) => return,
        }
    }
}

/// When to look again after a scan.
#[derive(Debug, Clone, Copy)]
struct Next {
    wait: Duration,
    /// Files are still being written: a settle rescan is scheduled.
    settling: bool,
    /// The folder reads again after a fault.
    recovered: bool,
}

struct Indexer {
    shared: Arc<Shared>,
    started: Instant,
    /// The last scan failed (the folder vanished or could not be read).
    faulted: bool,
    last_fault: Option<String>,
}

impl Indexer {
    async fn scan_and_judge(&mut self) -> Next {
        let res = self.scan().await;
        let next = match res {
            Err(e) => {
                self.fault(e);
                Next { wait: RETRY, settling: false, recovered: false }
            }
            Ok(s) => {
                let recovered = std::mem::take(&mut self.faulted);
                self.last_fault = None;
                Next { recovered, ..self.on_scanned(s) }
            }
        };
        let _ = self.shared.coord.send(CoordMsg::Scanned);
        next
    }

    async fn scan(&self) -> Result<Scanned, String> {
        let cfg = &self.shared.cfg;
        let coord = self.shared.coord.clone();
        let progress: crate::manifest::scan::ProgressFn = Arc::new(move |p: crate::manifest::ScanProgress| {
            let _ = coord.send(CoordMsg::Indexing { done: p.bytes_hashed + p.bytes_cached, total: p.bytes_total });
        });
        let opts = ScanOptions {
            chunk_rule: cfg.chunk_rule,
            cache: cfg.cache.clone(),
            progress: Some(progress),
            settle: Some(cfg.settle),
            ..Default::default()
        };
        let (root, scanner) = (cfg.source_dir.clone(), cfg.scanner.clone());
        match tokio::task::spawn_blocking(move || scanner.scan(&root, &opts)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the indexing task failed: {e}")),
        }
    }

    /// The folder cannot be indexed: keep serving what was published, and say so.
    fn fault(&mut self, e: String) {
        self.faulted = true;
        shrink::release(&self.shared);
        let message = match self.shared.current() {
            Some(c) => format!(
                "cannot index the source folder: {e}. Keeping the last good index ({} files), so peers keep their \
                 copies; indexing resumes by itself once the folder reads again (is the share unmounted, or the \
                 folder moved or its permissions changed?)",
                c.manifest.files.len()
            ),
            None => format!("cannot index the source folder: {e}; retrying every second"),
        };
        if self.last_fault.as_ref() != Some(&message) {
            tracing::error!("{message}");
            self.last_fault = Some(message.clone());
        }
        let _ = self.shared.coord.send(CoordMsg::IndexError { message, shrink: None });
    }

    /// A scan that read: settle what is still being written, then publish, hold or keep.
    fn on_scanned(&mut self, s: Scanned) -> Next {
        let cur = self.shared.current();
        let mut m = s.manifest;
        let settling = !s.unsettled.is_empty();
        let wait =
            if settling { settle_wait(&s.unsettled, self.shared.cfg.settle) } else { self.shared.cfg.rescan_interval };
        let next = Next { wait, settling, recovered: false };
        if settling {
            let first = &s.unsettled[0].path;
            let n = s.unsettled.len();
            if cur.is_none() && self.started.elapsed() < MAX_WAIT {
                tracing::info!("{n} file(s) still being written ({first}, …); the first index waits for them");
                return next;
            }
            tracing::info!(
                "{n} file(s) still being written ({first}, …): kept as they were; looking again in {wait:?}"
            );
            keep_previous(&mut m, cur.as_ref().map(|c| &*c.manifest), &s.unsettled);
        }
        self.judge(cur.as_deref(), m);
        next
    }

    /// Publish `m` if it changed and is believable, hold it if it looks like a fault.
    fn judge(&mut self, cur: Option<&ManifestState>, m: Manifest) {
        let shared = &self.shared;
        let changed = cur.is_none_or(|c| c.manifest.files != m.files || c.manifest.dirs != m.dirs);
        if !changed {
            shrink::release(shared);
            let _ = shared.coord.send(CoordMsg::IndexOk);
            return;
        }
        if let Some(c) = cur.filter(|_| !shared.cfg.allow_shrink) {
            if let Some(message) = shrink::shrink_fault(&c.manifest, &m) {
                let held = shrink::hold(shared, &c.manifest, m);
                if self.last_fault.as_ref() != Some(&message) {
                    tracing::error!("{message}");
                    self.last_fault = Some(message.clone());
                }
                let _ = shared.coord.send(CoordMsg::IndexError { message, shrink: Some(held) });
                return;
            }
        }
        shrink::release(shared);
        publish(shared, m);
    }
}

/// Make `m` the index peers are served, under the next manifest id; returns that id.
pub(super) fn publish(shared: &Shared, m: Manifest) -> u64 {
    for w in &m.warnings {
        tracing::warn!("{w}");
    }
    let id = shared.next_manifest.fetch_add(1, Ordering::Relaxed);
    let st = Arc::new(ManifestState::after(shared.current().as_deref(), id, m));
    if let Ok(mut c) = shared.current.write() {
        *c = Some(st.clone());
    }
    let _ = shared.coord.send(CoordMsg::Manifest(st));
    id
}

/// Give each file still being written the entry it had in the last published index (none, if
/// it is new): peers keep the version they have rather than fetch half a copy, or delete it.
fn keep_previous(m: &mut Manifest, prev: Option<&Manifest>, unsettled: &[Unsettled]) {
    let Some(prev) = prev else { return };
    let dirs: HashSet<&str> = m.dirs.iter().map(|d| d.path.as_str()).collect();
    let kept: Vec<_> = unsettled
        .iter()
        .filter(|u| !dirs.contains(u.path.as_str()))
        .filter_map(|u| prev.files.binary_search_by(|f| f.path.as_str().cmp(&u.path)).ok())
        .map(|i| prev.files[i].clone())
        .collect();
    m.files.extend(kept);
    m.files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
}

/// How long until the youngest file still being written has been quiet for `window` (a
/// little more, for coarse timestamps), so the next scan can take it.
fn settle_wait(unsettled: &[Unsettled], window: Duration) -> Duration {
    let youngest = unsettled.iter().map(|u| u.age).min().unwrap_or_default();
    let margin = Duration::from_millis(250);
    (window.saturating_sub(youngest) + margin).clamp(margin, window + margin)
}

/// When a burst of events that started at `first` and last fired at `last` is over.
fn debounce_due(first: Instant, last: Instant, quiet: Duration, max_wait: Duration) -> Instant {
    (last + quiet).min(first + max_wait)
}

/// The folder watcher, and the debounce over its events.
struct Watch {
    rx: mpsc::Receiver<()>,
    last: Arc<Mutex<Instant>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Watch {
    fn start(shared: &Shared) -> Watch {
        let (tx, rx) = mpsc::channel(1);
        let last = Arc::new(Mutex::new(Instant::now()));
        let watcher = if shared.cfg.watch { start_watcher(&shared.cfg.source_dir, tx, last.clone()) } else { None };
        Watch { rx, last, _watcher: watcher }
    }

    fn last_event(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once a burst of events is over; never without a watcher.
    async fn settled(&mut self) {
        if self.rx.recv().await.is_none() {
            return std::future::pending().await;
        }
        let first = Instant::now();
        loop {
            while self.rx.try_recv().is_ok() {}
            let due = debounce_due(first, self.last_event(), QUIET, MAX_WAIT);
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

fn start_watcher(dir: &Path, tx: mpsc::Sender<()>, last: Arc<Mutex<Instant>>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                let _ = tx.try_send(());
            }
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(dir, RecursiveMode::Recursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!("cannot watch {} for changes ({e}); relying on the periodic rescan", dir.display());
                None
            }
        },
        Err(e) => {
            tracing::warn!("no folder watcher ({e}); relying on the periodic rescan");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::CacheMode;

    #[test]
    fn a_burst_is_over_when_quiet_or_at_the_latest_after_the_max_wait() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(debounce_due(t0, t0, s(1), s(10)), t0 + s(1), "one event: a quiet second later");
        assert_eq!(debounce_due(t0, t0 + s(4), s(1), s(10)), t0 + s(5), "each event pushes it on");
        assert_eq!(debounce_due(t0, t0 + s(30), s(1), s(10)), t0 + s(10), "but never past the max wait");
    }

    #[test]
    fn the_settle_rescan_comes_when_the_youngest_file_has_been_quiet_long_enough() {
        let u = |ms| Unsettled { path: "f".into(), age: Duration::from_millis(ms) };
        let w = Duration::from_secs(2);
        assert_eq!(settle_wait(&[u(0)], w), Duration::from_millis(2250));
        assert_eq!(settle_wait(&[u(1500), u(500)], w), Duration::from_millis(1750));
        assert_eq!(settle_wait(&[u(5000)], w), Duration::from_millis(250));
    }

    #[test]
    fn files_still_written_keep_their_previous_version_and_new_ones_wait() {
        let d = tempfile::tempdir().unwrap();
        let opts = |settle| ScanOptions { cache: CacheMode::Disabled, settle, ..Default::default() };
        std::fs::write(d.path().join("old.txt"), b"version 1").unwrap();
        std::fs::write(d.path().join("same.txt"), b"unchanged").unwrap();
        let prev = crate::manifest::scan(d.path(), &opts(None)).unwrap();
        std::fs::write(d.path().join("old.txt"), b"version 2, half copied").unwrap();
        std::fs::write(d.path().join("new.txt"), b"being copied in").unwrap();
        let s = crate::manifest::scan_dir(d.path(), &opts(Some(Duration::from_secs(3600)))).unwrap();
        let mut held: Vec<_> = s.unsettled.iter().map(|u| u.path.as_str()).collect();
        held.sort();
        // Everything was written just now; only `same.txt` was hashed before (no cache here,
        // so it is young too).
        assert_eq!(held, ["new.txt", "old.txt", "same.txt"]);
        let mut m = s.manifest;
        assert!(m.files.is_empty());
        keep_previous(&mut m, Some(&prev), &s.unsettled);
        assert_eq!(m.files, prev.files, "the previous versions, and nothing of the new file");
        let mut first = crate::manifest::scan_dir(d.path(), &opts(Some(Duration::from_secs(3600)))).unwrap().manifest;
        keep_previous(&mut first, None, &s.unsettled);
        assert!(first.files.is_empty(), "no previous index: nothing to keep");
    }
}
