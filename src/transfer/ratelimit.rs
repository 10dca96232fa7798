//! Token-bucket rate limiter shared by all transfers in one direction of one node.
//!
//! Why not `governor`: its GCRA works on cells of one unit and needs `n <= burst` per call; we
//! want byte-granular grants of up to a piece at a time with a clear, testable guarantee:
//! **bytes granted by time t never exceed `burst + rate * t`**. Grants are FIFO through a tokio
//! mutex (fair), and a grant larger than the bucket is allowed by going into debt and sleeping
//! it off before returning, so the bound still holds.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

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

/// Parse a rate like `100M`, `2.5G`, `800k` or `1000000` as **bits** per second (network
/// convention, like the original's Mbit/s options) and return **bytes** per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'k' => 1e3,
                'm' => 1e6,
                'g' => 1e9,
                _ => {
                    return Err(format!(
                        "invalid rate {s:?}: use a number of bit/s with an optional k, M or G suffix, e.g. 100M"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        format!("invalid rate {s:?}: use a number of bit/s with an optional k, M or G suffix, e.g. 100M")
    })?;
    let bytes = v * mult / 8.0;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("invalid rate {s:?}: must be at least 8 bit/s"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_bits() {
        assert_eq!(parse_rate("100M").unwrap(), 12_500_000);
        assert_eq!(parse_rate("8k").unwrap(), 1000);
        assert_eq!(parse_rate("1G").unwrap(), 125_000_000);
        assert_eq!(parse_rate("800").unwrap(), 100);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10X").is_err());
        assert!(parse_rate("0").is_err());
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
