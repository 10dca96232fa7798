//! The session against a scripted master on a real socket: what the peer answers to
//! orders it cannot, need not, or can fulfil, and what it refuses to accept.
use super::*;
use crate::engine::is_done;
use crate::manifest::{CacheMode, ChunkRule, ScanOptions};
use crate::peer::{Peer, PeerConfig};
use crate::protocol::{FailKind, MasterMsg, Welcome};
use crate::transport::channel::upgrade;
use axum::extract::Request;
use std::net::SocketAddr;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

const WAIT: Duration = Duration::from_secs(10);

/// Serve `router` on loopback until the test ends.
async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::transport::serve(listener, router, Duration::from_secs(5), "test", std::future::pending()));
    addr
}

/// A master that hands each peer channel, after its welcome, to the test.
async fn scripted_master() -> (SocketAddr, UnboundedReceiver<Channel>) {
    let (tx, rx) = mpsc::unbounded_channel::<Channel>();
    let join = move |req: Request| {
        let tx: UnboundedSender<Channel> = tx.clone();
        async move {
            upgrade(req, move |mut ch| async move {
                ch.recv_handshake(WAIT).await.expect("hello");
                let w = Welcome {
                    app: Hello::APP.into(),
                    protocol: PROTOCOL_VERSION,
                    node_id: 1,
                    master_name: "scripted".into(),
                    version: "test".into(),
                    host: "another-host".into(),
                    folder: String::new(),
                };
                ch.send_handshake(&w).await.expect("welcome");
                let _ = tx.send(ch);
            })
        }
    };
    let addr = serve(axum::Router::new().route(crate::transport::JOIN_ROUTE, axum::routing::get(join))).await;
    (addr, rx)
}

/// A peer mirroring into `dst`, joined to a scripted master: the master's end of its channel.
async fn joined_peer(dst: &std::path::Path) -> (Peer, Channel) {
    joined_peer_with(dst, |_| {}).await
}

/// [`joined_peer`] with its config changed by `tweak` first.
async fn joined_peer_with(dst: &std::path::Path, tweak: impl FnOnce(&mut PeerConfig)) -> (Peer, Channel) {
    let (addr, mut joined) = scripted_master().await;
    let mut cfg = PeerConfig::new(addr.to_string(), dst.to_path_buf());
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    cfg.cache = CacheMode::Disabled;
    tweak(&mut cfg);
    let peer = Peer::start(cfg).await.unwrap();
    let ch = tokio::time::timeout(WAIT, joined.recv()).await.unwrap().unwrap();
    (peer, ch)
}

/// A chunk source that answers every chunk GET with `body`.
async fn chunk_source(body: Vec<u8>) -> String {
    let route = move || {
        let body = body.clone();
        async move { body }
    };
    let addr = serve(axum::Router::new().route("/chunk/{hash}", axum::routing::get(route))).await;
    crate::transport::chunk_base(&addr.to_string())
}

/// The next message that is not a periodic report.
async fn next(ch: &mut Channel) -> PeerMsg {
    loop {
        let m = tokio::time::timeout(WAIT, ch.recv::<PeerMsg>()).await.expect("a message in time").expect("open");
        if !matches!(m, PeerMsg::Stats { .. } | PeerMsg::Progress { .. }) {
            return m;
        }
    }
}

