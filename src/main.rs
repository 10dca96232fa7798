//! Thin entry point: all behaviour lives in the library so the CLI, the tray app and the tests
//! drive exactly the same code.
//!
//! With the `gui` feature, Windows builds are GUI-subsystem programs (no console flash when the tray
//! app is double-clicked); terminal modes re-attach to the parent console (see `gui::launch`).
#![cfg_attr(all(windows, feature = "gui"), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    lanscatter::cli::main()
}
