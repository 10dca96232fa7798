//! The efficiency targets, in seeded (deterministic) simulations of the real planner.
//! Thresholds are exact because the simulation is: same seed, same result.

use lanscatter::planner::Policy;
mod common;

use lanscatter::sim::{SimConfig, SimResult};

fn sim(cfg: SimConfig) -> SimResult {
    common::simulate_checked(&cfg)
}

/// 1 GiB in 256 chunks of 4 MiB over 100 Mbit/s links (the simulator's defaults).
fn base(peers: usize) -> SimConfig {
    SimConfig { peers, seed: 11, ..SimConfig::default() }
}

#[test]
fn eight_peers_equal_links_reach_93_percent() {
    let r = sim(base(8));
    assert!(r.efficiency >= 0.93, "{r:?}");
    // Super-seeding: the master sends little more than one copy.
    assert!(r.master_upload_bytes < r.data_bytes * 13 / 10, "{r:?}");
}

#[test]
fn sixty_four_peers_equal_links_reach_93_percent() {
    let r = sim(base(64));
    assert!(r.efficiency >= 0.93, "{r:?}");
}

#[test]
fn two_slow_of_eight_reach_85_percent() {
    let r = sim(SimConfig { slow: 2, ..base(8) });
    assert!(r.efficiency >= 0.85, "{r:?}");
}

#[test]
fn thirty_percent_late_joiners_reach_80_percent() {
    let r = sim(SimConfig { late_fraction: 0.3, ..base(8) });
    assert!(r.efficiency >= 0.80, "{r:?}");
    let r = sim(SimConfig { late_fraction: 0.3, ..base(32) });
    assert!(r.efficiency >= 0.80, "{r:?}");
}

#[test]
fn naive_policy_is_bounded_by_the_master_link() {
    let swarm = sim(base(8));
    let naive = sim(SimConfig { policy: Policy::Naive, ..base(8) });
    // Everyone from the master: N copies through one link.
    assert!(naive.master_upload_bytes == naive.data_bytes * 8, "{naive:?}");
    assert!(naive.efficiency < 0.13 && swarm.efficiency > 7.0 * naive.efficiency, "{naive:?}");
}

#[test]
fn same_seed_same_run() {
    let a = sim(SimConfig { fail_rate: 0.05, leave: 1, ..base(8) });
    let b = sim(SimConfig { fail_rate: 0.05, leave: 1, ..base(8) });
    assert_eq!((a.seconds, a.orders, a.master_upload_bytes), (b.seconds, b.orders, b.master_upload_bytes));
}

/// Random failures (half of them bad data) are incidents, not verdicts: an honest source that
/// one destination accuses, or that fails now and then, stays in the swarm (`planner::trust`).
/// When one bad-data report excluded a source at once and exclusions only grew, 5 % of failed
/// transfers took this seed's 8 peers to 0.30 and 32 peers to 0.12 (the master sent 3.2x and
/// 8.5x); now 0.71 and 0.60 (1.4x and 1.6x).
#[test]
fn five_percent_random_failures_keep_honest_sources_in_the_swarm() {
    for (peers, at_least) in [(8, 0.65), (32, 0.55)] {
        let r = sim(SimConfig { fail_rate: 0.05, ..base(peers) });
        assert!(r.efficiency >= at_least, "{peers} peers: {r:?}");
        assert!(r.master_upload_bytes < r.data_bytes * 2, "{peers} peers: {r:?}");
    }
}
