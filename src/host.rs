//! Facts about the machine the engines run on: its name and the wall clock.
//!
//! Both engines, the GUI and the status page need them; they live below all of them so no
//! engine imports another for a helper.

/// This machine's name (shown to peers and on the status page; also how a peer recognises that
/// the master runs on the same machine).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()))
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "lanscatter".into())
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
