//! The folder index: files, dirs, fixed-size chunks and their BLAKE2b hashes.
//!
//! A [`Manifest`] is the master's picture of its folder and the peer's picture of what it already
//! has. It is produced by [`scan`] (walk, chunk, hash, with a persistent hash cache), compared by
//! [`diff`] (what a peer must fetch, copy, delete, fix), and moved around as compact postcard
//! bytes ([`Manifest::to_bytes`]) or JSON (serde).
//!
//! Submodules, one concern each:
//! - [`chunking`]: the chunk-size rule (documented there) and the file-hash derivation.
//! - [`scan`]: orchestration: walk, name checks, cache lookups, hashing, change detection.
//! - `walk`: parallel directory walk; symlinks and special files are reported, not followed.
//! - [`hash`]: parallel, bounded-memory chunk hashing (rayon, across and within files).
//! - [`cache`]: the per-folder hash cache in the user cache dir.
//! - [`diff`]: pure manifest comparison into a [`SyncPlan`].
//! - [`wire`]: binary form and structural validation of manifests received from the network.
//!
//! Design choices: paths are wire paths (`/`-separated UTF-8, validated by [`crate::paths`]);
//! files and dirs are kept sorted by path so manifests are deterministic and comparable;
//! chunking of a file depends only on the rule and that file's own size, so a peer scanning a
//! pre-sized, partially written file gets the same chunk boundaries as the master.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod cache;
pub mod chunking;
pub mod delta;
pub mod diff;
mod error;
pub mod hash;
pub mod scan;
pub mod share;
mod walk;
pub mod wire;

pub use cache::CacheMode;
pub use chunking::ChunkRule;
pub use diff::{diff, FileWork, SyncPlan};
pub use scan::{scan, scan_dir, ScanError, ScanOptions, ScanProgress, Scanned, Unsettled};
pub use wire::ManifestError;

/// Length of a chunk digest in bytes: BLAKE2b truncated to 128 bits (collision-safe for any
/// folder size a LAN will see, and half the wire/cache size of a full digest).
pub const HASH_LEN: usize = 16;

/// Identity of a chunk's content: identical bytes anywhere in any folder give the same hash,
/// which is what makes dedup and resume work. Serialized as lowercase hex in human formats
/// (JSON) and as raw bytes in binary ones (postcard).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChunkHash(pub [u8; HASH_LEN]);

impl ChunkHash {
    /// Hash of a byte slice with the crate's digest parameters.
    pub fn of(data: &[u8]) -> Self {
        let h = blake2b_simd::Params::new().hash_length(HASH_LEN).hash(data);
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(h.as_bytes());
        ChunkHash(out)
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(HASH_LEN * 2);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Display for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkHash({})", &self.to_hex()[..12])
    }
}

/// Error for a string that is not exactly `2 * HASH_LEN` hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunk hash {0:?}: expected 32 hex digits")]
pub struct ParseHashError(pub String);

impl FromStr for ChunkHash {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != HASH_LEN * 2 {
            return Err(ParseHashError(s.chars().take(80).collect()));
        }
        let mut out = [0u8; HASH_LEN];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hex = |c: u8| (c as char).to_digit(16);
            match (hex(pair[0]), hex(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = (hi * 16 + lo) as u8,
                _ => return Err(ParseHashError(s.chars().take(80).collect())),
            }
        }
        Ok(ChunkHash(out))
    }
}

impl Serialize for ChunkHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ChunkHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; HASH_LEN]>::deserialize(d).map(ChunkHash)
        }
    }
}

/// Modification time with sub-second precision where the OS has it. Signed seconds since the
/// Unix epoch so pre-1970 timestamps (seen on restored archives) survive a round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

impl Mtime {
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Mtime { secs: d.as_secs() as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                // Before the epoch: floor to whole seconds below, keep nanos positive.
                let d = e.duration();
                let (secs, nanos) = (d.as_secs() as i64, d.subsec_nanos());
                if nanos == 0 {
                    Mtime { secs: -secs, nanos: 0 }
                } else {
                    Mtime { secs: -secs - 1, nanos: 1_000_000_000 - nanos }
                }
            }
        }
    }

    /// The time as the OS holds it. A manifest off the wire may carry any `i64`; one the OS
    /// cannot represent (Windows' clock spans 1601 to 30828) becomes the epoch, not a panic.
    pub fn to_system_time(self) -> SystemTime {
        let nanos = Duration::from_nanos(u64::from(self.nanos.min(999_999_999)));
        let whole = if self.secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(self.secs as u64))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(self.secs.unsigned_abs()))
        };
        whole.and_then(|t| t.checked_add(nanos)).unwrap_or(UNIX_EPOCH)
    }
}

