//! One task per peer websocket at `/join`.
//!
//! Handshake first: the peer's [`Hello`](crate::protocol::Hello) must arrive as a JSON text
//! frame within a few seconds; a wrong app or protocol version gets a
//! [`Refusal`](crate::protocol::Refusal) naming both versions, then a close. After that the task
//! only moves frames: binary [`PeerMsg`]s to the coordinator, [`MasterMsg`]s from it to the
//! socket. A frame that does not decode ends this connection (with an error frame first) and
//! nothing else; the coordinator learns of the departure and releases the node's transfers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use tokio::sync::{mpsc, oneshot};

use super::coord::CoordMsg;
use super::Shared;
use crate::planner::NodeId;
use crate::protocol::{self, Hello, MasterMsg, PeerMsg, Refusal, Welcome, PROTOCOL_VERSION};
use crate::transport::channel::{self, Channel, ChannelError};

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().route(crate::transport::JOIN_ROUTE, axum::routing::get(join)).with_state(shared)
}

async fn join(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    channel::upgrade(req, move |ch| handle(ch, shared))
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
    let hello = match ch.recv_handshake(Duration::from_secs(10)).await {
        Ok(t) => match protocol::parse_hello(&t) {
            Ok(h) => h,
            Err(e) => return refuse(ch, format!("{e}")).await,
        },
        Err(ChannelError::Unexpected(_)) => return refuse(ch, "expected a Hello text frame first".into()).await,
        Err(_) => return,
    };
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
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(msg) => {
                    if ch.send(&msg).await.is_err() {
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
                Err(e @ (ChannelError::Malformed(_) | ChannelError::Unexpected(_))) => {
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
