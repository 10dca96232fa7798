//! The page's static files, embedded in the binary (`assets/web/`).
//!
//! Plain HTML/CSS/JS with no build step and no third-party code, so the page works offline and
//! the crate builds without a JavaScript toolchain. Only the fixed names below are served; the
//! `{file}` path segment is matched against them, never used to open anything.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::harden;

pub const MASTER_HTML: &str = include_str!("../../assets/web/index.html");
pub const PEER_HTML: &str = include_str!("../../assets/web/peer.html");
const STYLE_CSS: &str = include_str!("../../assets/web/style.css");
const APP_JS: &str = include_str!("../../assets/web/app.js");
const FAVICON_SVG: &str = include_str!("../../assets/web/favicon.svg");

pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (ty, body) = match file.as_str() {
        "style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "favicon.svg" => ("image/svg+xml", FAVICON_SVG),
        _ => return harden((StatusCode::NOT_FOUND, "no such asset\n").into_response()),
    };
    harden(([(header::CONTENT_TYPE, ty)], body).into_response())
}
