//! Versioned wire types of the master<->peer control channel (a websocket at `/join`).
//!
//! Framing: the first frame each way is a JSON *text* frame ([`Hello`] from the peer,
//! [`Welcome`] or [`Refusal`] from the master). JSON is used there because it tolerates unknown
//! and missing fields, so two builds with different protocol versions can still read each
//! other's version number and print a clear mismatch message instead of a decode error. Every
//! later frame is a *binary* frame holding one postcard-encoded [`PeerMsg`] or [`MasterMsg`]:
//! compact (a manifest of 100k chunks is a few MB), fast, and strictly typed.
//!
//! Validation: the first frame each way is bounded by [`HANDSHAKE_MAX`], later ones by what
//! the connection allows (on the master: [`have_set_limit`] of the manifest it sent, at most
//! [`MAX_FRAME`]), both from the frame header before anything is buffered
//! (`transport::frames`); after decoding, each kind of message has its own limit
//! ([`Bounded::frame_limit`]: a `Progress` is a few bytes, a have-set may be megabytes) and its
//! free text is cut to [`MAX_TEXT_LEN`] ([`Bounded::truncate_text`]) before anything stores
//! it. Decoding never panics, and messages that make no sense in the receiver's state are
//! rejected by the engines with an [`MasterMsg::Error`] or a close.
//! The manifest travels as opaque `Manifest::to_bytes` output so this module does not depend on
//! the manifest's internal layout; the peer decodes and validates it (paths go through
//! `crate::paths`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::manifest::ChunkHash;

/// Bumped on any incompatible change of the types below.
/// 2: `FailKind::Busy` (a source with no free upload slot is not a source without the chunk).
/// 3: `PeerMsg::Have` removed (peers announce local copies in a new `HaveAll`), and
/// `PeerMsg::Stats` lost `bytes_uploaded` and `complete` (the master counts uploads from
/// finished transfers and completeness from the planner).
/// 4: `MasterMsg::FetchBatch` and `PeerMsg::FinishedExcept` (small chunks travel in batches),
/// and `MasterMsg::ManifestDelta` (a change travels as what changed, not the whole manifest).
/// 5: `PeerMsg::HaveBits` (a have-set as one bit per unique chunk of the manifest: 125 KB for
/// a million chunks instead of the 32 MB of hashes in a `HaveAll`).
pub const PROTOCOL_VERSION: u32 = 5;

/// Upper bound for one control frame. A manifest of a 1 TB folder at 1 MiB chunks is ~40 MB.
pub const MAX_FRAME: usize = 128 << 20;

/// Upper bound for the first frame each way ([`Hello`], [`Welcome`], [`Refusal`]), enforced by
/// the channel from the frame header, before the frame is buffered.
pub const HANDSHAKE_MAX: usize = 64 << 10;

/// What a peer's later frames may reach before the master has sent it a manifest (after that:
/// the manifest's size, see [`have_set_limit`]).
pub const MIN_FRAME_LIMIT: usize = 64 << 10;

/// Longest free text a receiver keeps from a message (`Failed.message`, `Stats.error`,
/// `Error.message`, `Wait.message`): longer text is cut at a character boundary.
pub const MAX_TEXT_LEN: usize = 1024;

/// Longest node name ([`Hello::name`]) a master accepts.
pub const MAX_NAME_LEN: usize = 256;

/// Longest version string ([`Hello::version`]) a master keeps.
pub const MAX_VERSION_LEN: usize = 64;

/// Frame limit of a message carrying one free-text string (before that text is cut to
/// [`MAX_TEXT_LEN`]): room for any honest error message, with paths in it.
pub const TEXT_FRAME: usize = 64 << 10;

/// Frame limit of a message of ids and counters only (postcard varints: under 40 bytes).
pub const FIXED_FRAME: usize = 64;

/// Frame limit of a `Fetch` order (a hash, numbers and a base URL of a checked host).
pub const FETCH_FRAME: usize = 1024;

