//! The destination is adopted on purpose (issue 14, part 2): a non-empty folder that was not a
//! peer's before is refused untouched unless `--adopt` is given; adopted, its content is reused
//! and the peer marks it, so the next start needs no flag. Dangerous folders (the home folder, a
//! root, system folders) are refused by the real binary before anything happens.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::cli;
use common::sync::*;
use lanscatter::engine::{Engine, EngineError};
use lanscatter::peer::PeerError;

/// What a folder holds, marker included: its tree state and whether `.lanscatter` exists.
fn snapshot(dir: &Path) -> (std::collections::BTreeMap<String, Entry>, bool) {
    (tree_state(dir), std::fs::symlink_metadata(dir.join(".lanscatter")).is_ok())
}

/// Copy the first `n` files of the master's tree into `dst` (an old copy to seed a peer from).
fn seed_from(mdir: &Path, files: &[(String, u64)], n: usize, dst: &Path) -> u64 {
    let mut bytes = 0;
    for (rel, size) in files.iter().take(n) {
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(mdir.join(rel), to).unwrap();
        bytes += size;
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_folder_is_refused_untouched_and_adopted_only_on_purpose() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let files = common::random_tree(&mdir, 41, &sync_tree(1));
    let master = start_master(&mdir, &cache).await;
    let pdir = t.path().join("old copy");
    let seeded = seed_from(&mdir, &files, files.len() / 2, &pdir);
    common::write_file(&pdir, "notes/mine.txt", b"the master does not have this");
    let before = snapshot(&pdir);

    let refused = Engine::start(peer_config(master.local_addr(), &pdir, &cache, "peer")).await.err();
    let Some(EngineError::Peer(e @ PeerError::NotAdopted(_))) = refused else { panic!("not refused: {refused:?}") };
    let msg = e.to_string();
    assert!(msg.contains("old copy") && msg.contains("is not empty") && msg.contains("--adopt"), "{msg}");
    assert_eq!(snapshot(&pdir), before, "a refused folder is not touched, not even marked");

    let mut cfg = peer_config(master.local_addr(), &pdir, &cache, "peer");
    (cfg.adopt, cfg.compress) = (true, false);
    let peer = Engine::start(cfg).await.expect("an adopted folder is synced");
    wait_synced(&peer, &master, &mdir, &pdir, Duration::from_secs(60)).await;
    let s = peer.status().borrow().clone();
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let fetched = s.counters.bytes_downloaded;
    assert!(seeded > 0 && fetched + seeded <= total, "existing content reused: fetched {fetched} of {total}");
    assert!(!pdir.join("notes").exists(), "what the master lacks is deleted, as adopting says");
    assert!(pdir.join(".lanscatter/peer.txt").is_file(), "the folder is marked as the peer's");
    peer.shutdown().await;

    // Marked: the next start needs no flag, and the marker is neither synced nor removed.
    let peer = start_peer(master.local_addr(), &pdir, &cache, "peer").await;
    wait_synced(&peer, &master, &mdir, &pdir, Duration::from_secs(60)).await;
    assert!(pdir.join(".lanscatter/peer.txt").is_file());
    assert!(!mdir.join(".lanscatter").exists(), "the master's folder is never written");
    peer.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_or_missing_folder_is_adopted_silently() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    common::random_tree(&mdir, 42, &sync_tree(1));
    let master = start_master(&mdir, &cache).await;
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join(".DS_Store"), b"made by the OS, not content").unwrap();
    let missing = t.path().join("missing/mirror");
    for dir in [&empty, &missing] {
        let peer = start_peer(master.local_addr(), dir, &cache, "peer").await;
        wait_synced(&peer, &master, &mdir, dir, Duration::from_secs(60)).await;
        assert!(dir.join(".lanscatter/peer.txt").is_file(), "{} marked", dir.display());
        peer.shutdown().await;
    }
    master.shutdown().await;
}

/// `lanscatter peer <unreachable master> <dir> --open` with `HOME` set to `home`: its exit code
/// and stderr. The master address is never contacted: every refusal here comes first.
fn peer_cli(dir: &Path, home: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut c = cli(["peer", "127.0.0.1:9"]);
    c.arg(dir).args(["--open", "--port", "0", "--bind", "127.0.0.1"]).args(extra).env("HOME", home);
    let out = c.output().expect("the binary runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_binary_refuses_home_root_system_and_foreign_folders() {
    let t = tmp();
    let home = t.path().join("alice");
    common::write_file(&home, "Documents/thesis.doc", b"years of work");
    let before = tree_state(&home);
    let (code, err) = peer_cli(&home, &home, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is your home folder") && err.contains("dedicated folder"), "{err}");
    let (code, err) = peer_cli(&home, &home, &["--adopt"]);
    assert!(code == Some(1) && err.contains("is your home folder"), "--adopt does not make home safe: {err}");
    let (code, err) = peer_cli(t.path(), &home, &["--adopt"]);
    assert!(code == Some(1) && err.contains("contains your home folder"), "{err}");
    assert_eq!(tree_state(&home), before, "nothing in the home folder changed");
    assert!(!home.join(".lanscatter").exists());

    let (code, err) = peer_cli(Path::new("/"), &home, &["--adopt"]);
    assert!(code == Some(1) && err.contains("root"), "{err}");
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let (code, err) = peer_cli(Path::new("/etc"), &home, &["--adopt"]);
        assert!(code == Some(1) && err.contains("system folder /etc"), "{err}");
    }

    let foreign = t.path().join("work");
    common::write_file(&foreign, "report.txt", b"not synced by lanscatter");
    let before = snapshot(&foreign);
    let (code, err) = peer_cli(&foreign, &home, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not empty and was not synced by lanscatter before; pass --adopt"), "{err}");
    assert_eq!(snapshot(&foreign), before, "nothing touched");
}
