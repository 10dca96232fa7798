//! Throughput over time, sampled from the snapshot stream for the page's chart.
//!
//! The engines publish instantaneous rates only; the chart needs a series. One sampler task per
//! web router follows the watch channel and keeps at most one point per second for the last
//! [`History::CAPACITY`] seconds. It ends when the engine drops its status sender.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::status::{Role, Snapshot};

/// A bounded series of `[unix_time, aggregate_download_bps, upload_bps]` points, where upload is
/// the master's own upload on the master (what the swarm still takes from it) and the node's
/// own upload on a peer.
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<[f64; 3]>,
}

impl History {
    /// 15 minutes at one point per second.
    pub const CAPACITY: usize = 900;
    const MIN_STEP_SECS: f64 = 1.0;

    /// Record the rates of `snap` unless the previous point is less than a second older.
    pub fn record(&mut self, snap: &Snapshot) {
        let up = match snap.role {
            Role::Master => snap.nodes.iter().find(|n| n.is_master).map(|n| n.upload_bps).unwrap_or(snap.upload_bps),
            Role::Peer => snap.upload_bps,
        };
        self.push([snap.time, snap.download_bps, up]);
    }

    fn push(&mut self, p: [f64; 3]) {
        if let Some(last) = self.points.back() {
            if p[0] - last[0] < Self::MIN_STEP_SECS && p[0] >= last[0] {
                return;
            }
        }
        if self.points.len() == Self::CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    /// Points strictly newer than `after` (all of them for `f64::NEG_INFINITY`).
    pub fn since(&self, after: f64) -> Vec<[f64; 3]> {
        let start = self.points.partition_point(|p| p[0] <= after);
        self.points.range(start..).copied().collect()
    }
}

/// Follow `status` and record into `history` until the sender is dropped. Without a tokio
/// runtime (a router built outside one) there is no chart, and a warning says why.
pub fn spawn_sampler(mut status: watch::Receiver<Snapshot>, history: Arc<Mutex<History>>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("web status router built outside a tokio runtime: the throughput chart stays empty");
        return;
    };
    rt.spawn(async move {
        loop {
            {
                let snap = status.borrow_and_update();
                if let Ok(mut h) = history.lock() {
                    h.record(&snap);
                }
            }
            if status.changed().await.is_err() {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_point_per_second_and_is_bounded() {
        let mut h = History::default();
        for i in 0..(History::CAPACITY * 2 * 4) {
            h.push([i as f64 * 0.25, i as f64, 0.0]);
        }
        let all = h.since(f64::NEG_INFINITY);
        assert_eq!(all.len(), History::CAPACITY);
        assert!(all.windows(2).all(|w| w[1][0] - w[0][0] >= 1.0));
        let last_t = all[all.len() - 1][0];
        assert_eq!(h.since(last_t).len(), 0);
        assert_eq!(h.since(last_t - 1.5).len(), 2, "points 1 s apart: the last two");
    }

    #[test]
    fn master_upload_comes_from_master_node() {
        let mut s = Snapshot::new(Role::Master, "m".into(), "/x".into());
        s.download_bps = 10.0;
        s.upload_bps = 99.0;
        s.nodes.push(crate::status::NodeStatus { is_master: true, upload_bps: 7.0, ..Default::default() });
        let mut h = History::default();
        h.record(&s);
        assert_eq!(h.since(f64::NEG_INFINITY)[0][1..], [10.0, 7.0]);
    }
}
