//! The tray app's settings page: token and same-origin checks, validation, persistence.
//!
//! Runs the real server on 127.0.0.1:0 and talks HTTP/1.1 to it with exactly the headers given
//! (no `Host` or `Origin` added), so headers a browser (or an attacker's page) would send are under
//! the test's control. Needs no display and no `gui` feature.

mod web_common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use lanscatter::gui::config::{self, Mode, Settings};
use lanscatter::gui::settings_page::{Request, SettingsServer};

struct Fixture {
    server: SettingsServer,
    dir: tempfile::TempDir,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = requests.clone();
        let settings = Arc::new(Mutex::new(Settings::default()));
        let server = SettingsServer::start(
            settings,
            dir.path().join("gui.json"),
            Arc::new(move |req| r.lock().unwrap().push(req)),
        )
        .await
        .unwrap();
        Fixture { server, dir, requests }
    }

    fn host(&self) -> String {
        self.server.addr.to_string()
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("gui.json")
    }
}

/// `method path` with Host `host`, then `headers`; returns (status, body).
async fn call(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let headers = [&[("host", host)], headers].concat();
    let (status, _, body) = web_common::fetch(addr, method, path, &headers, body.as_bytes()).await;
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    call(addr, "GET", host, path, headers, "").await
}

async fn post_json(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    call(addr, "POST", host, path, &[headers, &[("content-type", "application/json")]].concat(), body).await
}

fn token(t: &str) -> (&'static str, &str) {
    ("x-lanscatter-token", t)
}

#[tokio::test]
async fn page_requires_the_right_token() {
    let f = Fixture::new().await;
    let (addr, host, tok) = (f.server.addr, f.host(), f.server.token.clone());
    assert_eq!(get(addr, &host, "/", &[]).await.0, 403, "missing token");
    assert_eq!(get(addr, &host, "/?token=0123456789abcdef0123456789abcdef", &[]).await.0, 403, "wrong token");
    let (status, body) = get(addr, &host, &format!("/?token={tok}"), &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("lanscatter settings") && body.contains(&tok), "page embeds the token for its API calls");
    assert!(f.server.url().ends_with(&format!("/?token={tok}")));
}

#[tokio::test]
async fn api_requires_token_header_and_same_origin() {
    let f = Fixture::new().await;
    let (addr, host, tok) = (f.server.addr, f.host(), f.server.token.clone());
    assert_eq!(get(addr, &host, "/api/settings", &[]).await.0, 403);
    assert_eq!(get(addr, &host, "/api/settings", &[token("nope")]).await.0, 403);
    let (status, body) = get(addr, &host, "/api/settings", &[token(&tok)]).await;
    assert_eq!(status, 200);
    let s: Settings = serde_json::from_str(&body).unwrap();
    assert_eq!(s, Settings::default());
    // The token in the query string is for the page only, not the API.
    assert_eq!(get(addr, &host, &format!("/api/settings?token={tok}"), &[]).await.0, 403);
    // DNS rebinding: a foreign Host header is refused even with the token.
    assert_eq!(get(addr, "evil.example:80", "/api/settings", &[token(&tok)]).await.0, 403);
}

