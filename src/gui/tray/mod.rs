//! The tray app proper: tao event loop on the main thread, engines on a tokio runtime beside it.
//!
//! Threads: tao owns the main thread (macOS requires it, and GTK wants one UI thread). A tokio
//! multi-thread runtime runs the engine, the settings page and the status forwarder. Everything
//! that must touch the tray (status updates, menu clicks, settings saved, engine started or
//! stopped, Ctrl-C/SIGTERM) arrives as a [`UserEvent`] through tao's `EventLoopProxy`, so all UI
//! state lives in one struct ([`Tray`]) mutated only on the main thread: no locks around widgets.
//!
//! Engine lifecycle: `Start` spawns `engine::start` on the runtime and gets back `Started(gen, …)`;
//! the generation number lets late events of a stopped engine be ignored. A forwarder task turns
//! the engine's status watch into `Status` events (and `--json` lines). Errors at any step become
//! the error icon, the menu's status line and a log line; nothing fails silently. Quit (menu or
//! signal) stops the engine gracefully (bounded wait) before the loop exits.
//!
//! Dialogs ([`super::dialogs`]) answer through events too (`Folder`, `Adopt`): on Linux they are
//! GTK dialogs shown without blocking the loop, so the tray never waits on one (the folder flow is
//! in [`folder`]). The menu's items, clicks and rendering are in [`menu`], opening pages in a
//! browser in [`links`]. Status changes worth telling become desktop notifications ([`notify`]). "Pause"
//! keeps the engine, its index and the folder, and only stops transfers
//! ([`crate::engine::Engine::set_paused`]).
//!
//! A running master of a secured swarm adds a "Join code: …" item under Pause; clicking it opens the
//! settings page, which shows the code with a Copy button (no clipboard crate needed). The secret
//! and the status page's web token never go to the log or the `--json` lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder, EventLoopProxy};
use tray_icon::menu::{Menu, MenuEvent};
use tray_icon::{TrayIcon, TrayIconBuilder};

use super::config::{self, Mode, Settings};
use super::engine::{self, EngineStatus, RunningEngine};
use super::icons::Icons;
use super::instance::{InstanceInfo, InstanceLock};
use super::output::Output;
use super::settings_page::{self, SettingsServer};
use super::view::{self, IconKind, StatusView};
use super::GuiError;
use crate::status::NodeState;

mod folder;
mod links;
mod menu;
mod notify;

use menu::{build_menu, Items};

#[derive(Debug)]
pub enum UserEvent {
    Menu(MenuEvent),
    Page(settings_page::Request),
    Started(u64, Result<RunningEngine, String>),
    Status(u64, EngineStatus),
    /// The engine of this generation has stopped (the generation is only for log lines).
    Stopped(#[allow(dead_code)] u64),
    /// The folder dialog answered; `then_start` continues a "Start as …".
    Folder {
        mode: Mode,
        then_start: bool,
        picked: super::dialogs::Picked,
    },
    /// The user answered "sync into this non-empty folder?".
    Adopt {
        mode: Mode,
        then_start: bool,
        folder: PathBuf,
        yes: bool,
    },
    Quit,
}

impl std::fmt::Debug for RunningEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunningEngine({:?})", self.mode)
    }
}

pub struct Tray {
    rt: tokio::runtime::Runtime,
    proxy: EventLoopProxy<UserEvent>,
    out: Arc<Output>,
    settings: Arc<Mutex<Settings>>,
    config_path: PathBuf,
    server: SettingsServer,
    lock: Option<InstanceLock>,
    icons: Icons,
    tray: Option<TrayIcon>,
    menu: Menu,
    items: Items,
    view: StatusView,
    shown_icon: Option<IconKind>,
    /// Whether `items.join_code` is in the menu now.
    join_shown: bool,
    engine: Option<RunningEngine>,
    /// Generation of the current (or starting) engine; bumped on every start and stop.
    generation: u64,
    starting: bool,
    /// Engine events already written to the log (by timestamp), to log each once.
    last_event_time: f64,
    /// A non-empty peer folder the user confirmed in the folder dialog: the peer adopts it.
    adopt: Option<PathBuf>,
    /// A folder dialog is open (a second click does not open another).
    dialog_open: bool,
    /// Transfers paused by the menu's "Pause"; a Stop or a new start clears it.
    paused: bool,
    /// The last engine's shutdown: the next start waits for it, so it can bind the same port.
    stopping: Option<tokio::task::JoinHandle<()>>,
    notices: super::notices::Notices,
}

