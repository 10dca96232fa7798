//! Choosing between terminal and tray before argument parsing, and the Windows console dance.
//!
//! **Windows.** With the `gui` feature the executable is built for the Windows GUI subsystem
//! (`#![windows_subsystem = "windows"]` in `main.rs`), so double-clicking it, or starting it at
//! login, never flashes a console window. The cost is that a GUI-subsystem program gets no console
//! of its own, so for the terminal modes [`prepare`] calls `AttachConsole(ATTACH_PARENT_PROCESS)`:
//! typed in `cmd`/PowerShell, `lanscatter master …` prints into that window. If there is no parent
//! console (a shortcut with arguments) it `AllocConsole`s a fresh one, so terminal modes always
//! have somewhere to print. Redirected output (`lanscatter index . > out.txt`) needs neither: the
//! redirected handles are inherited as usual, and with no parent console but a redirected stdout
//! no console is allocated (it would take the handles over). Known trade-off of this approach: `cmd` does not wait
//! for a GUI-subsystem program, so its prompt comes back while a terminal mode is still printing;
//! scripts that need to wait use `start /wait lanscatter …`. The reverse strategy (console
//! subsystem, `FreeConsole` in GUI mode) flashes a console on every double-click, which is what
//! this avoids. Without the `gui` feature the binary stays a console program and none of this runs.
//!
//! **No arguments.** On Windows and macOS an executable started from Explorer/Finder gets no
//! arguments and no terminal: that opens the tray app (`gui` is inserted as the subcommand). From a
//! terminal, no arguments still prints the usual help. Finder on old macOS passes `-psn_…`; dropped.
//! On Linux desktop launchers use a `.desktop` file with `lanscatter gui`, so nothing is inferred.

use std::ffi::OsString;

/// Rewrite argv for the mode-selection rules above; on Windows also attach a console for
/// terminal modes. Call before clap parses anything. `argv0_mode` is the subcommand the
/// executable's own name implies (`lanscatter_gui` → `gui`): the CLI knows those names and hands
/// the answer in, so this module needs nothing from the CLI.
pub fn prepare(mut args: Vec<OsString>, argv0_mode: Option<&str>) -> Vec<OsString> {
    args.retain(|a| !a.to_string_lossy().starts_with("-psn_"));
    // Only probed without arguments: on Windows the probe attaches to the parent console.
    // A mode-named binary (`lanscatter_gui`) gets its mode from argv[0] later; adding "gui" here
    // too would make it `gui gui`.
    if args.len() <= 1 && argv0_mode.is_none() && wants_implicit_gui(&args, platform::has_terminal()) {
        args.truncate(1);
        args.push("gui".into());
    }
    let gui_mode = args.get(1).is_some_and(|a| a == "gui") || argv0_mode == Some("gui");
    if gui_mode {
        // Typed in a terminal: messages such as "already running" and `--json` lines go there.
        // Double-clicked: there is no parent console and none is created.
        platform::attach_parent_console();
    } else {
        platform::ensure_console();
    }
    args
}

/// No subcommand and no terminal, on an OS where that means "double-clicked".
pub fn wants_implicit_gui(args: &[OsString], has_terminal: bool) -> bool {
    cfg!(any(windows, target_os = "macos")) && cfg!(feature = "gui") && args.len() <= 1 && !has_terminal
}

#[cfg(all(windows, feature = "gui"))]
mod platform {
    use windows_sys::Win32::System::Console::{AllocConsole, AttachConsole, GetConsoleWindow, ATTACH_PARENT_PROCESS};

    /// A GUI-subsystem process started from a console has a parent console to attach to.
    pub fn has_terminal() -> bool {
        // SAFETY: plain Win32 calls without pointers; attaching twice fails harmlessly.
        unsafe { GetConsoleWindow() != std::ptr::null_mut() || AttachConsole(ATTACH_PARENT_PROCESS) != 0 }
    }

    pub fn attach_parent_console() {
        // SAFETY: as above.
        unsafe {
            if GetConsoleWindow().is_null() {
                AttachConsole(ATTACH_PARENT_PROCESS);
            }
        }
    }

    pub fn ensure_console() {
        // SAFETY: as above.
        unsafe {
            if GetConsoleWindow().is_null() && AttachConsole(ATTACH_PARENT_PROCESS) == 0 && !stdout_redirected() {
                AllocConsole();
            }
        }
    }

    /// Output already goes to a pipe or file the parent set up (a script, a scheduler, Wine
    /// started from a Linux shell): a fresh console would take the std handles over and the
    /// output would vanish into a window nobody reads (seen as an empty `--version` under Wine).
    fn stdout_redirected() -> bool {
        use windows_sys::Win32::System::Console::{GetStdHandle, STD_OUTPUT_HANDLE};
        // SAFETY: no pointers; the handle is only compared (INVALID_HANDLE_VALUE is -1), not used.
        let h = unsafe { GetStdHandle(STD_OUTPUT_HANDLE) };
        !h.is_null() && h as isize != -1
    }
}

#[cfg(not(all(windows, feature = "gui")))]
mod platform {
    use std::io::IsTerminal;

    pub fn has_terminal() -> bool {
        std::io::stdin().is_terminal() || std::io::stdout().is_terminal() || std::io::stderr().is_terminal()
    }

    /// Console programs already have one (or are redirected).
    pub fn ensure_console() {}
    pub fn attach_parent_console() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn implicit_gui_only_without_args_and_terminal_on_desktop_oses() {
        let desktop = cfg!(any(windows, target_os = "macos")) && cfg!(feature = "gui");
        assert_eq!(wants_implicit_gui(&args(&["lanscatter"]), false), desktop);
        assert!(!wants_implicit_gui(&args(&["lanscatter"]), true));
        assert!(!wants_implicit_gui(&args(&["lanscatter", "index", "."]), false));
    }

    #[test]
    fn psn_argument_dropped_and_cli_args_kept() {
        let out = prepare(args(&["lanscatter", "-psn_0_12345", "index", "."]), None);
        assert_eq!(out, args(&["lanscatter", "index", "."]));
    }
}
