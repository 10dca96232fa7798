//! One task per peer websocket at `/join`.
//!
//! Handshake first: the peer's [`Hello`](crate::protocol::Hello) must arrive as a JSON text
//! frame within a few seconds; a wrong app or protocol version gets a
//! [`Refusal`](crate::protocol::Refusal) naming both versions, then a close. After that the task
//! only moves frames: binary [`PeerMsg`]s to the coordinator, [`MasterMsg`]s from it to the
//! socket. A frame that does not decode ends this connection (with an error frame first) and
//! nothing else; the coordinator learns of the departure and releases the node's transfers.
//!
//! Bounds: at most `--max-peers` control connections (a permit is taken before the upgrade;
//! one more gets `503`); the hello is at most 64 KiB, refused from its frame header; later
//! frames may reach the size of the largest manifest sent on this connection (an honest
//! have-set cannot be larger), each kind of message its own limit
//! ([`crate::protocol::Bounded`]). Outgoing, a peer must take in each message at
//! [`MIN_SEND_RATE`] after a [`SEND_GRACE`], and at most [`MAX_QUEUED`] messages may wait for
//! it: a peer that stops reading is disconnected, not buffered for.
//!
//! Addresses: the host other peers fetch from is the peer's source address, unless the
//! advertised one passes [`serving_host`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::coord::CoordMsg;
use super::Shared;
use crate::planner::NodeId;
use crate::protocol::{self, Hello, MasterMsg, PeerMsg, Refusal, Welcome, PROTOCOL_VERSION};
use crate::transport::channel::{self, Channel, ChannelError};

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().route(crate::transport::JOIN_ROUTE, axum::routing::get(join)).with_state(shared)
}

/// The slowest a peer may take in a message from the master before it counts as not reading
/// (after [`SEND_GRACE`]): a 40 MB manifest may take ten minutes, an order ten seconds.
pub const MIN_SEND_RATE: u64 = 64 << 10;
/// Time every message gets on top of its size at [`MIN_SEND_RATE`].
pub const SEND_GRACE: Duration = Duration::from_secs(10);
/// Messages the coordinator may have queued for one peer (orders come a few per slot).
pub const MAX_QUEUED: usize = 1024;

async fn join(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Ok(permit) = shared.peer_slots.clone().try_acquire_owned() else {
        let max = shared.cfg.max_peers;
        tracing::warn!("refusing a peer: {max} control connections open, the most this master serves (--max-peers)");
        let msg = format!("this master serves at most {max} peers (--max-peers); try again later\n");
        return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    };
    channel::upgrade(req, move |ch| async move {
        handle(ch, shared).await;
        drop(permit);
    })
}

/// The host other peers should fetch this peer's chunks from: its source address, or the host
/// it advertises if that is an IP or DNS name ([`crate::transport::validate_host`]; anything
/// else is refused) the peer could plausibly own: one that resolves to the source address (or
/// to loopback when the peer connects over loopback), or any with `--trust-advertised-hosts`.
/// A name that passes is replaced by the address it resolved to. Otherwise the source address
/// is used and the log says why.
pub(crate) async fn serving_host(
    advertised: Option<&str>,
    remote: SocketAddr,
    trust: bool,
) -> Result<String, crate::transport::HostError> {
    let source = remote.ip().to_canonical();
    let Some(host) = advertised else { return Ok(source.to_string()) };
    let host = crate::transport::validate_host(host)?;
    if trust {
        return Ok(host);
    }
    let owns = |ip: std::net::IpAddr| ip.to_canonical() == source || (source.is_loopback() && ip.is_loopback());
    let resolved: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((host.as_str(), 0))).await
        {
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
            _ => Vec::new(),
        },
    };
    // The address the name had when checked, not the name: a name looked up again by every
    // other peer could by then point anywhere (DNS rebinding), the check would mean nothing.
    if let Some(ip) = resolved.into_iter().find(|ip| owns(*ip)) {
        return Ok(ip.to_canonical().to_string());
    }
    tracing::warn!(
        "peer at {source} advertises {host:?}, which does not resolve to its own address: other peers fetch from \
         {source} (start the master with --trust-advertised-hosts to accept advertised hosts as they are)"
    );
    Ok(source.to_string())
}