/// Frame limit of a batch order (`FetchBatch`: at most [`crate::transfer::batch::BATCH_MAX`]
/// hashes with sizes, ~26 bytes each, and a base URL) or a batch's partial result
/// (`FinishedExcept`: as many hashes and a text).
pub const BATCH_FRAME: usize = 64 << 10;

/// The largest have-set (`HaveAll`, `Lost`) a peer can honestly send for a manifest encoded in
/// `manifest_len` bytes: every unique chunk takes at least its 32-byte hash in the manifest.
pub fn have_set_limit(manifest_len: usize) -> usize {
    manifest_len.saturating_add(1024).clamp(MIN_FRAME_LIMIT, MAX_FRAME)
}

/// The bits of a [`PeerMsg::HaveBits`] over `len` unique chunks: bit `i` set when `has(i)`.
pub fn have_bits(len: usize, has: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut bits = vec![0u8; len.div_ceil(8)];
    for i in (0..len).filter(|&i| has(i)) {
        bits[i / 8] |= 1 << (i % 8);
    }
    bits
}

/// A [`PeerMsg::HaveBits`] that does not fit the manifest it names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HaveBitsError {
    #[error("a have-set of {claimed} chunks for a manifest of {actual} unique chunks")]
    Count { claimed: u64, actual: usize },
    #[error("a have-set of {got} bytes where {want} bytes hold {chunks} chunks, or bits set past the last chunk")]
    Shape { got: usize, want: usize, chunks: usize },
}

/// The unique-chunk indices a [`PeerMsg::HaveBits`] sets, once its shape is checked against
/// the `len` unique chunks of the manifest it names (the receiver's own count, not the
/// sender's).
pub fn have_bits_indices(chunks: u64, bits: &[u8], len: usize) -> Result<Vec<usize>, HaveBitsError> {
    if chunks != len as u64 {
        return Err(HaveBitsError::Count { claimed: chunks, actual: len });
    }
    let want = len.div_ceil(8);
    let tail_clean = len.is_multiple_of(8) || bits.last().is_none_or(|b| b >> (len % 8) == 0);
    if bits.len() != want || !tail_clean {
        return Err(HaveBitsError::Shape { got: bits.len(), want, chunks: len });
    }
    let mut out = Vec::new();
    for (byte, &b) in bits.iter().enumerate().filter(|(_, b)| **b != 0) {
        out.extend((0..8).filter(|bit| b & (1 << bit) != 0).map(|bit| byte * 8 + bit));
    }
    Ok(out)
}

/// Cut `s` to at most `max` bytes, at a character boundary.
pub fn truncate_text(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// A message type with a size limit per kind of message, and free text cut to a documented
/// length. [`crate::transport::channel::Channel::recv`] applies both to every message received.
pub trait Bounded {
    /// The largest frame this message may arrive in; `None`: as large as the connection allows
    /// (have-sets and manifests grow with the folder).
    fn frame_limit(&self) -> Option<usize>;
    /// Cut every string to its documented length, before anything stores it.
    fn truncate_text(&mut self);
    /// The message's kind, for error messages.
    fn kind(&self) -> &'static str;
}

/// First frame, peer -> master (JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Always "lanscatter": lets the master tell a lanscatter peer from a stray client.
    pub app: String,
    pub protocol: u32,
    /// Human-readable node name (host name by default).
    #[serde(default)]
    pub name: String,
    /// Host other peers should use to fetch chunks from this peer; `None`: the master uses the
    /// address the peer connected from.
    #[serde(default)]
    pub advertise_host: Option<String>,
    /// Port of the peer's chunk server.
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub upload_slots: u32,
    #[serde(default)]
    pub download_slots: u32,
    /// Bytes per second, if limited.
    #[serde(default)]
    pub max_upload_bps: Option<u64>,
    #[serde(default)]
    pub max_download_bps: Option<u64>,
    /// Software version, for logs.
    #[serde(default)]
    pub version: String,
}

impl Hello {
    pub const APP: &'static str = "lanscatter";
}