/// Entry point after the display and single-instance checks (see [`super::run`]).
pub fn run(
    out: Arc<Output>,
    settings: Settings,
    config_path: PathBuf,
    lock: InstanceLock,
) -> Result<ExitCode, GuiError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lanscatter-gui-rt")
        .enable_all()
        .build()
        .map_err(GuiError::Runtime)?;
    let event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    forward_menu_events(&proxy);

    let settings = Arc::new(Mutex::new(settings));
    let server = start_settings_page(&rt, &proxy, &settings, &config_path, &lock)?;
    forward_quit_signals(&rt, &proxy);

    let icons = Icons::load().map_err(GuiError::Icons)?;
    let (menu, items) = build_menu();
    let mode = settings.lock().map(|s| s.mode).unwrap_or_default();
    let mut app = Tray {
        rt,
        proxy,
        out,
        settings,
        config_path,
        server,
        lock: Some(lock),
        icons,
        tray: None,
        menu,
        items,
        view: StatusView::idle(mode),
        shown_icon: None,
        join_shown: false,
        engine: None,
        generation: 0,
        starting: false,
        last_event_time: 0.0,
        adopt: None,
        dialog_open: false,
        paused: false,
        stopping: None,
        notices: Default::default(),
    };
    app.refresh_server_menu();

    event_loop.run(move |event, _, control_flow| {
        *control_flow = ControlFlow::Wait;
        // A match guard cannot take `ev` by value, which `handle` needs.
        #[allow(clippy::collapsible_match)]
        match event {
            // The tray must be created once the loop runs (required on macOS).
            Event::NewEvents(StartCause::Init) => app.init(),
            Event::UserEvent(ev) => {
                if app.handle(ev) {
                    app.shutdown();
                    *control_flow = ControlFlow::Exit;
                }
            }
            _ => {}
        }
    })
}

/// Menu clicks arrive on muda's callback; forward them into the loop.
fn forward_menu_events(proxy: &EventLoopProxy<UserEvent>) {
    // The proxy is Send but not necessarily Sync on every platform, hence the mutex.
    let p = Mutex::new(proxy.clone());
    MenuEvent::set_event_handler(Some(move |e| {
        if let Ok(p) = p.lock() {
            let _ = p.send_event(UserEvent::Menu(e));
        }
    }));
}

/// Serve the settings page, its requests forwarded into the loop, and publish its address and
/// token so a second launch can find this instance.
fn start_settings_page(
    rt: &tokio::runtime::Runtime,
    proxy: &EventLoopProxy<UserEvent>,
    settings: &Arc<Mutex<Settings>>,
    config_path: &std::path::Path,
    lock: &InstanceLock,
) -> Result<SettingsServer, GuiError> {
    let p = Mutex::new(proxy.clone());
    let notify: settings_page::Notify = Arc::new(move |r| {
        if let Ok(p) = p.lock() {
            let _ = p.send_event(UserEvent::Page(r));
        }
    });
    let server = rt
        .block_on(SettingsServer::start(settings.clone(), config_path.to_path_buf(), notify))
        .map_err(GuiError::SettingsServer)?;
    lock.publish(&InstanceInfo { pid: std::process::id(), addr: server.addr, token: server.token.clone() })
        .map_err(GuiError::Instance)?;
    Ok(server)
}

