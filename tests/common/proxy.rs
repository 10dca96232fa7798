//! A TCP proxy on loopback that records what crosses it and can flip one bit, for tests of
//! what an eavesdropper or a broken switch sees and does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
pub struct Recording {
    /// Every byte that crossed, both directions, in arrival order per direction.
    pub bytes: Mutex<Vec<u8>>,
    /// Flip one bit of the server-to-client stream once this many bytes have passed (once).
    pub flip_after: Option<u64>,
    pub flipped: AtomicBool,
    passed_down: AtomicU64,
}

impl Recording {
    pub fn contains(&self, needle: &[u8]) -> bool {
        self.bytes.lock().unwrap().windows(needle.len()).any(|w| w == needle)
    }

    pub fn len(&self) -> usize {
        self.bytes.lock().unwrap().len()
    }
}

/// Listen on `bind` and forward every connection to `target`.
pub async fn start(bind: SocketAddr, target: SocketAddr, flip_after: Option<u64>) -> (SocketAddr, Arc<Recording>) {
    let listener = TcpListener::bind(bind).await.expect("proxy binds");
    let addr = listener.local_addr().unwrap();
    let rec = Arc::new(Recording { flip_after, ..Default::default() });
    let r = rec.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(target).await else { continue };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, r.clone(), false));
            tokio::spawn(pump(sr, cw, r.clone(), true));
        }
    });
    (addr, rec)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rec: Arc<Recording>,
    down: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        rec.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
        if down {
            let before = rec.passed_down.fetch_add(n as u64, Ordering::SeqCst);
            if let Some(at) = rec.flip_after {
                if before + n as u64 > at && !rec.flipped.swap(true, Ordering::SeqCst) {
                    let i = at.saturating_sub(before) as usize;
                    buf[i.min(n - 1)] ^= 0x10;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
