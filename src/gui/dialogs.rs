//! The tray's dialogs (folder picker, warning, yes/no), answered through a callback.
//!
//! **Why not rfd on Linux.** rfd's GTK backend runs its dialogs on a GTK thread of its own and
//! blocks the caller until that thread answers. Under tao, GTK already belongs to the main thread,
//! so rfd's thread never gets to run and the whole app hangs (PolyMeilex/rfd#198). Here the Linux
//! (and BSD) dialogs are GTK's own `FileChooserDialog`/`MessageDialog`, built on the main thread on
//! tao's GTK and shown *non-modally*: [`pick_folder`] returns at once and the answer comes back
//! through `done` from GTK's `response` signal, which tao's loop dispatches like any other event.
//! The tray stays live while a dialog is open (status updates, Quit), and there is no second GTK
//! thread to deadlock on. A child process (`lanscatter pick-folder`) would also avoid the hang,
//! but costs a process start and a second GTK init per click; the XDG portal is missing on many
//! desktops and needs a fallback anyway. Both would be more moving parts than GTK's own dialog.
//!
//! **Windows and macOS** keep their native dialogs through rfd, called on the main thread as
//! those platforms require; they are modal and return when the user answers, then `done` runs.
//!
//! Every failure (GTK not initialised, no display) comes back as `Err(text)` through `done`, never
//! as a hang or a panic, so the tray can show it and log it.

use std::path::{Path, PathBuf};

/// The user's answer to a folder dialog: `Ok(None)` is Cancel.
pub type Picked = Result<Option<PathBuf>, String>;

/// Window titles, also what the GUI test finds the dialog by.
pub const MASTER_FOLDER_TITLE: &str = "lanscatter: folder to serve (master)";
pub const PEER_FOLDER_TITLE: &str = "lanscatter: folder to mirror into (peer); its other contents will be replaced";

#[cfg(all(unix, not(target_os = "macos")))]
mod imp {
    use super::*;
    use gtk::prelude::*;

    fn ready() -> Result<(), String> {
        if gtk::is_initialized_main_thread() {
            Ok(())
        } else {
            Err("the folder dialog needs GTK on the main thread, which is not running; set the folder in \
                 Settings… instead"
                .into())
        }
    }

    pub fn pick_folder(title: &str, start: Option<&Path>, done: Box<dyn FnOnce(Picked)>) {
        if let Err(e) = ready() {
            return done(Err(e));
        }
        let dialog = gtk::FileChooserDialog::with_buttons(
            Some(title),
            None::<&gtk::Window>,
            gtk::FileChooserAction::SelectFolder,
            &[("_Cancel", gtk::ResponseType::Cancel), ("_Select", gtk::ResponseType::Accept)],
        );
        // Enter in the typed-path entry selects the folder, as the Select button does.
        dialog.set_default_response(gtk::ResponseType::Accept);
        dialog.set_create_folders(true);
        // Always open in a folder: GTK's default start is "Recent", where a path typed into the
        // location entry + Enter is ignored instead of selecting that folder.
        let dir = start.filter(|d| d.is_dir()).map(Path::to_path_buf).unwrap_or_else(gtk::glib::home_dir);
        let _ = dialog.set_current_folder(&dir);
        let done = std::cell::Cell::new(Some(done));
        dialog.connect_response(move |d, resp| {
            let picked = match resp {
                gtk::ResponseType::Accept => d.filename(),
                _ => None,
            };
            // Close first, so a slow `done` never leaves the window on screen.
            d.close();
            if let Some(done) = done.take() {
                done(Ok(picked));
            }
        });
        dialog.present();
    }

    fn message(title: &str, text: &str, kind: gtk::MessageType, buttons: gtk::ButtonsType) -> gtk::MessageDialog {
        let d = gtk::MessageDialog::new(None::<&gtk::Window>, gtk::DialogFlags::empty(), kind, buttons, text);
        d.set_title(title);
        d
    }

    pub fn warn(title: &str, text: &str) {
        if ready().is_err() {
            return; // the caller reported the problem in the tray already
        }
        let d = message(title, text, gtk::MessageType::Warning, gtk::ButtonsType::Ok);
        d.connect_response(|d, _| d.close());
        d.present();
    }

    pub fn confirm(title: &str, text: &str, done: Box<dyn FnOnce(bool)>) {
        if ready().is_err() {
            return done(false);
        }
        let d = message(title, text, gtk::MessageType::Warning, gtk::ButtonsType::YesNo);
        let done = std::cell::Cell::new(Some(done));
        d.connect_response(move |d, resp| {
            d.close();
            if let Some(done) = done.take() {
                done(resp == gtk::ResponseType::Yes);
            }
        });
        d.present();
    }
}

#[cfg(any(windows, target_os = "macos"))]
mod imp {
    use super::*;

    pub fn pick_folder(title: &str, start: Option<&Path>, done: Box<dyn FnOnce(Picked)>) {
        let mut dialog = rfd::FileDialog::new().set_title(title);
        if let Some(dir) = start {
            dialog = dialog.set_directory(dir);
        }
        done(Ok(dialog.pick_folder()));
    }

    pub fn warn(title: &str, text: &str) {
        rfd::MessageDialog::new().set_level(rfd::MessageLevel::Warning).set_title(title).set_description(text).show();
    }

    pub fn confirm(title: &str, text: &str, done: Box<dyn FnOnce(bool)>) {
        let answer = rfd::MessageDialog::new()
            .set_level(rfd::MessageLevel::Warning)
            .set_title(title)
            .set_description(text)
            .set_buttons(rfd::MessageButtons::YesNo)
            .show();
        done(answer == rfd::MessageDialogResult::Yes);
    }
}

/// Ask for a folder; `done` gets the answer (possibly later, from the event loop).
pub fn pick_folder(title: &str, start: Option<&Path>, done: impl FnOnce(Picked) + 'static) {
    imp::pick_folder(title, start, Box::new(done));
}

/// Show a warning the user dismisses; nothing waits for it.
pub fn warn(title: &str, text: &str) {
    imp::warn(title, text);
}

/// Ask yes or no; `done(true)` for yes (possibly later, from the event loop).
pub fn confirm(title: &str, text: &str, done: impl FnOnce(bool) + 'static) {
    imp::confirm(title, text, Box::new(done));
}
