//! The coordinator driven directly: messages in, orders out (per-peer channels), and the
//! snapshot, without sockets or timers (`round` is called by hand).

use std::path::PathBuf;

use super::*;
use crate::manifest::{Chunk, ChunkHash, ChunkRule, FileEntry, Manifest, Mtime};
use crate::master::{MasterConfig, MasterSource};
use crate::planner::TransferId;
use crate::protocol::{FailKind, PROTOCOL_VERSION};
use crate::status::{NodeState, NodeStatus, CELL_HAS, CELL_INCOMING, CELL_MISSING};
use crate::transfer::server::ServerConfig;

type Inbox = mpsc::UnboundedReceiver<MasterMsg>;

fn hash(i: u8) -> ChunkHash {
    ChunkHash::of(&[i])
}

/// One file of 100-byte chunks with these hashes.
fn manifest(id: u64, chunks: &[u8]) -> Arc<ManifestState> {
    let chunks: Vec<Chunk> =
        chunks.iter().enumerate().map(|(i, &c)| Chunk { offset: i as u64 * 100, size: 100, hash: hash(c) }).collect();
    let file = FileEntry {
        path: "f".into(),
        size: 100 * chunks.len() as u64,
        mtime: Mtime { secs: 0, nanos: 0 },
        chunk_size: 100,
        chunks,
        hash: hash(255),
    };
    let m = Manifest { files: vec![file], dirs: vec![], chunk_rule: ChunkRule::Auto, warnings: vec![] };
    Arc::new(ManifestState::new(id, m))
}

fn coord(master_upload_slots: u32) -> Coord {
    let mut cfg = MasterConfig::new(PathBuf::from("/nonexistent"));
    cfg.upload_slots = master_upload_slots;
    cfg.name = "master".into();
    // These tests count orders chunk by chunk (their 100-byte chunks would be batched).
    cfg.batch = false;
    let (rescan, _) = mpsc::channel(1);
    let (coord, _) = mpsc::unbounded_channel();
    let (_, shutdown) = watch::channel(false);
    let listen = SocketAddr::from(([127, 0, 0, 1], 1));
    let shared = Arc::new(Shared::new(cfg, listen, rescan, coord, shutdown));
    let server = ChunkServer::new(
        Arc::new(MasterSource(shared.clone())),
        ServerConfig {
            upload_slots: master_upload_slots,
            limiter: None,
            compress: false,
            storage: Arc::new(crate::storage::ReadOnlyDisk),
        },
    );
    Coord::new(shared, server)
}

