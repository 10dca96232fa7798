//! Fuzz targets: one function per decoder that reads bytes from the network or the disk, each
//! taking raw input and panicking only when a property is broken.
//!
//! Two drivers share these functions, so a crash found by either is reproduced by both: the
//! seeded mutation loop of `tests/fuzz_*.rs` (`tests/common/fuzz.rs`, part of `cargo test`, case
//! count raised with `LANSCATTER_FUZZ_CASES`) and the coverage-guided AFL++ binary in `fuzz/`
//! (`scripts/fuzz.sh`), which includes this file by path. So this file depends only on the
//! library and std. Properties beyond "does not panic": whatever a decoder accepts re-encodes
//! to something it accepts again, accepted wire paths stay under the root, parsed sizes and
//! rates read back from their own formatting, and the planner keeps its promises (see
//! [`planner_events`]).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};

use lanscatter::manifest::cache::{FileStamp, HashCache};
use lanscatter::manifest::chunking::{self, FIXED_MAX_CHUNK};
use lanscatter::manifest::delta::Delta;
use lanscatter::manifest::{CacheMode, Chunk, ChunkHash, ChunkRule, DirEntry, FileEntry, Manifest, Mtime};
use lanscatter::paths;
use lanscatter::planner::{Event, FailReason, NodeConfig, NodeId, Order, Planner, TransferId};
use lanscatter::protocol::{self, Hello, MasterGreeting, MasterMsg, PeerMsg, PROTOCOL_VERSION};
use lanscatter::transfer::compress;
use lanscatter::units;

/// A fuzz target: raw input in, a panic when a property is broken.
pub type Target = fn(&[u8]);

/// Every target by the name the corpus folder (`fuzz/corpus/<name>/`) and the drivers use.
pub const TARGETS: &[(&str, Target)] = &[
    ("peer_msg", peer_msg),
    ("master_msg", master_msg),
    ("hello", hello),
    ("greeting", greeting),
    ("manifest", manifest),
    ("manifest_delta", manifest_delta),
    ("manifest_gen", manifest_gen),
    ("manifest_json", manifest_json),
    ("hash_cache", hash_cache),
    ("lz4", lz4),
    ("wire_path", wire_path),
    ("units", units_target),
    ("chunk_rule", chunk_rule),
    ("chunk_route", chunk_route),
    ("chunk_batch", chunk_batch),
    ("config", config),
    ("planner_events", planner_events),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Master side of the control channel: a binary frame from a peer.
pub fn peer_msg(data: &[u8]) {
    if let Ok(m) = protocol::decode::<PeerMsg>(data) {
        if let PeerMsg::HaveBits { chunks, bits, .. } = &m {
            // As the master reads it: against its own count, and against the claimed one.
            let _ = protocol::have_bits_indices(*chunks, bits, bits.len() * 8);
            let _ = protocol::have_bits_indices(*chunks, bits, usize::try_from(*chunks).unwrap_or(0));
        }
        stable_encoding(&m, |b| protocol::decode::<PeerMsg>(b));
    }
}

/// Peer side of the control channel: a binary frame from the master.
pub fn master_msg(data: &[u8]) {
    if let Ok(m) = protocol::decode::<MasterMsg>(data) {
        if let MasterMsg::Manifest { bytes, .. } = &m {
            manifest(bytes);
        }
        if let MasterMsg::ManifestDelta { delta, .. } = &m {
            manifest_delta(delta);
        }
        stable_encoding(&m, |b| protocol::decode::<MasterMsg>(b));
    }
}

/// What was accepted re-encodes to bytes that decode to the same encoding (compared as bytes:
/// a NaN rate in `Stats` is not equal to itself).
fn stable_encoding<T: serde::Serialize + std::fmt::Debug, E: std::fmt::Debug>(m: &T, dec: fn(&[u8]) -> Result<T, E>) {
    let once = protocol::encode(m);
    let back = dec(&once).unwrap_or_else(|e| panic!("{m:?} re-encoded does not decode: {e:?}"));
    assert_eq!(protocol::encode(&back), once, "encoding of {m:?} is not stable");
}

/// The master reading a peer's first frame (websocket text frames are UTF-8).
pub fn hello(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(h) = protocol::parse_hello(text) {
        assert_eq!((h.app.as_str(), h.protocol), (Hello::APP, PROTOCOL_VERSION), "accepted {h:?}");
        assert!(h.name.len() <= 256, "name of {} bytes accepted", h.name.len());
        assert!(h.advertise_host.as_ref().is_none_or(|a| a.len() <= 256), "long advertise_host accepted");
    }
}

/// The peer reading the master's first frame.
pub fn greeting(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match protocol::parse_greeting(text) {
        Ok(MasterGreeting::Welcome(w)) => assert_eq!((w.app.as_str(), w.protocol), (Hello::APP, PROTOCOL_VERSION)),
        Ok(MasterGreeting::Refused(m)) => assert!(m.len() <= text.len()),
        Err(_) => {}
    }
}

/// A manifest off the wire: whatever `from_bytes` accepts is safe to act on.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::from_bytes(data) {
        check_accepted_manifest(&m);
    }
}

