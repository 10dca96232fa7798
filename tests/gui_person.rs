//! The tray app as a person uses it: every step through the real tray menu, under Xvfb + trayer.
//!
//! `xdotool` clicks the docked icon and picks menu items by their mnemonic keys, exactly as a
//! keyboard user would. The walk: Start as master… → the folder dialog appears (found by its
//! window name) → type the folder's path + Enter → the master runs (the app's `--json` status) →
//! Open status page (a `$BROWSER` stub records the URL; headless Chromium loads it and the page
//! shows the master) → Settings… (the page in Chromium: change the server and the download limit,
//! save; `gui.json` has them) → Stop → Start as peer… → the dialog again, a new folder → the peer
//! syncs from a second master (started here through the Engine) byte for byte → a "sync complete"
//! desktop notification reached the notification recorder on the private D-Bus session → Quit →
//! exit 0. A screenshot of the screen (`import -window root`) or the page is saved at each step
//! as `target/gui-person-<n>-<step>.png`. Every wait has a deadline: a hang fails the test.
//!
//! Skipped with a printed reason without the `gui` feature; with it, missing tools skip too,
//! except under `CI=true`, where that fails (CI installs them: `.ci/run`).

mod common;
mod web_common;

#[cfg(not(feature = "gui"))]
#[test]
fn a_person_drives_the_tray_menu() {
    eprintln!("SKIPPED gui_person: built without the `gui` feature (run `cargo test --all-features`)");
}

#[cfg(all(feature = "gui", not(target_os = "linux")))]
#[test]
fn a_person_drives_the_tray_menu() {
    eprintln!("SKIPPED gui_person: the Xvfb-based tray test runs on Linux only");
}

#[cfg(all(feature = "gui", target_os = "linux"))]
#[test]
fn a_person_drives_the_tray_menu() {
    use common::desktop::{in_ci, on_path};
    let mut missing: Vec<&str> =
        ["Xvfb", "trayer", "import", "xdotool", "dbus-daemon"].into_iter().filter(|t| !on_path(t)).collect();
    let py_ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import dbus, gi; from gi.repository import GLib"])
        .status()
        .is_ok_and(|s| s.success());
    if !py_ok {
        missing.push("python3-dbus/python3-gi");
    }
    if web_common::chromium_path().is_none() {
        missing.push("chromium");
    }
    if !missing.is_empty() {
        let reason = format!(
            "missing: {} (apt-get install xvfb trayer imagemagick xdotool dbus python3-dbus python3-gi chromium)",
            missing.join(", ")
        );
        assert!(!in_ci(), "gui_person must run in CI but cannot: {reason}");
        eprintln!("SKIPPED gui_person: {reason}");
        return;
    }
    person::run();
}

#[cfg(all(feature = "gui", target_os = "linux"))]
mod person {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use crate::common::desktop::{
        docked_icon, next, screenshot, shot_dir, start_trayer, start_xvfb, state_name, wait_until, xdotool,
        Notifications,
    };
    use crate::common::{cli, tree_contents, Lines, Proc};
    use crate::web_common::{chromium_path, wait_page, Browser};
    use lanscatter::gui::config::{self, Mode, Settings};
    use lanscatter::gui::dialogs::{MASTER_FOLDER_TITLE, PEER_FOLDER_TITLE};

    /// One bound for every single step; the whole walk stays well under two minutes.
    const STEP: Duration = Duration::from_secs(45);

    struct Desk {
        display: String,
        gui: Proc,
        shots: usize,
        urls: PathBuf,
    }

    impl Desk {
        /// Screenshot of the whole screen as `target/gui-person-<n>-<name>.png`.
        fn shot(&mut self, name: &str) -> PathBuf {
            self.shots += 1;
            let path = shot_dir().join(format!("gui-person-{}-{name}.png", self.shots));
            assert!(screenshot(&self.display, &path), "screenshot {name}");
            eprintln!("gui_person: screenshot {}", path.display());
            path
        }

        /// Open the tray menu (click the icon docked in trayer) and press the item's mnemonic.
        fn menu(&mut self, key: &str, what: &str) {
            self.open_menu(what);
            self.shot(&format!("menu-for-{what}"));
            xdotool(&self.display, &["key", key]).expect("menu key");
        }

        /// Open the menu to show its status line in a screenshot, then close it with Escape.
        fn status_shot(&mut self, name: &str) {
            let menu = self.open_menu(name);
            self.shot(name);
            xdotool(&self.display, &["key", "Escape"]).expect("Escape");
            wait_until(&format!("the menu closed after {name}"), STEP, || {
                let now = self.visible_windows();
                menu.iter().all(|w| !now.contains(w))
            });
        }

        /// Click the docked icon; returns the windows that appeared (the menu's popup).
        fn open_menu(&mut self, what: &str) -> Vec<String> {
            // Click the icon itself, once docked: the GtkStatusIcon pops the menu on button 1.
            let (x, y) = docked_icon(&self.display, STEP);
            let before = self.visible_windows();
            xdotool(&self.display, &["mousemove", &x.to_string(), &y.to_string(), "click", "1"]).expect("click");
            // The menu is up once its popup window is mapped: a visible window that was not there.
            let mut new = Vec::new();
            wait_until(&format!("the tray menu (for {what})"), STEP, || {
                new = self.visible_windows().into_iter().filter(|w| !before.contains(w)).collect();
                !new.is_empty()
            });
            new
        }

