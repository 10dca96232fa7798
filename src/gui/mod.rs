//! The tray app (`lanscatter gui`): the same master/peer engines, driven from a tray icon.
//!
//! Many users never open a terminal: they start the app, pick "peer" or "master" and a folder, and
//! watch the icon until the sync is done. Layout:
//!
//! - always compiled (testable on headless machines, no GTK): [`config`] (persisted settings),
//!   [`crate::folders`] (dangerous-folder refusal, shared with the CLI), [`settings_page`]
//!   (token-protected form on 127.0.0.1), [`instance`] (one app per user), [`display`] (is there a display?), [`launch`]
//!   (terminal vs tray at start-up, Windows console handling), [`view`] (icon/tooltip/menu texts
//!   from status), [`output`] (log file and `--json` lines), [`engine`] (settings → engine,
//!   snapshots → view);
//! - always compiled too: [`notices`] (which status changes become desktop notifications);
//! - with the `gui` cargo feature: `tray` (tao event loop + tray-icon menu), [`dialogs`] (folder
//!   picker and questions: GTK's own on Linux, native via rfd on Windows/macOS; no hang), and
//!   `icons` (embedded PNGs). The feature is what pulls GTK in on Linux, so headless builds leave it
//!   off and `lanscatter gui` then explains how to get a build with it. The same feature gates the
//!   tray on Windows and macOS too: one build recipe everywhere (`--features gui`), used by the
//!   installers.
//!
//! [`run`] does the checks that must happen before any GUI toolkit is touched — display present,
//! settings readable, no other instance — so each failure is a clear message, not a toolkit panic.

pub mod config;
pub mod display;
pub mod engine;
pub mod instance;
pub mod launch;
pub mod notices;
pub mod output;
pub mod settings_page;
pub mod view;

#[cfg(feature = "gui")]
pub mod dialogs;
#[cfg(feature = "gui")]
mod icons;
#[cfg(feature = "gui")]
mod tray;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Whether this binary was built with the tray app.
pub const HAS_TRAY: bool = cfg!(feature = "gui");

#[derive(Debug, thiserror::Error)]
pub enum GuiError {
    #[error("this lanscatter was built without the tray app; rebuild with `cargo build --release --features gui` (Linux needs libgtk-3-dev), or use `lanscatter master` / `lanscatter peer`")]
    NotBuilt,
    #[error("{0}")]
    NoDisplay(String),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Instance(#[from] instance::InstanceError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the settings page on 127.0.0.1: {0}")]
    SettingsServer(std::io::Error),
    #[error("embedded tray icons are broken: {0}")]
    Icons(String),
}

/// What `lanscatter gui` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct GuiOptions {
    /// Settings file; `None` = `LANSCATTER_CONFIG` or the user config dir.
    pub config: Option<PathBuf>,
    /// Print JSON status lines on stdout.
    pub json: bool,
}

/// Run the tray app until Quit. Returns early with a message if another instance runs.
pub fn run(opts: GuiOptions) -> Result<ExitCode, GuiError> {
    if !HAS_TRAY {
        return Err(GuiError::NotBuilt);
    }
    display::check().map_err(GuiError::NoDisplay)?;
    let config_path = config::config_path(opts.config.as_deref())?;
    let settings = config::load(&config_path)?;
    let dir = config::config_dir(&config_path);
    let out = Arc::new(output::Output::new(opts.json, dir.join("gui.log")));
    let lock = match instance::acquire(&dir)? {
        instance::Acquired::First(lock) => lock,
        instance::Acquired::AlreadyRunning(info) => {
            let pinged = info.as_ref().is_some_and(instance::ping);
            let pid = info.as_ref().map(|i| i.pid.to_string()).unwrap_or_else(|| "?".into());
            let msg = if pinged {
                format!("lanscatter gui is already running (pid {pid}); asked it to open its settings page")
            } else {
                format!("lanscatter gui is already running (pid {pid}) for settings {}", config_path.display())
            };
            out.event("already_running", serde_json::json!({ "pid": pid, "pinged": pinged }));
            eprintln!("{msg}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    #[cfg(feature = "gui")]
    {
        tray::run(out, settings, config_path, lock)
    }
    #[cfg(not(feature = "gui"))]
    {
        let _ = (out, settings, lock);
        Err(GuiError::NotBuilt)
    }
}
