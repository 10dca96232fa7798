//! Opening pages for the user: the status and settings pages in a browser.
//!
//! `$BROWSER` wins (the user's or a test's choice, as with xdg-open and git), then the platform's
//! opener; `LANSCATTER_NO_BROWSER` leaves the URL to the `--json` line only. A page behind a token
//! is opened with it, but the log and `--json` only ever see the URL without secrets.

use std::path::PathBuf;

use serde_json::json;

use super::Tray;

impl Tray {
    pub(super) fn open_url(&self, url: &str) {
        self.open_link(url, url);
    }

    /// Open `url` in the browser; `--json` reports `shown` (the URL without secrets).
    pub(super) fn open_link(&self, url: &str, shown: &str) {
        self.out.event("open_url", json!({ "url": shown }));
        // Tests and headless scripts read the URL from --json instead of getting a browser.
        if std::env::var_os("LANSCATTER_NO_BROWSER").is_some() {
            return;
        }
        if let Some(browser) = browser_from_env() {
            // The user's (or a test's) choice of browser wins, as with xdg-open and git.
            match std::process::Command::new(&browser).arg(url).stdin(std::process::Stdio::null()).spawn() {
                Ok(mut child) => {
                    // Reap it whenever it exits, without blocking the loop.
                    std::thread::spawn(move || child.wait());
                }
                Err(e) => self.out.log(&format!("cannot run $BROWSER ({}) for {shown}: {e}", browser.display())),
            }
            return;
        }
        if let Err(e) = open::that_detached(url) {
            self.out.log(&format!("cannot open a browser for {shown}: {e}"));
        }
    }
}

/// `$BROWSER`, if set: its first entry (the variable is a `:`-separated list on Unix).
pub(super) fn browser_from_env() -> Option<PathBuf> {
    let v = std::env::var_os("BROWSER").filter(|v| !v.is_empty())?;
    let first = if cfg!(unix) { std::env::split_paths(&v).next()? } else { PathBuf::from(v) };
    (!first.as_os_str().is_empty()).then_some(first)
}

/// Browser URL for an engine listening on `listen` (wildcard binds are reached via loopback).
pub(super) fn status_url(listen: &str) -> Option<String> {
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Some(format!("http://{host}:{}/", addr.port()))
}