        fn visible_windows(&self) -> Vec<String> {
            xdotool(&self.display, &["search", "--onlyvisible", "--name", ""])
                .map(|o| o.lines().map(String::from).collect())
                .unwrap_or_default()
        }

        /// The dialog titled `title` appears; type `folder` into its location entry + Enter.
        fn pick(&mut self, title: &str, folder: &Path, name: &str) {
            next(&mut self.gui, "the dialog event", STEP, &|v| v["type"] == "dialog" && v["title"] == title);
            let pattern = regex_escape(title);
            let mut win = String::new();
            wait_until(&format!("the window {title:?}"), STEP, || {
                match xdotool(&self.display, &["search", "--onlyvisible", "--name", &pattern]) {
                    Some(o) => o.lines().next().map(|w| win = w.to_string()).is_some(),
                    None => false,
                }
            });
            xdotool(&self.display, &["windowfocus", "--sync", &win]).expect("focus the dialog");
            // Give GTK the focus-in before typing; then the location entry takes the path.
            wait_until("the dialog has the focus", STEP, || {
                xdotool(&self.display, &["getwindowfocus"]).is_some_and(|f| f.trim() == win)
            });
            self.shot(name);
            xdotool(&self.display, &["key", "--window", &win, "ctrl+l"]).expect("ctrl+l");
            let typed = format!("{}/", folder.display());
            xdotool(&self.display, &["type", "--delay", "20", &typed]).expect("type the path");
            self.shot(&format!("{name}-typed"));
            xdotool(&self.display, &["key", "Return"]).expect("Return");
            wait_until("the dialog closes", STEP, || {
                xdotool(&self.display, &["search", "--onlyvisible", "--name", &pattern]).is_none()
            });
        }

        /// The next URL the `$BROWSER` stub was given that starts with `prefix`.
        fn browsed(&self, prefix: &str) -> String {
            let mut found = String::new();
            wait_until(&format!("$BROWSER called with {prefix}…"), STEP, || {
                let text = std::fs::read_to_string(&self.urls).unwrap_or_default();
                text.lines().rev().find(|l| l.starts_with(prefix)).map(|l| found = l.to_string()).is_some()
            });
            found
        }
    }

