//! Service mode through the real binary: SIGTERM stops a peer mid-sync and a master cleanly
//! (exit 0, one line naming the signal), the restarted peer fetches only what it had not
//! verified and ends byte-identical, and a flag's value comes from the command line, else
//! `LANSCATTER_<FLAG>`, else the config file (`--config` or the default location), with an
//! unknown key refused by name.
#![cfg(unix)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::sync::*;
use common::{cli, Lines, Proc};
use lanscatter::status::Snapshot;

/// Chunks a restart may fetch beyond what the first run had not yet reported verified: the
/// fetches in flight at the stop were never verified, and the last snapshot before the stop
/// may trail what was verified by then (which only makes the restart fetch less).
const SLACK_CHUNKS: u64 = 4;

fn sigterm(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: plain kill(2) on a child this test started and has not reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM) works");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The binary sees a private home (config, cache, secret) and none of the caller's
/// `LANSCATTER_*` variables, so neither the developer's setup nor another test leaks in.
fn isolated(mut c: Command, home: &Path) -> Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LANSCATTER_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).env("XDG_CONFIG_HOME", home.join("config")).env("XDG_CACHE_HOME", home.join("cache"));
    c
}

/// A peer of an open swarm printing JSON snapshots, slowed to 16 Mbit/s so it can be stopped
/// midway; uncompressed, so the master's served bytes are the chunk bytes. The hash cache is on
/// (in `home`): what it records across the stop must be true for the restart to end identical.
fn peer_cmd(master: std::net::SocketAddr, dst: &Path, home: &Path, log: &Path) -> Command {
    let mut c = isolated(cli(["peer", &master.to_string()]), home);
    c.arg(dst)
        .args(["--port", "0", "--bind", "127.0.0.1", "--advertise", "127.0.0.1", "--open", "--json", "--no-compress"])
        .args(["--max-download", "2MB/s", "--download-slots", "2"])
        .stderr(fs::File::create(log).expect("log file"));
    c
}

