//! Every churn scenario terminates with all peers complete and no broken planner promise
//! (no duplicate (chunk, destination) order, no slot overrun, no order from a node without
//! the chunk, no upload from a 0-slot peer). Small data so the suite stays fast.

mod common;

use lanscatter::sim::{SimConfig, SimResult};

fn small(peers: usize, seed: u64) -> SimConfig {
    // 64 MiB in 64 chunks over 100 Mbit/s: ~5.4 s ideal.
    SimConfig { peers, chunks: 64, chunk_size: 1 << 20, seed, ..SimConfig::default() }
}

fn check(cfg: SimConfig) -> SimResult {
    common::simulate_checked(&cfg)
}

#[test]
fn joins_leaves_and_rejoins() {
    for seed in 1..=5 {
        check(SimConfig { late_fraction: 0.5, leave: 3, offline_s: Some(1.0), ..small(12, seed) });
    }
}

#[test]
fn random_failures_and_bad_data() {
    for seed in 1..=5 {
        let r = check(SimConfig { fail_rate: 0.2, ..small(8, seed) });
        assert!(r.injected_failures > 0);
    }
}

#[test]
fn slow_nodes_and_zero_upload_peers() {
    for seed in 1..=3 {
        check(SimConfig { slow: 2, zero_upload: 2, slow_rate: 5e6 / 8.0, ..small(8, seed) });
    }
}

#[test]
fn everything_at_once() {
    for seed in 1..=4 {
        check(SimConfig {
            slow: 1,
            leave: 2,
            zero_upload: 1,
            late_fraction: 0.3,
            fail_rate: 0.1,
            upload_slots: 2,
            download_slots: 2,
            master_slots: 2,
            ..small(10, seed)
        });
    }
}

#[test]
fn single_slots_everywhere() {
    check(SimConfig { upload_slots: 1, download_slots: 1, master_slots: 1, ..small(6, 3) });
}

/// Members that claim everything and answer "busy", and peers that freeze mid-run (dropped by
/// the liveness ping `hung_detect_s` later): the honest peers still all finish, and not much
/// later than without them (the ratio is deterministic for the seed).
#[test]
fn liars_and_hung_peers_do_not_stop_the_swarm() {
    for seed in 1..=3 {
        let clean = check(small(8, seed));
        let hostile = check(SimConfig { liars: 2, hung: 2, ..small(8, seed) });
        assert!(hostile.all_complete, "{hostile:?}");
        let ratio = hostile.seconds / clean.seconds;
        eprintln!(
            "seed {seed}: {:.2} s with 2 liars + 2 hung, {:.2} s without ({ratio:.2}x)",
            hostile.seconds, clean.seconds
        );
        assert!(ratio < 2.0, "{ratio:.2}x: {hostile:?}");
    }
}