async fn refuse(mut ch: Channel, message: String) {
    tracing::warn!("refusing peer: {message}");
    let r = Refusal { app: Hello::APP.into(), protocol: PROTOCOL_VERSION, message };
    let _ = ch.send_handshake(&r).await;
    ch.close().await;
}

fn welcome(shared: &Shared, node: NodeId) -> Welcome {
    Welcome {
        app: Hello::APP.into(),
        protocol: PROTOCOL_VERSION,
        node_id: node,
        master_name: shared.cfg.name.clone(),
        version: crate::VERSION.into(),
        host: crate::host::host_name(),
        folder: std::fs::canonicalize(&shared.cfg.source_dir)
            .unwrap_or_else(|_| shared.cfg.source_dir.clone())
            .display()
            .to_string(),
    }
}

async fn handle(mut ch: Channel, shared: Arc<Shared>) {
    let remote = ch.remote_addr().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut hello = match ch.recv_handshake(Duration::from_secs(10)).await {
        Ok(t) => match protocol::parse_hello(&t) {
            Ok(h) => h,
            Err(e) => return refuse(ch, format!("{e}")).await,
        },
        Err(ChannelError::Unexpected(_)) => return refuse(ch, "expected a Hello text frame first".into()).await,
        Err(ChannelError::TooLarge(e)) => return refuse(ch, format!("{e}; a Hello is a few hundred bytes")).await,
        Err(_) => return,
    };
    let trust = shared.cfg.trust_advertised_hosts;
    match serving_host(hello.advertise_host.as_deref(), remote, trust).await {
        Ok(host) => hello.advertise_host = Some(host),
        Err(e) => return refuse(ch, e.to_string()).await,
    }
    let (tx, rx) = mpsc::unbounded_channel::<MasterMsg>();
    let (reply_tx, reply_rx) = oneshot::channel();
    if shared.coord.send(CoordMsg::Join { hello, remote, tx, reply: reply_tx }).is_err() {
        return;
    }
    let Ok(node) = reply_rx.await else { return };
    if ch.send_handshake(&welcome(&shared, node)).await.is_ok() {
        pump(&mut ch, &shared, node, remote, rx).await;
    }
    let _ = shared.coord.send(CoordMsg::Left { node });
}

/// Move messages between the socket and the coordinator until either side ends.
async fn pump(
    ch: &mut Channel,
    shared: &Shared,
    node: NodeId,
    remote: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<MasterMsg>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut largest_manifest = 0;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(msg) => {
                    // Raised before the manifest leaves, so the have-set it prompts fits (a delta's
                    // manifest is at most as large as the newest one published).
                    let size = match &msg {
                        MasterMsg::Manifest { bytes, .. } => Some(bytes.len()),
                        MasterMsg::ManifestDelta { .. } => shared.current().map(|c| c.bytes.len()),
                        _ => None,
                    };
                    if let Some(size) = size {
                        largest_manifest = largest_manifest.max(size);
                        ch.set_frame_limit(protocol::have_set_limit(largest_manifest));
                    }
                    if let Err(why) = send_or_give_up(ch, &msg, rx.len(), SEND_GRACE).await {
                        tracing::warn!("peer {node} ({remote}) {why}; disconnecting it");
                        return;
                    }
                }
                None => return,
            },
            inb = ch.recv::<PeerMsg>() => match inb {
                Ok(m) => {
                    if shared.coord.send(CoordMsg::Peer { node, msg: m }).is_err() {
                        return;
                    }
                }
                Err(e @ (ChannelError::Malformed(_) | ChannelError::Unexpected(_) | ChannelError::TooLarge(_))) => {
                    tracing::warn!("peer {node} ({remote}) sent a bad frame: {e}; closing");
                    let _ = ch.send(&MasterMsg::Error { message: format!("{e}; closing the connection") }).await;
                    return;
                }
                Err(_) => return,
            },
            _ = crate::status::stopped(&mut shutdown) => {
                ch.close().await;
                return;
            }
        }
    }
}