fn snapshots(lines: &str) -> Vec<Snapshot> {
    lines.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Run the first peer until it reports 30 % verified, SIGTERM it, and return its exit status
/// and the verified bytes of its last snapshot.
fn first_run(cmd: Command) -> (ExitStatus, u64, u64) {
    let mut p = Proc::start(cmd, Lines::Stdout);
    p.wait_for("a snapshot with 30 % verified", Duration::from_secs(90), |l| {
        serde_json::from_str::<Snapshot>(l).is_ok_and(|s| s.bytes_total > 0 && s.bytes_done * 10 >= s.bytes_total * 3)
    });
    sigterm(p.id());
    let (status, out) = p.wait_exit(Duration::from_secs(30));
    let last = snapshots(&out).pop().expect("the peer printed snapshots");
    (status, last.bytes_done, last.bytes_total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_sync_stops_the_peer_cleanly_and_the_restart_fetches_only_the_rest() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(15);
    // Incompressible and large enough (12 MiB) for the rate limit to hold the sync for seconds.
    for i in 0..6 {
        let data = rng.bytes(2 * 1024 * 1024 + i * 1000);
        write_file(&mdir, &format!("big/f{i}.bin"), &data, 1_400_000_000 + i as i64);
    }
    random_tree(&mdir, 4, &sync_tree(1));
    let before = tree_state(&mdir);
    let master = start_master(&mdir, &cache).await;
    let mut mrx = master.status();
    wait_status(&mut mrx, Duration::from_secs(30), "master ready", |s| s.manifest_id > 0).await;
    let (dst, home) = (t.path().join("peer"), t.path().join("home"));
    let (log1, log2) = (t.path().join("peer1.log"), t.path().join("peer2.log"));

    let cmd = peer_cmd(master.local_addr(), &dst, &home, &log1);
    let (status, had, total) = tokio::task::spawn_blocking(move || first_run(cmd)).await.expect("first run");
    let err = fs::read_to_string(&log1).expect("peer log");
    assert!(status.success(), "SIGTERM ends the peer with exit 0, not {status:?}; stderr:\n{err}");
    assert_eq!(err.matches("stopped on SIGTERM").count(), 1, "one line names the signal:\n{err}");
    assert!(had < total, "stopped midway: {had} of {total} bytes verified");
    wait_status(&mut mrx, Duration::from_secs(10), "peer gone", |s| s.nodes.len() == 1).await;
    let served_before = mrx.borrow().counters.bytes_uploaded;

    let mut cmd = peer_cmd(master.local_addr(), &dst, &home, &log2);
    cmd.arg("--exit-when-done");
    let restarted = move || Proc::start(cmd, Lines::Stdout).wait_exit(Duration::from_secs(120));
    let (status, _) = tokio::task::spawn_blocking(restarted).await.expect("restarted peer");
    let err = fs::read_to_string(&log2).expect("peer log");
    assert!(status.success(), "the restarted peer finishes; stderr:\n{err}");
    assert_same_tree(&mdir, &dst);
    let fetched = master.status().borrow().counters.bytes_uploaded - served_before;
    let bound = total - had + SLACK_CHUNKS * CHUNK;
    eprintln!("first run verified {had} of {total} bytes; the restart fetched {fetched} (bound {bound})");
    assert!(fetched > 0, "the restart had work left");
    assert!(fetched <= bound, "the restart fetched {fetched} bytes; {had} of {total} were verified before the stop");
    master.shutdown().await;
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}

/// Start a master with `extra` arguments and `env`, wait for its ready line, SIGTERM it; returns
/// the ready line after checking the clean stop.
fn master_ready_line(mdir: &Path, home: &Path, extra: &[&str], env: &[(&str, String)]) -> String {
    let mut c = isolated(cli(["master"]), home);
    c.arg(mdir).args(extra).stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut m = Proc::start(c, Lines::Stderr);
    let ready = m.wait_line("ready:", Duration::from_secs(60));
    sigterm(m.id());
    let (status, err) = m.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM ends the master with exit 0, not {status:?}; stderr:\n{err}");
    assert_eq!(err.matches("lanscatter master: stopped on SIGTERM").count(), 1, "one stop line:\n{err}");
    ready
}

#[test]
fn a_flag_beats_its_env_variable_beats_the_config_file_and_the_master_stops_on_sigterm() {
    let (t, mdir, _) = sync_source(16, 1);
    let home = t.path().join("home");
    let (p_file, p_env, p_flag) = (free_port(), free_port(), free_port());
    // Also flags without values (`open`, `no-cache`) and the bind address come from the file.
    let text = format!("[master]\nbind = \"127.0.0.1\"\nport = {p_file}\nopen = true\nno-cache = true\n");
    let file = t.path().join("lanscatter.toml");
    fs::write(&file, &text).expect("write config");
    let file_arg = ["--config", file.to_str().expect("UTF-8 temp path")];
    let listening = |p: u16| format!("listening on 127.0.0.1:{p}");

    let ready = master_ready_line(&mdir, &home, &file_arg, &[]);
    assert!(ready.ends_with(&listening(p_file)), "file: {ready}");
    let env = [("LANSCATTER_PORT", p_env.to_string())];
    let ready = master_ready_line(&mdir, &home, &file_arg, &env);
    assert!(ready.ends_with(&listening(p_env)), "env over file: {ready}");
    let port = p_flag.to_string();
    let ready = master_ready_line(&mdir, &home, &[&file_arg[..], &["--port", &port]].concat(), &env);
    assert!(ready.ends_with(&listening(p_flag)), "flag over env: {ready}");

    // Without --config, the user's config.toml ($XDG_CONFIG_HOME/lanscatter/) is read.
    let default = home.join("config/lanscatter/config.toml");
    fs::create_dir_all(default.parent().expect("parent")).expect("config dir");
    fs::write(&default, &text).expect("write default config");
    let ready = master_ready_line(&mdir, &home, &[], &[]);
    assert!(ready.ends_with(&listening(p_file)), "default file: {ready}");
}

#[test]
fn an_unknown_config_key_is_refused_with_its_name_and_file() {
    let (t, mdir, _) = sync_source(17, 1);
    let home = t.path().join("home");
    let file = t.path().join("bad.toml");
    fs::write(&file, "[master]\nopen = true\nuplod-slots = 3\n").expect("write config");
    let mut c = isolated(cli(["master"]), &home);
    let out = c.arg(&mdir).arg("--config").arg(&file).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error; stderr:\n{err}");
    assert!(err.contains("`uplod-slots`") && err.contains(&*file.to_string_lossy()), "{err}");
    assert!(err.contains("upload-slots"), "lists the keys it knows: {err}");

    let missing = t.path().join("missing.toml");
    let out = isolated(cli(["master"]), &home).arg(&mdir).arg("--config").arg(&missing).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&*missing.to_string_lossy()) && err.contains("--config"), "{err}");
}