/// A master folder of one file of one chunk, scanned: (master folder, peer's temp folder,
/// content, manifest, its chunk).
fn one_chunk_source() -> (tempfile::TempDir, tempfile::TempDir, Vec<u8>, crate::manifest::Manifest, ChunkHash) {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let content = b"the one chunk of this file".to_vec();
    std::fs::write(src.path().join("f.txt"), &content).unwrap();
    let opts = ScanOptions { chunk_rule: ChunkRule::Fixed(4096), cache: CacheMode::Disabled, ..Default::default() };
    let manifest = crate::manifest::scan(src.path(), &opts).unwrap();
    let chunk = manifest.files[0].chunks[0].hash;
    (src, dst, content, manifest, chunk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_answered_and_only_verified_bytes_are_written() {
    let (_src, dst, content, manifest, chunk) = one_chunk_source();
    let (peer, mut ch) = joined_peer(&dst.path().join("mirror")).await;

    ch.send(&MasterMsg::Manifest { id: 1, bytes: std::sync::Arc::new(manifest.to_bytes()) }).await.unwrap();
    assert_eq!(next(&mut ch).await, PeerMsg::HaveBits { manifest_id: 1, chunks: 1, bits: vec![0] });
    let stranger = ChunkHash::of(b"not in the manifest");
    ch.send(&MasterMsg::Fetch { id: 1, chunk: stranger, size: 3, url: None, min_rate_bps: 0 }).await.unwrap();
    assert!(matches!(next(&mut ch).await, PeerMsg::Failed { id: 1, reason: FailKind::Cancelled, .. }));

    let liar = chunk_source(b"the one chunk of this fil!".to_vec()).await;
    let size = content.len() as u64;
    ch.send(&MasterMsg::Fetch { id: 2, chunk, size, url: Some(liar), min_rate_bps: 0 }).await.unwrap();
    assert!(matches!(next(&mut ch).await, PeerMsg::Failed { id: 2, reason: FailKind::BadData, .. }));
    let on_disk = std::fs::read(dst.path().join("mirror/f.txt")).unwrap();
    assert_eq!(on_disk, vec![0; content.len()], "rejected bytes never reach the file");

    let honest = chunk_source(content.clone()).await;
    ch.send(&MasterMsg::Fetch { id: 3, chunk, size, url: Some(honest), min_rate_bps: 0 }).await.unwrap();
    assert_eq!(next(&mut ch).await, PeerMsg::Finished { id: 3 });
    assert_eq!(std::fs::read(dst.path().join("mirror/f.txt")).unwrap(), content);
    ch.send(&MasterMsg::Fetch { id: 4, chunk, size, url: None, min_rate_bps: 0 }).await.unwrap();
    assert_eq!(next(&mut ch).await, PeerMsg::Finished { id: 4 }, "a held chunk is answered at once");
    let mut rx = peer.status();
    tokio::time::timeout(WAIT, rx.wait_for(is_done)).await.expect("up to date in time").unwrap();
    peer.shutdown().await;
}

#[tokio::test]
async fn an_invalid_manifest_ends_the_session_and_nothing_is_created() {
    let dst = tempfile::tempdir().unwrap();
    let (peer, mut ch) = joined_peer(&dst.path().join("mirror")).await;
    ch.send(&MasterMsg::Manifest { id: 1, bytes: std::sync::Arc::new(vec![1, 2, 3]) }).await.unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            if ch.recv::<PeerMsg>().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the peer hangs up on an invalid manifest");
    assert!(!dst.path().join("mirror").exists(), "no folder was created for it");
    let mut rx = peer.status();
    let why =
        tokio::time::timeout(WAIT, rx.wait_for(|s| s.events.iter().any(|e| e.message.contains("invalid manifest"))))
            .await;
    assert!(why.is_ok(), "the reason is in the event log");
    peer.shutdown().await;
}

/// A periodic re-check that finds the folder as it was changes nothing anyone watches: the
/// published state stays "up to date" throughout (an "indexing" flash made the tray announce
/// a finished sync, and a proxy resend its manifest, after every re-check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_that_finds_no_change_keeps_the_published_state() {
    let (_src, dst, content, manifest, chunk) = one_chunk_source();
    let mirror = dst.path().join("mirror");
    let (peer, mut ch) = joined_peer_with(&mirror, |c| c.rescan_interval = Duration::from_millis(300)).await;
    ch.send(&MasterMsg::Manifest { id: 1, bytes: std::sync::Arc::new(manifest.to_bytes()) }).await.unwrap();
    assert!(matches!(next(&mut ch).await, PeerMsg::HaveBits { .. }));
    let url = Some(chunk_source(content.clone()).await);
    ch.send(&MasterMsg::Fetch { id: 1, chunk, size: content.len() as u64, url, min_rate_bps: 0 }).await.unwrap();
    assert_eq!(next(&mut ch).await, PeerMsg::Finished { id: 1 });
    let mut rx = peer.status();
    tokio::time::timeout(WAIT, rx.wait_for(is_done)).await.expect("up to date in time").unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let watcher = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let state = rx.borrow_and_update().state.clone();
            record.lock().unwrap().push(state);
        }
    });
    // Every re-check ends with a fresh have-set: three of them.
    for _ in 0..3 {
        assert!(matches!(next(&mut ch).await, PeerMsg::HaveBits { manifest_id: 1, .. }));
    }
    watcher.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the peer publishes its status while it re-checks");
    let moved: Vec<_> = seen.iter().filter(|s| !matches!(s, crate::status::NodeState::UpToDate)).collect();
    assert!(moved.is_empty(), "a re-check finding no change published {moved:?}");
    peer.shutdown().await;
}