/// Send `msg` unless the peer stopped reading: `queued` more messages waiting is too many, or
/// the peer did not take it in at [`MIN_SEND_RATE`] after `grace` ([`SEND_GRACE`]). The error
/// says which.
async fn send_or_give_up(ch: &mut Channel, msg: &MasterMsg, queued: usize, grace: Duration) -> Result<(), String> {
    if queued > MAX_QUEUED {
        return Err(format!("has {queued} messages waiting (at most {MAX_QUEUED}): it stopped reading"));
    }
    let size = match msg {
        MasterMsg::Manifest { bytes, .. } => bytes.len() as u64,
        MasterMsg::ManifestDelta { delta, .. } => delta.len() as u64,
        _ => 0,
    };
    let allowed = grace + Duration::from_secs(size / MIN_SEND_RATE);
    match tokio::time::timeout(allowed, ch.send_shared(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("could not be sent to: {e}")),
        Err(_) => Err(format!("took in less than {size} bytes in {allowed:?}: it stopped reading")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that reads nothing: the master gives up on a message once the grace and the
    /// size's time at the minimum rate have passed, and at once on too long a queue.
    #[tokio::test]
    async fn a_peer_that_stops_reading_is_given_up() {
        let (mut master, _deaf) = channel::pair(4096).await;
        let grace = Duration::from_millis(200);
        let small = MasterMsg::Cancel { id: 1 };
        assert!(send_or_give_up(&mut master, &small, 0, grace).await.is_ok(), "a small message fits the pipe");
        // 32 KiB: no time on top of the grace at the minimum rate, and far more than the pipe holds.
        let big = MasterMsg::Manifest { id: 1, bytes: Arc::new(vec![7; 32 << 10]) };
        let gave_up = tokio::time::timeout(Duration::from_secs(30), send_or_give_up(&mut master, &big, 0, grace));
        let why = gave_up.await.expect("the send is given up, not left waiting").expect_err("nobody reads");
        assert!(why.contains("stopped reading"), "{why}");
        let why = send_or_give_up(&mut master, &small, MAX_QUEUED + 1, grace).await.expect_err("queue too long");
        assert!(why.contains("messages waiting"), "{why}");
    }

    #[tokio::test]
    async fn advertised_hosts_are_used_only_where_the_peer_plausibly_is() {
        let lan: SocketAddr = "192.168.1.7:4000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let host = |adv, remote, trust| serving_host(adv, remote, trust);
        assert_eq!(host(None, lan, false).await.unwrap(), "192.168.1.7");
        assert_eq!(host(Some("192.168.1.7"), lan, false).await.unwrap(), "192.168.1.7");
        // Someone else's address falls back to the source, unless trusted.
        assert_eq!(host(Some("10.9.9.9"), lan, false).await.unwrap(), "192.168.1.7");
        assert_eq!(host(Some("10.9.9.9"), lan, true).await.unwrap(), "10.9.9.9");
        assert_eq!(host(Some("127.0.0.2"), local, false).await.unwrap(), "127.0.0.2");
        // A name is checked once and pinned to the address it had then (no DNS rebinding).
        let pinned = host(Some("localhost"), local, false).await.unwrap();
        assert!(pinned.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()), "{pinned}");
        assert_eq!(host(Some("localhost"), local, true).await.unwrap(), "localhost", "trusted: as given");
        let mapped: SocketAddr = "[::ffff:192.168.1.7]:1".parse().unwrap();
        assert_eq!(host(Some("192.168.1.7"), mapped, false).await.unwrap(), "192.168.1.7");
        // Not an address at all: refused whatever the trust.
        for bad in ["http://evil/", "u@h", "h:1", "h/x"] {
            assert!(host(Some(bad), lan, true).await.is_err(), "{bad}");
        }
    }
}