/// A manifest delta from the master (`MasterMsg::ManifestDelta`): whatever decodes re-encodes to
/// itself, and applied to a manifest it either is refused or gives a manifest that passed the
/// same validation as a full one (paths under the root).
pub fn manifest_delta(data: &[u8]) {
    let Ok(d) = Delta::from_bytes(data) else { return };
    assert_eq!(Delta::from_bytes(&d.to_bytes()).expect("re-decodes"), d);
    let mut base = Manifest::empty(ChunkRule::Auto);
    base.dirs.push(DirEntry { path: "d".into() });
    for b in [Manifest::empty(ChunkRule::Auto), base] {
        if let Ok(m) = d.apply(&b) {
            check_accepted_manifest(&m);
            assert_eq!(Delta::between(&b, &m).apply(&b).expect("a delta of two valid manifests applies"), m);
        }
    }
}

/// A manifest as `lanscatter index --json` prints it (read back by tools and tests).
pub fn manifest_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Manifest::from_json(text) {
        check_accepted_manifest(&m);
    }
}

/// Invariants a peer relies on once a manifest passed validation.
fn check_accepted_manifest(m: &Manifest) {
    let root = Path::new("/sync/root");
    for path in m.files.iter().map(|f| &f.path).chain(m.dirs.iter().map(|d| &d.path)) {
        assert_under_root(root, path);
    }
    for f in &m.files {
        assert_eq!(
            f.chunks.iter().map(|c| u64::from(c.size)).sum::<u64>(),
            f.size,
            "chunks of {:?} do not tile",
            f.path
        );
        assert!(f.chunk_size >= 1 && f.chunk_size <= FIXED_MAX_CHUNK, "chunk size {}", f.chunk_size);
        let _ = f.mtime.to_system_time();
        for c in &f.chunks {
            assert_eq!(f.chunk_at(c.offset), Some(c), "chunk_at({}) of {:?}", c.offset, f.path);
        }
    }
    let _ = (m.total_bytes(), m.chunk_count(), m.unique_chunks());
    let again = Manifest::from_bytes(&m.to_bytes()).expect("an accepted manifest re-encodes to an accepted one");
    assert_eq!(&again, m);
}