fn join(c: &mut Coord, host: &str, upload_slots: u32, download_slots: u32) -> (NodeId, Inbox) {
    let hello = Hello {
        app: Hello::APP.into(),
        protocol: PROTOCOL_VERSION,
        name: format!("peer {host}"),
        advertise_host: Some(host.into()),
        port: 7000,
        upload_slots,
        download_slots,
        max_upload_bps: None,
        max_download_bps: None,
        version: "test".into(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (reply, mut id) = oneshot::channel();
    let remote = SocketAddr::from(([192, 0, 2, 1], 5000));
    c.on_msg(CoordMsg::Join { hello, remote, tx, reply });
    (id.try_recv().expect("the join is answered at once"), rx)
}

fn peer(c: &mut Coord, node: NodeId, msg: PeerMsg) {
    c.on_msg(CoordMsg::Peer { node, msg });
}

fn have_all(c: &mut Coord, node: NodeId, manifest_id: u64, chunks: &[u8]) {
    peer(c, node, PeerMsg::HaveAll { manifest_id, chunks: chunks.iter().map(|&i| hash(i)).collect() });
}

fn drain(rx: &mut Inbox) -> Vec<MasterMsg> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// The fetch orders waiting in a peer's inbox: (transfer, chunk, source URL).
/// A fetch order: its id, the chunk and the source's URL (`None`: the master).
type Fetch = (TransferId, ChunkHash, Option<String>);

fn fetches(rx: &mut Inbox) -> Vec<Fetch> {
    drain(rx)
        .into_iter()
        .filter_map(|m| match m {
            MasterMsg::Fetch { id, chunk, url, .. } => Some((id, chunk, url)),
            _ => None,
        })
        .collect()
}

fn row(s: &Snapshot, id: NodeId) -> &NodeStatus {
    s.nodes.iter().find(|n| n.id == id).expect("node in the snapshot")
}

/// The chunk map cell of chunk `i` in a row.
fn cell(c: &Coord, n: &NodeStatus, i: u8) -> u8 {
    let cur = c.current.as_ref().expect("a manifest");
    n.chunk_map[cur.position(&hash(i)).expect("chunk in the manifest")]
}

#[test]
fn joins_get_the_manifest_and_addresses_are_host_port() {
    let mut c = coord(2);
    let (a, mut a_rx) = join(&mut c, "fe80::1", 1, 1);
    assert!(matches!(drain(&mut a_rx)[..], [MasterMsg::Wait { .. }]), "no manifest yet");
    assert!(matches!(c.snapshot().state, NodeState::Indexing { .. }));
    c.on_msg(CoordMsg::Manifest(manifest(1, &[0, 1])));
    assert!(matches!(drain(&mut a_rx)[..], [MasterMsg::Manifest { id: 1, .. }]));
    let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 1);
    assert!(matches!(drain(&mut b_rx)[..], [MasterMsg::Manifest { id: 1, .. }]));
    assert_eq!(c.nodes[&a].url, "http://[fe80::1]:7000");
    let s = c.snapshot();
    assert_eq!(row(&s, a).address, "[fe80::1]:7000");
    assert_eq!(row(&s, b).address, "10.0.0.2:7000");
    assert!(row(&s, 0).is_master);
    // Not planner nodes until their have-sets arrive: nothing is ordered to them.
    assert!(matches!(row(&s, a).state, NodeState::Indexing { .. }));
    c.round();
    assert!(fetches(&mut a_rx).is_empty() && fetches(&mut b_rx).is_empty());
}

#[test]
fn held_chunks_are_never_ordered_and_a_rescan_is_a_difference() {
    let mut c = coord(4);
    c.on_msg(CoordMsg::Manifest(manifest(1, &[0, 1, 2, 3])));
    let (a, mut a_rx) = join(&mut c, "10.0.0.1", 1, 4);
    // A chunk outside the manifest is dropped, not registered.
    have_all(&mut c, a, 1, &[0, 1, 9]);
    c.round();
    let mut got: Vec<_> = fetches(&mut a_rx).into_iter().map(|f| (f.1, f.2)).collect();
    got.sort();
    let mut want = vec![(hash(2), None), (hash(3), None)];
    want.sort();
    assert_eq!(got, want, "only the missing chunks, from the master");
    let s = c.snapshot();
    let r = row(&s, a);
    assert_eq!((r.bytes_done, r.active_downloads), (200, 2));
    assert_eq!([0, 1, 2, 3].map(|i| cell(&c, r, i)), [CELL_HAS, CELL_HAS, CELL_INCOMING, CELL_INCOMING]);
    // A rescan lost chunk 0: only that one is ordered again, nothing already held.
    have_all(&mut c, a, 1, &[1]);
    c.round();
    let again: Vec<_> = fetches(&mut a_rx).into_iter().map(|f| f.1).collect();
    assert_eq!(again, vec![hash(0)]);
    // Figures and errors reported by the peer show on its row.
    let stats = PeerMsg::Stats { download_bps: 5.0, upload_bps: -1.0, error: Some("disk full".into()) };
    peer(&mut c, a, stats);
    let s = c.snapshot();
    let r = row(&s, a);
    assert_eq!((r.download_bps, r.upload_bps, s.download_bps), (5.0, 0.0, 5.0));
    assert!(matches!(&r.state, NodeState::Error { message } if message == "disk full"));
}

#[test]
fn finished_chunks_make_the_peer_a_source_and_credit_the_uploader() {
    let mut c = coord(0);
    c.on_msg(CoordMsg::Manifest(manifest(1, &[0])));
    let (a, mut a_rx) = join(&mut c, "10.0.0.1", 1, 1);
    let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 1);
    have_all(&mut c, a, 1, &[0]);
    have_all(&mut c, b, 1, &[]);
    c.round();
    assert!(fetches(&mut a_rx).is_empty(), "a holder is not ordered its own chunk");
    let f = fetches(&mut b_rx);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].2.as_deref(), Some("http://10.0.0.1:7000"), "from the peer holding it");
    let s = c.snapshot();
    assert_eq!((row(&s, a).active_uploads, row(&s, b).active_downloads), (1, 1));
    assert!(matches!(s.state, NodeState::Syncing));
    // Only the ordered destination may report a transfer.
    peer(&mut c, a, PeerMsg::Finished { id: f[0].0 });
    assert_eq!(c.snapshot().peers_uploaded, 0);
    peer(&mut c, b, PeerMsg::Finished { id: f[0].0 });
    let s = c.snapshot();
    assert_eq!((s.peers_uploaded, row(&s, a).bytes_uploaded, s.master_uploaded), (100, 100, 0));
    assert_eq!(row(&s, b).bytes_done, 100);
    assert!(matches!(row(&s, b).state, NodeState::UpToDate));
    assert!(matches!(s.state, NodeState::UpToDate));
    // A repeated report of an ended transfer counts nothing twice.
    peer(&mut c, b, PeerMsg::Finished { id: f[0].0 });
    assert_eq!(c.snapshot().peers_uploaded, 100);
}

