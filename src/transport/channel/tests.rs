//! The channel against itself over in-memory pipes and real loopback sockets: framing, limits,
//! liveness (slow links, busy sides, frozen ends) and text cutting.
use super::*;
use crate::protocol::{MasterMsg, PeerMsg};

/// A real server (the project's serve loop) and a real client exchange a handshake and
/// messages both ways, then a malformed frame is reported as such.
#[tokio::test]
async fn handshake_and_messages_cross_both_ways() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        super::super::JOIN_ROUTE,
        axum::routing::get(|req: Request| async move {
            upgrade(req, |mut ch| async move {
                let hello = ch.recv_handshake(Duration::from_secs(5)).await.expect("hello");
                ch.send_handshake(&format!("welcome {hello}")).await.expect("welcome");
                let m: PeerMsg = ch.recv().await.expect("peer message");
                assert!(matches!(m, PeerMsg::Finished { id: 7 }), "{m:?}");
                assert!(ch.remote_addr().is_some());
                ch.send(&MasterMsg::Cancel { id: 9 }).await.expect("send");
                ch.ws.send(Message::Binary(vec![0xff; 3].into())).await.expect("raw send");
            })
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::super::serve(listener, app, Duration::from_secs(5), "test", async move {
        let _ = stopped.await;
    }));
    let mut ch = connect(&addr.to_string(), Duration::from_secs(5), &Security::Open).await.expect("connect");
    assert_eq!(ch.local_addr().map(|a| a.ip()), Some("127.0.0.1".parse().unwrap()));
    ch.send_handshake(&"hi").await.expect("hello");
    assert_eq!(ch.recv_handshake(Duration::from_secs(5)).await.expect("welcome"), "\"welcome \\\"hi\\\"\"");
    ch.send(&PeerMsg::Finished { id: 7 }).await.expect("send");
    assert!(matches!(ch.recv::<MasterMsg>().await.expect("cancel"), MasterMsg::Cancel { id: 9 }));
    assert!(matches!(ch.recv::<MasterMsg>().await, Err(ChannelError::Malformed(_))));
    stop.send(()).expect("server running");
    server.await.expect("server stops");
}

/// The other side stops reading (a frozen process keeps its socket open): `recv` pings,
/// hears nothing and gives up after `DEAD_AFTER`, not when TCP would.
#[tokio::test]
async fn a_side_that_stops_answering_is_given_up() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (frozen_tx, frozen_rx) = tokio::sync::oneshot::channel::<Channel>();
    let frozen_tx = std::sync::Mutex::new(Some(frozen_tx));
    let frozen_tx = std::sync::Arc::new(frozen_tx);
    let app = axum::Router::new().route(
        super::super::JOIN_ROUTE,
        axum::routing::get(move |req: Request| {
            let frozen_tx = frozen_tx.clone();
            async move {
                upgrade(req, move |ch| async move {
                    // Park the channel unread, like a process under SIGSTOP.
                    if let Some(tx) = frozen_tx.lock().ok().and_then(|mut g| g.take()) {
                        let _ = tx.send(ch);
                    }
                })
            }
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::super::serve(listener, app, Duration::from_secs(5), "test", async move {
        let _ = stopped.await;
    }));
    let mut ch = connect(&addr.to_string(), Duration::from_secs(5), &Security::Open).await.expect("connect");
    let _parked = frozen_rx.await.expect("server side parked");
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(DEAD_AFTER * 3, ch.recv::<MasterMsg>()).await.expect("gives up by itself");
    assert!(matches!(r, Err(ChannelError::Timeout(_))), "{:?}", r.err());
    eprintln!("silent side given up after {:?}", t0.elapsed());
    stop.send(()).expect("server running");
    server.await.expect("server stops");
}

/// A reader that takes at most `per_tick` bytes every `tick`: a slow link.
struct Throttled<S> {
    inner: S,
    per_tick: usize,
    tick: Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(w) = self.wait.as_mut() {
            std::task::ready!(w.as_mut().poll(cx));
            self.wait = None;
        }
        let n = buf.remaining().min(self.per_tick);
        let got = {
            let mut small = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(n));
            std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut small))?;
            small.filled().len()
        };
        buf.advance(got);
        if got > 0 {
            let tick = self.tick;
            self.wait = Some(Box::pin(tokio::time::sleep(tick)));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connected TCP pair on loopback.
async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    (a.expect("connect"), b.expect("accept").0)
}

