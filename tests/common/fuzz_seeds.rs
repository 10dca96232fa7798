//! Seed inputs of each fuzz target, built with the real encoders so they start past the magic
//! bytes and checksums. `scripts/fuzz.sh corpus` writes them to `fuzz/corpus/<target>/` for
//! AFL++; the seeded driver adds them to the checked-in corpus itself.

use std::path::Path;

use lanscatter::manifest::cache::{FileStamp, HashCache};
use lanscatter::manifest::{chunking, CacheMode, Chunk, ChunkHash, ChunkRule, DirEntry, FileEntry, Manifest, Mtime};
use lanscatter::protocol::{self, FailKind, Hello, MasterMsg, PeerMsg, Refusal, Welcome, PROTOCOL_VERSION};
use lanscatter::transfer::compress;

use super::fuzz_targets::CACHE_ROOT;
use super::Rng;

/// The seeds of target `name` (empty for an unknown name).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let texts = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect();
    match name {
        "peer_msg" => peer_msgs().iter().map(protocol::encode).collect(),
        "master_msg" => master_msgs().iter().map(protocol::encode).collect(),
        "hello" => hellos(),
        "greeting" => greetings(),
        "manifest" => vec![sample_manifest().to_bytes(), Manifest::empty(ChunkRule::Fixed(4096)).to_bytes()],
        "manifest_delta" => {
            let empty = Manifest::empty(ChunkRule::Auto);
            let d = lanscatter::manifest::delta::Delta::between(&empty, &sample_manifest());
            vec![d.to_bytes(), lanscatter::manifest::delta::Delta::between(&sample_manifest(), &empty).to_bytes()]
        }
        "manifest_json" => vec![serde_json::to_vec(&sample_manifest()).unwrap_or_default()],
        "manifest_gen" | "planner_events" => {
            let mut rng = Rng::new(7);
            (0..8).map(|i| rng.bytes(16 << i)).collect()
        }
        "hash_cache" => vec![hash_cache_body()],
        "lz4" => lz4_blocks(),
        "chunk_batch" => batch_seeds(),
        "wire_path" => {
            texts(&["a", "a/b/c.txt", "../x", "a/./b", "C:x", "\\\\s\\x", "ü/日本", ".lanscatter/x", "a//b"])
        }
        "units" => texts(&["4M", "1.5GiB", "4MB", "100Mbit/s", "12.5MB/s", "12MiB/s", "0", "18446744073709551615 B"]),
        "chunk_rule" => texts(&["auto", "4M", "1G", "4096", "1.5MiB", "2GB"]),
        "chunk_route" => texts(&["00112233445566778899aabbccddeeff", "00112233445566778899AABBCCDDEEFF", "0g"]),
        "config" => texts(&[
            "verbose = 1\n[master]\nupload-slots = 3\nno-compress = true\nmax-upload = \"100MB/s\"\n",
            "[peer]\ndownload-slots = 2\nadvertise = \"10.0.0.1\"\nport = 9000\n",
            "[master]\nport = [1, 2]\nx = { a = [[1]] }\n",
        ]),
        _ => Vec::new(),
    }
}

/// A request of two hashes, and an answer (raw, missing, LZ4) after its sizes.
fn batch_seeds() -> Vec<Vec<u8>> {
    use lanscatter::transfer::{batch, compress};
    let hashes = [lanscatter::manifest::ChunkHash::of(b"a"), lanscatter::manifest::ChunkHash::of(b"b")];
    let text = vec![b'x'; 5000];
    let lz = compress::compress_if_worth(&text).unwrap_or_default();
    let mut answer = vec![3u8];
    for size in [3u16, 7, 5000] {
        answer.extend_from_slice(&size.to_le_bytes());
    }
    batch::encode_entry(&mut answer, Some((b"abc", false)));
    batch::encode_entry(&mut answer, None);
    batch::encode_entry(&mut answer, Some((&lz, true)));
    vec![batch::encode_request(&hashes), answer]
}

fn peer_msgs() -> Vec<PeerMsg> {
    let h = ChunkHash::of(b"seed");
    vec![
        PeerMsg::HaveAll { manifest_id: 3, chunks: vec![h, h] },
        PeerMsg::Lost { chunks: vec![h] },
        PeerMsg::Progress { id: 7, bytes_done: 1 << 20 },
        PeerMsg::Finished { id: 7 },
        PeerMsg::Failed { id: 7, reason: FailKind::Busy, message: "busy".into() },
        PeerMsg::Stats { download_bps: 1.5e6, upload_bps: 0.0, error: Some("disk full".into()) },
        PeerMsg::FinishedExcept { id: 8, failed: vec![h], reason: FailKind::BadData, message: "bad".into() },
        PeerMsg::HaveBits { manifest_id: 3, chunks: 10, bits: vec![0b1010_0101, 0b10] },
    ]
}

