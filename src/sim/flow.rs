//! Fluid bandwidth model: max-min fair sharing of every node's upload and download capacity
//! among the transfers crossing it (progressive filling / water-filling).
//!
//! Max-min rather than "capacity / transfer count": when a transfer is held back by its other
//! end, the spare capacity goes to the node's other transfers, as TCP would roughly do on a
//! switched LAN. This makes the simulator neither pessimistic about slow peers nor optimistic
//! about congestion (the LAN core is assumed non-blocking; only host links limit).

/// One active flow between node `from` and node `to`.
#[derive(Debug, Clone)]
pub struct Flow {
    pub from: usize,
    pub to: usize,
    /// Current rate (bytes/s), set by [`max_min_rates`].
    pub rate: f64,
}

/// Assign max-min fair rates to `flows` given per-node `up` and `down` capacities (bytes/s).
pub fn max_min_rates(flows: &mut [Flow], up: &[f64], down: &[f64]) {
    let n = up.len();
    // Resource r < n is node r's upload, r >= n node r-n's download.
    let mut cap: Vec<f64> = up.iter().chain(down.iter()).copied().collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); 2 * n];
    for (i, f) in flows.iter().enumerate() {
        users[f.from].push(i);
        users[n + f.to].push(i);
    }
    let mut unfrozen: Vec<usize> = users.iter().map(|u| u.len()).collect();
    let mut frozen = vec![false; flows.len()];
    let mut left = flows.len();
    while left > 0 {
        // The bottleneck: smallest equal share among resources still shared.
        let mut best: Option<(f64, usize)> = None;
        for r in 0..2 * n {
            if unfrozen[r] > 0 {
                let share = (cap[r].max(0.0)) / unfrozen[r] as f64;
                if best.is_none_or(|b| share < b.0) {
                    best = Some((share, r));
                }
            }
        }
        let Some((share, r)) = best else { break };
        for &i in &users[r] {
            if frozen[i] {
                continue;
            }
            frozen[i] = true;
            left -= 1;
            flows[i].rate = share;
            let (a, b) = (flows[i].from, n + flows[i].to);
            cap[a] -= share;
            cap[b] -= share;
            unfrozen[a] -= 1;
            unfrozen[b] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_capacity_goes_to_unconstrained_flows() {
        // Node 0 uploads to 1 (slow download 1.0) and 2 (fast): 2 gets the rest of 0's 10.
        let mut f = vec![Flow { from: 0, to: 1, rate: 0.0 }, Flow { from: 0, to: 2, rate: 0.0 }];
        max_min_rates(&mut f, &[10.0, 10.0, 10.0], &[10.0, 1.0, 10.0]);
        assert!((f[0].rate - 1.0).abs() < 1e-9);
        assert!((f[1].rate - 9.0).abs() < 1e-9);
    }

    #[test]
    fn equal_split_at_shared_bottleneck() {
        let mut f: Vec<Flow> = (1..=4).map(|to| Flow { from: 0, to, rate: 0.0 }).collect();
        max_min_rates(&mut f, &[8.0, 9.0, 9.0, 9.0, 9.0], &[9.0; 5]);
        assert!(f.iter().all(|f| (f.rate - 2.0).abs() < 1e-9));
    }
}
