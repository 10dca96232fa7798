//! Faults a user meets before or around a sync, through the real binary where the user would
//! see them: a master that does not answer yet, a port in use, a destination that must be
//! refused. Disk faults are in `sync_storage_faults.rs`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sync::*;
use common::Proc;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// The swarm secret of these tests (the CLI is secured by default; a master without one would
/// make one in the user's config dir).
const SECRET: &str = "the swarm secret of sync_faults";

fn master_args<'a>(dir: &'a str, port: &'a str) -> Vec<&'a str> {
    vec!["master", dir, "--bind", "127.0.0.1", "--port", port, "--no-cache", "--secret", SECRET]
}

fn peer_args<'a>(server: &'a str, dir: &'a str) -> Vec<&'a str> {
    vec![
        "peer",
        server,
        dir,
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--advertise",
        "127.0.0.1",
        "--no-cache",
        "--exit-when-done",
        "--secret",
        SECRET,
    ]
}

#[test]
fn peer_waits_for_a_master_that_is_not_up_yet_then_syncs() {
    let (t, mdir, _) = sync_source(11, 1);
    let before = tree_state(&mdir);
    let dst = t.path().join("dst");
    let port = free_port().to_string();
    let server = format!("127.0.0.1:{port}");

    let mut peer = Proc::spawn(&peer_args(&server, s(&dst)));
    let line = peer.wait_line("cannot reach the master", Duration::from_secs(30));
    assert!(line.contains(&server), "the message names the address: {line}");
    assert!(line.contains("retrying"), "the message says what happens next: {line}");

    let mut master = Proc::spawn(&master_args(s(&mdir), &port));
    master.wait_line("ready", Duration::from_secs(60));
    let (st, err) = peer.wait_exit(Duration::from_secs(120));
    assert!(st.success(), "peer exits 0 once up to date; stderr:\n{err}");
    assert!(err.contains("up to date"), "{err}");
    assert_same_tree(&mdir, &dst);
    drop(master);
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}

#[test]
fn port_in_use_is_a_clear_error_for_master_and_peer() {
    let (t, mdir, _) = sync_source(12, 1);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();

    let (st, err) = Proc::spawn(&master_args(s(&mdir), &port)).wait_exit(Duration::from_secs(60));
    assert!(!st.success());
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--port"), "says what to do: {err}");
    let line = err.lines().find(|l| l.contains("error:")).expect("an error line");
    assert_eq!(line.matches("already in use").count(), 1, "the OS reason once, not repeated: {line}");

    let dst = t.path().join("dst");
    let (st, err) = Proc::spawn(&["peer", "127.0.0.1:1", s(&dst), "--bind", "127.0.0.1", "--port", &port, "--open"])
        .wait_exit(Duration::from_secs(60));
    assert!(!st.success());
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("--port"), "{err}");
}

#[test]
fn dangerous_or_impossible_destinations_are_refused() {
    let (t, mdir, _) = sync_source(13, 1);
    let before = tree_state(&mdir);
    let a_file = t.path().join("a-file");
    std::fs::write(&a_file, b"not a folder").expect("write");

    let (st, err) = Proc::spawn(&peer_args("127.0.0.1:1", s(&a_file))).wait_exit(Duration::from_secs(60));
    assert!(!st.success());
    assert!(err.contains("is a file"), "{err}");
    assert_eq!(std::fs::read(&a_file).expect("read"), b"not a folder", "the file is left alone");

    let (st, err) = Proc::spawn(&peer_args("127.0.0.1:1", "/")).wait_exit(Duration::from_secs(60));
    assert!(!st.success());
    assert!(err.contains("filesystem root"), "{err}");

    // The master's own folder, and a folder inside it: the peer learns the master's folder in
    // the handshake and refuses before touching anything.
    let port = free_port().to_string();
    let server = format!("127.0.0.1:{port}");
    let mut master = Proc::spawn(&master_args(s(&mdir), &port));
    master.wait_line("ready", Duration::from_secs(60));
    let inside = mdir.join("sub-of-master");
    for dst in [mdir.as_path(), inside.as_path()] {
        // --adopt: the master's folder is not empty; past that check the handshake refuses it.
        let args = [peer_args(&server, s(dst)), vec!["--adopt"]].concat();
        let (st, err) = Proc::spawn(&args).wait_exit(Duration::from_secs(60));
        assert!(!st.success(), "refused {}", dst.display());
        assert!(err.contains("refusing to sync"), "{err}");
        assert!(err.contains("master's own folder"), "{err}");
    }
    drop(master);
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}
