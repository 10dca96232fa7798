//! Per-flow pacing of a node's uploads when its flows start losing packets (issue 19, point 3).
//!
//! Why: a node serves up to its upload slots (8) of chunk connections at once. Through a shallow
//! tail-drop queue (a switch port buffers ~1-20 ms), 8 unpaced flows overfill it: with BBR (v1)
//! they retransmit 10-18 % of their bytes, with reno 2-5 % (README "Performance", bench/lan_flows.py).
//! On the master, whose upload is the swarm's bottleneck, every retransmitted byte is a byte of
//! the bound lost. Capping each flow at its share of what the node's link really delivers
//! (`SO_MAX_PACING_RATE`) keeps the sum under the link rate, so the queue stays short and the
//! losses nearly vanish, at no cost in goodput.
//!
//! How: the serve loop registers every accepted socket here ([`Pacer::register`], released
//! before the socket closes). A ticker reads `TCP_INFO` of each every [`WINDOW`]: bytes the
//! peer acknowledged (delivered) and bytes retransmitted. The link rate is not configured and
//! not guessed: a window in which more than [`LOSSY`] of the delivered bytes were retransmitted
//! says the path is full, so what was delivered in it is what the link carries; the cap becomes
//! that rate (with IP/TCP headers, which the kernel's pacing counts) and each active flow gets
//! an equal share. Loss-free windows raise the cap by [`PROBE`] so a link that got faster, or a
//! cap set on a noisy window, is found again; a node whose flows never lose is never paced (deep
//! queues, or an upload limit that already paces). Linux only (the socket option and `TCP_INFO`
//! layout); elsewhere [`Pacer`] is a no-op and TCP runs as before. Loopback flows are never
//! paced (no queue to overfill; their delivery is bounded by CPU, not by a link).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// How often flows are measured and their caps set: a few dozen RTTs of a LAN path with a full
/// 20 ms queue, long enough that a window's delivered bytes are a rate, short enough to follow
/// flows starting and ending.
pub const WINDOW: Duration = Duration::from_millis(250);

/// Retransmitted / delivered above this marks a window lossy (the path is full). Above reno's ~1 %
/// in the lab, which comes from flows of several senders converging on a peer's downlink, where
/// capping one sender costs its uplink and cures nothing; far below BBR's 10 %.
pub const LOSSY: f64 = 0.02;

/// Growth of the cap per loss-free window.
pub const PROBE: f64 = 1.02;

/// The most a lossy window lowers an existing cap.
pub const DECREASE: f64 = 0.97;

/// A flow that delivered less than this in a window is idle (control traffic, a finished chunk)
/// and gets no share.
const ACTIVE_MIN: u64 = 32 * 1024;

/// The kernel paces IP packets, delivery counts TCP payload: 1500 bytes on the wire per 1448 of
/// payload at Ethernet's MTU with timestamps.
const HEADER_FACTOR: f64 = 1500.0 / 1448.0;

/// One window of one flow, as read from `TCP_INFO` (cumulative counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub bytes_acked: u64,
    pub bytes_retrans: u64,
}

/// The decision of one window: the cap over all active flows (bytes/s of IP packets), if any.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Control {
    cap: Option<f64>,
}

impl Control {
    /// Feed one window: `delivered` and `retransmitted` bytes summed over the node's flows,
    /// `secs` its length. Returns the new total cap.
    pub fn update(&mut self, delivered: u64, retransmitted: u64, secs: f64) -> Option<f64> {
        let rate = delivered as f64 / secs.max(1e-3) * HEADER_FACTOR;
        if delivered >= ACTIVE_MIN && retransmitted as f64 > LOSSY * delivered as f64 {
            // Lossy while already capped: the losses may come from flows converging elsewhere
            // (a peer's downlink), and a window's delivery under a cap is at most the cap, so
            // step down gently instead of ratcheting to whatever one window delivered.
            self.cap = Some(match self.cap {
                None => rate,
                Some(c) => rate.max(c * DECREASE),
            });
        } else if let Some(c) = self.cap.as_mut() {
            // Only a window that used its cap may raise it: an idle node keeps what it learnt.
            if rate > 0.8 * *c {
                *c *= PROBE;
            }
        }
        self.cap
    }

    /// Each of `active` flows' share of the cap, in whole bytes per second (None: unpaced).
    pub fn share(&self, active: usize) -> Option<u64> {
        self.cap.map(|c| (c / active.max(1) as f64).max(64.0 * 1024.0) as u64)
    }
}

#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
))]
mod imp {
    //! The Linux side: a registry of raw sockets and the ticker that reads and caps them.