/// A manifest that takes longer than `DEAD_AFTER` to arrive over a slow link is a live
/// connection: its bytes count as hearing from the sender, whole message or not.
#[tokio::test]
async fn a_message_slower_than_dead_after_keeps_the_channel() {
    let (a, b) = tcp_pair().await;
    let tick = Duration::from_millis(100);
    let slow = Throttled { inner: b, per_tick: 16 << 10, tick, wait: None };
    let (mut master, mut peer) = pair_over(a, slow).await;
    // At 16 KiB per 100 ms this takes at least 8.4 s, more than DEAD_AFTER.
    let size = 84 * (16 << 10);
    let sender = tokio::spawn(async move {
        master.send(&MasterMsg::Manifest { id: 1, bytes: vec![7; size].into() }).await.expect("sent");
        // The sender waits for the answer the whole time, as the engines do: it must not
        // take the slow reader for gone while the tail of its message is still queued.
        master.recv::<PeerMsg>().await
    });
    let t0 = std::time::Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(60), peer.recv::<MasterMsg>()).await.expect("no hang");
    match got {
        Ok(MasterMsg::Manifest { bytes, .. }) => assert_eq!(bytes.len(), size),
        other => panic!("the slow manifest was not received: {other:?}"),
    }
    assert!(t0.elapsed() > DEAD_AFTER, "the test must outlast DEAD_AFTER, took {:?}", t0.elapsed());
    let done = PeerMsg::Stats { download_bps: 1.0, upload_bps: 0.0, error: None };
    peer.send(&done).await.expect("answer sent");
    let answer = sender.await.expect("sender task");
    assert_eq!(answer.expect("the sender kept the channel"), done);
}

/// The same with the whole message absorbed by buffers at once (the sender's send ends
/// at once, then only the reader's acknowledgements can tell it the reader is alive).
#[tokio::test]
async fn a_sender_whose_message_is_buffered_keeps_a_slow_reader() {
    let (a, b) = tokio::io::duplex(4 << 20);
    let slow = Throttled { inner: b, per_tick: 16 << 10, tick: Duration::from_millis(100), wait: None };
    let (mut master, mut peer) = pair_over(a, slow).await;
    let size = 84 * (16 << 10);
    master.send(&MasterMsg::Manifest { id: 1, bytes: vec![7; size].into() }).await.expect("buffered");
    let sender = tokio::spawn(async move { master.recv::<PeerMsg>().await });
    let got = tokio::time::timeout(Duration::from_secs(60), peer.recv::<MasterMsg>()).await.expect("no hang");
    assert!(matches!(got, Ok(MasterMsg::Manifest { .. })), "{got:?}");
    let done = PeerMsg::Stats { download_bps: 1.0, upload_bps: 0.0, error: None };
    peer.send(&done).await.expect("answer sent");
    assert_eq!(sender.await.expect("sender task").expect("the sender kept the channel"), done);
}

/// Both ends send a message far larger than the pipe at once (a manifest one way, a
/// have-set the other): each send keeps reading, so both complete and both arrive.
#[tokio::test]
async fn two_ends_sending_big_messages_at_once_both_complete() {
    let (mut master, mut peer) = pair(64 << 10).await;
    let manifest = MasterMsg::Manifest { id: 1, bytes: vec![7; 4 << 20].into() };
    let have = PeerMsg::HaveAll { manifest_id: 1, chunks: vec![crate::manifest::ChunkHash([3; 16]); 200_000] };
    // Each end reads once its own send is done, as the engines do.
    let m = async {
        master.send(&manifest).await.expect("manifest sent");
        master.recv::<PeerMsg>().await.expect("have-set")
    };
    let p = async {
        peer.send(&have).await.expect("have-set sent");
        peer.recv::<MasterMsg>().await.expect("manifest")
    };
    let both = async { tokio::join!(m, p) };
    let (got_have, got_manifest) =
        tokio::time::timeout(Duration::from_secs(60), both).await.expect("neither send blocks the other");
    assert_eq!(got_have, have);
    assert_eq!(got_manifest, manifest);
}

/// A side busy for longer than `DEAD_AFTER` (a long re-check) while the other sends more
/// frames than it buffers stops reading, but is not taken for dead: the sender's sends
/// wait (back-pressure) and complete once the busy side reads again.
#[tokio::test]
async fn a_busy_side_with_a_full_buffer_is_not_taken_for_dead() {
    let (mut master, mut peer) = pair(64 << 10).await;
    let n = MAX_PENDING + 1000;
    let sender = tokio::spawn(async move {
        for i in 0..n as u64 {
            master.send(&MasterMsg::Cancel { id: i }).await.map_err(|e| format!("send {i}: {e}"))?;
        }
        master.recv::<PeerMsg>().await.map_err(|e| format!("answer: {e}"))
    });
    peer.keep_alive(tokio::time::sleep(DEAD_AFTER + Duration::from_secs(2))).await;
    for i in 0..n as u64 {
        let got = tokio::time::timeout(Duration::from_secs(30), peer.recv::<MasterMsg>()).await.expect("in time");
        assert_eq!(got.expect("open"), MasterMsg::Cancel { id: i });
    }
    let done = PeerMsg::Finished { id: 1 };
    peer.send(&done).await.expect("answer sent");
    assert_eq!(sender.await.expect("sender task"), Ok(done));
}