/// Master's answer to an acceptable [`Hello`] (JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub app: String,
    pub protocol: u32,
    pub node_id: u32,
    pub master_name: String,
    pub version: String,
    /// The master's host name and canonical folder, so a peer on the same host can refuse to
    /// sync into the master's own folder.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub folder: String,
}

/// Master's answer to an unacceptable [`Hello`] (JSON text), followed by a close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub app: String,
    pub protocol: u32,
    pub message: String,
}

/// Why a transfer failed, as reported by the downloading peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailKind {
    /// The source sent bytes whose hash did not match: the source is at fault.
    BadData,
    /// Connection refused/reset, HTTP error, or the source no longer has the chunk.
    Network,
    /// No progress for too long, or slower than the planner's minimum rate.
    TooSlow,
    /// The downloader could not write the chunk (disk full, permission): not the source's fault.
    LocalDisk,
    /// The downloader cancelled it (manifest change, shutdown).
    Cancelled,
    /// The source answered that all its upload slots are taken: it still holds the chunk.
    Busy,
}

/// Peer -> master, after the handshake (postcard binary frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// Full set of verified unique chunks the peer holds for manifest `manifest_id`.
    HaveAll {
        manifest_id: u64,
        chunks: Vec<ChunkHash>,
    },
    /// Chunks the peer no longer holds (overwritten or deleted locally).
    Lost {
        chunks: Vec<ChunkHash>,
    },
    /// Progress of an ordered transfer (bytes of chunk content received so far).
    Progress {
        id: u64,
        bytes_done: u64,
    },
    /// Ordered transfer verified and written.
    Finished {
        id: u64,
    },
    Failed {
        id: u64,
        reason: FailKind,
        message: String,
    },
    /// A batch order arrived in part: every chunk but `failed` is verified and written;
    /// those failed for `reason`.
    FinishedExcept {
        id: u64,
        failed: Vec<ChunkHash>,
        reason: FailKind,
        message: String,
    },
    /// Periodic figures for the master's status page.
    Stats {
        download_bps: f64,
        upload_bps: f64,
        error: Option<String>,
    },
    /// Full set of verified unique chunks the peer holds for manifest `manifest_id`, as bits:
    /// bit `i` (byte `i / 8`, least significant bit first) is unique chunk `i` of that manifest
    /// in `Manifest::unique_chunks` order, which master and peer compute alike from the same
    /// manifest. `chunks` is that manifest's unique-chunk count; `bits` holds exactly
    /// `chunks.div_ceil(8)` bytes and the bits past `chunks` are zero ([`have_bits_indices`]).
    HaveBits {
        manifest_id: u64,
        chunks: u64,
        bits: Vec<u8>,
    },
}

/// Master -> peer, after the handshake (postcard binary frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MasterMsg {
    /// The master is still indexing; a manifest follows later. After a manifest (from a proxy
    /// whose upstream leg is still fetching): more files follow, so the peer is not done yet.
    /// The next manifest clears it. Older peers ignore it after a manifest.
    Wait { message: String },
    /// The folder's full description (`Manifest::to_bytes`). Replaces any earlier one. Shared:
    /// encoded once by the master and queued to every peer without a copy.
    Manifest {
        id: u64,
        #[serde(with = "shared_bytes")]
        bytes: Arc<Vec<u8>>,
    },
    /// Fetch `chunk` (`size` bytes of content) from `source`; `url` is the source's base URL
    /// (`http://host:port`), or `None` for the master itself (reach it at the address used for
    /// the control channel).
    Fetch { id: u64, chunk: ChunkHash, size: u64, url: Option<String>, min_rate_bps: u64 },
    /// Abandon transfer `id` (re-planned elsewhere); the peer answers nothing.
    Cancel { id: u64 },
    /// Fetch a batch of small chunks (hash, size) from one source in one request, like
    /// `Fetch` otherwise; at most [`crate::transfer::batch::BATCH_MAX`] chunks. The peer
    /// answers `Finished`, `Failed` (none usable) or `FinishedExcept`.
    FetchBatch { id: u64, chunks: Vec<(ChunkHash, u64)>, url: Option<String>, min_rate_bps: u64 },
    /// Something the peer sent was rejected.
    Error { message: String },
    /// Manifest `id` as a change (`manifest::delta::Delta::to_bytes`) of manifest `base`, the
    /// last one the master sent on this connection (`base == id`: the same manifest again).
    /// The peer applies it to the manifest it holds and checks the result against `hash`
    /// (`manifest::delta::manifest_hash` of the full encoding); a peer that cannot drops the
    /// connection, and the master sends the full manifest on the next one.
    ManifestDelta {
        id: u64,
        base: u64,
        hash: ChunkHash,
        #[serde(with = "shared_bytes")]
        delta: Arc<Vec<u8>>,
    },
}

