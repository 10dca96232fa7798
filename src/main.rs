//! Thin entry point: all behaviour lives in the library so the CLI, the tray app and the tests
//! drive exactly the same code.
//!
//! With the `gui` feature, Windows builds are GUI-subsystem programs (no console flash when the tray
//! app is double-clicked); terminal modes re-attach to the parent console (see `gui::launch`).
#![cfg_attr(all(windows, feature = "gui"), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    lanscatter::cli::main()
}

/// glibc gives each thread that allocates under contention an arena of its own (up to 8 per
/// core), and memory freed in one arena serves only that arena: the scan's and the plan's
/// transients, allocated on tokio's and rayon's threads, stayed resident side by side. One arena
/// measured lower everywhere (README "Performance", memory): a 200,000-file peer 166 -> 109 MiB,
/// a 1.5 GB file's master 131 -> 82 MiB, no slower. Set before any thread starts; an admin's
/// `MALLOC_ARENA_MAX` wins. Only the binary does this: the library leaves the process's
/// allocator to whoever embeds it. (mimalloc was tried: lower for many files but 3-5x slower for
/// one big file, its master at 1.5 GB RSS.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one of glibc's malloc parameters; no other thread exists yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}