#[test]
fn a_departed_peers_transfers_are_released_and_replanned() {
    let mut c = coord(0);
    c.on_msg(CoordMsg::Manifest(manifest(1, &[0])));
    let (a, _a_rx) = join(&mut c, "10.0.0.1", 1, 1);
    let (d, _d_rx) = join(&mut c, "10.0.0.4", 1, 1);
    let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 1);
    have_all(&mut c, a, 1, &[0]);
    have_all(&mut c, d, 1, &[0]);
    have_all(&mut c, b, 1, &[]);
    c.round();
    let first = fetches(&mut b_rx);
    assert_eq!(first.len(), 1);
    let (src, other) = if first[0].2.as_deref() == Some("http://10.0.0.1:7000") { (a, d) } else { (d, a) };
    // The source leaves: the order is released and re-planned from the other holder.
    c.on_msg(CoordMsg::Left { node: src });
    assert_eq!(c.planner.active_transfers(), 0);
    c.round();
    let second = fetches(&mut b_rx);
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].0, first[0].0);
    assert_eq!(second[0].2, Some(c.nodes[&other].url.clone()));
    // The old transfer's late failure is ignored; the new one stays active.
    peer(&mut c, b, PeerMsg::Failed { id: first[0].0, reason: FailKind::Network, message: "gone".into() });
    assert_eq!(c.planner.order(second[0].0).map(|o| o.from), Some(other));
    // The destination leaves: the source's slot is free again and the row is gone.
    c.on_msg(CoordMsg::Left { node: b });
    let s = c.snapshot();
    assert_eq!(row(&s, other).active_uploads, 0);
    assert!(s.nodes.iter().all(|n| n.id != b));
    assert!(s.events.iter().any(|e| e.message == "peer 10.0.0.2 left"));
}

/// Peer a holds chunk 0 of manifest 1, peer b holds nothing and is ordered to fetch it.
fn a_feeds_b(c: &mut Coord) -> (NodeId, NodeId, Inbox, Inbox, Vec<Fetch>) {
    c.on_msg(CoordMsg::Manifest(manifest(1, &[0])));
    let (a, a_rx) = join(c, "10.0.0.1", 1, 1);
    let (b, mut b_rx) = join(c, "10.0.0.2", 1, 1);
    have_all(c, a, 1, &[0]);
    have_all(c, b, 1, &[]);
    c.round();
    let f = fetches(&mut b_rx);
    assert_eq!(f.len(), 1);
    (a, b, a_rx, b_rx, f)
}

#[test]
fn bad_data_makes_the_source_lose_the_chunk() {
    let mut c = coord(1);
    let (a, b, mut a_rx, mut b_rx, f) = a_feeds_b(&mut c);
    assert_eq!(f[0].2.as_deref(), Some("http://10.0.0.1:7000"), "peers serve before the master");
    peer(&mut c, b, PeerMsg::Failed { id: f[0].0, reason: FailKind::BadData, message: "hash mismatch".into() });
    let s = c.snapshot();
    assert_eq!(s.counters.verify_failures, 1);
    assert!(s.events.iter().any(|e| e.message.contains("rejected chunk")));
    let r = row(&s, a);
    assert_eq!((r.bytes_done, cell(&c, r, 0)), (0, CELL_MISSING), "the bad source lost the chunk");
    // Re-planned from the master, and a newcomer is never sent to the bad source either.
    let (n, mut n_rx) = join(&mut c, "10.0.0.3", 1, 1);
    have_all(&mut c, n, 1, &[]);
    let _ = fetches(&mut a_rx);
    c.round();
    // The master's one slot serves one of the three (one bad-data report is no proof against
    // a, which wants its chunk back too); nobody is sent to a for it.
    let mut again = fetches(&mut a_rx);
    again.extend(fetches(&mut b_rx));
    again.extend(fetches(&mut n_rx));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].2, None, "from the master");
}

#[test]
fn a_slow_source_keeps_the_chunk() {
    let mut c = coord(0);
    let (a, b, _a_rx, mut b_rx, f) = a_feeds_b(&mut c);
    peer(&mut c, b, PeerMsg::Failed { id: f[0].0, reason: FailKind::TooSlow, message: "slow".into() });
    assert!(c.planner.node_has(a, &hash(0)));
    c.round();
    assert_eq!(fetches(&mut b_rx).len(), 1, "re-planned, and the only holder is still a source");
}

