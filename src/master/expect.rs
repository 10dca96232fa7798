//! Expected peers (`lanscatter master --expect FILE|N`): which of the peers an admin expects are
//! done, syncing, stuck or missing.
//!
//! A scripted rollout needs to know when it is over (`--exit-when-all-done`) and which machines
//! hold it up. The master knows who is connected and how far each one is; this module compares
//! that with the list the admin gave and classifies each entry. It is pure: the coordinator hands
//! it the rows of each snapshot and its monotonic clock (`now`, in seconds), and it keeps only
//! when each node last made progress. The result travels in the snapshot
//! ([`crate::status::ExpectedReport`]) to `/api/status`, the status page, `/metrics` and
//! `lanscatter status`.
//!
//! Rules:
//! - An entry matches a node by its name (the peer's host name, or `PeerConfig::name`) or by the
//!   host it serves at (its IP address, or what it `--advertise`s), ignoring letter case. Several
//!   matching nodes (a reconnect shows briefly twice): the one furthest along counts.
//! - **done**: up to date with the current manifest. **stuck**: connected, not done, and its
//!   verified bytes have not changed for [`STUCK_AFTER`] (the clock restarts when it joins, when
//!   the manifest changes and whenever its bytes change). **syncing**: connected otherwise.
//!   **missing**: no node answers to it (never joined, or left).
//! - `--expect N`: any N peers; the ones furthest along fill the slots, the rest are `missing`.
//! - While the master indexes its folder no peer is listed yet, so every entry reads missing.

use std::collections::HashMap;
use std::time::Duration;

use crate::status::{ExpectState, ExpectedPeer, ExpectedReport, NodeState, NodeStatus};

/// How long a connected peer may go without progress before it counts as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

/// Who the master expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectList {
    /// These names or addresses, one entry each.
    Names(Vec<String>),
    /// Any this many peers.
    Count(u32),
}

/// The expectation a master runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub list: ExpectList,
    pub stuck_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpectError {
    #[error("the expected-peer list has no names: put one host name or IP address per line (`#` starts a comment)")]
    Empty,
    #[error("--expect 0 expects no peer: give a count of at least 1, or a file of names")]
    Zero,
    #[error("line {line} of the expected-peer list has a space in {text:?}: put one name or address per line")]
    Space { line: usize, text: String },
}

impl Expect {
    /// `--expect N`.
    pub fn count(n: u32) -> Result<Expect, ExpectError> {
        if n == 0 {
            return Err(ExpectError::Zero);
        }
        Ok(Expect { list: ExpectList::Count(n), stuck_after: STUCK_AFTER })
    }

    /// The text of an `--expect FILE`: one name or address per line; blank lines and `#`
    /// comments (whole-line or trailing) are ignored, and so is a repeated entry.
    pub fn parse_list(text: &str) -> Result<Expect, ExpectError> {
        let mut names: Vec<String> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if line.contains(char::is_whitespace) {
                return Err(ExpectError::Space { line: i + 1, text: line.to_string() });
            }
            if !names.iter().any(|n| n.eq_ignore_ascii_case(line)) {
                names.push(line.to_string());
            }
        }
        if names.is_empty() {
            return Err(ExpectError::Empty);
        }
        Ok(Expect { list: ExpectList::Names(names), stuck_after: STUCK_AFTER })
    }
}

/// The classification of one entry (pure): `node` is the matching node, if any, and `idle_secs`
/// how long its verified bytes have not changed.
pub fn classify(node: Option<&NodeStatus>, idle_secs: f64, stuck_after: Duration) -> ExpectState {
    match node {
        None => ExpectState::Missing,
        Some(n) if n.state == NodeState::UpToDate => ExpectState::Done,
        Some(_) if idle_secs >= stuck_after.as_secs_f64() => ExpectState::Stuck,
        Some(_) => ExpectState::Syncing,
    }
}

