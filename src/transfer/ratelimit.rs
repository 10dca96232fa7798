//! Token-bucket rate limiter shared by all transfers in one direction of one node.
//!
//! Why not `governor`: its GCRA works on cells of one unit and needs `n <= burst` per call; we
//! want byte-granular grants of up to a piece at a time with a clear, testable guarantee:
//! **bytes granted by time t never exceed `burst + rate * t`**. Grants are FIFO through a tokio
//! mutex (fair), and a grant larger than the bucket is allowed by going into debt and sleeping
//! it off before returning, so the bound still holds. People type rates in as
//! [`crate::units::parse_rate`] reads them; this module only sees bytes per second.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// The smallest grant [`RateLimiter::grant`] hands out, so a very low rate does not cost a
/// wake-up per few bytes.
pub const MIN_GRANT: usize = 4 * 1024;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` in bytes per second (must be > 0); `burst` in bytes.
    pub fn new(rate_bytes_per_sec: u64, burst: u64) -> Self {
        let rate = rate_bytes_per_sec.max(1) as f64;
        RateLimiter {
            rate,
            burst: burst as f64,
            state: Mutex::new(Bucket { tokens: burst as f64, last: Instant::now() }),
        }
    }

    /// A limiter with the default burst for a rate: a tenth of a second of traffic, but at least
    /// one streaming piece so a single piece never waits for more than its own transfer time.
    pub fn with_rate(rate_bytes_per_sec: u64) -> Self {
        let burst = (rate_bytes_per_sec / 10).max(super::PIECE as u64);
        Self::new(rate_bytes_per_sec, burst)
    }

    /// How many bytes a flow asks for at a time: about 1/32 s of traffic, between
    /// [`MIN_GRANT`] and [`super::PIECE`]. Grants are FIFO, so a flow waits for every other
    /// flow's grant before its next one: with whole 256 KiB pieces, 8 uploads from a master
    /// limited to 400 KB/s each got a piece every 5 s and the last one its first byte after
    /// 4.6 s, past the planner's first-byte and stall timeouts, so they were aborted over and
    /// over and nothing finished. With small grants every flow moves several times a second.
    pub fn grant(&self) -> usize {
        ((self.rate / 32.0) as usize).clamp(MIN_GRANT, super::PIECE)
    }

    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Wait until `n` bytes may pass.
    pub async fn acquire(&self, n: usize) {
        // Holding the lock while sleeping makes grants FIFO and keeps the bound exact.
        let mut b = self.state.lock().await;
        let now = Instant::now();
        let dt = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * self.rate).min(self.burst);
        b.last = now;
        b.tokens -= n as f64;
        if b.tokens < 0.0 {
            let wait = -b.tokens / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            let now = Instant::now();
            let dt = now.duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + dt * self.rate).min(self.burst);
            b.last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_a_32nd_of_a_second_within_bounds() {
        assert_eq!(RateLimiter::with_rate(400_000).grant(), 12_500);
        assert_eq!(RateLimiter::with_rate(1_000).grant(), MIN_GRANT);
        assert_eq!(RateLimiter::with_rate(125_000_000).grant(), super::super::PIECE);
    }

    #[tokio::test]
    async fn grants_never_exceed_rate_times_time_plus_burst() {
        let rate = 2_000_000u64;
        let lim = std::sync::Arc::new(RateLimiter::new(rate, 100_000));
        let start = Instant::now();
        let granted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (lim, granted) = (lim.clone(), granted.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    lim.acquire(30_000).await;
                    let g = granted.fetch_add(30_000, std::sync::atomic::Ordering::SeqCst) + 30_000;
                    let bound = lim.burst() as f64 + rate as f64 * start.elapsed().as_secs_f64();
                    assert!(g as f64 <= bound + 1.0, "granted {g} > bound {bound}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}