/// A manifest built from the input's choices (so most are structurally plausible: real file
/// hashes, tiled chunks), with hostile paths, sizes, rules and orders mixed in, then sent through
/// the real encoder and decoder. Reaches the validator's later checks, which random bytes rarely do.
pub fn manifest_gen(data: &[u8]) {
    let mut g = Gen::new(data);
    let rule = match g.below(4) {
        0 => ChunkRule::Fixed(g.pick(&[0, 1, 4096, 5000, 1 << 20, FIXED_MAX_CHUNK, FIXED_MAX_CHUNK + 1, u64::MAX])),
        _ => ChunkRule::Auto,
    };
    let mut m = Manifest::empty(rule);
    for _ in 0..g.below(6) {
        m.dirs.push(DirEntry { path: gen_path(&mut g) });
    }
    for _ in 0..g.below(6) {
        let path = gen_path(&mut g);
        let any = g.u64() % 10_000_000;
        let size = g.pick(&[0, 1, 4095, 4096, 4097, 1 << 20, (1 << 20) + 1, 3 << 20, u64::MAX, any]);
        let file = gen_file(&mut g, rule, path, size);
        m.files.push(file);
    }
    if g.below(2) == 0 {
        m.dirs.sort();
        m.dirs.dedup();
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    manifest(&m.to_bytes());
}

fn gen_file(g: &mut Gen, rule: ChunkRule, path: String, size: u64) -> FileEntry {
    let chunk_size = if g.below(8) == 0 { g.pick(&[0, 1, 4096, 1 << 20]) } else { rule.chunk_size_for(size) };
    // Files too large to list every chunk of get a few wrong ones: the validator must count first.
    let mut chunks: Vec<Chunk> = chunking::chunk_ranges(size, chunk_size)
        .take(64)
        .map(|(offset, len)| Chunk { offset, size: len, hash: ChunkHash::of(&offset.to_le_bytes()) })
        .collect();
    match g.below(10) {
        0 => {
            chunks.pop();
        }
        1 => chunks.iter_mut().for_each(|c| c.offset = c.offset.wrapping_add(g.u64() % 3)),
        2 => chunks.iter_mut().for_each(|c| c.size = c.size.wrapping_sub(1)),
        _ => {}
    }
    let hash = if g.below(10) == 0 {
        ChunkHash::of(b"wrong")
    } else {
        chunking::file_hash(size, chunk_size, chunks.iter().map(|c| c.hash))
    };
    let mtime =
        Mtime { secs: g.pick(&[0, -1, i64::MIN, i64::MAX, 1_700_000_000]), nanos: g.pick(&[0, 999_999_999, u32::MAX]) };
    FileEntry { path, size, mtime, chunk_size, chunks, hash }
}

/// A path from a small alphabet of the components that matter to the validator.
fn gen_path(g: &mut Gen) -> String {
    const PARTS: &[&str] =
        &["a", "b", "..", ".", "", "C:", "c:x", "\\", "a\\b", "\0", "CON", ".lanscatter", "ü", "x/", "/", "a b", "..."];
    let n = 1 + g.below(4);
    let mut parts: Vec<String> = (0..n).map(|_| PARTS[g.below(PARTS.len())].to_string()).collect();
    if g.below(16) == 0 {
        parts.push("l".repeat(256));
    }
    parts.join("/")
}

/// The hash cache file a scan reads at start. The first byte chooses whether the target writes
/// the checksum (to reach the decoder behind it) or takes the file as it is.
pub fn hash_cache(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let mut file = body.to_vec();
    if mode & 1 == 0 {
        let sum = ChunkHash::of(body);
        file.extend_from_slice(&sum.0);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let root = Path::new(CACHE_ROOT);
    let name = format!("{}.idx", ChunkHash::of(CACHE_ROOT.as_bytes()).to_hex());
    std::fs::write(dir.path().join(name), &file).expect("write cache file");
    let (mut cache, warning) = HashCache::load(&CacheMode::Dir(dir.path().to_path_buf()), root);
    let stamp = FileStamp { size: 3, mtime: Mtime { secs: 1, nanos: 0 }, ctime: Mtime::default(), inode: 1 };
    for path in ["a", "b", ""] {
        if let Some(h) = cache.lookup(path, &stamp, 1 << 20) {
            assert!(warning.is_none() && h.len() == 1, "lookup gave {} hashes for a 3-byte file", h.len());
        }
    }
}

/// The folder the fuzzed hash cache claims to belong to (the corpus uses it).
pub const CACHE_ROOT: &str = "/fuzz/root";

/// A chunk body from a peer, compressed: the first 3 bytes are the expected size (from the
/// manifest; 20 bits, up to 1 MiB, keep executions fast), the rest is the LZ4 block.
pub fn lz4(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let size = lz4_claimed_size(data);
    let block = &data[3..];
    if let Ok(out) = compress::decompress_exact(block, size) {
        assert_eq!(out.len(), size);
    }
    if let Some(c) = compress::compress_if_worth(block) {
        assert!(c.len() <= compress::max_compressed_len(block.len()));
        assert_eq!(compress::decompress_exact(&c, block.len()).as_deref(), Ok(block), "LZ4 round trip");
    }
}

/// The decompressed size an input of [`lz4`] claims.
pub fn lz4_claimed_size(data: &[u8]) -> usize {
    match data {
        [a, b, c, ..] => usize::from(*a) | usize::from(*b) << 8 | usize::from(*c & 0x0f) << 16,
        _ => 0,
    }
}

/// A wire path from a manifest or an order: every accepted one maps to a path under the root
/// made of plain names, and back to itself.
pub fn wire_path(data: &[u8]) {
    let wire = String::from_utf8_lossy(data);
    let valid = paths::validate_wire_path(&wire).is_ok();
    for root in [Path::new("/sync/root"), Path::new("rel"), Path::new(".")] {
        match paths::to_local(root, &wire) {
            Ok(_) => assert_under_root(root, &wire),
            Err(_) => assert!(!valid || cfg!(windows), "valid {wire:?} refused under {root:?}"),
        }
    }
    let _ = (paths::windows_path_problem(&wire), paths::case_fold_key(&wire), paths::in_state_dir(&wire));
}

/// `wire` maps under `root` to `root` + plain components, and back to `wire`.
fn assert_under_root(root: &Path, wire: &str) {
    let local = paths::to_local(root, wire).unwrap_or_else(|e| panic!("accepted {wire:?} has no local path: {e}"));
    let rel = local.strip_prefix(root).unwrap_or_else(|_| panic!("{wire:?} -> {local:?} is outside {root:?}"));
    assert!(rel.components().count() >= 1, "{wire:?} names the root itself");
    assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{wire:?} -> {local:?}");
    assert_eq!(paths::wire_from_local(root, &local).as_deref(), Ok(wire), "round trip of {wire:?}");
}

/// Sizes and rates from flags, config files and the settings page: accepted values read back
/// unchanged from their own formatting, and the formatters take any number.
pub fn units_target(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(n) = units::parse_size(&text) {
        assert_eq!(units::parse_size(&units::format_size(n)), Ok(n), "size {text:?}");
    }
    if let Ok(r) = units::parse_rate(&text) {
        assert!(r >= 1);
        assert_eq!(units::parse_rate(&units::format_rate(r)), Ok(r), "rate {text:?}");
    }
    let mut g = Gen::new(data);
    let n = g.u64();
    assert_eq!(units::parse_size(&units::format_size(n)), Ok(n), "format_size({n})");
    let r = n.max(1);
    assert_eq!(units::parse_rate(&units::format_rate(r)), Ok(r), "format_rate({r})");
    let _ = (units::human_size(n), units::human_rate(f64::from_bits(n)));
}

/// `--chunk-size` and the manifest's rule: every accepted rule gives chunk sizes in range that
/// tile any file size.
pub fn chunk_rule(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut g = Gen::new(data);
    let rule = match text.parse::<ChunkRule>() {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            ChunkRule::Auto
        }
    };
    rule.validate().expect("a parsed rule is valid");
    for size in [g.u64(), g.u64() >> 20, 0, 1, u64::MAX] {
        let cs = rule.chunk_size_for(size);
        assert!((1..=FIXED_MAX_CHUNK).contains(&cs), "{rule:?} gives chunk size {cs} for {size}");
        let n = chunking::chunk_count(size, cs);
        assert!(n.saturating_mul(cs) >= size && (n == 0 || (n - 1) * cs < size), "{n} chunks of {cs} for {size}");
        if n <= 4 {
            let total: u64 = chunking::chunk_ranges(size, cs).map(|(_, l)| u64::from(l)).sum();
            assert_eq!(total, size);
        }
    }
}

/// The hash in `GET /chunk/<hex>`: accepted only as 32 hex digits, and then it is that hash.
pub fn chunk_route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(h) = text.parse::<ChunkHash>() {
        assert!(text.len() == 32 && h.to_hex().eq_ignore_ascii_case(&text), "{text:?} parsed as {h}");
    }
}

