//! How fast this machine moves bytes over loopback TCP with nothing else in the way: the yardstick
//! `lanscatter demo` measures its swarm against.
//!
//! Why here: every socket the program opens lives in `transport`, the probe's too. It copies
//! `bytes` through `streams` plain TCP connections on 127.0.0.1 at once (no TLS, no hashing, no
//! disk), the least work any delivery of those bytes to that many receivers has to do on this
//! machine. So a rate measured here is an upper bound for what the swarm can reach on loopback.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Write size of the probe's senders (the chunk server writes in blocks of this order too).
const BLOCK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the loopback probe cannot use 127.0.0.1: {0}; is the loopback interface up?")]
    Io(#[from] std::io::Error),
    #[error("the loopback probe lost a stream: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What one probe moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Bytes received, summed over the streams.
    pub bytes: u64,
    /// Wall time from the first connect to the last byte read.
    pub secs: f64,
}

impl Probe {
    /// Aggregate rate in bytes per second.
    pub fn rate(&self) -> f64 {
        self.bytes as f64 / self.secs.max(1e-9)
    }
}

/// Copy `bytes` over each of `streams` concurrent loopback connections.
pub async fn loopback(streams: usize, bytes: u64) -> Result<Probe, ProbeError> {
    let streams = streams.max(1);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let mut senders = Vec::with_capacity(streams);
    for _ in 0..streams {
        senders.push(tokio::spawn(send(addr, bytes)));
    }
    let mut receivers = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (sock, _) = listener.accept().await?;
        receivers.push(tokio::spawn(drain(sock)));
    }
    let mut received = 0u64;
    for r in receivers {
        received += r.await??;
    }
    for s in senders {
        s.await??;
    }
    Ok(Probe { bytes: received, secs: started.elapsed().as_secs_f64() })
}

async fn send(addr: SocketAddr, bytes: u64) -> std::io::Result<()> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    // Not zeros: a future kernel or NIC that compresses or dedups would flatter the probe.
    let block: Vec<u8> = (0..BLOCK).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        sock.write_all(&block[..n]).await?;
        left -= n as u64;
    }
    sock.shutdown().await
}

async fn drain(mut sock: TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    loop {
        match sock.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_moves_every_byte_and_reports_a_rate() {
        let p = loopback(3, 3 * BLOCK as u64 + 17).await.expect("loopback works");
        assert_eq!(p.bytes, 3 * (3 * BLOCK as u64 + 17));
        assert!(p.rate().is_finite() && p.rate() > 0.0, "{p:?}");
    }
}