    fn regex_escape(s: &str) -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == ' ' { c.to_string() } else { ".".to_string() }).collect()
    }

    /// Two folders at the top (`docs`, `media`): the dialog's location entry completes a typed
    /// `served/` inline to its only subfolder (`served/docs/`, selected, as GTK does), and Enter
    /// would then pick that; with two there is nothing unique to complete.
    fn write_tree(root: &Path, seed: u8, big: usize) {
        std::fs::create_dir_all(root.join("docs/deep")).unwrap();
        std::fs::create_dir_all(root.join("media")).unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed);
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        std::fs::write(root.join("big.bin"), noise(big)).unwrap();
        std::fs::write(root.join("docs/readme.txt"), format!("tree {seed}\n")).unwrap();
        std::fs::write(root.join("docs/deep/mid.bin"), noise(200_000)).unwrap();
        std::fs::write(root.join("media/clip.bin"), noise(50_000)).unwrap();
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn running(v: &Value, mode: &str, state: &str) -> bool {
        v["type"] == "status" && v["status"]["role"] == mode && state_name(&v["status"]["state"]) == state
    }

    pub fn run() {
        let started = Instant::now();
        let tmp = tempfile::tempdir().unwrap();
        let (served, other, mirror) = (tmp.path().join("served"), tmp.path().join("other"), tmp.path().join("mirror"));
        write_tree(&served, 1, 1 << 20);
        write_tree(&other, 2, 4 << 20);
        std::fs::create_dir_all(&mirror).unwrap();

        let (_xvfb, display) = start_xvfb("1280x1024");
        let _trayer = start_trayer(&display);
        let notes = Notifications::start(tmp.path());

        // The second master, in-process, in the swarm the app's settings hold the secret of.
        let secret = lanscatter::secret::SwarmSecret::generate().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let second = rt.block_on(async {
            let mut cfg = lanscatter::master::MasterConfig::new(other.clone());
            cfg.bind = "127.0.0.1:0".parse().unwrap();
            cfg.security = lanscatter::transport::Security::from_secret(&secret).unwrap();
            lanscatter::engine::Engine::start(cfg).await.expect("second master starts")
        });

        // A fresh user's settings, except for a free port (not the default) and the join code.
        let cfg_path = tmp.path().join("config/gui.json");
        let port = free_port();
        let settings =
            Settings { mode: Mode::Master, local_port: port, secret: Some(secret.join_code()), ..Default::default() };
        config::save(&cfg_path, &settings).unwrap();
        let urls = tmp.path().join("browsed.txt");
        let stub = tmp.path().join("browser-stub.sh");
        std::fs::write(&stub, format!("#!/bin/sh\necho \"$1\" >> '{}'\n", urls.display())).unwrap();
        let mut perm = std::fs::metadata(&stub).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&stub, perm).unwrap();

        let mut c = cli(["gui", "--json", "--config"]);
        c.arg(&cfg_path)
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("LANSCATTER_NO_BROWSER")
            .env("BROWSER", &stub)
            .env("DBUS_SESSION_BUS_ADDRESS", &notes.address)
            .env("NO_AT_BRIDGE", "1")
            .env("RUST_LOG", "info");
        let gui = Proc::start(c, Lines::Stdout);
        let mut d = Desk { display, gui, shots: 0, urls };
        let ready = next(&mut d.gui, "ready line", Duration::from_secs(60), &|v| v["type"] == "ready");
        assert_eq!(ready["tray"], true, "tray icon could not be created: {ready}");
        let settings_url = ready["settings_url"].as_str().unwrap().to_string();

        // Start as master… on a fresh config opens the folder dialog (this hung: rfd#198).
        d.menu("m", "start-master");
        d.pick(MASTER_FOLDER_TITLE, &served, "master-dialog");
        let st = next(&mut d.gui, "the master up", STEP, &|v| running(v, "master", "up_to_date"));
        assert_eq!(st["status"]["listen"], format!("0.0.0.0:{port}"), "{st}");
        let saved = config::load(&cfg_path).unwrap();
        assert_eq!(saved.master_folder.as_deref(), Some(served.as_path()), "the picked folder is saved");
        d.status_shot("master-running");

        // Open status page: the stub gets the URL (with the swarm's web token); Chromium shows it.
        let mut browser = rt.block_on(Browser::launch(&chromium_path().unwrap()));
        d.menu("o", "status-page");
        let status_url = d.browsed(&format!("http://127.0.0.1:{port}/"));
        assert!(status_url.contains("?token="), "a secured node's page gets its token: {status_url}");
        rt.block_on(async {
            browser.navigate(&status_url).await;
            // A secured swarm: the page must not raise the "open swarm" alarm.
            let js = "document.querySelectorAll('#nodes [data-node]').length >= 1 && \
                      document.body.innerText.toLowerCase().includes('master') && \
                      getComputedStyle(document.getElementById('open-swarm')).display === 'none'";
            wait_page(&mut browser, js, STEP).await;
            browser.screenshot(&shot_dir().join("gui-person-page-status.png"), false).await;
        });

        // Settings…: change the server and the download limit in the page, save, read gui.json.
        d.menu("s", "settings");
        let url = d.browsed(&settings_url);
        let server = second.local_addr().to_string();
        rt.block_on(async {
            browser.navigate(&url).await;
            wait_page(&mut browser, "document.getElementById('f').elements.mode.value === 'master'", STEP).await;
            let js = format!(
                "(() => {{ const e = document.getElementById('f').elements; e.server.value = '{server}'; \
                 e.max_download.value = '40MB/s'; document.getElementById('f').requestSubmit(); return true; }})()"
            );
            browser.eval(&js).await;
            wait_page(&mut browser, "document.getElementById('msg').textContent === 'Saved.'", STEP).await;
            browser.screenshot(&shot_dir().join("gui-person-page-settings.png"), false).await;
        });
        let saved = config::load(&cfg_path).unwrap();
        assert_eq!((saved.server.as_str(), saved.max_download_bps), (server.as_str(), Some(40_000_000)));
        // Saving restarts the running engine with the new settings.
        next(&mut d.gui, "the master after the save", STEP, &|v| running(v, "master", "up_to_date"));

        // Stop, then Start as peer…: no peer folder yet, so the dialog again.
        d.menu("t", "stop");
        next(&mut d.gui, "stopped", STEP, &|v| v["type"] == "stopped");
        d.menu("p", "start-peer");
        d.pick(PEER_FOLDER_TITLE, &mirror, "peer-dialog");
        let done = next(&mut d.gui, "the peer up to date", Duration::from_secs(90), &|v| {
            running(v, "peer", "up_to_date") && v["status"]["bytes_total"].as_u64().unwrap_or(0) > 0
        });
        eprintln!("gui_person: peer synced {} bytes", done["status"]["bytes_total"]);
        let mut theirs = tree_contents(&mirror);
        theirs.retain(|k, _| !k.starts_with(".lanscatter"));
        assert_eq!(theirs, tree_contents(&other), "the peer's folder differs from the second master's");
        d.status_shot("peer-synced");
        wait_until("a 'sync complete' desktop notification", STEP, || {
            notes.seen().iter().any(|n| n["app"] == "lanscatter" && n["summary"] == "lanscatter: sync complete")
        });
        eprintln!("gui_person: notifications {:?}", notes.seen());

        d.menu("q", "quit");
        next(&mut d.gui, "quit line", STEP, &|v| v["type"] == "quit");
        let (status, _) = d.gui.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "gui exit status {status:?}");
        rt.block_on(async {
            browser.close().await;
            second.shutdown().await;
        });
        eprintln!("gui_person: the walk took {:.1}s", started.elapsed().as_secs_f64());
    }
}