#[test]
fn a_new_manifest_ends_stale_transfers_and_replans() {
    let mut c = coord(2);
    c.on_msg(CoordMsg::Manifest(manifest(1, &[0, 1])));
    let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 2);
    have_all(&mut c, b, 1, &[]);
    c.round();
    let f = fetches(&mut b_rx);
    assert_eq!(f.len(), 2);
    let id_of = |i: u8| f.iter().find(|x| x.1 == hash(i)).map(|x| x.0).expect("ordered");
    let (stale, kept) = (id_of(0), id_of(1));
    c.on_msg(CoordMsg::Manifest(manifest(2, &[1, 2])));
    assert!(matches!(drain(&mut b_rx)[..], [MasterMsg::Manifest { id: 2, .. }]));
    // Chunk 0 left the manifest: its transfer is over, a late report of it counts nothing.
    peer(&mut c, b, PeerMsg::Finished { id: stale });
    assert_eq!(c.snapshot().master_uploaded, 0);
    let s = c.snapshot();
    assert_eq!((row(&s, b).active_downloads, row(&s, b).chunk_map.len()), (1, 2));
    // The peer cancels the other on the manifest change; both chunks are re-planned, and
    // the stale transfer is not cancelled again (the peer dropped it itself).
    peer(&mut c, b, PeerMsg::Failed { id: kept, reason: FailKind::Cancelled, message: "new manifest".into() });
    have_all(&mut c, b, 1, &[1]); // for the old manifest: its latest word, replaced below
    have_all(&mut c, b, 2, &[]);
    c.round();
    let msgs = drain(&mut b_rx);
    assert!(msgs.iter().all(|m| !matches!(m, MasterMsg::Cancel { .. })));
    let mut got: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            MasterMsg::Fetch { chunk, .. } => Some(*chunk),
            _ => None,
        })
        .collect();
    got.sort();
    let mut want = vec![hash(1), hash(2)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(c.planner.active_transfers(), 2, "the stale transfer was released");
}

/// A have-set as bits over `manifest`'s unique chunks, set for the chunks named.
fn have_bits(c: &mut Coord, node: NodeId, st: &ManifestState, held: &[u8]) {
    let held: Vec<ChunkHash> = held.iter().map(|&i| hash(i)).collect();
    let n = st.unique.len();
    let bits = crate::protocol::have_bits(n, |i| held.contains(&st.unique[i].0));
    peer(c, node, PeerMsg::HaveBits { manifest_id: st.id, chunks: n as u64, bits });
}

#[test]
fn have_bits_are_read_against_the_current_or_the_previous_manifest() {
    let mut c = coord(2);
    let one = manifest(1, &[0, 1, 2]);
    c.on_msg(CoordMsg::Manifest(one.clone()));
    let (a, mut a_rx) = join(&mut c, "10.0.0.1", 1, 1);
    have_bits(&mut c, a, &one, &[1]);
    assert!(c.nodes[&a].in_planner && c.planner.node_has(a, &hash(1)) && !c.planner.node_has(a, &hash(0)));

    // Sent before manifest 2 reached the peer: read against manifest 1, kept where 2 has it.
    let (b, mut b_rx) = join(&mut c, "10.0.0.2", 1, 1);
    let two = manifest(2, &[1, 2, 3]);
    c.on_msg(CoordMsg::Manifest(two.clone()));
    have_bits(&mut c, b, &one, &[0, 2]);
    assert!(c.planner.node_has(b, &hash(2)) && !c.planner.node_has(b, &hash(0)));

    // Two manifests behind: unreadable, so the peer gets the whole current manifest again.
    let (d, mut d_rx) = join(&mut c, "10.0.0.3", 1, 1);
    c.nodes.get_mut(&d).unwrap().first_sent = Some(1);
    c.on_msg(CoordMsg::Manifest(manifest(3, &[1, 2, 4])));
    drain(&mut d_rx);
    have_bits(&mut c, d, &one, &[1]);
    assert!(matches!(drain(&mut d_rx)[..], [MasterMsg::Manifest { id: 3, .. }]));
    assert!(!c.nodes[&d].in_planner);

    // Misshapen (a count that is not the manifest's): refused, nothing changes.
    drain(&mut a_rx);
    peer(&mut c, a, PeerMsg::HaveBits { manifest_id: 3, chunks: 9, bits: vec![0xff, 1] });
    assert!(matches!(drain(&mut a_rx)[..], [MasterMsg::Error { .. }]));
    assert!(c.planner.node_has(a, &hash(1)) && !c.planner.node_has(a, &hash(4)));
    drain(&mut b_rx);
}