/// A source whose batch route answers every request with `answer`.
async fn batch_source(answer: Vec<u8>) -> String {
    let route = move || {
        let answer = answer.clone();
        async move { answer }
    };
    let router = axum::Router::new().route(crate::transfer::batch::BATCH_ROUTE, axum::routing::post(route));
    crate::transport::chunk_base(&serve(router).await.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_its_verified_chunks_and_names_the_bad_one() {
    use crate::transfer::batch::encode_entry;
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (name, content) in [("a.txt", "first file"), ("b.txt", "second file"), ("c.txt", "third")] {
        std::fs::write(src.path().join(name), content).unwrap();
    }
    let opts = ScanOptions { chunk_rule: ChunkRule::Fixed(4096), cache: CacheMode::Disabled, ..Default::default() };
    let manifest = crate::manifest::scan(src.path(), &opts).unwrap();
    let chunk_of = |name: &str| {
        let f = manifest.files.iter().find(|f| f.path == name).unwrap();
        (f.chunks[0].hash, u64::from(f.chunks[0].size))
    };
    let (a, b, c) = (chunk_of("a.txt"), chunk_of("b.txt"), chunk_of("c.txt"));
    let (peer, mut ch) = joined_peer(&dst.path().join("mirror")).await;
    ch.send(&MasterMsg::Manifest { id: 1, bytes: std::sync::Arc::new(manifest.to_bytes()) }).await.unwrap();
    assert_eq!(next(&mut ch).await, PeerMsg::HaveBits { manifest_id: 1, chunks: 3, bits: vec![0] });

    let mut answer = Vec::new();
    encode_entry(&mut answer, Some((b"first file", false)));
    encode_entry(&mut answer, Some((b"second fil!", false))); // a lie about b
    encode_entry(&mut answer, Some((b"third", false)));
    let url = Some(batch_source(answer).await);
    ch.send(&MasterMsg::FetchBatch { id: 5, chunks: vec![a, b, c], url, min_rate_bps: 0 }).await.unwrap();
    match next(&mut ch).await {
        PeerMsg::FinishedExcept { id: 5, failed, reason: FailKind::BadData, .. } => assert_eq!(failed, vec![b.0]),
        other => panic!("expected a partial result naming b, got {other:?}"),
    }
    let read = |name: &str| std::fs::read(dst.path().join("mirror").join(name)).unwrap();
    assert_eq!(read("a.txt"), b"first file");
    assert_eq!(read("c.txt"), b"third");
    assert_eq!(read("b.txt"), vec![0; 11], "the rejected chunk never reaches its file");

    // Fetched again (from an honest source), only the missing chunk travels.
    let mut honest = Vec::new();
    encode_entry(&mut honest, Some((b"second file", false)));
    let url = Some(batch_source(honest).await);
    ch.send(&MasterMsg::FetchBatch { id: 6, chunks: vec![a, b], url, min_rate_bps: 0 }).await.unwrap();
    assert_eq!(next(&mut ch).await, PeerMsg::Finished { id: 6 });
    assert_eq!(read("b.txt"), b"second file");
    let stranger = (ChunkHash::of(b"not in the manifest"), 3);
    ch.send(&MasterMsg::FetchBatch { id: 7, chunks: vec![a, stranger], url: None, min_rate_bps: 0 }).await.unwrap();
    assert!(matches!(next(&mut ch).await, PeerMsg::Failed { id: 7, reason: FailKind::Cancelled, .. }));
    let mut rx = peer.status();
    tokio::time::timeout(WAIT, rx.wait_for(is_done)).await.expect("up to date in time").unwrap();
    peer.shutdown().await;
}
