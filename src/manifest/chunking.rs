//! The chunk-size rule and derived file hashes.
//!
//! # The rule
//!
//! A chunk is the swarm's unit of transfer, verification and dedup. Too few chunks and peers
//! cannot pipeline (the original's fixed 128 MiB gave a 1 GiB folder only 8 chunks, so most
//! peers idle while a few fetch); too many and per-chunk costs (a request, a planner decision,
//! ~30 bytes of manifest, a status cell) dominate a 500 GiB folder.
//!
//! [`ChunkRule::Auto`] chooses the chunk size **per file, from that file's own size only**:
//!
//! ```text
//! chunk_size(file_size) = clamp(next_power_of_two(ceil(file_size / 256)), 1 MiB, 128 MiB)
//! ```
//!
//! - Files from 256 MiB to 32 GiB get 129–256 chunks each, so even a folder holding a single
//!   1 GiB file has 256 chunks of 4 MiB: enough for a swarm to pipeline.
//! - Smaller files use 1 MiB chunks (a file under 1 MiB is one chunk): a 1 GiB folder of any
//!   shape has at least ~128 chunks.
//! - Bigger files use 128 MiB chunks (the original's size, ~1 s on a gigabit link).
//! - The worst case for chunk count is many files just under 256 MiB: 500 GiB of them is
//!   512 Ki chunks of 1 MiB (~15 MB of manifest). Typical 500 GiB folders (mixed sizes) land in
//!   the tens of thousands. It never reaches millions, because no chunk is below 1 MiB (except
//!   a file's tail).
//!
//! Why per file and only from its own size: changing one file must not change any other file's
//! hashes, and a peer scanning its pre-sized, partially written copy must cut it at the same
//! offsets as the master. Why powers of two: chunk sizes of different files then divide each
//! other, and a file growing by appends keeps its earlier chunk hashes until its size doubles
//! past a power-of-two boundary.
//!
//! Dedup: identical files always chunk identically (same size → same chunk size), so each
//! distinct content is fetched once. Identical *regions* of files of very different sizes may
//! be cut differently; that is the price of not using content-defined chunking, which would
//! break the pre-sized-file property above.
//!
//! [`ChunkRule::Fixed`] uses one size for every file (the original's behaviour, and `--chunk-size`).
//!
//! # File hash
//!
//! BLAKE2b-128 over a domain tag, the file size, the chunk size and the concatenated chunk
//! hashes. It is cheap (no second pass over the data) and equal iff size and content are (up
//! to hash collisions), which is what "is this file already right?" needs.

use serde::{Deserialize, Serialize};

use super::{ChunkHash, HASH_LEN};
use crate::units::{human_size, parse_size, UnitsError};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Smallest and largest chunk the automatic rule picks.
pub const AUTO_MIN_CHUNK: u64 = MIB;
pub const AUTO_MAX_CHUNK: u64 = 128 * MIB;
/// Target number of chunks per file for the automatic rule (between the clamps).
pub const AUTO_TARGET_CHUNKS: u64 = 256;
/// Bounds for a fixed chunk size: below 4 KiB per-chunk overhead is absurd; above 1 GiB a
/// single chunk no longer fits the `u32` size field nor a sane verify-before-write buffer.
pub const FIXED_MIN_CHUNK: u64 = 4 * KIB;
pub const FIXED_MAX_CHUNK: u64 = GIB;

/// How a file's size maps to its chunk size. Part of the manifest, so a peer re-scans its own
/// files with the master's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChunkRule {
    #[default]
    Auto,
    Fixed(u64),
}

/// A chunk size outside the supported range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkSizeError {
    #[error(
        "chunk size {0} bytes is out of range: use {FIXED_MIN_CHUNK} bytes (4 KiB) to {FIXED_MAX_CHUNK} bytes (1 GiB)"
    )]
    OutOfRange(u64),
    #[error("cannot parse chunk size: {0}; or give 'auto'")]
    Parse(#[from] UnitsError),
}

impl ChunkRule {
    /// A fixed rule, checked against the supported range.
    pub fn fixed(size: u64) -> Result<Self, ChunkSizeError> {
        if (FIXED_MIN_CHUNK..=FIXED_MAX_CHUNK).contains(&size) {
            Ok(ChunkRule::Fixed(size))
        } else {
            Err(ChunkSizeError::OutOfRange(size))
        }
    }

    /// Chunk size for a file of `file_size` bytes under this rule (see the module doc).
    pub fn chunk_size_for(&self, file_size: u64) -> u64 {
        match *self {
            ChunkRule::Fixed(n) => n.clamp(1, FIXED_MAX_CHUNK),
            ChunkRule::Auto => {
                let per = file_size.div_ceil(AUTO_TARGET_CHUNKS).max(1);
                per.checked_next_power_of_two().unwrap_or(AUTO_MAX_CHUNK).clamp(AUTO_MIN_CHUNK, AUTO_MAX_CHUNK)
            }
        }
    }

    /// Check a rule that came from outside (a manifest off the wire).
    pub fn validate(&self) -> Result<(), ChunkSizeError> {
        match *self {
            ChunkRule::Auto => Ok(()),
            ChunkRule::Fixed(n) => ChunkRule::fixed(n).map(|_| ()),
        }
    }
}

impl std::str::FromStr for ChunkRule {
    type Err = ChunkSizeError;
    /// `auto`, or a size such as `4M`, `4MiB`, `1048576`, `512k`, `1G` (see [`crate::units`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(ChunkRule::Auto);
        }
        ChunkRule::fixed(parse_size(s)?)
    }
}