/// The sending side cuts every peer -> master text (`Stats.error`, `Failed.message`) before
/// encoding: what leaves fits its kind's limit, so an older, strict master never
/// disconnects the peer for it (it did after every connect, over a 64 KiB error).
#[test]
fn outgoing_text_is_cut_to_fit_its_kinds_limit() {
    let long = "x:y.log: cannot exist on Windows; ".repeat(4000);
    let stats = PeerMsg::Stats { download_bps: 1.0, upload_bps: 2.0, error: Some(long.clone()) };
    let failed = PeerMsg::Failed { id: 1, reason: protocol::FailKind::LocalDisk, message: long };
    for msg in [stats, failed] {
        let limit = msg.frame_limit().expect("a text message has a limit");
        assert!(protocol::encode(&msg).len() > limit, "the test text is too long uncut");
        let sent = outgoing(&msg);
        assert!(sent.len() <= limit, "{} bytes sent for a {limit} byte limit", sent.len());
        let back: PeerMsg = protocol::decode(&sent).expect("decodes");
        assert_eq!(back.frame_limit(), Some(limit), "same kind");
    }
    let manifest = MasterMsg::Manifest { id: 1, bytes: vec![7; 1 << 20].into() };
    assert_eq!(outgoing(&manifest), protocol::encode(&manifest), "no text: sent as it is");
}

/// A long error (hundreds of paths the peer's OS cannot create) is cut by the sender, and
/// a message over its kind's limit only by its text is cut by the receiver, not refused.
#[tokio::test]
async fn long_text_is_cut_not_refused() {
    let (mut master, mut peer) = pair(1 << 20).await;
    let long = "x:y.log: cannot exist on Windows; ".repeat(4000);
    let stats = PeerMsg::Stats { download_bps: 1.0, upload_bps: 2.0, error: Some(long.clone()) };
    peer.send(&stats).await.expect("sent");
    match master.recv::<PeerMsg>().await.expect("taken, not refused") {
        PeerMsg::Stats { error: Some(e), .. } => assert!(e.len() <= protocol::MAX_TEXT_LEN, "{}", e.len()),
        other => panic!("{other:?}"),
    }
    // An older sender that does not cut: the receiver cuts instead of closing.
    let raw = PeerMsg::Failed { id: 1, reason: protocol::FailKind::LocalDisk, message: long };
    peer.ws.send(Message::Binary(protocol::encode(&raw).into())).await.expect("raw send");
    match master.recv::<PeerMsg>().await.expect("taken, not refused") {
        PeerMsg::Failed { message, .. } => assert!(message.len() <= protocol::MAX_TEXT_LEN),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_plain_get_is_not_upgraded() {
    let req = Request::builder().uri("/join").body(Body::empty()).expect("request");
    let resp = upgrade(req, |_| async {});
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// A message many fragments long arrives whole, from the server's shared encoding and from
/// the client's plain one (its fragments masked), and the channel carries on after it.
#[tokio::test]
async fn a_large_message_crosses_in_fragments() {
    use crate::manifest::ChunkHash;
    let (mut server, mut client) = pair(1 << 20).await;
    let bytes = Arc::new((0..5 * FRAGMENT + 17).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    let big = MasterMsg::Manifest { id: 3, bytes: bytes.clone() };
    let chunks: Vec<_> = (0..(3 * FRAGMENT / 32) as u64).map(|i| ChunkHash::of(&i.to_le_bytes())).collect();
    let have = PeerMsg::HaveAll { manifest_id: 3, chunks };
    let (sent, got) = tokio::join!(
        async {
            server.send_shared(&big).await.expect("send manifest");
            server.send_shared(&MasterMsg::Cancel { id: 1 }).await.expect("send cancel");
            server.recv::<PeerMsg>().await.expect("have-set")
        },
        async {
            let m = client.recv::<MasterMsg>().await.expect("manifest");
            let c = client.recv::<MasterMsg>().await.expect("cancel");
            client.send(&have).await.expect("send have-set");
            (m, c)
        }
    );
    assert_eq!(got, (big, MasterMsg::Cancel { id: 1 }));
    assert_eq!(sent, have);
}
