//! Binary form of a manifest and structural validation of manifests from outside.
//!
//! Format: 4 magic bytes `LSMF`, a little-endian `u16` format version, then the manifest in
//! postcard (a maintained, compact serde format; `bincode` is unmaintained, RUSTSEC-2025-0141).
//! Chunk hashes are raw 16-byte arrays there, hex in JSON.
//!
//! A manifest received from the network is untrusted input that later decides where a peer
//! writes. [`Manifest::validate`] therefore checks every invariant a well-behaved [`scan`]
//! guarantees, so no later layer has to: valid wire paths, sorted unique entries, every parent
//! directory listed, no path both a file and a dir, and chunks that tile each file exactly as
//! the manifest's rule says, with a consistent file hash.
//!
//! [`scan`]: super::scan

use super::chunking::{self, ChunkSizeError};
use super::Manifest;
use crate::paths::{validate_wire_path, PathError};

const MAGIC: &[u8; 4] = b"LSMF";
const VERSION: u16 = 1;

/// Why bytes or JSON could not be accepted as a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a lanscatter manifest (bad magic bytes)")]
    BadMagic,
    #[error("manifest format version {0} is not supported by this build (expects {VERSION}); run the same lanscatter version on master and peers")]
    UnsupportedVersion(u16),
    #[error("corrupt manifest: {0}")]
    Decode(#[from] postcard::Error),
    #[error("corrupt manifest JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest has an unsafe path: {0}")]
    BadPath(#[from] PathError),
    #[error("manifest entries are not sorted or not unique at {0:?}")]
    NotSorted(String),
    #[error("manifest lists {0:?} as both a file and a directory")]
    FileAndDir(String),
    #[error("manifest entry {0:?} has no parent directory entry")]
    MissingParent(String),
    #[error("manifest chunk rule is invalid: {0}")]
    BadRule(#[from] ChunkSizeError),
    #[error("manifest file {path:?} has inconsistent chunks: {reason}")]
    BadChunks { path: String, reason: String },
}

pub(super) fn encode(m: &Manifest) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + m.chunk_count() * 32 + m.files.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    // Serializing plain data structs into a Vec cannot fail (no maps with non-string keys, no
    // I/O); a failure would be a bug in the types, so it is loud.
    let mut out = postcard::to_extend(m, out).expect("manifest serializes to postcard");
    // The estimate above is generous; the master keeps these bytes as long as the manifest.
    out.shrink_to_fit();
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    if bytes.len() < 6 || &bytes[..4] != MAGIC {
        return Err(ManifestError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(ManifestError::UnsupportedVersion(version));
    }
    let (mut m, rest): (Manifest, &[u8]) = postcard::take_from_bytes(&bytes[6..])?;
    if !rest.is_empty() {
        return Err(ManifestError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    m.validate()?;
    // serde grows the lists by doubling from a cautious start (it must not trust a length
    // off the wire): up to twice the entries' size at rest, for as long as the manifest lives.
    m.files.shrink_to_fit();
    m.dirs.shrink_to_fit();
    Ok(m)
}

impl Manifest {
    /// Parse and validate JSON as printed by `lanscatter index --json`.
    pub fn from_json(s: &str) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_str(s)?;
        m.validate()?;
        Ok(m)
    }

    /// Check every structural invariant (see module doc).
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.chunk_rule.validate()?;
        for pair in self.dirs.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(ManifestError::NotSorted(pair[1].path.clone()));
            }
        }
        for pair in self.files.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(ManifestError::NotSorted(pair[1].path.clone()));
            }
        }
        let parent_ok = |p: &str| match p.rfind('/') {
            None => Ok(()),
            Some(i) if self.has_dir(&p[..i]) => Ok(()),
            Some(_) => Err(ManifestError::MissingParent(p.to_string())),
        };
        for d in &self.dirs {
            validate_wire_path(&d.path)?;
            parent_ok(&d.path)?;
        }
        for f in &self.files {
            validate_wire_path(&f.path)?;
            parent_ok(&f.path)?;
            if self.has_dir(&f.path) {
                return Err(ManifestError::FileAndDir(f.path.clone()));
            }
            let bad = |reason: String| ManifestError::BadChunks { path: f.path.clone(), reason };
            let want_cs = self.chunk_rule.chunk_size_for(f.size);
            if f.chunk_size != want_cs {
                return Err(bad(format!("chunk size {} but the rule gives {want_cs}", f.chunk_size)));
            }
            let n = chunking::chunk_count(f.size, f.chunk_size);
            if f.chunks.len() as u64 != n {
                return Err(bad(format!("{} chunks, expected {n}", f.chunks.len())));
            }
            for (c, (off, len)) in f.chunks.iter().zip(chunking::chunk_ranges(f.size, f.chunk_size)) {
                if c.offset != off || c.size != len {
                    return Err(bad(format!("chunk at {} size {} should be at {off} size {len}", c.offset, c.size)));
                }
            }
            if f.hash != chunking::file_hash(f.size, f.chunk_size, f.chunks.iter().map(|c| c.hash)) {
                return Err(bad("file hash does not match its chunk hashes".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::chunking::MIB;
    use super::super::{Chunk, ChunkHash, ChunkRule, DirEntry, FileEntry, Mtime, ScanWarning};
    use super::*;

    fn file(path: &str, size: u64, rule: ChunkRule) -> FileEntry {
        let cs = rule.chunk_size_for(size);
        let chunks: Vec<Chunk> = chunking::chunk_ranges(size, cs)
            .map(|(offset, size)| Chunk { offset, size, hash: ChunkHash::of(&offset.to_le_bytes()) })
            .collect();
        let hash = chunking::file_hash(size, cs, chunks.iter().map(|c| c.hash));
        FileEntry {
            path: path.into(),
            size,
            mtime: Mtime { secs: 1_700_000_000, nanos: 123 },
            chunk_size: cs,
            chunks,
            hash,
        }
    }

    fn sample() -> Manifest {
        let rule = ChunkRule::Auto;
        Manifest {
            files: vec![file("a.txt", 0, rule), file("dir/big.bin", 3 * MIB + 5, rule), file("ünï.txt", 10, rule)],
            dirs: vec![DirEntry { path: "dir".into() }, DirEntry { path: "dir/empty".into() }],
            chunk_rule: rule,
            warnings: vec![ScanWarning::Symlink { path: "l".into(), target: "/etc".into() }],
        }
    }

    #[test]
    fn postcard_and_json_round_trip() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), m);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
        // Binary is much smaller than JSON (hashes raw, varints).
        assert!(bytes.len() * 2 < json.len(), "{} vs {}", bytes.len(), json.len());
    }

    #[test]
    fn garbage_is_rejected() {
        let bytes = sample().to_bytes();
        assert!(matches!(Manifest::from_bytes(b""), Err(ManifestError::BadMagic)));
        assert!(matches!(Manifest::from_bytes(b"XXXX\x01\x00"), Err(ManifestError::BadMagic)));
        let mut v2 = bytes.clone();
        v2[4] = 9;
        assert!(matches!(Manifest::from_bytes(&v2), Err(ManifestError::UnsupportedVersion(9))));
        for cut in [6, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(Manifest::from_bytes(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Manifest::from_bytes(&extra).is_err());
    }

    #[test]
    fn hostile_manifests_are_rejected() {
        let check = |f: &dyn Fn(&mut Manifest), want: fn(&ManifestError) -> bool| {
            let mut m = sample();
            f(&mut m);
            let err = Manifest::from_bytes(&m.to_bytes()).expect_err("must be rejected");
            assert!(want(&err), "{err:?}");
        };
        check(&|m| m.files[0].path = "../evil".into(), |e| matches!(e, ManifestError::BadPath(_)));
        check(&|m| m.dirs[0].path = "/abs".into(), |e| matches!(e, ManifestError::BadPath(_)));
        check(&|m| m.files.swap(0, 1), |e| matches!(e, ManifestError::NotSorted(_)));
        check(&|m| m.files[1] = m.files[0].clone(), |e| matches!(e, ManifestError::NotSorted(_)));
        check(&|m| m.files[1].path = "nodir/big.bin".into(), |e| matches!(e, ManifestError::MissingParent(_)));
        check(&|m| m.dirs.insert(0, DirEntry { path: "a.txt".into() }), |e| matches!(e, ManifestError::FileAndDir(_)));
        check(&|m| m.files[1].chunk_size = 2 * MIB, |e| matches!(e, ManifestError::BadChunks { .. }));
        check(
            &|m| {
                m.files[1].chunks.pop();
            },
            |e| matches!(e, ManifestError::BadChunks { .. }),
        );
        check(&|m| m.files[1].chunks[1].offset += 1, |e| matches!(e, ManifestError::BadChunks { .. }));
        check(&|m| m.files[1].chunks[0].hash = ChunkHash::of(b"x"), |e| matches!(e, ManifestError::BadChunks { .. }));
        check(&|m| m.chunk_rule = ChunkRule::Fixed(0), |e| matches!(e, ManifestError::BadRule(_)));
    }
}
