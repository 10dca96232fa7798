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

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use tokio::sync::{mpsc, oneshot};

use super::coord::CoordMsg;
use super::Shared;
use crate::protocol::{self, Hello, MasterMsg, PeerMsg, Refusal, Welcome, MAX_FRAME, PROTOCOL_VERSION};

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().route("/join", axum::routing::get(join)).with_state(shared)
}

async fn join(
    ws: WebSocketUpgrade,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    State(shared): State<Arc<Shared>>,
) -> Response {
    ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| handle(socket, remote, shared))
}

async fn send_text<T: serde::Serialize>(socket: &mut WebSocket, v: &T) -> bool {
    match serde_json::to_string(v) {
        Ok(t) => socket.send(Message::Text(t.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn refuse(mut socket: WebSocket, message: String) {
    tracing::warn!("refusing peer: {message}");
    let r = Refusal { app: Hello::APP.into(), protocol: PROTOCOL_VERSION, message };
    let _ = send_text(&mut socket, &r).await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn handle(mut socket: WebSocket, remote: SocketAddr, shared: Arc<Shared>) {
    let first = tokio::time::timeout(Duration::from_secs(10), socket.recv()).await;
    let hello = match first {
        Ok(Some(Ok(Message::Text(t)))) => match protocol::parse_hello(t.as_str()) {
            Ok(h) => h,
            Err(e) => return refuse(socket, format!("{e}")).await,
        },
        Ok(Some(Ok(_))) => return refuse(socket, "expected a Hello text frame first".into()).await,
        _ => return,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<MasterMsg>();
    let (reply_tx, reply_rx) = oneshot::channel();
    if shared.coord.send(CoordMsg::Join { hello, remote, tx, reply: reply_tx }).is_err() {
        return;
    }
    let Ok(node) = reply_rx.await else { return };
    let welcome = Welcome {
        app: Hello::APP.into(),
        protocol: PROTOCOL_VERSION,
        node_id: node,
        master_name: shared.cfg.name.clone(),
        version: crate::VERSION.into(),
        host: super::host_name(),
        folder: std::fs::canonicalize(&shared.cfg.source_dir)
            .unwrap_or_else(|_| shared.cfg.source_dir.clone())
            .display()
            .to_string(),
    };
    if !send_text(&mut socket, &welcome).await {
        let _ = shared.coord.send(CoordMsg::Left { node });
        return;
    }
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(msg) => {
                    if socket.send(Message::Binary(protocol::encode(&msg).into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            inb = socket.recv() => match inb {
                Some(Ok(Message::Binary(b))) => match protocol::decode::<PeerMsg>(&b) {
                    Ok(m) => {
                        if shared.coord.send(CoordMsg::Peer { node, msg: m }).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("peer {node} ({remote}) sent a malformed message: {e}; closing");
                        let err = MasterMsg::Error { message: format!("{e}; closing the connection") };
                        let _ = socket.send(Message::Binary(protocol::encode(&err).into())).await;
                        break;
                    }
                },
                Some(Ok(Message::Text(_))) => {
                    let err = MasterMsg::Error { message: "unexpected text frame after the handshake; closing".into() };
                    let _ = socket.send(Message::Binary(protocol::encode(&err).into())).await;
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            _ = crate::status::stopped(&mut shutdown) => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        }
    }
    let _ = shared.coord.send(CoordMsg::Left { node });
}