fn master_msgs() -> Vec<MasterMsg> {
    let chunk = ChunkHash::of(b"seed");
    vec![
        MasterMsg::Wait { message: "indexing".into() },
        MasterMsg::Manifest { id: 1, bytes: std::sync::Arc::new(sample_manifest().to_bytes()) },
        MasterMsg::ManifestDelta {
            id: 2,
            base: 1,
            hash: ChunkHash::of(b"m"),
            delta: std::sync::Arc::new(
                lanscatter::manifest::delta::Delta::between(&sample_manifest(), &Manifest::empty(ChunkRule::Auto))
                    .to_bytes(),
            ),
        },
        MasterMsg::Fetch { id: 9, chunk, size: 4096, url: Some("http://10.0.0.2:7001".into()), min_rate_bps: 10 },
        MasterMsg::Cancel { id: 9 },
        MasterMsg::FetchBatch { id: 10, chunks: vec![(chunk, 100), (chunk, 7)], url: None, min_rate_bps: 0 },
        MasterMsg::Error { message: "no".into() },
    ]
}

fn hellos() -> Vec<Vec<u8>> {
    let hello = Hello {
        app: Hello::APP.into(),
        protocol: PROTOCOL_VERSION,
        name: "peer-1".into(),
        advertise_host: Some("10.0.0.2".into()),
        port: 7001,
        upload_slots: 8,
        download_slots: 8,
        max_upload_bps: Some(1_000_000),
        max_download_bps: None,
        version: "0.1.0".into(),
    };
    let minimal = format!(r#"{{"app":"lanscatter","protocol":{PROTOCOL_VERSION}}}"#);
    vec![serde_json::to_vec(&hello).unwrap_or_default(), minimal.into_bytes()]
}

fn greetings() -> Vec<Vec<u8>> {
    let w = Welcome {
        app: Hello::APP.into(),
        protocol: PROTOCOL_VERSION,
        node_id: 3,
        master_name: "m".into(),
        version: "0.1.0".into(),
        host: "h".into(),
        folder: "/srv".into(),
    };
    let r = Refusal { app: Hello::APP.into(), protocol: PROTOCOL_VERSION, message: "wrong secret".into() };
    vec![serde_json::to_vec(&w).unwrap_or_default(), serde_json::to_vec(&r).unwrap_or_default()]
}

/// A small manifest that passes validation: nested dirs, an empty file, a multi-chunk file.
pub fn sample_manifest() -> Manifest {
    let rule = ChunkRule::Fixed(4096);
    let file = |path: &str, size: u64| {
        let cs = rule.chunk_size_for(size);
        let chunks: Vec<Chunk> = chunking::chunk_ranges(size, cs)
            .map(|(offset, size)| Chunk { offset, size, hash: ChunkHash::of(&offset.to_le_bytes()) })
            .collect();
        let hash = chunking::file_hash(size, cs, chunks.iter().map(|c| c.hash));
        FileEntry {
            path: path.into(),
            size,
            mtime: Mtime { secs: 1_700_000_000, nanos: 5 },
            chunk_size: cs,
            chunks,
            hash,
        }
    };
    Manifest {
        files: vec![file("a.txt", 0), file("d/big.bin", 3 * 4096 + 5), file("d/e/ü.txt", 10)],
        dirs: vec![DirEntry { path: "d".into() }, DirEntry { path: "d/e".into() }],
        chunk_rule: rule,
        warnings: Vec::new(),
    }
}

/// Mode byte 0 (the target appends the checksum) and a real cache file without its checksum.
fn hash_cache_body() -> Vec<u8> {
    let Ok(dir) = tempfile::tempdir() else { return Vec::new() };
    let mode = CacheMode::Dir(dir.path().to_path_buf());
    let (mut cache, _) = HashCache::load(&mode, Path::new(CACHE_ROOT));
    let stamp = FileStamp { size: 3, mtime: Mtime { secs: 1, nanos: 0 }, ctime: Mtime::default(), inode: 1 };
    for path in ["a", "b"] {
        cache.record(path, stamp, 1 << 20, &[ChunkHash::of(path.as_bytes())], Mtime { secs: 100, nanos: 0 });
    }
    if cache.save().is_err() {
        return Vec::new();
    }
    let file = std::fs::read_dir(dir.path()).ok().and_then(|mut d| d.next()).and_then(|e| e.ok()).map(|e| e.path());
    let Some(bytes) = file.and_then(|f| std::fs::read(f).ok()) else { return Vec::new() };
    let mut out = vec![0u8];
    out.extend_from_slice(&bytes[..bytes.len().saturating_sub(lanscatter::manifest::HASH_LEN)]);
    out
}

fn lz4_blocks() -> Vec<Vec<u8>> {
    let text: Vec<u8> = (0..8192u32).map(|i| b"lanscatter "[(i % 11) as usize]).collect();
    let mut out = Vec::new();
    if let Some(block) = compress::compress_if_worth(&text) {
        let mut v = vec![(text.len() & 0xff) as u8, (text.len() >> 8 & 0xff) as u8, (text.len() >> 16) as u8];
        v.extend_from_slice(&block);
        out.push(v);
    }
    out.push([&[0, 16, 0][..], &text[..4096]].concat());
    out
}
