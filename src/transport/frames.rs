//! A byte-stream wrapper under the control channel's websocket that refuses an oversized
//! message from its frame header, before anything is buffered for it.
//!
//! Why: tungstenite takes one size limit at construction, for the whole connection, and reads
//! a frame's payload into memory before anything above it sees the frame. The channel needs
//! two limits (64 KiB for the first message, the handshake; then what the protocol allows
//! after it, which on the master grows with the manifest) and wants them applied while the
//! bytes arrive. This wrapper reads the frame headers as they pass (RFC 6455 section 5.2: two
//! bytes, an extended length, a mask key; it never needs the payload) and fails the read as
//! soon as a data message's announced size, fragments added up, exceeds its limit. Which limit
//! applies is decided by position in the stream (first data message or later), so raising the
//! later limit after the handshake cannot race frames already read ahead.
//!
//! It also stamps a shared [`Liveness`] whenever bytes move either way: a websocket yields a
//! message only after its last byte, so a channel that measured liveness from whole messages
//! would take a big manifest arriving slowly for a dead peer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A message larger than the limit in force for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {what} of {size} bytes exceeds the {limit} byte limit")]
pub struct TooLarge {
    pub what: &'static str,
    pub size: u64,
    pub limit: usize,
}

/// Where the scanner stands in the incoming bytes.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// A client: the server's HTTP `101` answer comes first; `matched` bytes of its closing
    /// `\r\n\r\n` were seen.
    HttpHead { matched: usize },
    /// Collecting a frame header.
    Header,
    /// Skipping `left` payload bytes.
    Payload { left: u64 },
}

/// The frame scanner (no I/O, so it is tested on byte slices).
#[derive(Debug)]
struct Scan {
    mode: Mode,
    head: [u8; 14],
    have: usize,
    /// Bytes of the data message in progress (its fragments added up).
    message: u64,
    first_done: bool,
    first_limit: usize,
    limit: Arc<AtomicUsize>,
    failed: Option<TooLarge>,
}

/// Length of a frame header from its first two bytes.
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