/// Shared bytes on the wire exactly as a `Vec<u8>` (a length, then the bytes).
mod shared_bytes {
    use std::sync::Arc;

    use serde::{Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(b: &Arc<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        b.as_slice().serialize(s)
    }

    /// Postcard writes a byte slice as a length and the bytes, so they are read back as one
    /// exact copy: a `Vec<u8>` read byte by byte would grow by doubling (up to twice the size
    /// of a 100 MB manifest, held while the peer lays it out).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Vec<u8>>, D::Error> {
        d.deserialize_byte_buf(Bytes).map(Arc::new)
    }

    struct Bytes;

    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

impl Bounded for PeerMsg {
    fn frame_limit(&self) -> Option<usize> {
        match self {
            PeerMsg::HaveAll { .. } | PeerMsg::Lost { .. } | PeerMsg::HaveBits { .. } => None,
            PeerMsg::Progress { .. } | PeerMsg::Finished { .. } => Some(FIXED_FRAME),
            PeerMsg::Failed { .. } | PeerMsg::Stats { .. } => Some(TEXT_FRAME),
            PeerMsg::FinishedExcept { .. } => Some(BATCH_FRAME),
        }
    }

    fn truncate_text(&mut self) {
        match self {
            PeerMsg::Failed { message, .. } | PeerMsg::FinishedExcept { message, .. } => {
                truncate_text(message, MAX_TEXT_LEN)
            }
            PeerMsg::Stats { error: Some(e), .. } => truncate_text(e, MAX_TEXT_LEN),
            _ => {}
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            PeerMsg::HaveAll { .. } => "HaveAll",
            PeerMsg::Lost { .. } => "Lost",
            PeerMsg::Progress { .. } => "Progress",
            PeerMsg::Finished { .. } => "Finished",
            PeerMsg::Failed { .. } => "Failed",
            PeerMsg::Stats { .. } => "Stats",
            PeerMsg::FinishedExcept { .. } => "FinishedExcept",
            PeerMsg::HaveBits { .. } => "HaveBits",
        }
    }
}

impl Bounded for MasterMsg {
    fn frame_limit(&self) -> Option<usize> {
        match self {
            MasterMsg::Manifest { .. } | MasterMsg::ManifestDelta { .. } => None,
            MasterMsg::Fetch { .. } => Some(FETCH_FRAME),
            MasterMsg::Cancel { .. } => Some(FIXED_FRAME),
            MasterMsg::FetchBatch { .. } => Some(BATCH_FRAME),
            MasterMsg::Wait { .. } | MasterMsg::Error { .. } => Some(TEXT_FRAME),
        }
    }

