//! An emptied source folder is a fault, not a change: the master keeps the last good index and
//! says why, and peers keep their copies (issue 14, first part). With `allow_shrink` the master
//! publishes the shrink, and peers follow it.

mod common;

use std::time::Duration;

use common::sync::*;
use lanscatter::engine::Engine;
use lanscatter::status::NodeState;

/// Remove every file of the master's folder (the folder itself stays, like an unmounted share's
/// empty mount point).
fn empty_out(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
}

async fn synced_pair(
    allow_shrink: bool,
) -> (tempfile::TempDir, Engine, Engine, std::path::PathBuf, std::path::PathBuf) {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    random_tree(&mdir, 21, &sync_tree(1));
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.allow_shrink = allow_shrink;
    let master = Engine::start(mcfg).await.expect("master starts");
    let pdir = t.path().join("peer");
    let peer = start_peer(master.local_addr(), &pdir, &cache, "peer").await;
    wait_synced(&peer, &master, &mdir, &pdir, Duration::from_secs(60)).await;
    (t, master, peer, mdir, pdir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emptied_source_is_held_and_peers_keep_their_copies() {
    let (_t, master, peer, mdir, pdir) = synced_pair(false).await;
    let before = tree_state(&pdir);
    let manifest = master.status().borrow().manifest_id;
    let saved = tempfile::tempdir().unwrap();
    std::fs::rename(&mdir, saved.path().join("share")).unwrap();
    std::fs::create_dir(&mdir).unwrap();
    let mut rx = master.status();
    let held = wait_status(
        &mut rx,
        Duration::from_secs(30),
        "the master to refuse the empty folder",
        |s| matches!(&s.state, NodeState::Error { message } if message.contains("is now empty")),
    )
    .await;
    let NodeState::Error { message } = &held.state else { unreachable!() };
    assert!(message.contains("--allow-shrink"), "says what to do: {message}");
    assert_eq!(held.manifest_id, manifest, "the last good index is still the one served");
    // Another rescan and the peer's own re-check: still nothing deleted.
    wait_status(&mut rx, Duration::from_secs(30), "a later snapshot", |s| s.time > held.time + 2.5).await;
    assert_eq!(tree_state(&pdir), before, "the peer kept its copy");
    assert!(peer.is_running());

    // The share comes back: the error clears and nothing was ever re-published.
    std::fs::remove_dir(&mdir).unwrap();
    std::fs::rename(saved.path().join("share"), &mdir).unwrap();
    let back = wait_status(&mut rx, Duration::from_secs(30), "the error to clear", |s| {
        !matches!(s.state, NodeState::Error { .. })
    })
    .await;
    assert_eq!(back.manifest_id, manifest);
    assert_eq!(tree_state(&pdir), before);
    peer.shutdown().await;
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_allow_shrink_the_emptied_source_is_published() {
    let (_t, master, peer, mdir, pdir) = synced_pair(true).await;
    empty_out(&mdir);
    wait_synced(&peer, &master, &mdir, &pdir, Duration::from_secs(60)).await;
    assert!(tree_state(&pdir).is_empty(), "the peer followed the confirmed shrink");
    peer.shutdown().await;
    master.shutdown().await;
}
