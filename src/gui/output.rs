//! Where the tray app reports: a log file the user opens from the menu, and optional JSON lines.
//!
//! A tray app has no console (on Windows none at all), so everything it wants a human to see later
//! goes to `gui.log` beside the settings file ("Show log" opens it). With `--json` the app also
//! prints one JSON object per line on stdout — `{"type":"ready",…}`, `{"type":"status","status":
//! <engine snapshot>}`, `{"type":"error",…}`, `{"type":"open_url",…}` — so scripts and the GUI
//! integration test can follow it without screen scraping, exactly as the CLI's `--json` does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

pub struct Output {
    json: bool,
    log_path: PathBuf,
    log: Mutex<Option<File>>,
}

impl Output {
    /// `log_path` is created on first write; failure to write the log is never fatal.
    pub fn new(json: bool, log_path: PathBuf) -> Self {
        Output { json, log_path, log: Mutex::new(None) }
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn json_enabled(&self) -> bool {
        self.json
    }

    /// Append a timestamped line to the log file (and to tracing).
    pub fn log(&self, msg: &str) {
        tracing::info!("{msg}");
        let Ok(mut guard) = self.log.lock() else { return };
        if guard.is_none() {
            if let Some(dir) = self.log_path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            *guard = OpenOptions::new().create(true).append(true).open(&self.log_path).ok();
        }
        if let Some(f) = guard.as_mut() {
            let _ = writeln!(f, "{:.3} {msg}", crate::host::unix_now());
        }
    }

    /// Print `{"type": kind, ...fields}` as one stdout line when `--json` is on.
    pub fn event(&self, kind: &str, fields: Value) {
        if !self.json {
            return;
        }
        let mut obj = json!({ "type": kind });
        if let (Some(o), Value::Object(f)) = (obj.as_object_mut(), fields) {
            o.extend(f);
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (the reader went away) must not kill the tray app: ignore errors.
        let _ = writeln!(out, "{obj}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_append() {
        let d = tempfile::tempdir().unwrap();
        let o = Output::new(false, d.path().join("logs/gui.log"));
        o.log("one");
        o.log("two");
        let text = std::fs::read_to_string(o.log_path()).unwrap();
        assert!(text.lines().count() == 2 && text.contains(" one\n") && text.ends_with(" two\n"), "{text}");
    }
}
