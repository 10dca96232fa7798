//! Every exit code in the README's "Exit codes" table, provoked through the real binary: 0
//! success, 1 runtime failure (with what to do), 2 usage error (clap), 3 incomplete index, 130 an
//! interrupted demo. Nodes run on 127.0.0.1 with port 0, secured with a test secret or `--open`,
//! so nothing touches the user's stored secret or caches.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{cli, write_file, Proc};

const SECRET_A: &str = "exit codes test secret, swarm A";
const SECRET_B: &str = "exit codes test secret, swarm B";

/// Run to completion; the exit code and stderr.
fn run(mut c: Command) -> (Option<i32>, String) {
    c.env_remove("LANSCATTER_SECRET").env_remove("LANSCATTER_SECRET_FILE").env_remove("LANSCATTER_CONFIG");
    let out = c.output().expect("lanscatter runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn code(args: &[&str]) -> (Option<i32>, String) {
    run(cli(args))
}

fn assert_code(args: &[&str], want: i32, says: &str) {
    let (got, err) = code(args);
    assert_eq!(got, Some(want), "lanscatter {args:?}: {err}");
    assert!(err.contains(says), "lanscatter {args:?} should say {says:?}: {err}");
}

/// A running `lanscatter master` on 127.0.0.1 port 0 and the address it listens on.
fn master(dir: &Path, security: &[&str]) -> (Proc, String) {
    let d = dir.to_str().unwrap();
    let mut args = vec!["master", d, "--bind", "127.0.0.1", "--port", "0", "--no-cache"];
    args.extend_from_slice(security);
    let mut p = Proc::spawn(&args);
    let ready = p.wait_line("ready:", Duration::from_secs(60));
    let addr = ready.rsplit("listening on ").next().unwrap().trim().to_string();
    (p, addr)
}

#[cfg(unix)]
fn interrupt(p: &Proc) {
    // SAFETY: kill(2) on a child we spawned and still own (reaped only by Proc).
    assert_eq!(unsafe { libc::kill(p.id() as i32, libc::SIGINT) }, 0);
}

/// Ctrl-C, pressed again each second until the process exits (within 30 s). Before service mode
/// (issue 15 part 2) the master and the peer listen for Ctrl-C anew on each pass of their status
/// loop, so one that lands between two passes is missed; a second press is what a user does.
#[cfg(unix)]
fn interrupt_until_exit(mut p: Proc) -> (std::process::ExitStatus, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    'press: while std::time::Instant::now() < deadline {
        interrupt(&p);
        let next = std::time::Instant::now() + Duration::from_secs(1);
        while std::time::Instant::now() < next {
            if p.exited() {
                break 'press;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    p.wait_exit(Duration::from_secs(5))
}

#[test]
fn usage_errors_exit_2_and_help_and_version_exit_0() {
    assert_code(&[], 2, "Usage");
    assert_code(&["frobnicate"], 2, "unrecognized subcommand");
    assert_code(&["master"], 2, "<SOURCE_DIR>");
    assert_code(&["index", "--bogus", "."], 2, "--bogus");
    assert_code(&["demo", "--peers", "0"], 2, "--peers");
    assert_code(&["demo", "--size", "3X"], 2, "is not a size");
    assert_code(&["peer", "host", "dir", "--port", "70000"], 2, "--port");
    let (c, _) = code(&["--help"]);
    assert_eq!(c, Some(0));
    let (c, _) = code(&["--version"]);
    assert_eq!(c, Some(0));
}

#[test]
fn master_fails_with_1_and_stops_with_0() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    assert_code(
        &["master", missing.to_str().unwrap(), "--open", "--bind", "127.0.0.1", "--port", "0"],
        1,
        "does not exist",
    );
    let src = t.path().join("src");
    write_file(&src, "a.txt", b"hello");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let args = ["master", src.to_str().unwrap(), "--open", "--bind", "127.0.0.1", "--port", &port, "--no-cache"];
    assert_code(&args, 1, "choose another --port");
    assert_code(&["master", src.to_str().unwrap(), "--secret", "short"], 1, "too short");
    assert_code(&["master", src.to_str().unwrap(), "--chunk-size", "3X", "--open"], 1, "3X");
    #[cfg(unix)]
    {
        let (p, _) = master(&src, &["--open"]);
        let (st, out) = interrupt_until_exit(p);
        assert_eq!(st.code(), Some(0), "Ctrl-C stops the master cleanly: {out}");
    }
}

#[test]
fn peer_exits_0_when_done_and_1_when_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_file(&src, "a/b.txt", b"payload");
    let (_m, addr) = master(&src, &["--secret", SECRET_A]);
    let dst = t.path().join("dst");
    let d = dst.to_str().unwrap();
    let peer = ["peer", &addr, d, "--bind", "127.0.0.1", "--port", "0", "--no-cache", "--secret"];
    assert_code(&[&peer[..], &[SECRET_B]].concat(), 1, "secret");
    assert!(!dst.exists(), "a refused peer changes nothing");
    assert_code(&[&peer[..], &[SECRET_A, "--exit-when-done"]].concat(), 0, "up to date");
    assert_eq!(std::fs::read(dst.join("a/b.txt")).unwrap(), b"payload");
    assert_code(&["peer", &addr, d, "--bind", "127.0.0.1", "--port", "0"], 1, "no swarm secret");
}

#[cfg(unix)]
#[test]
fn peer_stopped_by_ctrl_c_exits_0() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("dst");
    // Nobody listens on port 1: the peer keeps trying to connect until it is stopped.
    let mut p =
        Proc::spawn(&["peer", "127.0.0.1:1", d.to_str().unwrap(), "--open", "--bind", "127.0.0.1", "--port", "0"]);
    p.wait_line("lanscatter peer:", Duration::from_secs(30));
    let (st, out) = interrupt_until_exit(p);
    assert_eq!(st.code(), Some(0), "{out}");
}