/// Does `want` (an entry of the list) name node `n`?
pub fn matches(want: &str, n: &NodeStatus) -> bool {
    if n.is_master {
        return false;
    }
    if n.name.eq_ignore_ascii_case(want) {
        return true;
    }
    let host = n.address.rsplit_once(':').map_or(n.address.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty() && host.eq_ignore_ascii_case(want.trim_start_matches('[').trim_end_matches(']'))
}

/// When a node last made progress.
#[derive(Debug, Clone, Copy)]
struct Seen {
    manifest_id: u64,
    bytes_done: u64,
    since: f64,
}

/// The expectation plus what it must remember between snapshots.
#[derive(Debug)]
pub struct Tracker {
    expect: Expect,
    seen: HashMap<u32, Seen>,
}

impl Tracker {
    pub fn new(expect: Expect) -> Self {
        Tracker { expect, seen: HashMap::new() }
    }

    /// The report for a snapshot's `nodes` of manifest `manifest_id`, at time `now` (seconds on
    /// any monotonic clock).
    pub fn report(&mut self, nodes: &[NodeStatus], manifest_id: u64, now: f64) -> ExpectedReport {
        self.seen.retain(|id, _| nodes.iter().any(|n| n.id == *id && !n.is_master));
        for n in nodes.iter().filter(|n| !n.is_master) {
            let fresh = Seen { manifest_id, bytes_done: n.bytes_done, since: now };
            let s = self.seen.entry(n.id).or_insert(fresh);
            if s.manifest_id != manifest_id || s.bytes_done != n.bytes_done {
                *s = fresh;
            }
        }
        let idle = |n: &NodeStatus| self.seen.get(&n.id).map_or(0.0, |s| (now - s.since).max(0.0));
        let stuck_after = self.expect.stuck_after;
        let entry = |want: &str, n: Option<&NodeStatus>| ExpectedPeer {
            want: want.to_string(),
            state: classify(n, n.map_or(0.0, idle), stuck_after),
            node: n.map(|n| n.id),
            name: n.map(|n| n.name.clone()).unwrap_or_default(),
            address: n.map(|n| n.address.clone()).unwrap_or_default(),
            idle_secs: n.map(idle),
        };
        let by_rank = |n: &&NodeStatus| {
            let n: &NodeStatus = n;
            rank(classify(Some(n), idle(n), stuck_after))
        };
        let mut used: Vec<u32> = Vec::new();
        let mut peers = Vec::new();
        match &self.expect.list {
            ExpectList::Names(names) => {
                for want in names {
                    let best = nodes.iter().filter(|n| matches(want, n)).min_by_key(by_rank);
                    used.extend(nodes.iter().filter(|n| matches(want, n)).map(|n| n.id));
                    peers.push(entry(want, best));
                }
            }
            ExpectList::Count(k) => {
                let mut live: Vec<&NodeStatus> = nodes.iter().filter(|n| !n.is_master).collect();
                live.sort_by_key(|n| (by_rank(n), n.id));
                for i in 0..*k as usize {
                    let n = live.get(i).copied();
                    used.extend(n.map(|n| n.id));
                    peers.push(entry("*", n));
                }
            }
        }
        let unexpected =
            nodes.iter().filter(|n| !n.is_master && !used.contains(&n.id)).map(|n| n.name.clone()).collect();
        summarize(peers, unexpected, stuck_after)
    }
}

/// Order of preference when several nodes could answer to one entry.
fn rank(s: ExpectState) -> u8 {
    match s {
        ExpectState::Done => 0,
        ExpectState::Syncing => 1,
        ExpectState::Stuck => 2,
        ExpectState::Missing => 3,
    }
}

fn summarize(peers: Vec<ExpectedPeer>, unexpected: Vec<String>, stuck_after: Duration) -> ExpectedReport {
    let n = |s: ExpectState| peers.iter().filter(|p| p.state == s).count() as u32;
    ExpectedReport {
        done: n(ExpectState::Done),
        syncing: n(ExpectState::Syncing),
        stuck: n(ExpectState::Stuck),
        missing: n(ExpectState::Missing),
        peers,
        unexpected,
        stuck_after_secs: stuck_after.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, name: &str, address: &str, state: NodeState, bytes_done: u64) -> NodeStatus {
        NodeStatus {
            id,
            name: name.into(),
            address: address.into(),
            state,
            bytes_done,
            bytes_total: 100,
            ..Default::default()
        }
    }

    fn master() -> NodeStatus {
        NodeStatus { id: 0, name: "alpha".into(), is_master: true, state: NodeState::UpToDate, ..Default::default() }
    }

    fn states(r: &ExpectedReport) -> Vec<(&str, ExpectState)> {
        r.peers.iter().map(|p| (p.want.as_str(), p.state)).collect()
    }

    #[test]
    fn lists_parse_with_comments_and_refuse_nonsense() {
        let e = Expect::parse_list("# rollout\nalpha\n\n  10.0.0.7  # the lab box\nALPHA\n").unwrap();
        assert_eq!(e.list, ExpectList::Names(vec!["alpha".into(), "10.0.0.7".into()]));
        assert_eq!(e.stuck_after, STUCK_AFTER);
        assert_eq!(Expect::parse_list("# nothing\n\n"), Err(ExpectError::Empty));
        assert!(matches!(Expect::parse_list("a\nb c\n"), Err(ExpectError::Space { line: 2, .. })));
        assert_eq!(Expect::count(0), Err(ExpectError::Zero));
        assert_eq!(Expect::count(3).unwrap().list, ExpectList::Count(3));
    }

    #[test]
    fn classification_is_a_function_of_state_and_idle_time() {
        let s = Duration::from_secs(60);
        let syncing = node(1, "a", "", NodeState::Syncing, 5);
        assert_eq!(classify(None, 0.0, s), ExpectState::Missing);
        assert_eq!(classify(Some(&node(1, "a", "", NodeState::UpToDate, 100)), 1e6, s), ExpectState::Done);
        assert_eq!(classify(Some(&syncing), 59.9, s), ExpectState::Syncing);
        assert_eq!(classify(Some(&syncing), 60.0, s), ExpectState::Stuck);
        let failing = node(1, "a", "", NodeState::Error { message: "disk full".into() }, 5);
        assert_eq!(classify(Some(&failing), 10.0, s), ExpectState::Syncing);
        assert_eq!(classify(Some(&failing), 61.0, s), ExpectState::Stuck);
    }

    #[test]
    fn entries_match_by_name_or_serving_host_never_the_master() {
        let n = node(1, "Lab-PC", "10.0.0.7:10565", NodeState::Syncing, 0);
        assert!(matches("lab-pc", &n));
        assert!(matches("10.0.0.7", &n));
        assert!(!matches("10.0.0.70", &n));
        assert!(!matches("10565", &n));
        assert!(matches("::1", &node(2, "x", "[::1]:5", NodeState::Syncing, 0)));
        assert!(!matches("alpha", &master()));
    }

    #[test]
    fn a_peer_without_progress_becomes_stuck_and_recovers_when_bytes_move() {
        let mut t = Tracker::new(Expect::parse_list("alpha\nbeta\ngamma").unwrap());
        let mut nodes = vec![
            master(),
            node(1, "alpha", "127.0.0.1:1", NodeState::UpToDate, 100),
            node(2, "beta", "127.0.0.1:2", NodeState::Syncing, 10),
        ];
        let r = t.report(&nodes, 1, 100.0);
        use ExpectState::*;
        assert_eq!(states(&r), [("alpha", Done), ("beta", Syncing), ("gamma", Missing)]);
        assert_eq!((r.done, r.syncing, r.stuck, r.missing), (1, 1, 0, 1));
        assert!(!r.all_done());
        assert_eq!(t.report(&nodes, 1, 159.0).peers[1].state, Syncing);
        let r = t.report(&nodes, 1, 160.0);
        assert_eq!(r.peers[1].state, Stuck);
        assert_eq!(r.peers[1].idle_secs, Some(60.0));
        nodes[2].bytes_done = 11;
        assert_eq!(t.report(&nodes, 1, 161.0).peers[1].state, Syncing, "progress resets the clock");
        assert_eq!(t.report(&nodes, 1, 220.0).peers[1].state, Syncing);
        assert_eq!(t.report(&nodes, 1, 221.0).peers[1].state, Stuck);
        assert_eq!(t.report(&nodes, 2, 221.5).peers[1].state, Syncing, "a new manifest resets the clock");
        nodes.push(node(3, "gamma", "127.0.0.1:3", NodeState::UpToDate, 100));
        nodes[2].state = NodeState::UpToDate;
        let r = t.report(&nodes, 2, 222.0);
        assert!(r.all_done(), "{r:?}");
        nodes.remove(1);
        let r = t.report(&nodes, 2, 223.0);
        assert_eq!(states(&r)[0], ("alpha", Missing), "a peer that left is missing again");
    }

    #[test]
    fn the_node_furthest_along_answers_and_strangers_are_listed() {
        let mut t = Tracker::new(Expect::parse_list("alpha").unwrap());
        let nodes = vec![
            master(),
            node(1, "alpha", "127.0.0.1:1", NodeState::Syncing, 10),
            node(2, "alpha", "127.0.0.1:2", NodeState::UpToDate, 100),
            node(3, "intruder", "10.9.9.9:3", NodeState::Syncing, 0),
        ];
        let r = t.report(&nodes, 1, 0.0);
        assert_eq!((r.peers[0].state, r.peers[0].node), (ExpectState::Done, Some(2)));
        assert_eq!(r.unexpected, ["intruder"]);
        assert!(r.all_done());
    }

    #[test]
    fn a_count_fills_its_slots_with_the_peers_furthest_along() {
        let mut t = Tracker::new(Expect::count(3).unwrap());
        let mut nodes =
            vec![master(), node(1, "a", "h:1", NodeState::Syncing, 10), node(2, "b", "h:2", NodeState::UpToDate, 100)];
        let r = t.report(&nodes, 1, 0.0);
        use ExpectState::*;
        assert_eq!(
            r.peers.iter().map(|p| (p.name.as_str(), p.state)).collect::<Vec<_>>(),
            [("b", Done), ("a", Syncing), ("", Missing)]
        );
        nodes.push(node(3, "c", "h:3", NodeState::UpToDate, 100));
        nodes.push(node(4, "d", "h:4", NodeState::UpToDate, 100));
        let r = t.report(&nodes, 1, 1.0);
        assert!(r.all_done(), "three of four peers done fill a count of three");
        assert_eq!(r.unexpected, ["a"]);
    }
}