/// Ctrl-C in the terminal or SIGTERM from a session manager: quit gracefully.
fn forward_quit_signals(rt: &tokio::runtime::Runtime, proxy: &EventLoopProxy<UserEvent>) {
    let p = proxy.clone();
    rt.spawn(async move {
        wait_for_signal().await;
        let _ = p.send_event(UserEvent::Quit);
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

impl Tray {
    fn settings(&self) -> Settings {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update_settings(&self, f: impl FnOnce(&mut Settings)) -> Result<(), String> {
        let snapshot = {
            let mut s = self.settings.lock().map_err(|_| "settings lock poisoned".to_string())?;
            f(&mut s);
            s.clone()
        };
        config::save(&self.config_path, &snapshot).map_err(|e| e.to_string())
    }

    fn init(&mut self) {
        let built = TrayIconBuilder::new()
            .with_menu(Box::new(self.menu.clone()))
            .with_tooltip("lanscatter")
            .with_title("lanscatter")
            .with_icon(self.icons.get(IconKind::Idle).unwrap_or_else(|_| unreachable_icon()))
            .build();
        match built {
            Ok(t) => self.tray = Some(t),
            // Without a tray host the app is still useful through its settings page and --json.
            Err(e) => self.report_error(&format!("cannot create the tray icon ({e}); is a system tray running?")),
        }
        self.shown_icon = Some(IconKind::Idle);
        self.out.log(&format!("tray app started, settings page {}", self.server.addr));
        self.out.event(
            "ready",
            json!({ "pid": std::process::id(), "settings_url": self.server.url(), "tray": self.tray.is_some(),
                    "config": self.config_path, "log": self.out.log_path() }),
        );
        let s = self.settings();
        if s.autostart_sync {
            self.start(s.mode);
        }
        self.render();
    }

    /// Handle one event; true means quit.
    fn handle(&mut self, ev: UserEvent) -> bool {
        match ev {
            UserEvent::Quit => return true,
            UserEvent::Menu(e) => return self.on_menu(e),
            UserEvent::Page(settings_page::Request::Attention) => {
                self.out.log("another launch asked for attention: opening the settings page");
                self.open_url(&self.server.url());
            }
            UserEvent::Page(settings_page::Request::SettingsSaved(new)) => self.on_settings_saved(new),
            UserEvent::Folder { mode, then_start, picked } => self.on_folder(mode, then_start, picked),
            UserEvent::Adopt { mode, then_start, folder, yes } => self.on_adopt(mode, then_start, folder, yes),
            UserEvent::Started(gen, result) if gen == self.generation => {
                self.starting = false;
                match result {
                    Ok(engine) => {
                        if engine.access.made_secret {
                            let dir = config::config_dir(&self.config_path);
                            self.out.log(&format!("made a swarm secret in {}", dir.display()));
                        }
                        self.out.log(&format!("{} engine started", engine.mode.as_str()));
                        self.spawn_forwarder(gen, engine.status.clone());
                        self.notices.reset();
                        self.engine = Some(engine);
                    }
                    Err(e) => self.report_error(&e),
                }
            }
            UserEvent::Started(_, Ok(stale)) => {
                // Stopped before it finished starting: stop it now (the next start waits for it).
                let before = self.stopping.take();
                self.stopping = Some(self.rt.spawn(async move {
                    if let Some(before) = before {
                        let _ = before.await;
                    }
                    stale.shutdown().await;
                }));
            }
            UserEvent::Status(gen, st) => {
                if gen == self.generation {
                    self.on_status(st);
                }
            }
            // A failed start that was superseded, or an engine that finished stopping.
            UserEvent::Started(_, Err(_)) | UserEvent::Stopped(_) => {}
        }
        self.render();
        false
    }

    fn start(&mut self, mode: Mode) {
        self.start_paused(mode, engine::StartPaused(false));
    }

    /// Start (or restart) the engine in `mode`, its transfers paused if `paused` says so.
    fn start_paused(&mut self, mode: Mode, paused: engine::StartPaused) {
        if self.engine.is_some() || self.starting {
            self.stop();
        }
        self.paused = paused.0;
        let r = self.update_settings(|s| s.mode = mode);
        if let Err(e) = r {
            self.report_error(&e);
            return;
        }
        let s = self.settings();
        self.generation += 1;
        self.starting = true;
        self.view = StatusView {
            phase: Some(NodeState::Starting),
            folder: s.folder().map(PathBuf::from).unwrap_or_default(),
            ..StatusView::idle(mode)
        };
        self.out.log(&format!("starting {} engine", mode.as_str()));
        let (gen, proxy) = (self.generation, self.proxy.clone());
        let dir = config::config_dir(&self.config_path);
        let adopt = mode == Mode::Peer && self.adopt.is_some() && self.adopt == s.peer_folder;
        let stopping = self.stopping.take();
        self.rt.spawn(async move {
            if let Some(previous) = stopping {
                let _ = previous.await;
            }
            let r = engine::start(s, dir, adopt, paused).await;
            let _ = proxy.send_event(UserEvent::Started(gen, r));
        });
    }

    fn stop(&mut self) {
        self.generation += 1;
        self.starting = false;
        self.paused = false;
        if let Some(engine) = self.engine.take() {
            self.out.log(&format!("stopping {} engine", engine.mode.as_str()));
            let (gen, proxy) = (self.generation, self.proxy.clone());
            self.stopping = Some(self.rt.spawn(async move {
                engine.shutdown().await;
                let _ = proxy.send_event(UserEvent::Stopped(gen));
            }));
        }
        self.view = StatusView::idle(self.view.mode);
        self.out.event("stopped", json!({}));
    }

    /// Quit: stop the engine and wait for it (bounded), release the instance lock.
    fn shutdown(&mut self) {
        self.out.log("quitting");
        if let Some(engine) = self.engine.take() {
            let done =
                self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), engine.shutdown()).await });
            if done.is_err() {
                self.out.log("engine did not stop within 10 s; exiting anyway");
            }
        }
        self.tray = None;
        self.lock = None;
        self.out.event("quit", json!({}));
    }

    fn spawn_forwarder(&self, gen: u64, mut rx: tokio::sync::watch::Receiver<EngineStatus>) {
        let (proxy, out) = (self.proxy.clone(), self.out.clone());
        self.rt.spawn(async move {
            loop {
                let st = rx.borrow_and_update().clone();
                out.event("status", json!({ "status": st.snapshot }));
                if proxy.send_event(UserEvent::Status(gen, st)).is_err() {
                    break;
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    fn on_status(&mut self, st: EngineStatus) {
        let before = self.view.phase.clone();
        self.view = st.view;
        if let Some(notice) = self.notices.update(&self.view) {
            self.notify(&notice);
        }
        for (t, msg) in &st.events {
            if *t > self.last_event_time {
                self.out.log(msg);
                self.last_event_time = *t;
            }
        }
        if std::mem::discriminant(&before) != std::mem::discriminant(&self.view.phase) {
            self.out.log(&view::status_line(&self.view));
        }
    }

    fn on_settings_saved(&mut self, new: Settings) {
        self.out.log("settings saved from the settings page");
        if let Err(e) = apply_start_at_login(new.start_at_login) {
            self.report_error(&format!("could not change start-at-login: {e}"));
        }
        self.refresh_server_menu();
        // A running engine picks up new settings by restarting in the (possibly new) mode.
        match engine::restart_after_save(self.engine.is_some() || self.starting, self.paused) {
            Some(paused) => self.start_paused(new.mode, paused),
            None => self.view.mode = new.mode,
        }
    }

    fn report_error(&mut self, msg: &str) {
        self.out.log(&format!("error: {msg}"));
        self.out.event("error", json!({ "message": msg }));
        self.view.phase = Some(NodeState::Error { message: msg.to_string() });
        self.render();
    }
}

impl Tray {
    /// "Pause" / resume: the engine, its index and the folder stay; only transfers stop.
    fn set_paused(&mut self, paused: bool) {
        let Some(engine) = &self.engine else { return };
        engine.set_paused(paused);
        self.paused = paused;
        let what = if paused { "paused: transfers stopped, engine and folder kept" } else { "resumed" };
        self.out.log(what);
        self.out.event("paused", json!({ "paused": paused }));
    }
}

fn apply_start_at_login(enable: bool) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let al = auto_launch::AutoLaunchBuilder::new()
        .set_app_name("lanscatter")
        .set_app_path(&exe.to_string_lossy())
        .set_args(&["gui"])
        .build()
        .map_err(|e| e.to_string())?;
    let enabled = al.is_enabled().unwrap_or(false);
    match (enable, enabled) {
        (true, false) => al.enable().map_err(|e| e.to_string()),
        (false, true) => al.disable().map_err(|e| e.to_string()),
        _ => Ok(()),
    }
}

/// A 1x1 transparent icon: only used if an embedded icon failed to decode, which `Icons::load`
/// already rules out at start-up.
fn unreachable_icon() -> tray_icon::Icon {
    tray_icon::Icon::from_rgba(vec![0; 4], 1, 1).expect("1x1 RGBA is a valid icon")
}
