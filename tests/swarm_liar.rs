//! A lying member cannot stall the swarm: a client that speaks the real control protocol,
//! claims every chunk (and keeps re-announcing them) but answers every chunk GET with 503,
//! resets the connection, or accepts and never answers, joins a master with 5 honest peers.
//! The swarm is secured and the liar holds its secret (it is a member: TLS on its control
//! connection and its chunk server, with the crate's own `transport::tls` keys), so trust, not
//! the membership check, has to deal with it. All honest peers must finish byte-identical.
//! The time is printed next to a run without the liar (no timing assertion here: with
//! `LANSCATTER_TRUST_BENCH=1` the tree is bigger and the master's upload limited so a sync
//! takes ~10 s, see `bench/trust` and the README's numbers).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sync::*;
use lanscatter::manifest::{ChunkHash, Manifest};
use lanscatter::protocol::{Hello, MasterMsg, PeerMsg, PROTOCOL_VERSION};
use lanscatter::secret::SwarmSecret;
use lanscatter::transport::channel;
use lanscatter::transport::Security;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy)]
enum Lie {
    Busy,
    Reset,
    Stall,
}

fn swarm_security() -> Security {
    Security::from_secret(&SwarmSecret::parse("the swarm of the liar test, test only").expect("secret")).expect("keys")
}

/// The liar's chunk "server" (TLS with the swarm's keys, as a member's): counts the GETs it
/// was sent and answers them as `lie` says.
async fn liar_server(lie: Lie, gets: Arc<AtomicU64>, security: &Security) -> u16 {
    let Security::Swarm(keys) = security else { panic!("the liar test runs a secured swarm") };
    let acceptor = keys.tls.acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Lie::Reset = lie {
                // Linger 0 makes the close a reset; it does not block (nothing to flush).
                #[allow(deprecated)]
                let _ = tcp.set_linger(Some(Duration::ZERO));
            }
            let (acceptor, gets) = (acceptor.clone(), gets.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 4096];
                while s.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    gets.fetch_add(1, Ordering::Relaxed);
                    match lie {
                        Lie::Busy => {
                            let busy = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
                            if s.write_all(busy).await.is_err() || s.flush().await.is_err() {
                                return;
                            }
                        }
                        Lie::Reset => return,
                        Lie::Stall => std::future::pending::<()>().await,
                    }
                }
            });
        }
    });
    port
}

/// The liar's control side: a member that claims every chunk of every manifest, re-announces
/// them every second and downloads nothing.
async fn liar_member(master: SocketAddr, port: u16, security: Security) {
    let mut ch = channel::connect(&master.to_string(), Duration::from_secs(5), &security).await.expect("connect");
    let hello = Hello {
        app: Hello::APP.into(),
        protocol: PROTOCOL_VERSION,
        name: "liar".into(),
        advertise_host: Some("127.0.0.1".into()),
        port,
        upload_slots: 64,
        download_slots: 0,
        max_upload_bps: None,
        max_download_bps: None,
        version: "liar".into(),
    };
    ch.send_handshake(&hello).await.expect("hello");
    ch.recv_handshake(Duration::from_secs(5)).await.expect("welcome");
    let mut claim: Option<(u64, Vec<ChunkHash>)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            m = ch.recv::<MasterMsg>() => match m {
                Ok(MasterMsg::Manifest { id, bytes }) => {
                    let m = Manifest::from_bytes(&bytes).expect("manifest");
                    let chunks: Vec<ChunkHash> = m.unique_chunks().into_iter().map(|(h, _)| h).collect();
                    let _ = ch.send(&PeerMsg::HaveAll { manifest_id: id, chunks: chunks.clone() }).await;
                    claim = Some((id, chunks));
                }
                Ok(_) => {}
                Err(_) => return,
            },
            _ = tick.tick() => {
                if let Some((id, chunks)) = &claim {
                    let again = PeerMsg::HaveAll { manifest_id: *id, chunks: chunks.clone() };
                    if ch.send(&again).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Tree scale and the master's upload limit: small and unlimited for `cargo test` (a sync of
/// 1-3 s), bigger and limited for the bench (a sync of ~10 s, peers trading at loopback speed).
fn size() -> (usize, Option<u64>) {
    if trust_bench() {
        (14, Some(4_000_000))
    } else {
        (6, None)
    }
}

/// Master + optional liar + 5 honest peers; returns the honest peers' sync time and the GETs
/// the liar was sent.
async fn swarm(lie: Option<Lie>, seed: u64) -> (Duration, u64) {
    let security = swarm_security();
    let (scale, limit) = size();
    let (t, mdir, cache) = sync_source(seed, scale);
    let mut mcfg = master_config(&mdir, &cache);
    mcfg.security = security.clone();
    mcfg.max_upload_bps = limit;
    let master = lanscatter::engine::Engine::start(mcfg).await.expect("master starts");
    let mut status = master.status();
    wait_status(&mut status, Duration::from_secs(60), "the master's manifest", |s| s.manifest_id != 0).await;
    let gets = Arc::new(AtomicU64::new(0));
    let liar = match lie {
        Some(lie) => {
            let port = liar_server(lie, gets.clone(), &security).await;
            let task = tokio::spawn(liar_member(master.local_addr(), port, security.clone()));
            wait_status(&mut status, Duration::from_secs(30), "the liar in the swarm", |s| {
                s.nodes.iter().any(|n| n.name == "liar" && n.bytes_done > 0)
            })
            .await;
            Some(task)
        }
        None => None,
    };
    let t0 = Instant::now();
    let peers = start_peers_with(master.local_addr(), t.path(), &cache, 5, |_, c| c.security = security.clone()).await;
    wait_all_synced(&peers, &master, &mdir, Duration::from_secs(120)).await;
    let took = t0.elapsed();
    for (_, dir) in &peers {
        assert_same_tree(&mdir, dir);
    }
    if let Some(task) = liar {
        task.abort();
    }
    shutdown_all(peers, master).await;
    (took, gets.load(Ordering::Relaxed))
}

async fn with_liar(lie: Lie) {
    trace_from_env();
    let (base, _) = swarm(None, 21).await;
    let (took, gets) = swarm(Some(lie), 21).await;
    println!(
        "swarm_liar {lie:?}: 5 honest peers synced in {:.2} s with the liar, {:.2} s without ({:.2}x); the liar got {gets} GETs",
        took.as_secs_f64(),
        base.as_secs_f64(),
        took.as_secs_f64() / base.as_secs_f64()
    );
    assert!(gets > 0, "the liar was asked to serve (else this test proves nothing)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_liar_answering_503_cannot_stall_the_swarm() {
    with_liar(Lie::Busy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_liar_resetting_connections_cannot_stall_the_swarm() {
    with_liar(Lie::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_liar_that_never_answers_cannot_stall_the_swarm() {
    with_liar(Lie::Stall).await;
}
