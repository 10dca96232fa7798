//! A member that freezes (a real peer process under SIGSTOP: its sockets stay open, it answers
//! nothing) is out of the swarm within seconds, and the other peers still finish. The master
//! must drop it from its status within 10 s (asserted with a generous 30 s deadline; the
//! measured time is printed), and the sync time is printed next to a run without freezing.
//! With `LANSCATTER_TRUST_BENCH=1` the tree is bigger so a sync takes ~10 s (`bench/trust`).
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::process::Proc;
use common::sync::*;
use lanscatter::engine::Engine;
use lanscatter::status::NodeStatus;

/// The process peer: the only node that is neither the master nor one of `peer0..`.
fn is_proc(n: &NodeStatus) -> bool {
    !n.is_master && !n.name.starts_with("peer")
}

fn signal(p: &Proc, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &p.id().to_string()]).status().expect("kill runs");
    assert!(ok.success(), "kill {sig} {}", p.id());
}

/// Master (upload-limited, so the sync lasts a few seconds and peers trade), a peer process
/// that has started syncing, then 4 in-process peers; with `freeze` the process is stopped as
/// they start. Returns their sync time and how long the master took to drop the frozen node.
async fn run(freeze: bool) -> (Duration, Option<Duration>) {
    let scale = if trust_bench() { 24 } else { 6 };
    let (t, mdir, cache) = sync_source(31, scale);
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.max_upload_bps = Some(3_000_000);
    let master = Engine::start(mcfg).await.expect("master starts");
    let mut status = master.status();
    wait_status(&mut status, Duration::from_secs(60), "the master's manifest", |s| s.manifest_id != 0).await;
    let pdir = t.path().join("process-peer");
    let maddr = master.local_addr().to_string();
    let pdir_s = pdir.to_str().expect("utf-8 path");
    let args = [
        "peer",
        &maddr,
        pdir_s,
        "--open",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--advertise",
        "127.0.0.1",
        "--no-cache",
    ];
    let mut proc = Proc::spawn(&args);
    wait_status(&mut status, Duration::from_secs(60), "the process peer holding data", |s| {
        s.nodes.iter().any(|n| is_proc(n) && n.bytes_done > 0)
    })
    .await;
    let t0 = Instant::now();
    let peers = start_peers(master.local_addr(), t.path(), &cache, 4).await;
    let dropped = if freeze {
        signal(&proc, "-STOP");
        let f0 = Instant::now();
        wait_status(&mut status, Duration::from_secs(30), "the frozen peer out of the master's status", |s| {
            !s.nodes.iter().any(is_proc)
        })
        .await;
        Some(f0.elapsed())
    } else {
        None
    };
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    let took = t0.elapsed();
    if freeze {
        signal(&proc, "-CONT");
    }
    proc.kill();
    shutdown_all(peers, master).await;
    (took, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_peer_is_dropped_within_seconds_and_the_others_finish() {
    trace_from_env();
    let (base, _) = run(false).await;
    let (took, dropped) = run(true).await;
    let dropped = dropped.expect("measured");
    println!(
        "swarm_frozen: the master dropped the frozen peer after {:.2} s; 4 peers synced in {:.2} s, {:.2} s without freezing ({:.2}x)",
        dropped.as_secs_f64(),
        took.as_secs_f64(),
        base.as_secs_f64(),
        took.as_secs_f64() / base.as_secs_f64()
    );
}
