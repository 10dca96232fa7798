//! Fuzzing the control channel's framing at a real master: raw websocket byte streams after a
//! real upgrade (a hello, then mutated peer messages in frames of every opcode, some with broken
//! headers or lengths), one connection per case. The master must stay up and keep serving: a
//! real peer syncs the folder afterwards. The decoders behind it are fuzzed one by one in
//! `tests/fuzz_protocol.rs`; this file checks the framing and the connection task around them.

mod common;

use std::time::Duration;

use common::fuzz::{self, cases};
use common::fuzz_seeds::seeds;
use common::sync::*;
use common::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_leave_the_master_serving() {
    let (t, mdir, cache) = sync_source(11, 1);
    let master = start_master(&mdir, &cache).await;
    let addr = master.local_addr();
    let mut pool = seeds("peer_msg");
    pool.extend(fuzz::corpus("peer_msg"));
    let hello = seeds("hello").remove(0);
    let mut rng = Rng::new(0xc4a77e1);
    let n = cases(300);
    for case in 0..n {
        let stream = hostile_stream(&mut rng, &pool, &hello);
        send_after_upgrade(addr, &stream).await.unwrap_or_else(|e| panic!("case {case}: master unreachable: {e}"));
        assert!(master.is_running(), "case {case}: the master stopped after {} hostile bytes", stream.len());
    }
    println!("fuzz channel: {n} cases without a failure");
    let peer_dir = t.path().join("peer");
    let peer = start_peer(addr, &peer_dir, &cache, "peer").await;
    wait_synced(&peer, &master, &mdir, &peer_dir, Duration::from_secs(60)).await;
    peer.shutdown().await;
    master.shutdown().await;
}

/// Upgrade to the control websocket, write `bytes`, and reset the connection (no TIME_WAIT, so
/// a long run does not run out of ports).
async fn send_after_upgrade(addr: std::net::SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    // Linger 0 resets on drop without waiting, so the deprecation's concern (a blocking drop)
    // does not apply.
    #[allow(deprecated)]
    s.set_linger(Some(Duration::ZERO))?;
    let req = format!(
        "GET /join HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await??;
        if n == 0 {
            return Err(std::io::Error::other("closed before answering the upgrade"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused: {}", String::from_utf8_lossy(&head));
    // The master may close first (a malformed frame): a failed write is its answer, not an error.
    let _ = s.write_all(bytes).await;
    Ok(())
}

/// A hello (sometimes mutated) and 1 to 4 frames of mutated peer messages.
fn hostile_stream(rng: &mut Rng, pool: &[Vec<u8>], hello: &[u8]) -> Vec<u8> {
    let hello = if rng.below(5) == 0 { fuzz::mutate(rng, &[hello.to_vec()]) } else { hello.to_vec() };
    let mut out = frame(0x1, true, &hello);
    for _ in 0..1 + rng.below(4) {
        let payload = if rng.below(3) == 0 {
            pool[rng.below(pool.len() as u64) as usize].clone()
        } else {
            fuzz::mutate(rng, pool)
        };
        // Mostly binary frames; also text, continuation, ping, close and reserved opcodes.
        let opcode = [0x2, 0x2, 0x2, 0x2, 0x1, 0x0, 0x9, 0x8, 0x3, 0xb][rng.below(10) as usize];
        let mut f = frame(opcode, rng.below(6) != 0, &payload);
        match rng.below(8) {
            // A length field claiming more than follows, or a flipped header bit.
            0 => f[1] = 0xff,
            1 => f[0] ^= 1 << rng.below(8),
            _ => {}
        }
        out.extend_from_slice(&f);
    }
    out
}

/// One client websocket frame (masked with a zero key, so the payload reads as written).
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}