impl std::fmt::Display for ChunkRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkRule::Auto => f.write_str("auto (1-128 MiB per file, ~256 chunks per file)"),
            ChunkRule::Fixed(n) => write!(f, "fixed {}", human_size(*n)),
        }
    }
}

/// Number of chunks of a file (0 for an empty file).
pub fn chunk_count(file_size: u64, chunk_size: u64) -> u64 {
    file_size.div_ceil(chunk_size.max(1))
}

/// `(offset, len)` of each chunk of a file, in order.
pub fn chunk_ranges(file_size: u64, chunk_size: u64) -> impl Iterator<Item = (u64, u32)> {
    let cs = chunk_size.max(1);
    (0..chunk_count(file_size, cs)).map(move |i| {
        let off = i * cs;
        (off, (file_size - off).min(cs) as u32)
    })
}

/// The file hash derived from its chunk hashes (see module doc).
pub fn file_hash(file_size: u64, chunk_size: u64, chunk_hashes: impl IntoIterator<Item = ChunkHash>) -> ChunkHash {
    let mut st = blake2b_simd::Params::new().hash_length(HASH_LEN).personal(b"lanscatter-file1").to_state();
    st.update(&file_size.to_le_bytes());
    st.update(&chunk_size.to_le_bytes());
    for h in chunk_hashes {
        st.update(&h.0);
    }
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(st.finalize().as_bytes());
    ChunkHash(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_rule_sizes() {
        let r = ChunkRule::Auto;
        assert_eq!(r.chunk_size_for(0), MIB);
        assert_eq!(r.chunk_size_for(1), MIB);
        assert_eq!(r.chunk_size_for(256 * MIB), MIB);
        assert_eq!(r.chunk_size_for(256 * MIB + 1), 2 * MIB);
        assert_eq!(r.chunk_size_for(GIB), 4 * MIB);
        assert_eq!(r.chunk_size_for(32 * GIB), 128 * MIB);
        assert_eq!(r.chunk_size_for(500 * GIB), 128 * MIB);
        assert_eq!(r.chunk_size_for(u64::MAX), 128 * MIB);
        for size in [0, 1, MIB, 3 * MIB + 7, 700 * MIB, 5 * GIB + 3, 1 << 45] {
            let cs = r.chunk_size_for(size);
            assert!(cs.is_power_of_two() && (AUTO_MIN_CHUNK..=AUTO_MAX_CHUNK).contains(&cs));
            let n = chunk_count(size, cs);
            // Between the clamps a file has 129..=256 chunks.
            if cs > AUTO_MIN_CHUNK && cs < AUTO_MAX_CHUNK {
                assert!((129..=256).contains(&n), "{size}: {n}");
            }
        }
    }

    #[test]
    fn folder_scale_chunk_counts() {
        let r = ChunkRule::Auto;
        let count =
            |sizes: &[(u64, u64)]| -> u64 { sizes.iter().map(|&(n, s)| n * chunk_count(s, r.chunk_size_for(s))).sum() };
        // 1 GiB folders of different shapes: always hundreds of chunks.
        assert!(count(&[(1, GIB)]) >= 256);
        assert!(count(&[(2, 512 * MIB)]) >= 256);
        assert!(count(&[(1024, MIB)]) >= 1024);
        assert!(count(&[(1, 600 * MIB), (1, 424 * MIB)]) >= 256);
        // 500 GiB folders: never millions (worst case is files just below 256 MiB).
        assert!(count(&[(2000, 256 * MIB)]) <= 512 * 1024);
        assert!(count(&[(1, 500 * GIB)]) <= 4000);
        assert!(count(&[(100, 5 * GIB)]) <= 100 * 256);
    }

    #[test]
    fn ranges_cover_file_exactly() {
        assert_eq!(chunk_ranges(0, MIB).count(), 0);
        assert_eq!(chunk_ranges(MIB, MIB).collect::<Vec<_>>(), vec![(0, MIB as u32)]);
        assert_eq!(chunk_ranges(MIB + 1, MIB).collect::<Vec<_>>(), vec![(0, MIB as u32), (MIB, 1)]);
        let v: Vec<_> = chunk_ranges(10 * MIB - 3, MIB).collect();
        assert_eq!(v.len(), 10);
        assert_eq!(v.iter().map(|r| u64::from(r.1)).sum::<u64>(), 10 * MIB - 3);
    }

    #[test]
    fn parse_rules() {
        assert_eq!("auto".parse::<ChunkRule>().unwrap(), ChunkRule::Auto);
        assert_eq!(" AUTO ".parse::<ChunkRule>().unwrap(), ChunkRule::Auto);
        assert_eq!("8M".parse::<ChunkRule>().unwrap(), ChunkRule::Fixed(8 * MIB));
        assert_eq!("4MB".parse::<ChunkRule>().unwrap(), ChunkRule::Fixed(4_000_000));
        assert!(matches!("1".parse::<ChunkRule>(), Err(ChunkSizeError::OutOfRange(1))));
        assert!("2G".parse::<ChunkRule>().is_err());
        let e = "4X".parse::<ChunkRule>().unwrap_err().to_string();
        assert!(e.contains("unknown unit") && e.contains("'auto'"), "{e}");
    }

    #[test]
    fn file_hash_depends_on_everything() {
        let a = ChunkHash::of(b"a");
        let b = ChunkHash::of(b"b");
        let base = file_hash(2, MIB, [a, b]);
        assert_eq!(base, file_hash(2, MIB, [a, b]));
        assert_ne!(base, file_hash(2, MIB, [b, a]));
        assert_ne!(base, file_hash(3, MIB, [a, b]));
        assert_ne!(base, file_hash(2, 2 * MIB, [a, b]));
        assert_ne!(file_hash(0, MIB, []), ChunkHash::of(b""));
    }
}
