//! `lanscatter demo` (issue 15): the real binary makes a sample, syncs it to real peers on
//! loopback, proves them identical, prints the summary and cleans up; with `--source` it never
//! writes the given folder; the status URL it prints opens the page; and its check does catch a
//! peer that differs.

mod common;
mod web_common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::sync::{random_tree, sync_tree, tree_state};
use common::{cli, tree_paths};
use lanscatter::demo::{Demo, DemoConfig, DemoError};

/// The binary's `demo` with its temp folders under `tmp`.
fn demo(tmp: &Path, args: &[&str]) -> Output {
    let mut c = cli(["demo"]);
    c.args(args).env("TMPDIR", tmp).env("TMP", tmp).env("TEMP", tmp).env_remove("LANSCATTER_SECRET");
    c.output().expect("lanscatter demo runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn demo_syncs_a_sample_to_identical_peers_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path(), &["--size", "3MiB", "--peers", "2"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    let summary = stdout.lines().find(|l| l.starts_with("lanscatter demo: ok:")).expect("a summary line");
    assert!(summary.contains("2 peers identical to the source"), "{summary}");
    assert!(summary.contains("3 MiB each") && summary.contains("6 MiB delivered"), "{summary}");
    let eff: f64 = summary.split("efficiency ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(eff > 0.0 && eff.is_finite(), "{summary}");
    let url = stderr.lines().find_map(|l| l.split("status page: ").nth(1)).expect("the status page URL");
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/?token="), "{url}");
    assert!(stderr.contains("secured with a fresh swarm secret"), "{stderr}");
    assert!(tree_paths(tmp.path()).is_empty(), "temp folders left behind: {:?}", tree_paths(tmp.path()));
}

#[test]
fn demo_of_a_given_folder_never_writes_it_and_keeps_its_work_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    random_tree(src.path(), 15, &sync_tree(1));
    let before = tree_state(src.path());
    let out = demo(tmp.path(), &["--source", src.path().to_str().unwrap(), "--peers", "1", "--keep"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ok: 1 peers identical"), "{stdout}");
    assert_eq!(tree_state(src.path()), before, "the source folder changed");
    let kept = stderr.lines().find_map(|l| l.split("caches in ").nth(1)).expect("where the work was kept");
    let peer = Path::new(kept).join("peers").join("peer-1");
    let files = |t: &std::collections::BTreeMap<String, common::sync::Entry>| {
        t.iter()
            .map(|(k, v)| match v {
                common::sync::Entry::File { hash, size, .. } => (k.clone(), Some((hash.clone(), *size))),
                common::sync::Entry::Dir => (k.clone(), None),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&tree_state(&peer)), files(&before), "the kept peer folder is the source");
}

#[test]
fn demo_refuses_a_source_that_is_not_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path(), &["--source", tmp.path().join("nope").to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a folder") && stderr.contains("give an existing folder"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_url_opens_the_page_and_a_differing_peer_is_caught() {
    let cfg = DemoConfig { size: 2 * 1024 * 1024, peers: 2, ..DemoConfig::default() };
    let demo = Demo::start(&cfg).await.expect("demo starts");
    let url = demo.status_url().strip_prefix("http://").unwrap().to_string();
    let (addr, path) = url.split_once('/').unwrap();
    let (status, _, body) = web_common::get(addr.parse().unwrap(), &format!("/{path}")).await;
    assert_eq!(status, hyper::StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("<html"), "the status page");
    let (status, _, _) = web_common::get(addr.parse().unwrap(), "/").await;
    assert_eq!(status, hyper::StatusCode::UNAUTHORIZED, "without the token the page stays shut");

    let secs = demo.wait(Duration::from_secs(120), |_| {}).await.expect("peers get up to date");
    let report = demo.verify(secs).expect("identical");
    assert_eq!((report.peers, report.verified.bytes), (2, 2 * 1024 * 1024));
    assert!(report.verified.files >= 10 && report.bound_secs > 0.0, "{report:?}");

    let (_, peer2) = demo.peer_dirs().pop().unwrap();
    let victim = peer2.join("media/copy of file-0.bin");
    let mut data = std::fs::read(&victim).unwrap();
    data[100] ^= 1;
    std::fs::write(&victim, data).unwrap();
    match demo.verify(secs) {
        Err(DemoError::Differs(d)) => {
            assert_eq!(d, ["peer-2: media/copy of file-0.bin differs (same size, other bytes)"])
        }
        other => panic!("a flipped bit must be caught: {other:?}"),
    }
    let work = demo.work_dir().to_path_buf();
    assert!(demo.finish(false).await.is_none());
    assert!(!work.exists(), "the temp folder is removed");
}
