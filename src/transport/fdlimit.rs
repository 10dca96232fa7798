//! The open-file limit, raised once per process to what the OS allows, at most [`CAP`].
//!
//! Why: every connection is a file descriptor, and many systems start programs with a soft
//! limit of 1024 (macOS: 256), far below what a master of 1000 peers holds (a control
//! connection per peer, chunk connections, the files it reads). The hard limit is usually much
//! higher and a process may raise its own soft limit up to it, so [`raise`] does that at the
//! first engine start, but not past [`CAP`]: children (a browser the tray opens, say) inherit
//! the limit, and code that loops over every descriptor up to it, or uses `select()`, breaks
//! on the 2^30 some containers allow. Windows has no such per-process limit on sockets.

use std::sync::OnceLock;

/// The highest soft limit [`raise`] sets: room for the default 1000 peers many times over.
pub const CAP: u64 = 65536;

/// The soft limit to ask for: the hard one, at most [`CAP`], never below `current`.
#[cfg_attr(not(unix), allow(dead_code))] // used by the Unix `raise_once` and the unit tests
fn target(current: u64, hard: u64) -> u64 {
    hard.min(CAP).max(current)
}

/// The soft open-file limit after [`raise`] (`None` where there is none, or it is unknown).
pub fn raise() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(raise_once)
}

// `rlim_t` is u64 on 64-bit systems (the conversions are then no-ops) but u32 on some 32-bit ones.
#[cfg(unix)]
#[allow(clippy::useless_conversion)]
fn raise_once() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.rlim_cur;
    // macOS refuses a soft limit above OPEN_MAX (10240) even when the hard limit is infinite.
    let capped = target(u64::from(before), u64::from(lim.rlim_max));
    let capped = libc::rlim_t::try_from(capped).unwrap_or(lim.rlim_max);
    let targets = [capped, capped.min(10240)];
    for target in targets.into_iter().filter(|t| *t > before) {
        let want = libc::rlimit { rlim_cur: target, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct it is given; a refusal leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            tracing::debug!("open-file limit raised from {before} to {target}");
            return Some(u64::from(target));
        }
    }
    Some(u64::from(before))
}

#[cfg(not(unix))]
fn raise_once() -> Option<u64> {
    None
}

/// Warn when the open-file limit cannot hold what a node serving `max_peers` peers may open.
pub fn check_for(max_peers: usize, what: &str) {
    let limits = super::ServeLimits::for_peers(max_peers);
    let needed = (max_peers + limits.max_connections + 256) as u64;
    if let Some(limit) = raise().filter(|l| *l < needed) {
        tracing::warn!(
            "{what}: the open-file limit is {limit}, below the ~{needed} that {max_peers} peers may need; new \
             connections are refused when it runs out: raise it (ulimit -n, LimitNOFILE=) or lower --max-peers"
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    #[allow(clippy::useless_conversion)]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let after = super::raise().expect("unix has a limit");
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as in `raise_once`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(u64::from(lim.rlim_cur), after);
        let hard = u64::from(lim.rlim_max);
        assert!(after >= hard.min(super::CAP).min(10240), "{after} of {hard}");
    }

    /// A container's hard limit of 2^30 is not handed on to every child process.
    #[test]
    fn the_target_is_capped() {
        assert_eq!(super::target(1024, 1 << 30), super::CAP);
        assert_eq!(super::target(1024, 4096), 4096);
        // An already higher soft limit is never lowered.
        assert_eq!(super::target(1 << 20, 1 << 30), 1 << 20);
    }
}