    fn truncate_text(&mut self) {
        if let MasterMsg::Wait { message } | MasterMsg::Error { message } = self {
            truncate_text(message, MAX_TEXT_LEN);
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            MasterMsg::Wait { .. } => "Wait",
            MasterMsg::Manifest { .. } => "Manifest",
            MasterMsg::ManifestDelta { .. } => "ManifestDelta",
            MasterMsg::Fetch { .. } => "Fetch",
            MasterMsg::Cancel { .. } => "Cancel",
            MasterMsg::FetchBatch { .. } => "FetchBatch",
            MasterMsg::Error { .. } => "Error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("control message of {0} bytes exceeds the {MAX_FRAME} byte limit")]
    TooLarge(usize),
    #[error("malformed control message: {0}")]
    Decode(String),
    #[error("the other side is not lanscatter (app {0:?})")]
    NotLanscatter(String),
    #[error(
        "protocol version mismatch: this build speaks {ours}, the other side {theirs}; \
         run the same lanscatter version on master and peers"
    )]
    Version { ours: u32, theirs: u32 },
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Encoding our own plain-data enums into a Vec cannot fail.
    postcard::to_allocvec(msg).unwrap_or_default()
}

/// `msg`'s encoding as a small head and the shared bytes that end it (`head ++ tail ==
/// encode(msg)`), so a manifest goes out to every peer from the one copy the master holds
/// instead of one fresh encoding per connection (100 MB each for a million files).
pub fn encode_shared(msg: &MasterMsg) -> (Vec<u8>, Option<Arc<Vec<u8>>>) {
    let empty = Arc::new(Vec::new());
    let (mut head, tail) = match msg {
        MasterMsg::Manifest { id, bytes } => (encode(&MasterMsg::Manifest { id: *id, bytes: empty }), bytes),
        MasterMsg::ManifestDelta { id, base, hash, delta } => {
            (encode(&MasterMsg::ManifestDelta { id: *id, base: *base, hash: *hash, delta: empty }), delta)
        }
        other => return (encode(other), None),
    };
    // The shared bytes are the last field: drop the empty one's length (a single 0), put the
    // real length (a postcard varint, as for any u64) in its place.
    head.pop();
    head.extend(encode(&(tail.len() as u64)));
    (head, Some(tail.clone()))
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ProtocolError> {
    if bytes.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    postcard::from_bytes(bytes).map_err(|e| ProtocolError::Decode(e.to_string()))
}

/// The identifying fields of a first frame, read before the full type so that another version
/// with other fields still gets a version message rather than a decode error.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    app: String,
    #[serde(default)]
    protocol: u32,
    /// Set only in a master's refusal.
    #[serde(default)]
    message: Option<String>,
}

/// Bound and identify a first frame (either direction); the version is checked by the caller,
/// because a refusal from the master is reported whatever its version.
fn probe(text: &str) -> Result<Probe, ProtocolError> {
    if text.len() > HANDSHAKE_MAX {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    let probe: Probe = serde_json::from_str(text).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if probe.app != Hello::APP {
        return Err(ProtocolError::NotLanscatter(probe.app.chars().take(40).collect()));
    }
    Ok(probe)
}

fn check_version(theirs: u32) -> Result<(), ProtocolError> {
    if theirs != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { ours: PROTOCOL_VERSION, theirs });
    }
    Ok(())
}

/// Parse and check a peer's first frame.
pub fn parse_hello(text: &str) -> Result<Hello, ProtocolError> {
    check_version(probe(text)?.protocol)?;
    let mut hello: Hello = serde_json::from_str(text).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if hello.name.len() > MAX_NAME_LEN {
        return Err(ProtocolError::Decode(format!(
            "node name longer than {MAX_NAME_LEN} bytes; give the peer a shorter --name"
        )));
    }
    // A host name is at most 253 bytes (DNS); the master validates it further before use.
    if hello.advertise_host.as_ref().is_some_and(|h| h.len() > MAX_NAME_LEN) {
        return Err(ProtocolError::Decode(format!(
            "advertised host longer than {MAX_NAME_LEN} bytes; give the peer an IP address or a DNS name as --advertise"
        )));
    }
    truncate_text(&mut hello.version, MAX_VERSION_LEN);
    Ok(hello)
}

/// The master's first frame as the peer sees it.
#[derive(Debug)]
pub enum MasterGreeting {
    Welcome(Welcome),
    Refused(String),
}

