//! The settings form, served by the tray app itself on 127.0.0.1 and opened in the browser.
//!
//! tray-icon + tao + rfd give menus and folder dialogs but no text entry, and a native form toolkit
//! would add a second GUI stack per OS. A small embedded HTML page (`settings.html`) edits the same
//! JSON the app persists. It listens on 127.0.0.1 only, on a random port.
//!
//! Cross-site protection, since any web page the user visits can send requests to 127.0.0.1:
//! - a random 128-bit token, generated per run, is required everywhere: in the page URL the app
//!   opens (`/?token=…`) and in an `X-Lanscatter-Token` header on every API call. A custom header
//!   cannot be sent cross-origin without a CORS preflight, which this server never approves;
//! - a request with an `Origin` header naming another origin is refused even with the right token,
//!   and so is `Sec-Fetch-Site: cross-site`;
//! - the `Host` header must be this server's own `127.0.0.1:port`/`localhost:port`, which defeats
//!   DNS rebinding (a hostile name re-pointed at 127.0.0.1 still sends its own Host).
//!
//! Tokens are compared in constant time. Saving validates numbers and folders (see
//! [`crate::folders`]) and answers 400 with the explanation the page shows; accepted settings are
//! written to disk and passed to the app through the [`Notify`] callback.
//!
//! The swarm secret is edited here too (a masked field, checked by [`SwarmSecret::parse`] when
//! saving, so a bad one is refused with the parser's advice), and in master mode the page also
//! gets the join code the master uses — the one set, else the machine's stored secret beside the
//! settings file — to show and copy for the peers.
//!
//! [`SwarmSecret::parse`]: crate::secret::SwarmSecret::parse

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::config::{self, Mode, Settings};
use crate::folders;
use crate::units;

const PAGE: &str = include_str!("settings.html");
pub const TOKEN_HEADER: &str = "x-lanscatter-token";

/// What the page asks of the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Settings were validated and saved.
    SettingsSaved(Settings),
    /// A second launch asked the running app to show itself.
    Attention,
}

pub type Notify = Arc<dyn Fn(Request) + Send + Sync>;

#[derive(Clone)]
struct Ctx {
    token: Arc<str>,
    addr: SocketAddr,
    settings: Arc<Mutex<Settings>>,
    config_path: Arc<PathBuf>,
    notify: Notify,
}

/// A running settings server.
pub struct SettingsServer {
    pub addr: SocketAddr,
    pub token: String,
    task: tokio::task::JoinHandle<()>,
}

impl SettingsServer {
    /// Bind 127.0.0.1:0 and serve. `settings` is shared with the app, which keeps it current
    /// (folder chosen from the menu, recent servers), so the page always shows the live values.
    pub async fn start(
        settings: Arc<Mutex<Settings>>,
        config_path: PathBuf,
        notify: Notify,
    ) -> std::io::Result<SettingsServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let token = new_token()?;
        let ctx = Ctx { token: token.clone().into(), addr, settings, config_path: Arc::new(config_path), notify };
        let app = Router::new()
            .route("/", get(page))
            .route("/api/settings", get(get_settings).post(post_settings))
            .route("/api/attention", post(attention))
            .with_state(ctx);
        // Runs until the task is aborted (on drop).
        let task = tokio::spawn(crate::transport::serve(
            listener,
            app,
            crate::transport::HEADER_READ_TIMEOUT,
            "settings page",
            std::future::pending(),
        ));
        Ok(SettingsServer { addr, token, task })
    }

    /// URL that opens the page (token included).
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.token)
    }
}