impl From<SystemTime> for Mtime {
    fn from(t: SystemTime) -> Self {
        Mtime::from_system_time(t)
    }
}

impl From<Mtime> for SystemTime {
    fn from(m: Mtime) -> Self {
        m.to_system_time()
    }
}

/// One fixed-size piece of a file. All chunks of a file have `chunk_size` bytes except the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chunk {
    pub offset: u64,
    pub size: u32,
    pub hash: ChunkHash,
}

/// A regular file: where it lives, its metadata, and its chunk hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Wire path (`/`-separated, validated).
    pub path: String,
    pub size: u64,
    pub mtime: Mtime,
    /// Chunk size used for this file (from the manifest's rule and `size`).
    pub chunk_size: u64,
    /// In offset order; empty for an empty file.
    pub chunks: Vec<Chunk>,
    /// Derived from the chunk hashes (see [`chunking::file_hash`]): equal iff the content is.
    pub hash: ChunkHash,
}

impl FileEntry {
    /// The chunk starting at `offset`, if that is a chunk boundary of this file.
    pub fn chunk_at(&self, offset: u64) -> Option<&Chunk> {
        if self.chunk_size == 0 || !offset.is_multiple_of(self.chunk_size) {
            return None;
        }
        self.chunks.get((offset / self.chunk_size) as usize).filter(|c| c.offset == offset)
    }
}

/// A directory (empty ones too: they are synced).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DirEntry {
    pub path: String,
}

/// Something the scan noticed that later layers or the user must know about. Entries marked
/// "skipped" are not in the manifest; "flagged" ones are, but cannot be synced to every OS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanWarning {
    /// Skipped: symlinks are never followed nor recreated.
    Symlink { path: String, target: String },
    /// Skipped: fifo, socket, character or block device.
    SpecialFile { path: String, file_type: String },
    /// Skipped: the name is not valid UTF-8 (shown lossily); rename it to sync it.
    NotUtf8 { path: String },
    /// Skipped: the name cannot be a wire path (e.g. contains `\\`, or is too long).
    UnsupportedName { path: String, reason: String },
    /// Flagged: the name cannot be created on Windows.
    WindowsName { path: String, problem: crate::paths::WindowsNameProblem },
    /// Flagged: these paths differ only in letter case; a case-insensitive filesystem can hold
    /// only one of them.
    CaseCollision { paths: Vec<String> },
    /// Skipped: listed by the directory walk but deleted before it could be hashed.
    Vanished { path: String },
    /// Skipped because the scan was asked to skip what it cannot read; the manifest is then
    /// incomplete (see [`Manifest::is_complete`]).
    Unreadable { path: String, reason: String },
    /// The hash cache could not be used or saved (the index itself is still complete).
    HashCache { message: String },
}

impl fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanWarning::Symlink { path, target } => {
                write!(f, "{path}: symlink to {target:?} skipped (symlinks are not followed)")
            }
            ScanWarning::SpecialFile { path, file_type } => {
                write!(f, "{path}: {file_type} skipped (only regular files and dirs are synced)")
            }
            ScanWarning::NotUtf8 { path } => {
                write!(f, "{path}: name is not valid UTF-8, skipped; rename it to sync it")
            }
            ScanWarning::UnsupportedName { path, reason } => {
                write!(f, "{path}: skipped ({reason}); rename it to sync it")
            }
            ScanWarning::HashCache { message } => write!(f, "{message}"),
            ScanWarning::WindowsName { path, problem } => write!(f, "{path}: cannot exist on Windows ({problem})"),
            ScanWarning::CaseCollision { paths } => {
                write!(f, "names differ only in case (one will be lost on Windows/macOS): {}", paths.join(", "))
            }
            ScanWarning::Vanished { path } => write!(f, "{path}: deleted while indexing, skipped"),
            ScanWarning::Unreadable { path, reason } => write!(f, "{path}: unreadable, skipped ({reason})"),
        }
    }
}

/// The index of a folder. `files` and `dirs` are sorted by path (byte order) and unique.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
    pub dirs: Vec<DirEntry>,
    pub chunk_rule: ChunkRule,
    pub warnings: Vec<ScanWarning>,
}

impl Manifest {
    /// An empty manifest with the given rule (a peer's starting point for an empty folder).
    pub fn empty(chunk_rule: ChunkRule) -> Self {
        Manifest { files: Vec::new(), dirs: Vec::new(), chunk_rule, warnings: Vec::new() }
    }

    /// Sum of all file sizes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Number of chunks, counting duplicates.
    pub fn chunk_count(&self) -> usize {
        self.files.iter().map(|f| f.chunks.len()).sum()
    }