impl Scan {
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TooLarge> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        while let Some((&b, rest)) = bytes.split_first() {
            match self.mode {
                Mode::HttpHead { matched } => {
                    let m = if b == b"\r\n\r\n"[matched] { matched + 1 } else { usize::from(b == b'\r') };
                    self.mode = if m == 4 { Mode::Header } else { Mode::HttpHead { matched: m } };
                    bytes = rest;
                }
                Mode::Payload { left } => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.mode = if take == left { Mode::Header } else { Mode::Payload { left: left - take } };
                }
                Mode::Header => {
                    self.head[self.have] = b;
                    self.have += 1;
                    bytes = rest;
                    if self.have >= 2 && self.have == header_len(self.head[1]) {
                        self.header_done().inspect_err(|e| self.failed = Some(*e))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete frame header: check the message it belongs to against its limit.
    fn header_done(&mut self) -> Result<(), TooLarge> {
        let h = &self.head[..self.have];
        let len = match h[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
        self.have = 0;
        self.mode = if len == 0 { Mode::Header } else { Mode::Payload { left: len } };
        // Control frames (close, ping, pong) are at most 125 bytes by the RFC: tungstenite
        // enforces that itself, and they are not part of a message.
        if opcode >= 8 {
            return Ok(());
        }
        self.message = if opcode == 0 { self.message.saturating_add(len) } else { len };
        let (what, limit) = if self.first_done {
            ("control message", self.limit.load(Ordering::Relaxed))
        } else {
            ("first (handshake) message", self.first_limit)
        };
        if self.message > limit as u64 {
            return Err(TooLarge { what, size: self.message, limit });
        }
        if fin {
            self.first_done = true;
            self.message = 0;
        }
        Ok(())
    }
}

/// When bytes last arrived and last left through one [`FrameGuard`] (milliseconds since the
/// guard was made, so the stamps are plain atomics the channel reads without a lock).
#[derive(Debug)]
pub struct Liveness {
    base: Instant,
    read_ms: AtomicU64,
    wrote_ms: AtomicU64,
}

impl Liveness {
    pub fn new() -> Arc<Self> {
        Arc::new(Liveness { base: Instant::now(), read_ms: AtomicU64::new(0), wrote_ms: AtomicU64::new(0) })
    }

    fn stamp(&self, at: &AtomicU64) {
        at.fetch_max(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the last byte arrived (the guard's creation if none did yet).
    pub fn last_read(&self) -> Instant {
        self.base + Duration::from_millis(self.read_ms.load(Ordering::Relaxed))
    }

    /// When bytes last moved either way.
    pub fn last_moved(&self) -> Instant {
        self.last_read().max(self.base + Duration::from_millis(self.wrote_ms.load(Ordering::Relaxed)))
    }
}

/// `inner` with incoming websocket messages bounded: the first data message by `first_limit`,
/// every later one by the current value of `limit`; every byte moved stamps `live`.
pub struct FrameGuard<S> {
    inner: S,
    scan: Scan,
    live: Arc<Liveness>,
}

impl<S> FrameGuard<S> {
    /// For the server end (the stream starts with frames).
    pub fn server(inner: S, first_limit: usize, limit: Arc<AtomicUsize>, live: Arc<Liveness>) -> Self {
        FrameGuard { inner, scan: Scan::new(Mode::Header, first_limit, limit), live }
    }

    /// For the client end (the stream starts with the server's HTTP upgrade answer).
    pub fn client(inner: S, first_limit: usize, limit: Arc<AtomicUsize>, live: Arc<Liveness>) -> Self {
        FrameGuard { inner, scan: Scan::new(Mode::HttpHead { matched: 0 }, first_limit, limit), live }
    }
}

impl Scan {
    fn new(mode: Mode, first_limit: usize, limit: Arc<AtomicUsize>) -> Self {
        Scan { mode, head: [0; 14], have: 0, message: 0, first_done: false, first_limit, limit, failed: None }
    }
}

/// The [`TooLarge`] behind an I/O error from a [`FrameGuard`], if that is what it is.
pub fn too_large(e: &io::Error) -> Option<TooLarge> {
    e.get_ref().and_then(|r| r.downcast_ref::<TooLarge>()).copied()
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.scan.failed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => match this.scan.feed(&buf.filled()[before..]) {
                Ok(()) => {
                    if buf.filled().len() > before {
                        this.live.stamp(&this.live.read_ms);
                    }
                    Poll::Ready(Ok(()))
                }
                Err(e) => {
                    // Nothing read in this call reaches the websocket: the connection ends here.
                    buf.set_filled(before);
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                }
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.live.stamp(&self.live.wrote_ms);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header as a client sends it (masked), for a payload of `len` bytes.
    fn head(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = head(fin, opcode, len as u64);
        f.resize(f.len() + len, b'x');
        f
    }

    fn scan(later: usize) -> Scan {
        Scan::new(Mode::Header, 100, Arc::new(AtomicUsize::new(later)))
    }

    #[test]
    fn the_first_message_has_its_own_limit_and_later_ones_the_shared_one() {
        let mut s = scan(1000);
        let stream = [frame(true, 1, 100), frame(true, 9, 5), frame(true, 2, 1000)].concat();
        // Byte by byte: headers split across reads are still read whole.
        for b in stream.chunks(1) {
            s.feed(b).expect("within limits");
        }
        let e = s.feed(&head(true, 2, 1001)).expect_err("over the later limit");
        assert_eq!((e.size, e.limit), (1001, 1000));
        assert!(s.feed(b"more").is_err(), "a failed stream stays failed");

        let e = scan(1 << 30).feed(&head(true, 1, 128 << 20)).expect_err("128 MiB first frame");
        assert_eq!(e.what, "first (handshake) message");
    }

    #[test]
    fn fragments_add_up_and_the_limit_can_rise() {
        let mut s = scan(150);
        s.feed(&frame(true, 1, 10)).unwrap();
        s.feed(&[frame(false, 2, 100), frame(true, 10, 3)].concat()).unwrap();
        assert!(s.feed(&head(true, 0, 51)).is_err(), "151 bytes in two fragments");
        let mut s = scan(10);
        s.feed(&frame(true, 1, 10)).unwrap();
        s.limit.store(1 << 20, Ordering::Relaxed);
        s.feed(&frame(true, 2, 5000)).unwrap();
    }

    #[test]
    fn a_client_skips_the_http_answer() {
        let mut s = Scan::new(Mode::HttpHead { matched: 0 }, 100, Arc::new(AtomicUsize::new(100)));
        let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        s.feed(&[&answer[..], &frame(true, 1, 100)].concat()).unwrap();
        assert!(s.feed(&head(true, 2, 101)).is_err());
    }
}