    use std::collections::HashMap;
    use std::os::fd::RawFd;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::{Control, FlowCounters, ACTIVE_MIN, WINDOW};

    /// `SO_MAX_PACING_RATE` of asm-generic (not in libc for every target): bytes per second.
    const SO_MAX_PACING_RATE: libc::c_int = 47;

    /// The prefix of `struct tcp_info` up to `tcpi_bytes_retrans` (Linux 4.19). The kernel
    /// copies at most what is asked and older kernels leave the rest zero.
    #[repr(C)]
    #[derive(Default)]
    struct TcpInfo {
        _u8s: [u8; 8],
        _u32s_a: [u32; 24],
        _pacing_rate: u64,
        max_pacing_rate: u64,
        bytes_acked: u64,
        _bytes_received: u64,
        _u32s_b: [u32; 6],
        _delivery_rate: u64,
        _busy_time: u64,
        _rwnd_limited: u64,
        _sndbuf_limited: u64,
        _delivered: u32,
        _delivered_ce: u32,
        _bytes_sent: u64,
        bytes_retrans: u64,
    }

    fn counters(fd: RawFd) -> Option<FlowCounters> {
        tcp_info(fd).map(|i| FlowCounters { bytes_acked: i.bytes_acked, bytes_retrans: i.bytes_retrans })
    }

    fn tcp_info(fd: RawFd) -> Option<TcpInfo> {
        let mut info = TcpInfo::default();
        let mut len = std::mem::size_of::<TcpInfo>() as libc::socklen_t;
        // SAFETY: `info` is a plain repr(C) struct of `len` bytes; the kernel writes at most `len`.
        let r = unsafe {
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut TcpInfo).cast(), &mut len)
        };
        (r == 0).then_some(info)
    }

    fn set_max_pacing(fd: RawFd, rate: Option<u64>) {
        // ~0U means unlimited; the u32 form works on every kernel since 3.13.
        let v: u32 = rate.map_or(u32::MAX, |r| r.min(u32::MAX as u64 - 1) as u32);
        // SAFETY: a u32 option value of its own size on a socket this registry holds open.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_MAX_PACING_RATE,
                (&v as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            );
        }
    }

    struct Flow {
        fd: RawFd,
        last: FlowCounters,
        /// The rate last set on the socket (None: unpaced).
        set: Option<u64>,
    }

    #[derive(Default)]
    struct State {
        flows: HashMap<u64, Flow>,
        next_id: u64,
        control: Control,
    }

    /// A serve loop's pacer (module doc).
    #[derive(Clone, Default)]
    pub struct Pacer {
        state: Arc<Mutex<State>>,
    }

    /// A registered socket; dropping it unregisters, so it must drop before the socket closes.
    pub struct Registration {
        state: Arc<Mutex<State>>,
        id: u64,
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).flows.remove(&self.id);
        }
    }

    impl Pacer {
        /// Track `s`, unless it goes to this host: loopback has no switch queue to overfill,
        /// and its rare losses (a starved receiver's backlog) came in windows whose delivery
        /// was capped by the receiver's CPU, so the cap learnt from them slowed a loopback sync
        /// of 200,000 small files from ~31,000 chunks/s to ~7,000 for the rest of the run.
        pub fn register(&self, s: &tokio::net::TcpStream) -> Option<Registration> {
            use std::os::fd::AsRawFd;
            if s.peer_addr().is_ok_and(|a| a.ip().to_canonical().is_loopback()) {
                return None;
            }
            let fd = s.as_raw_fd();
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let id = st.next_id;
            st.next_id += 1;
            let last = counters(fd).unwrap_or_default();
            st.flows.insert(id, Flow { fd, last, set: None });
            Some(Registration { state: self.state.clone(), id })
        }

        /// Measure and cap every [`WINDOW`] until the serve loop drops this future.
        pub async fn run(self) {
            let mut tick = tokio::time::interval(WINDOW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut before = Instant::now();
            loop {
                tick.tick().await;
                let now = Instant::now();
                let secs = now.duration_since(before).as_secs_f64();
                before = now;
                self.window(secs);
            }
        }

        fn window(&self, secs: f64) {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (mut delivered, mut retrans, mut active) = (0u64, 0u64, Vec::new());
            for (id, f) in st.flows.iter_mut() {
                let Some(c) = counters(f.fd) else { continue };
                let d = c.bytes_acked.saturating_sub(f.last.bytes_acked);
                delivered += d;
                retrans += c.bytes_retrans.saturating_sub(f.last.bytes_retrans);
                f.last = c;
                if d >= ACTIVE_MIN {
                    active.push(*id);
                }
            }
            let was = st.control.share(1);
            st.control.update(delivered, retrans, secs);
            if was.is_none() && st.control.share(1).is_some() {
                tracing::debug!("pacing uploads: {retrans} of {delivered} bytes retransmitted in a window");
            }
            // Idle flows (a control channel, a connection between chunks) run unpaced: a cap
            // sized for a chunk flow would slow a manifest to a crawl, and a flow that starts
            // sending is capped from the next window on (TCP restarts slowly after idle).
            let share = st.control.share(active.len().max(1));
            for (id, f) in st.flows.iter_mut() {
                let want = if active.contains(id) { share } else { None };
                if f.set != want {
                    set_max_pacing(f.fd, want);
                    f.set = want;
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::os::fd::AsRawFd;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        /// The `TCP_INFO` prefix is read at the right offsets (delivered bytes count up to what
        /// the receiver read) and the cap lands on the socket.
        #[tokio::test]
        async fn tcp_info_counts_delivered_bytes_and_the_cap_is_set() {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let mut tx = tokio::net::TcpStream::connect(l.local_addr().expect("addr")).await.expect("connect");
            let (mut rx, _) = l.accept().await.expect("accept");
            let sent = vec![7u8; 1 << 20];
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                rx.read_exact(&mut buf).await.expect("read");
                rx
            });
            tx.write_all(&sent).await.expect("write");
            let _rx = reader.await.expect("reader");
            let fd = tx.as_raw_fd();
            // The last ACK may still be on its way after the reader has everything.
            let mut acked = 0;
            for _ in 0..1000 {
                acked = counters(fd).expect("tcp_info").bytes_acked;
                if acked >= sent.len() as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert!(acked >= sent.len() as u64 && acked < 2 * sent.len() as u64, "bytes_acked {acked}");
            assert_eq!(counters(fd).expect("tcp_info").bytes_retrans, 0);
            set_max_pacing(fd, Some(1_250_000));
            assert_eq!(tcp_info(fd).expect("tcp_info").max_pacing_rate, 1_250_000);
            set_max_pacing(fd, None);
            // ~0U is "unlimited", which the kernel reports as ~0 of 64 bits.
            assert_eq!(tcp_info(fd).expect("tcp_info").max_pacing_rate, u64::MAX);
        }
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
)))]
mod imp {
    //! Elsewhere: no pacing, TCP as the OS runs it.