    /// Every distinct chunk hash with its size, sorted by hash (deterministic, independent of
    /// file order).
    pub fn unique_chunks(&self) -> Vec<(ChunkHash, u64)> {
        let mut v: Vec<(ChunkHash, u64)> =
            self.files.iter().flat_map(|f| f.chunks.iter().map(|c| (c.hash, u64::from(c.size)))).collect();
        v.sort_unstable();
        v.dedup_by_key(|(h, _)| *h);
        v
    }

    /// The file at a wire path (binary search: files are sorted).
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.binary_search_by(|f| f.path.as_str().cmp(path)).ok().map(|i| &self.files[i])
    }

    /// Whether `path` is a directory in this manifest.
    pub fn has_dir(&self, path: &str) -> bool {
        self.dirs.binary_search_by(|d| d.path.as_str().cmp(path)).is_ok()
    }

    /// False if the scan skipped something it should have indexed (unreadable files), so a peer
    /// must not treat missing entries as deletions.
    pub fn is_complete(&self) -> bool {
        !self.warnings.iter().any(|w| matches!(w, ScanWarning::Unreadable { .. }))
    }

    /// Compact binary form (magic + version + postcard) for the wire and the cache.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Parse and structurally validate bytes from [`Manifest::to_bytes`]; anything malformed or
    /// hostile (bad paths, unsorted entries, chunks that do not tile the file) is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        wire::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_formats() {
        let h = ChunkHash::of(b"hello");
        assert_eq!(h.to_hex().parse::<ChunkHash>().unwrap(), h);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<ChunkHash>(&json).unwrap(), h);
        let bin = postcard::to_allocvec(&h).unwrap();
        assert_eq!(bin.len(), HASH_LEN);
        assert_eq!(postcard::from_bytes::<ChunkHash>(&bin).unwrap(), h);
        assert!("zz".parse::<ChunkHash>().is_err());
        assert!("g".repeat(32).parse::<ChunkHash>().is_err());
    }

    #[test]
    fn mtime_round_trips_including_before_the_epoch() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(5, 0),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
        ] {
            let m = Mtime::from(t);
            assert!(m.nanos < 1_000_000_000);
            assert_eq!(SystemTime::from(m), t, "{m:?}");
        }
        assert_eq!(Mtime::from(UNIX_EPOCH - Duration::new(5, 250_000_000)), Mtime { secs: -6, nanos: 750_000_000 });
        assert!(Mtime { secs: -1, nanos: 0 } < Mtime { secs: 0, nanos: 5 });
    }

    /// Regression (fuzzing, manifest target): a manifest's mtime is any `i64`; `SystemTime`
    /// arithmetic panicked on overflow where the OS clock is narrower (Windows).
    #[test]
    fn any_mtime_from_the_wire_converts_without_panicking() {
        for secs in [i64::MIN, i64::MIN + 1, -11_644_473_601, 910_692_730_086, i64::MAX] {
            for nanos in [0, 999_999_999, u32::MAX] {
                let _ = Mtime { secs, nanos }.to_system_time();
            }
        }
        let ok = Mtime { secs: 1_700_000_000, nanos: u32::MAX };
        assert_eq!(ok.to_system_time(), UNIX_EPOCH + Duration::new(1_700_000_000, 999_999_999));
    }

    #[test]
    fn manifest_queries() {
        let h = ChunkHash::of(b"x");
        let f = |path: &str, hash: ChunkHash| FileEntry {
            path: path.into(),
            size: 10,
            mtime: Mtime::default(),
            chunk_size: chunking::MIB,
            chunks: vec![Chunk { offset: 0, size: 10, hash }],
            hash: chunking::file_hash(10, chunking::MIB, [hash]),
        };
        let m = Manifest {
            files: vec![f("a", h), f("b", ChunkHash::of(b"y")), f("c", h)],
            dirs: vec![DirEntry { path: "d".into() }],
            chunk_rule: ChunkRule::Auto,
            warnings: vec![],
        };
        m.validate().unwrap();
        assert_eq!(m.total_bytes(), 30);
        assert_eq!(m.chunk_count(), 3);
        assert_eq!(m.unique_chunks().len(), 2);
        assert!(m.unique_chunks().windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(m.file("b").unwrap().path, "b");
        assert!(m.file("d").is_none() && m.has_dir("d"));
        assert_eq!(m.file("a").unwrap().chunk_at(0).unwrap().hash, h);
        assert!(m.file("a").unwrap().chunk_at(1).is_none());
        assert!(m.is_complete());
    }
}
