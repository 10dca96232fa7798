//! Done-when 2: a peer process killed with SIGKILL mid-sync and restarted finishes without
//! re-fetching the chunks it had already verified (counted as chunk GETs at the master, the
//! only source in this swarm).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::sync::*;
use common::{cli, Lines, Proc};

/// Orders in flight at the kill may be fetched again (they were never verified).
const SLOTS: u64 = 2;

/// Most chunks one order can carry in `tree`: small chunks travel in batches of at most
/// `BATCH_BYTES` (`planner::batch`), so that many full chunks plus every chunk of this tree
/// smaller than a full one (each file's tail), a bound far below a re-fetch of everything.
fn most_chunks_per_order(tree: &std::collections::BTreeMap<String, Entry>) -> u64 {
    let tails = tree.values().filter(|e| matches!(e, Entry::File { size, .. } if size % CHUNK != 0)).count();
    lanscatter::planner::batch::BATCH_BYTES / CHUNK + tails as u64
}

fn peer_cmd(master: std::net::SocketAddr, dst: &std::path::Path, exit_when_done: bool) -> Command {
    let mut c = cli(["peer", &master.to_string()]);
    c.arg(dst)
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--advertise",
            "127.0.0.1",
            "--max-download",
            "3MB/s",
            "--no-cache",
        ])
        .arg("--open")
        .args(["--download-slots", &SLOTS.to_string()])
        .stdout(Stdio::null());
    if exit_when_done {
        c.arg("--exit-when-done");
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_peer_resumes_without_refetching() {
    let t = tmp();
    let (mdir, cache) = paths(&t);
    let mut rng = Rng::new(7);
    // Incompressible data so the rate limit holds the transfer long enough to kill it midway.
    for i in 0..6 {
        let data = rng.bytes(2 * 1024 * 1024 + i * 1000);
        write_file(&mdir, &format!("big/f{i}.bin"), &data, 1_400_000_000 + i as i64);
    }
    random_tree(&mdir, 2, &sync_tree(1));
    let before = tree_state(&mdir);
    let master = start_master(&mdir, &cache).await;
    let mut mrx = master.status();
    wait_status(&mut mrx, Duration::from_secs(30), "master ready", |s| s.manifest_id > 0).await;
    let unique = mrx.borrow().nodes[0].chunk_map.len() as u64;
    let dst = t.path().join("peer");

    let mut child = Proc::start(peer_cmd(master.local_addr(), &dst, false), Lines::Stderr);
    let s = wait_status(&mut mrx, Duration::from_secs(60), "peer 30 % done", |s| {
        s.nodes.len() == 2 && s.nodes[1].bytes_done * 10 >= s.nodes[1].bytes_total * 3
    })
    .await;
    child.kill(); // SIGKILL
    let had = s.nodes[1].bytes_done;
    assert!(had < s.nodes[1].bytes_total, "killed before completion");
    wait_status(&mut mrx, Duration::from_secs(10), "peer gone", |s| s.nodes.len() == 1).await;
    let gets_before = mrx.borrow().counters.chunk_gets_served;

    let addr = master.local_addr();
    let restarted = move || Proc::start(peer_cmd(addr, &dst, true), Lines::Stderr).wait_exit(Duration::from_secs(120));
    let (status, err) = tokio::task::spawn_blocking(restarted).await.expect("restarted peer finishes");
    assert!(status.success(), "peer exits 0 when done; stderr:\n{err}");
    assert_same_tree(&mdir, &t.path().join("peer"));
    let total_gets = master.status().borrow().counters.chunk_gets_served;
    // Each unique chunk fetched once, plus at most the orders in flight at the kill.
    let in_flight = SLOTS * most_chunks_per_order(&before);
    assert!(
        total_gets <= unique + in_flight,
        "{total_gets} chunks served for {unique} unique chunks, at most {in_flight} in flight (before kill: {gets_before})"
    );
    assert!(total_gets - gets_before < unique, "the restart fetched only what was missing");
    master.shutdown().await;
    assert_eq!(tree_state(&mdir), before, "master folder unchanged");
}