#[test]
fn index_exits_0_complete_1_failed() {
    let t = tempfile::tempdir().unwrap();
    write_file(t.path(), "x/y.bin", &[7u8; 1000]);
    let dir = t.path().to_str().unwrap();
    let (c, err) = code(&["index", dir, "--no-cache"]);
    assert_eq!(c, Some(0), "{err}");
    let missing = t.path().join("missing");
    assert_code(&["index", missing.to_str().unwrap(), "--no-cache"], 1, "does not exist");
}

#[cfg(unix)]
#[test]
fn index_with_skipped_unreadable_entries_exits_3() {
    if common::permission_bits_do_not_apply() {
        return;
    }
    let dir = common::shared_tempdir();
    write_file(dir.path(), "ok.txt", b"fine");
    let locked = write_file(dir.path(), "locked.txt", b"hidden");
    common::chmod(&locked, 0o000);
    let out = common::index_as_unprivileged(dir.path(), &["--skip-unreadable"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("INCOMPLETE"), "{err}");
    common::chmod(&locked, 0o644);
}

#[test]
fn simulate_exits_0_when_all_complete_and_1_on_impossible_options() {
    let (c, err) = code(&["simulate", "--peers", "2", "--chunks", "8", "--chunk-size", "1M", "--quiet"]);
    assert_eq!(c, Some(0), "{err}");
    assert_code(&["simulate", "--peers", "2", "--slow", "3", "--quiet"], 1, "exceed --peers");
}

#[cfg(not(feature = "gui"))]
#[test]
fn gui_without_the_tray_feature_exits_1_saying_how_to_get_it() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("gui.json");
    assert_code(&["gui", "--config", cfg.to_str().unwrap()], 1, "--features gui");
}

#[cfg(all(feature = "gui", target_os = "linux"))]
#[test]
fn gui_without_a_display_exits_1() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("gui.json");
    let mut c = cli(["gui", "--config", cfg.to_str().unwrap()]);
    c.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    let (got, err) = run(c);
    assert_eq!(got, Some(1), "{err}");
    assert!(err.contains("DISPLAY"), "{err}");
}

#[test]
fn demo_exits_0_when_identical_and_1_when_it_cannot_run() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cli(["demo", "--size", "1MiB", "--peers", "1"]);
    c.env("TMPDIR", t.path()).env("TMP", t.path()).env("TEMP", t.path());
    let (got, err) = run(c);
    assert_eq!(got, Some(0), "{err}");
    let missing = t.path().join("nope");
    assert_code(&["demo", "--source", missing.to_str().unwrap()], 1, "is not a folder");
}

#[cfg(unix)]
#[test]
fn demo_interrupted_exits_130_and_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cli(["demo", "--size", "128MiB", "--peers", "3"]);
    c.env("TMPDIR", t.path()).env("TMP", t.path()).env("TEMP", t.path()).stdout(std::process::Stdio::null());
    let mut p = Proc::start(c, common::Lines::Stderr);
    // Printed once the peers run: 384 MiB through TLS, hashing and disk are still ahead.
    p.wait_line("status page:", Duration::from_secs(120));
    interrupt(&p);
    let (st, out) = p.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(130), "{out}");
    assert!(out.contains("interrupted"), "{out}");
    assert!(common::tree_paths(t.path()).is_empty(), "temp folders left: {:?}", common::tree_paths(t.path()));
}
