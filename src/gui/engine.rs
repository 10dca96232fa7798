//! The tray app's view of the sync engines: start one from [`Settings`], watch it, stop it.
//!
//! The engines (`crate::master`, `crate::peer`) are the same ones the CLI runs; this adapter only
//! translates settings into their configs and their status snapshots into the GUI's
//! [`StatusView`] (plus the raw snapshot as JSON for `--json`). It runs on the app's tokio runtime.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use tokio::sync::watch;

use super::config::{Mode, Settings};
use super::view::StatusView;

/// One status update: the GUI digest and the engine's full snapshot as JSON.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    pub view: StatusView,
    pub snapshot: Value,
    /// Event messages of the snapshot (most recent last), for the log file.
    pub events: Vec<(f64, String)>,
}

type Stopper = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A started engine.
pub struct RunningEngine {
    pub mode: Mode,
    pub status: watch::Receiver<EngineStatus>,
    stopper: Stopper,
}

impl RunningEngine {
    /// Graceful shutdown (the engine finishes or aborts transfers cleanly).
    pub async fn shutdown(self) {
        (self.stopper)().await
    }
}

/// Start the engine the settings ask for. The error text is shown to the user as is.
pub async fn start(settings: Settings) -> Result<RunningEngine, String> {
    settings.validate_for_start().map_err(|e| e.to_string())?;
    Err(format!(
        "the {} engine is not part of this build yet ({})",
        settings.mode.as_str(),
        crate::VERSION
    ))
}