/// Parse and check the master's first frame.
pub fn parse_greeting(text: &str) -> Result<MasterGreeting, ProtocolError> {
    let probe = probe(text)?;
    if let Some(message) = probe.message {
        return Ok(MasterGreeting::Refused(message));
    }
    check_version(probe.protocol)?;
    serde_json::from_str(text).map(MasterGreeting::Welcome).map_err(|e| ProtocolError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn have_bits_round_trip_and_a_misshapen_set_is_refused() {
        for len in [0usize, 1, 7, 8, 9, 64, 1000] {
            let has = |i: usize| i.is_multiple_of(3) || i == len.saturating_sub(1);
            let bits = have_bits(len, has);
            assert_eq!(bits.len(), len.div_ceil(8));
            let set = have_bits_indices(len as u64, &bits, len).unwrap();
            assert_eq!(set, (0..len).filter(|&i| has(i)).collect::<Vec<_>>(), "{len}");
        }
        let bits = have_bits(9, |_| true);
        assert!(matches!(have_bits_indices(10, &bits, 9), Err(HaveBitsError::Count { .. })));
        assert!(matches!(have_bits_indices(9, &bits[..1], 9), Err(HaveBitsError::Shape { .. })));
        // A bit past the last chunk: byte 1 may only use its lowest bit for 9 chunks.
        assert!(matches!(have_bits_indices(9, &[0xff, 0x03], 9), Err(HaveBitsError::Shape { .. })));
        let million = have_bits(1_000_000, |_| true);
        assert!(encode(&PeerMsg::HaveBits { manifest_id: 1, chunks: 1_000_000, bits: million }).len() < 126_000);
    }

    #[test]
    fn a_shared_encoding_is_the_plain_one_in_two_parts() {
        // Lengths on both sides of each varint width (1, 2 and 3 bytes).
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let bytes = Arc::new((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let msgs = [
                MasterMsg::Manifest { id: 7, bytes: bytes.clone() },
                MasterMsg::ManifestDelta { id: u64::MAX, base: 300, hash: ChunkHash::of(b"x"), delta: bytes },
                MasterMsg::Cancel { id: 3 },
            ];
            for m in msgs {
                let (mut head, tail) = encode_shared(&m);
                head.extend(tail.as_deref().map(Vec::as_slice).unwrap_or_default());
                assert_eq!(head, encode(&m), "{len}");
            }
        }
    }

    fn hello(protocol: u32) -> Hello {
        Hello {
            app: Hello::APP.into(),
            protocol,
            name: "n".into(),
            advertise_host: None,
            port: 1,
            upload_slots: 2,
            download_slots: 2,
            max_upload_bps: None,
            max_download_bps: Some(5),
            version: "x".into(),
        }
    }

    #[test]
    fn hello_round_trip_and_version_check() {
        let h = hello(PROTOCOL_VERSION);
        let t = serde_json::to_string(&h).unwrap();
        assert_eq!(parse_hello(&t).unwrap(), h);
        let t = serde_json::to_string(&hello(99)).unwrap();
        assert!(matches!(parse_hello(&t), Err(ProtocolError::Version { theirs: 99, .. })));
        // A future version with different fields still yields a version error.
        let t = r#"{"app":"lanscatter","protocol":7,"whatever":[1,2]}"#;
        assert!(matches!(parse_hello(t), Err(ProtocolError::Version { theirs: 7, .. })));
        assert!(matches!(parse_hello(r#"{"app":"x"}"#), Err(ProtocolError::NotLanscatter(_))));
        assert!(parse_hello("not json").is_err());
    }

    /// Found by the `hello` fuzz target (input in `fuzz/corpus/hello/regression-long-advertise`):
    /// an advertised host of any length was accepted.
    #[test]
    fn a_hello_with_a_long_advertised_host_is_refused() {
        let mut h = hello(PROTOCOL_VERSION);
        h.advertise_host = Some("a".repeat(MAX_NAME_LEN));
        assert!(parse_hello(&serde_json::to_string(&h).unwrap()).is_ok());
        h.advertise_host = Some("a".repeat(MAX_NAME_LEN + 1));
        let e = parse_hello(&serde_json::to_string(&h).unwrap()).unwrap_err();
        assert!(e.to_string().contains("advertised host longer than"), "{e}");
    }

    #[test]
    fn greeting_variants() {
        let w = Welcome {
            app: "lanscatter".into(),
            protocol: PROTOCOL_VERSION,
            node_id: 3,
            master_name: "m".into(),
            version: "v".into(),
            host: "h".into(),
            folder: "/f".into(),
        };
        let t = serde_json::to_string(&w).unwrap();
        assert!(matches!(parse_greeting(&t).unwrap(), MasterGreeting::Welcome(x) if x.node_id == 3));
        let r = Refusal { app: "lanscatter".into(), protocol: 1, message: "no".into() };
        assert!(
            matches!(parse_greeting(&serde_json::to_string(&r).unwrap()).unwrap(), MasterGreeting::Refused(m) if m == "no")
        );
    }

    #[test]
    fn text_is_cut_at_char_boundaries_and_limits_are_per_kind() {
        let mut m = PeerMsg::Failed { id: 1, reason: FailKind::Network, message: "é".repeat(1000) };
        m.truncate_text();
        let PeerMsg::Failed { message, .. } = &m else { unreachable!() };
        assert!(message.len() <= MAX_TEXT_LEN && message.len() >= MAX_TEXT_LEN - 1, "{}", message.len());
        assert_eq!(m.frame_limit(), Some(TEXT_FRAME));
        assert_eq!(PeerMsg::Progress { id: u64::MAX, bytes_done: u64::MAX }.frame_limit(), Some(FIXED_FRAME));
        assert!(encode(&PeerMsg::Progress { id: u64::MAX, bytes_done: u64::MAX }).len() <= FIXED_FRAME);
        let fetch = MasterMsg::Fetch {
            id: u64::MAX,
            chunk: ChunkHash::of(b"x"),
            size: u64::MAX,
            url: Some(format!("http://[{}]:65535", "f".repeat(253))),
            min_rate_bps: u64::MAX,
        };
        assert!(encode(&fetch).len() <= FETCH_FRAME);
        assert_eq!(PeerMsg::HaveAll { manifest_id: 1, chunks: vec![] }.frame_limit(), None);
        assert_eq!(have_set_limit(10), MIN_FRAME_LIMIT);
        assert_eq!(have_set_limit(usize::MAX), MAX_FRAME);
        let long = hello(PROTOCOL_VERSION);
        let t = serde_json::to_string(&Hello { name: "n".repeat(257), ..long.clone() }).unwrap();
        assert!(parse_hello(&t).unwrap_err().to_string().contains("shorter --name"));
        let t = serde_json::to_string(&Hello { version: "v".repeat(5000), ..long }).unwrap();
        assert_eq!(parse_hello(&t).unwrap().version.len(), MAX_VERSION_LEN);
    }

    #[test]
    fn binary_messages_round_trip_and_garbage_is_an_error() {
        let m = MasterMsg::Fetch {
            id: 9,
            chunk: ChunkHash::of(b"x"),
            size: 10,
            url: Some("http://a:1".into()),
            min_rate_bps: 0,
        };
        assert_eq!(decode::<MasterMsg>(&encode(&m)).unwrap(), m);
        let p = PeerMsg::Failed { id: 1, reason: FailKind::BadData, message: "m".into() };
        assert_eq!(decode::<PeerMsg>(&encode(&p)).unwrap(), p);
        let s = PeerMsg::Stats { download_bps: 1.5, upload_bps: 0.0, error: Some("disk full".into()) };
        assert_eq!(decode::<PeerMsg>(&encode(&s)).unwrap(), s);
        for garbage in [&b""[..], &[0xff; 3], &[200, 1, 2, 3]] {
            assert!(decode::<PeerMsg>(garbage).is_err());
        }
    }
}