impl Drop for SettingsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn new_token() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(format!("no OS randomness: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn deny(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({ "error": why }))).into_response()
}

/// Same-origin checks shared by every route; `token` is the one the request presented.
/// The error is the finished answer, so handlers can return it as is (hence the size).
#[allow(clippy::result_large_err)]
fn authorize(ctx: &Ctx, headers: &HeaderMap, token: Option<&str>) -> Result<(), Response> {
    let port = ctx.addr.port();
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h == format!("127.0.0.1:{port}") || h == format!("localhost:{port}"));
    if !host_ok {
        return Err(deny(StatusCode::FORBIDDEN, "wrong Host header"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        if o != format!("http://127.0.0.1:{port}") && o != format!("http://localhost:{port}") {
            return Err(deny(StatusCode::FORBIDDEN, "cross-origin request refused"));
        }
    }
    if headers.get("sec-fetch-site").is_some_and(|v| v == "cross-site") {
        return Err(deny(StatusCode::FORBIDDEN, "cross-site request refused"));
    }
    match token {
        Some(t) if ct_eq(t.as_bytes(), ctx.token.as_bytes()) => Ok(()),
        Some(_) => Err(deny(StatusCode::FORBIDDEN, "wrong token: open the settings page from the tray menu")),
        None => Err(deny(StatusCode::FORBIDDEN, "missing token: open the settings page from the tray menu")),
    }
}

fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn page(State(ctx): State<Ctx>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if let Err(r) = authorize(&ctx, &headers, q.token.as_deref()) {
        return r;
    }
    let html = PAGE.replace("{{TOKEN}}", &ctx.token).replace("{{VERSION}}", crate::VERSION);
    // The token is in the page: forbid framing and referrers so it cannot leak to other origins.
    (
        [
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
        .into_response()
}

async fn get_settings(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&ctx, &headers, header_token(&headers)) {
        return r;
    }
    let s = ctx.settings.lock().map(|s| s.clone()).unwrap_or_default();
    Json(PageSettings::of(&s).with_join_code(&s, &ctx.config_path)).into_response()
}

/// The settings as the page gets them: the saved values, plus the rates and chunk size as text
/// in the units people type (the page sends that text back and the server parses it, so the
/// page never converts units itself).
#[derive(Serialize)]
struct PageSettings<'a> {
    #[serde(flatten)]
    settings: &'a Settings,
    text: UnitTexts,
    /// Master mode of a secured swarm: the code peers join with (see [`with_join_code`](Self::with_join_code)).
    join_code: Option<String>,
    /// Why there is no join code to show although one is needed.
    join_code_error: Option<String>,
}

#[derive(Serialize)]
struct UnitTexts {
    max_upload: String,
    max_download: String,
    chunk_size: String,
}

impl<'a> PageSettings<'a> {
    fn of(settings: &'a Settings) -> Self {
        let rate = |r: Option<u64>| r.map(units::format_rate).unwrap_or_default();
        let chunk_size = if settings.chunk_size == 0 { String::new() } else { units::format_size(settings.chunk_size) };
        let text = UnitTexts {
            max_upload: rate(settings.max_upload_bps),
            max_download: rate(settings.max_download_bps),
            chunk_size,
        };
        PageSettings { settings, text, join_code: None, join_code_error: None }
    }

    /// Add the join code a master with these settings uses (making the machine's stored secret
    /// beside `config_path` if there is none yet, as the master would on start).
    fn with_join_code(mut self, s: &Settings, config_path: &std::path::Path) -> Self {
        if s.mode == Mode::Master {
            match s.master_secret(&config::config_dir(config_path)) {
                Ok(secret) => self.join_code = secret.map(|(k, _)| k.join_code()),
                Err(e) => self.join_code_error = Some(e.to_string()),
            }
        }
        self
    }
}

/// Full validation of what the page submits: numbers, server, and both folders.
pub fn validate(s: &Settings) -> Result<(), String> {
    s.validate_numbers().map_err(|e| e.to_string())?;
    if let Some(m) = &s.master_folder {
        folders::check_master_folder(m).map_err(|e| e.to_string())?;
    }
    if let Some(p) = &s.peer_folder {
        folders::check_peer_folder(p, s.master_folder.as_deref()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn post_settings(State(ctx): State<Ctx>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorize(&ctx, &headers, header_token(&headers)) {
        return r;
    }
    // Only JSON: an HTML form (which a hostile page could auto-submit) cannot send this type
    // without a preflight. Checked after the token so probes learn nothing.
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return deny(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json");
    }
    let mut new: Settings = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return deny(StatusCode::BAD_REQUEST, &format!("malformed settings: {e}")),
    };
    // Empty folder fields from the form mean "not chosen", an empty secret means none.
    for f in [&mut new.master_folder, &mut new.peer_folder] {
        if f.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            *f = None;
        }
    }
    new.secret = new.secret.map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
    if let Err(why) = validate(&new) {
        return deny(StatusCode::BAD_REQUEST, &why);
    }
    let server = new.server.trim().to_string();
    new.server = server.clone();
    new.remember_server(&server);
    if let Err(e) = config::save(&ctx.config_path, &new) {
        return deny(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    if let Ok(mut s) = ctx.settings.lock() {
        *s = new.clone();
    }
    (ctx.notify)(Request::SettingsSaved(new.clone()));
    let page = PageSettings::of(&new).with_join_code(&new, &ctx.config_path);
    Json(serde_json::json!({ "ok": true, "settings": page })).into_response()
}

async fn attention(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&ctx, &headers, header_token(&headers)) {
        return r;
    }
    (ctx.notify)(Request::Attention);
    Json(serde_json::json!({ "ok": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_long() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(ct_eq(a.as_bytes(), a.as_bytes()) && !ct_eq(a.as_bytes(), b.as_bytes()));
        assert!(!ct_eq(b"ab", b"abc"));
    }

    #[test]
    fn unit_texts_the_page_shows_read_back_as_the_same_settings() {
        let s = Settings {
            max_upload_bps: Some(12_500_000),
            max_download_bps: None,
            chunk_size: 4 << 20,
            ..Settings::default()
        };
        let mut page = serde_json::to_value(PageSettings::of(&s)).unwrap();
        assert_eq!(page["text"]["max_upload"], "12.5 MB/s");
        assert_eq!(page["text"]["max_download"], "");
        assert_eq!(page["text"]["chunk_size"], "4 MiB");
        // What the page sends: the whole object back, with the unit fields replaced by the text.
        let text = page["text"].clone();
        page["max_upload_bps"] = text["max_upload"].clone();
        page["max_download_bps"] = text["max_download"].clone();
        page["chunk_size"] = text["chunk_size"].clone();
        assert_eq!(serde_json::from_value::<Settings>(page).unwrap(), s);
    }
}
