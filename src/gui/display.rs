//! Is there a display to put a tray icon on?
//!
//! tao (through GTK) panics or aborts when it cannot open a display, which would greet a user who
//! ran `lanscatter gui` over SSH with a backtrace. On X11/Wayland systems we check the environment
//! first and return an explanation instead. Windows and macOS always have a session display for
//! an interactive user, so the check passes there.

/// `Err(explanation)` when no display is reachable.
pub fn check() -> Result<(), String> {
    check_env(|k| std::env::var_os(k))
}

pub fn check_env(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<(), String> {
    if cfg!(any(windows, target_os = "macos")) {
        return Ok(());
    }
    let set = |k: &str| get(k).is_some_and(|v| !v.is_empty());
    if set("DISPLAY") || set("WAYLAND_DISPLAY") {
        Ok(())
    } else {
        Err("no graphical display found (neither DISPLAY nor WAYLAND_DISPLAY is set), so the tray app \
             cannot start. Run it from a desktop session, or use `lanscatter master` / `lanscatter peer` \
             on headless machines."
            .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn needs_display_or_wayland() {
        let none = check_env(|_| None);
        let empty = check_env(|_| Some(OsString::new()));
        let x = check_env(|k| (k == "DISPLAY").then(|| OsString::from(":0")));
        let w = check_env(|k| (k == "WAYLAND_DISPLAY").then(|| OsString::from("wayland-0")));
        assert!(x.is_ok() && w.is_ok());
        if cfg!(any(windows, target_os = "macos")) {
            assert!(none.is_ok());
        } else {
            assert!(none.unwrap_err().contains("DISPLAY"));
            assert!(empty.is_err());
        }
    }
}