    /// A no-op pacer.
    #[derive(Clone, Default)]
    pub struct Pacer;

    /// Nothing registered.
    pub struct Registration;

    impl Pacer {
        pub fn register(&self, _s: &tokio::net::TcpStream) -> Option<Registration> {
            None
        }

        pub async fn run(self) {
            std::future::pending::<()>().await
        }
    }
}

pub use imp::{Pacer, Registration};

/// A served socket with its registration, which it drops first (fields drop in order), so the
/// ticker never touches a closed, perhaps reused, descriptor.
pub struct Paced {
    _reg: Option<Registration>,
    io: tokio::net::TcpStream,
}

impl Paced {
    pub fn new(pacer: &Pacer, io: tokio::net::TcpStream) -> Self {
        Paced { _reg: pacer.register(&io), io }
    }
}

impl tokio::io::AsyncRead for Paced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Paced {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_free_node_is_never_paced() {
        let mut c = Control::default();
        for _ in 0..10 {
            assert_eq!(c.update(3_000_000, 1000, 0.25), None);
        }
        assert_eq!(c.share(8), None);
    }

    #[test]
    fn a_lossy_window_caps_at_what_was_delivered_and_shares_it() {
        let mut c = Control::default();
        let cap = c.update(3_000_000, 300_000, 0.25).expect("lossy: capped");
        assert!((cap - 12_000_000.0 * HEADER_FACTOR).abs() < 1.0, "{cap}");
        assert_eq!(c.share(4), Some((cap / 4.0) as u64));
        let lower = c.update(1_000_000, 100_000, 0.25).expect("still capped");
        assert!((lower - cap * DECREASE).abs() < 1.0, "a lossy window steps down gently: {lower} vs {cap}");
    }

    #[test]
    fn a_busy_loss_free_window_raises_the_cap_an_idle_one_keeps_it() {
        let mut c = Control::default();
        let cap = c.update(3_000_000, 300_000, 0.25).expect("capped");
        let idle = c.update(10_000, 0, 0.25).expect("kept");
        assert_eq!(idle, cap);
        let busy = c.update(3_000_000, 0, 0.25).expect("kept");
        assert!((busy - cap * PROBE).abs() < 1.0, "{busy} vs {cap}");
    }
}
