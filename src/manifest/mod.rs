//! The folder index: files, dirs, fixed-size chunks and their BLAKE2b hashes.
//!
//! (being implemented by the index issue; only the shared chunk identity type lives here so far)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
}
