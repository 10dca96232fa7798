//! The tray's folder flow: "Start as …" and "Choose folder…" through the folder dialog.
//!
//! The dialog answers later, through [`UserEvent::Folder`] (see [`crate::gui::dialogs`] for why
//! it must not block on Linux), so the flow is split at each question the user is asked: pick a
//! folder → refuse a dangerous one → ask before adopting a non-empty peer folder
//! ([`UserEvent::Adopt`]) → save it → and, for a "Start as …", check the server and secret and
//! start. Every refusal or dialog failure becomes the error icon, the menu's status line, a log
//! line and a `--json` error, never a silent return.

use std::path::PathBuf;

use serde_json::json;

use super::{Tray, UserEvent};
use crate::gui::config::{self, Mode};
use crate::gui::dialogs;

impl Tray {
    /// "Start as …": make sure a folder is chosen (dialog) and, for a peer, a server is set.
    pub(super) fn start_interactive(&mut self, mode: Mode) {
        let s = self.settings();
        let has_folder = match mode {
            Mode::Master => s.master_folder.is_some(),
            Mode::Peer => s.peer_folder.is_some(),
        };
        if has_folder {
            self.start_checked(mode);
        } else {
            self.choose_folder(mode, true);
        }
    }

    /// The folder is set: start unless a peer lacks its server or secret (then say what to do).
    fn start_checked(&mut self, mode: Mode) {
        let s = self.settings();
        if mode == Mode::Peer && s.server.trim().is_empty() {
            self.report_error("enter the master's address in the settings page, then start again");
            self.open_url(&self.server.url());
            return;
        }
        if mode == Mode::Peer && !s.open && s.secret.as_deref().is_none_or(|k| k.trim().is_empty()) {
            self.report_error(config::NO_PEER_SECRET);
            self.open_url(&self.server.url());
            return;
        }
        self.start(mode);
    }

    /// Open the folder dialog for `mode`; the answer arrives as [`UserEvent::Folder`].
    pub(super) fn choose_folder(&mut self, mode: Mode, then_start: bool) {
        if self.dialog_open {
            self.out.log("a folder dialog is already open");
            return;
        }
        let s = self.settings();
        let title = match mode {
            Mode::Master => dialogs::MASTER_FOLDER_TITLE,
            Mode::Peer => dialogs::PEER_FOLDER_TITLE,
        };
        let current = match mode {
            Mode::Master => s.master_folder,
            Mode::Peer => s.peer_folder,
        };
        self.dialog_open = true;
        self.out.log(&format!("folder dialog opened for the {}", mode.as_str()));
        self.out.event("dialog", json!({ "title": title }));
        let proxy = self.proxy.clone();
        dialogs::pick_folder(title, current.as_deref(), move |picked| {
            let _ = proxy.send_event(UserEvent::Folder { mode, then_start, picked });
        });
    }

    /// The folder dialog answered: refuse dangerous folders with the reason, ask before adopting.
    pub(super) fn on_folder(&mut self, mode: Mode, then_start: bool, picked: dialogs::Picked) {
        self.dialog_open = false;
        let folder = match picked {
            Ok(Some(folder)) => folder,
            Ok(None) => return self.out.log("folder dialog cancelled"),
            Err(e) => return self.report_error(&format!("the folder dialog failed: {e}")),
        };
        let s = self.settings();
        let check = match mode {
            Mode::Master => crate::folders::check_master_folder(&folder),
            Mode::Peer => crate::folders::check_peer_folder(&folder, s.master_folder.as_deref()),
        };
        if let Err(e) = check {
            self.report_error(&e.to_string());
            dialogs::warn("lanscatter: folder refused", &e.to_string());
            return;
        }
        if mode == Mode::Peer && crate::peer::adopt::needs_adoption(&folder).unwrap_or(false) {
            let text = format!(
                "{} is not empty and was not synced by lanscatter before.\n\nSync into it? Files that match the \
                 master's are reused; files the master lacks will be deleted.",
                folder.display()
            );
            let proxy = self.proxy.clone();
            dialogs::confirm("lanscatter: the folder is not empty", &text, move |yes| {
                let _ = proxy.send_event(UserEvent::Adopt { mode, then_start, folder, yes });
            });
            return;
        }
        self.set_folder(mode, folder, then_start);
    }

    /// The answer to "sync into this non-empty folder?".
    pub(super) fn on_adopt(&mut self, mode: Mode, then_start: bool, folder: PathBuf, yes: bool) {
        if !yes {
            return self.out.log(&format!("not syncing into {}: the user said no", folder.display()));
        }
        self.adopt = Some(folder.clone());
        self.set_folder(mode, folder, then_start);
    }

    fn set_folder(&mut self, mode: Mode, folder: PathBuf, then_start: bool) {
        match self.update_settings(|s| s.set_folder(mode, folder.clone())) {
            Ok(()) => {
                self.out.log(&format!("{} folder set to {}", mode.as_str(), folder.display()));
                if then_start {
                    self.start_checked(mode);
                }
            }
            Err(e) => self.report_error(&e),
        }
    }
}
