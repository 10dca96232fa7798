//! The tray's menu: its items, what a click on each does, and how the status shows in it.
//!
//! Built once ([`build_menu`]); [`Tray::render`] pushes the status view into the icon, tooltip and
//! item texts after every event, and [`Tray::on_menu`] maps a clicked item's id to the app's action.
//! Only the recent-server entries and the join code come and go while the app runs.

use tray_icon::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};

use super::links::status_url;
use super::Tray;
use crate::gui::config::Mode;
use crate::gui::view;

/// Menu items whose text, state or identity the app needs later.
pub(super) struct Items {
    status: MenuItem,
    start_peer: MenuItem,
    start_master: MenuItem,
    stop: MenuItem,
    pause: CheckMenuItem,
    /// In the menu only while a secured master runs (see [`Tray::render`]).
    join_code: MenuItem,
    choose_folder: MenuItem,
    servers: Submenu,
    /// (item, server address) of the recent-server entries currently in the submenu.
    server_items: Vec<(CheckMenuItem, String)>,
    new_server: MenuItem,
    open_status: MenuItem,
    show_log: MenuItem,
    settings: MenuItem,
    quit: MenuItem,
}

/// `&` marks each item's mnemonic (underlined; the key picks the item while the menu is open, on
/// GTK and Windows; macOS drops the mark). The GUI test drives the menu with these keys too.
pub(super) fn build_menu() -> (Menu, Items) {
    let items = Items {
        status: MenuItem::new("Stopped", false, None),
        start_peer: MenuItem::new("Start as &peer…", true, None),
        start_master: MenuItem::new("Start as &master…", true, None),
        stop: MenuItem::new("S&top", false, None),
        pause: CheckMenuItem::new("P&ause", false, false, None),
        join_code: MenuItem::new("Join code…", true, None),
        choose_folder: MenuItem::new("&Choose folder…", true, None),
        servers: Submenu::new("Ser&ver", true),
        server_items: Vec::new(),
        new_server: MenuItem::new("&Enter a new server…", true, None),
        open_status: MenuItem::new("&Open status page", false, None),
        show_log: MenuItem::new("Show &log", true, None),
        settings: MenuItem::new("&Settings…", true, None),
        quit: MenuItem::new("&Quit", true, None),
    };
    let menu = Menu::new();
    let sep = PredefinedMenuItem::separator;
    let all: [&dyn tray_icon::menu::IsMenuItem; 15] = [
        &items.status,
        &sep(),
        &items.start_peer,
        &items.start_master,
        &items.stop,
        &items.pause,
        &sep(),
        &items.choose_folder,
        &items.servers,
        &sep(),
        &items.open_status,
        &items.show_log,
        &items.settings,
        &sep(),
        &items.quit,
    ];
    for item in all {
        let _ = menu.append(item);
    }
    (menu, items)
}

impl Tray {
    pub(super) fn on_menu(&mut self, e: MenuEvent) -> bool {
        let id = e.id;
        let it = &self.items;
        if id == *it.quit.id() {
            return true;
        } else if id == *it.start_peer.id() {
            self.start_interactive(Mode::Peer);
        } else if id == *it.start_master.id() {
            self.start_interactive(Mode::Master);
        } else if id == *it.stop.id() {
            self.stop();
        } else if id == *it.pause.id() {
            self.set_paused(!self.paused);
        } else if id == *it.choose_folder.id() {
            let mode = self.settings().mode;
            self.choose_folder(mode, false);
        } else if id == *it.new_server.id() || id == *it.settings.id() || id == *it.join_code.id() {
            self.open_url(&self.server.url());
        } else if id == *it.show_log.id() {
            self.out.log("log opened from the menu");
            let path = self.out.log_path().to_path_buf();
            if let Err(e) = open::that_detached(&path) {
                self.report_error(&format!("cannot open the log {}: {e}", path.display()));
            }
        } else if id == *it.open_status.id() {
            if let Some(url) = status_url(&self.view.listen) {
                // A secured node's page wants its web token; `--json` gets the URL without it.
                match self.engine.as_ref().and_then(|e| e.access.web_token.as_deref()) {
                    Some(token) => self.open_link(&format!("{url}?token={token}"), &url),
                    None => self.open_url(&url),
                }
            }
        } else if let Some((_, server)) = self.items.server_items.iter().find(|(i, _)| *i.id() == id) {
            let server = server.clone();
            let r = self.update_settings(|s| {
                s.server = server.clone();
                s.remember_server(&server);
            });
            if let Err(e) = r {
                self.report_error(&e);
            }
            self.refresh_server_menu();
        }
        self.render();
        false
    }

    pub(super) fn refresh_server_menu(&mut self) {
        let s = self.settings();
        for (item, _) in self.items.server_items.drain(..) {
            let _ = self.items.servers.remove(&item);
        }
        let _ = self.items.servers.remove(&self.items.new_server);
        for server in &s.recent_servers {
            let item = CheckMenuItem::new(server.replace('&', "&&"), true, *server == s.server, None);
            let _ = self.items.servers.append(&item);
            self.items.server_items.push((item, server.clone()));
        }
        let _ = self.items.servers.append(&self.items.new_server);
    }

    /// Push `self.view` into the icon, tooltip and menu.
    pub(super) fn render(&mut self) {
        let running = self.engine.is_some() || self.starting;
        let it = &self.items;
        let line = view::status_line(&self.view);
        let line = if self.paused { format!("Paused — {line}") } else { line };
        // `&` marks a mnemonic in item texts; a folder name's own `&` must show as itself.
        it.status.set_text(line.replace('&', "&&"));
        it.stop.set_enabled(running);
        it.pause.set_enabled(self.engine.is_some());
        it.pause.set_checked(self.paused);
        it.open_status.set_enabled(running && status_url(&self.view.listen).is_some());
        self.render_join_code();
        let kind = view::icon_kind(&self.view);
        if let Some(tray) = &self.tray {
            let _ = tray.set_tooltip(Some(view::tooltip(&self.view)));
            if self.shown_icon != Some(kind) {
                if let Ok(icon) = self.icons.get(kind) {
                    let _ = tray.set_icon(Some(icon));
                    self.shown_icon = Some(kind);
                }
            }
        }
    }

    /// Show the running master's join code in the menu (under Stop), or take the item away.
    pub(super) fn render_join_code(&mut self) {
        let code = self.engine.as_ref().and_then(|e| e.access.join_code.as_deref());
        match (code, self.join_shown) {
            (Some(code), false) => {
                self.items.join_code.set_text(format!("Join code: {code}"));
                // Position 6, after the engine's controls (status, separator, start peer, start
                // master, stop, pause): between Stop and Pause it split them (seen in gui_person).
                self.join_shown = self.menu.insert(&self.items.join_code, 6).is_ok();
            }
            (None, true) => {
                let _ = self.menu.remove(&self.items.join_code);
                self.join_shown = false;
            }
            _ => {}
        }
    }
}