/// The batch route (`POST /chunks`): a request body as the serving node reads it, and an
/// answer as the downloader reads it against the sizes it expects (input: a count byte, then
/// that many little-endian u16 sizes, then the answer). Every accepted request re-encodes to
/// itself; an accepted answer has one entry per size, none longer than its size.
pub fn chunk_batch(data: &[u8]) {
    use lanscatter::transfer::batch;
    if let Ok(hashes) = batch::decode_request(data) {
        assert_eq!(batch::encode_request(&hashes), data, "request does not re-encode to itself");
        assert!(!hashes.is_empty() && hashes.len() <= batch::BATCH_MAX);
    }
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n % 16);
    if rest.len() < 2 * n {
        return;
    }
    let (head, body) = rest.split_at(2 * n);
    let sizes: Vec<u64> = head.chunks_exact(2).map(|s| u64::from(u16::from_le_bytes([s[0], s[1]]))).collect();
    if let Ok(entries) = batch::decode_answer(body, &sizes) {
        assert_eq!(entries.len(), sizes.len(), "one entry per chunk asked for");
        for (e, &size) in entries.iter().zip(&sizes) {
            if let Ok(batch::Entry::Data(d)) = e {
                assert!(d.len() as u64 <= size, "entry of {} bytes for a {size} byte chunk", d.len());
            }
        }
    }
}

/// The TOML config file: whatever `with_file` accepts yields a command clap can build and parse
/// with (clap panics on a default value its own checks refuse).
pub fn config(data: &[u8]) {
    use clap::CommandFactory;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cmd = lanscatter::cli::config::with_env(lanscatter::cli::Cli::command());
    let Ok(cmd) = lanscatter::cli::config::with_file(cmd, text, Path::new("/etc/lanscatter/fuzz.toml")) else { return };
    for argv in [&["lanscatter", "master", "/srv"][..], &["lanscatter", "peer", "127.0.0.1:1", "/dst"], &["lanscatter"]]
    {
        let _ = cmd.clone().try_get_matches_from(argv);
    }
}

/// Reads choices from fuzz input; past its end every choice is 0, so any input is a program.
pub struct Gen<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Gen<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Gen { data, pos: 0 }
    }
    pub fn is_done(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.byte()))
    }
    /// In `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            usize::from(self.byte()) % n
        } else {
            (self.u64() % n as u64) as usize
        }
    }
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

include!("fuzz_planner.rs");