#[tokio::test]
async fn post_saves_with_token_and_rejects_cross_origin() {
    let f = Fixture::new().await;
    let (addr, host, tok) = (f.server.addr, f.host(), f.server.token.clone());
    let target = f.dir.path().join("mirror");
    let new = Settings {
        mode: Mode::Peer,
        peer_folder: Some(target.clone()),
        server: "127.0.0.1:10564".into(),
        download_slots: 3,
        autostart_sync: true,
        ..Settings::default()
    };
    let body = serde_json::to_string(&new).unwrap();

    // Cross-origin POST, even carrying the right token (e.g. leaked), is refused.
    let evil = [token(&tok), ("origin", "http://evil.example")];
    assert_eq!(post_json(addr, &host, "/api/settings", &evil, &body).await.0, 403);
    let cross_site = [token(&tok), ("sec-fetch-site", "cross-site")];
    assert_eq!(post_json(addr, &host, "/api/settings", &cross_site, &body).await.0, 403);
    // Missing and wrong token.
    assert_eq!(post_json(addr, &host, "/api/settings", &[], &body).await.0, 403);
    assert_eq!(post_json(addr, &host, "/api/settings", &[token("x")], &body).await.0, 403);
    // A plain HTML form post (what a hostile page can auto-submit) is not accepted either.
    let form = [token(&tok), ("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(call(addr, "POST", &host, "/api/settings", &form, "a=b").await.0, 415);
    assert!(!f.config_path().exists(), "nothing saved by rejected requests");
    assert!(f.requests.lock().unwrap().is_empty());

    // Same origin with the token: saved, app notified, server remembered.
    let origin = format!("http://{host}");
    let (status, resp) = post_json(addr, &host, "/api/settings", &[token(&tok), ("origin", &origin)], &body).await;
    assert_eq!(status, 200, "{resp}");
    let saved = config::load(&f.config_path()).unwrap();
    assert_eq!(saved.peer_folder, Some(target));
    assert_eq!(saved.recent_servers, vec!["127.0.0.1:10564".to_string()]);
    assert!(matches!(&f.requests.lock().unwrap()[..], [Request::SettingsSaved(s)] if *s == saved));
    // And the API now serves the saved values.
    let (_, body) = get(addr, &host, "/api/settings", &[token(&tok)]).await;
    assert_eq!(serde_json::from_str::<Settings>(&body).unwrap(), saved);
}

#[tokio::test]
async fn dangerous_folders_refused_with_explanation() {
    let f = Fixture::new().await;
    let (addr, host, tok) = (f.server.addr, f.host(), f.server.token.clone());
    let share = f.dir.path().join("share");
    let root = if cfg!(windows) { "C:\\" } else { "/" };
    let cases = [
        (Settings { peer_folder: Some(root.into()), ..Settings::default() }, "root"),
        (
            Settings {
                master_folder: Some(share.clone()),
                peer_folder: Some(share.join("sub")),
                ..Settings::default()
            },
            "master folder",
        ),
        (Settings { peer_folder: Some("relative/dir".into()), ..Settings::default() }, "absolute"),
        (Settings { server: "http://x/y".into(), ..Settings::default() }, "server address"),
    ];
    for (s, why) in cases {
        let (status, body) =
            post_json(addr, &host, "/api/settings", &[token(&tok)], &serde_json::to_string(&s).unwrap()).await;
        assert_eq!(status, 400, "{why}: {body}");
        assert!(body.contains(why), "explanation should mention {why:?}: {body}");
    }
    if let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()) {
        let s = Settings { peer_folder: Some(home), ..Settings::default() };
        let (status, body) =
            post_json(addr, &host, "/api/settings", &[token(&tok)], &serde_json::to_string(&s).unwrap()).await;
        assert_eq!(status, 400);
        assert!(body.contains("home folder"), "{body}");
    }
    assert!(!f.config_path().exists());
}

#[tokio::test]
async fn attention_ping_reaches_the_app() {
    let f = Fixture::new().await;
    let info = lanscatter::gui::instance::InstanceInfo { pid: 1, addr: f.server.addr, token: f.server.token.clone() };
    assert!(tokio::task::spawn_blocking(move || lanscatter::gui::instance::ping(&info)).await.unwrap());
    let bad = lanscatter::gui::instance::InstanceInfo { pid: 1, addr: f.server.addr, token: "wrong".into() };
    assert!(!tokio::task::spawn_blocking(move || lanscatter::gui::instance::ping(&bad)).await.unwrap());
    assert_eq!(*f.requests.lock().unwrap(), vec![Request::Attention]);
}

#[tokio::test]
async fn swarm_secret_saved_and_read_back_short_one_refused() {
    let f = Fixture::new().await;
    let (addr, host, tok) = (f.server.addr, f.host(), f.server.token.clone());
    let post = |s: &Settings| {
        let body = serde_json::to_string(s).unwrap();
        let (host, tok) = (host.clone(), tok.clone());
        async move { post_json(addr, &host, "/api/settings", &[token(&tok)], &body).await }
    };
    let short = Settings { secret: Some("hunter2".into()), ..Settings::default() };
    let (status, body) = post(&short).await;
    assert_eq!(status, 400, "{body}");
    let parser_says = lanscatter::secret::SwarmSecret::parse("hunter2").unwrap_err().to_string();
    let why: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(why["error"], parser_says.as_str());
    assert!(!f.config_path().exists());

    // Saved as given, served back to the page; a master then shows that code for its peers.
    let secret = "correct horse battery staple";
    let master = Settings { mode: Mode::Master, secret: Some(secret.into()), ..Settings::default() };
    let (status, body) = post(&master).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(config::load(&f.config_path()).unwrap().secret.as_deref(), Some(secret));
    let (_, body) = get(addr, &host, "/api/settings", &[token(&tok)]).await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((page["secret"].as_str(), page["open"].as_bool()), (Some(secret), Some(false)));
    assert_eq!(page["join_code"], secret);
    assert_eq!(serde_json::from_value::<Settings>(page).unwrap(), master);

    // No secret set (empty field): the master's join code is the machine's stored one, kept
    // beside the settings file.
    let stored = Settings { secret: Some(" ".into()), ..master };
    let (status, body) = post(&stored).await;
    assert_eq!(status, 200, "{body}");
    let (made, _) = lanscatter::secret::SwarmSecret::load_or_create(f.dir.path()).unwrap();
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&page["settings"]["secret"], &page["settings"]["join_code"]),
        (&serde_json::Value::Null, &made.join_code().into())
    );
}
