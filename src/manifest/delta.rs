//! Manifest deltas: what changed between two manifests, so a one-file change costs a peer the
//! size of that file's entry on the wire instead of the whole manifest (~100 bytes per file:
//! 100 MB for a million files, per peer, per change).
//!
//! A [`Delta`] names the paths that left (files and dirs) and carries every entry that is new
//! or changed, each list sorted by path; a rename is a removal plus an addition. It is built
//! by the master ([`Delta::between`], one merge pass over both sorted lists) and encoded once
//! for all peers ([`Delta::to_bytes`]: magic `LSMD`, a format version, postcard).
//!
//! The receiver applies it to the manifest it holds ([`Delta::apply`]) and must then check the
//! result against the hash of the master's full encoding ([`manifest_hash`]), which the master
//! sends beside the delta: a delta applied to the wrong base, or a corrupt one, can yield a
//! manifest that validates but is not the master's. [`Delta::apply`] validates the result the
//! way a full manifest from the network is validated, so nothing it returns is unsafe to use.

use serde::{Deserialize, Serialize};

use super::{ChunkHash, ChunkRule, DirEntry, FileEntry, Manifest, ManifestError, ScanWarning};

const MAGIC: &[u8; 4] = b"LSMD";
const VERSION: u16 = 1;

/// The change from one manifest to another (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Paths of files in the base but not in the new manifest, sorted.
    pub removed_files: Vec<String>,
    /// Files new or changed in the new manifest, sorted by path.
    pub files: Vec<FileEntry>,
    /// Paths of directories in the base but not in the new manifest, sorted.
    pub removed_dirs: Vec<String>,
    /// Directories new in the new manifest, sorted by path.
    pub dirs: Vec<DirEntry>,
    /// The new manifest's rule and warnings, whole (they are small).
    pub chunk_rule: ChunkRule,
    pub warnings: Vec<ScanWarning>,
}

/// Why a delta could not be turned into a manifest.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("not a lanscatter manifest delta (bad magic bytes)")]
    BadMagic,
    #[error("manifest delta format version {0} is not supported by this build (expects {VERSION}); run the same lanscatter version on master and peers")]
    UnsupportedVersion(u16),
    #[error("corrupt manifest delta: {0}")]
    Decode(#[from] postcard::Error),
    #[error("the manifest delta does not fit the manifest this peer holds: {0}")]
    WrongBase(String),
    #[error("the manifest delta gives an invalid manifest: {0}")]
    Invalid(#[from] ManifestError),
}

/// The hash a receiver checks a manifest rebuilt from a delta against: of its full encoding
/// ([`Manifest::to_bytes`], deterministic for equal manifests).
pub fn manifest_hash(encoded: &[u8]) -> ChunkHash {
    ChunkHash::of(encoded)
}

/// Paths in `old` but not in `new`, and entries of `new` not equal in `old` (both sorted by key).
fn split<'a, T: PartialEq + Clone>(old: &'a [T], new: &'a [T], key: impl Fn(&T) -> &str) -> (Vec<String>, Vec<T>) {
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => key(a).cmp(key(b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                removed.push(key(&old[i]).to_string());
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added.push(new[j].clone());
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if old[i] != new[j] {
                    added.push(new[j].clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    (removed, added)
}

/// `base` without the `removed` keys, with `upserts` in place (all three sorted by key).
fn merge<T: Clone>(base: &[T], removed: &[String], upserts: &[T], key: impl Fn(&T) -> &str) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(base.len() + upserts.len());
    let (mut r, mut u) = (0, 0);
    for b in base {
        let k = key(b);
        while u < upserts.len() && key(&upserts[u]) < k {
            out.push(upserts[u].clone());
            u += 1;
        }
        if r < removed.len() && removed[r] == k {
            r += 1;
            continue;
        }
        if u < upserts.len() && key(&upserts[u]) == k {
            out.push(upserts[u].clone());
            u += 1;
            continue;
        }
        out.push(b.clone());
    }
    if r < removed.len() {
        return Err(format!("it removes {:?}, which that manifest does not have", removed[r]));
    }
    out.extend(upserts[u..].iter().cloned());
    Ok(out)
}

impl Delta {
    /// What turns `base` into `new`.
    pub fn between(base: &Manifest, new: &Manifest) -> Delta {
        let (removed_files, files) = split(&base.files, &new.files, |f| f.path.as_str());
        let (removed_dirs, dirs) = split(&base.dirs, &new.dirs, |d| d.path.as_str());
        Delta { removed_files, files, removed_dirs, dirs, chunk_rule: new.chunk_rule, warnings: new.warnings.clone() }
    }

    /// True if applying it changes nothing but the warnings and the rule.
    pub fn is_empty(&self) -> bool {
        self.removed_files.is_empty() && self.files.is_empty() && self.removed_dirs.is_empty() && self.dirs.is_empty()
    }

    /// `base` with this change applied, validated like a manifest from the network.
    pub fn apply(&self, base: &Manifest) -> Result<Manifest, DeltaError> {
        let files = merge(&base.files, &self.removed_files, &self.files, |f| f.path.as_str());
        let dirs = merge(&base.dirs, &self.removed_dirs, &self.dirs, |d| d.path.as_str());
        let m = Manifest {
            files: files.map_err(DeltaError::WrongBase)?,
            dirs: dirs.map_err(DeltaError::WrongBase)?,
            chunk_rule: self.chunk_rule,
            warnings: self.warnings.clone(),
        };
        m.validate()?;
        Ok(m)
    }

    /// Binary form: magic, format version, postcard.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.files.len() * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // Plain data into a Vec cannot fail to serialize; a failure would be a bug in the types.
        postcard::to_extend(self, out).expect("delta serializes to postcard")
    }

    /// Parse bytes from [`Delta::to_bytes`]; the entries are checked when applied.
    pub fn from_bytes(bytes: &[u8]) -> Result<Delta, DeltaError> {
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(DeltaError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(DeltaError::UnsupportedVersion(version));
        }
        let (d, rest): (Delta, &[u8]) = postcard::take_from_bytes(&bytes[6..])?;
        if !rest.is_empty() {
            return Err(DeltaError::Decode(postcard::Error::DeserializeBadEncoding));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::super::chunking::{chunk_ranges, file_hash};
    use super::super::{Chunk, Mtime};
    use super::*;

    fn file(path: &str, size: u64, seed: u8) -> FileEntry {
        let cs = ChunkRule::Auto.chunk_size_for(size);
        let chunks: Vec<Chunk> = chunk_ranges(size, cs)
            .map(|(offset, size)| Chunk { offset, size, hash: ChunkHash::of(&[seed, offset as u8]) })
            .collect();
        let hash = file_hash(size, cs, chunks.iter().map(|c| c.hash));
        FileEntry { path: path.into(), size, mtime: Mtime { secs: 1, nanos: 0 }, chunk_size: cs, chunks, hash }
    }

    fn manifest(files: Vec<FileEntry>, dirs: &[&str]) -> Manifest {
        let dirs = dirs.iter().map(|d| DirEntry { path: (*d).into() }).collect();
        let mut m = Manifest { files, dirs, chunk_rule: ChunkRule::Auto, warnings: vec![] };
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
        m
    }

    /// The property: applying the delta between two manifests to the first gives the second,
    /// also through the wire form, with its hash.
    fn round_trip(a: &Manifest, b: &Manifest) -> Delta {
        let d = Delta::from_bytes(&Delta::between(a, b).to_bytes()).unwrap();
        let got = d.apply(a).unwrap();
        assert_eq!(&got, b);
        assert_eq!(manifest_hash(&got.to_bytes()), manifest_hash(&b.to_bytes()));
        d
    }

    #[test]
    fn apply_of_between_is_the_new_manifest() {
        let base = manifest(vec![file("a", 10, 1), file("d/b", 0, 2), file("d/c", 3 << 20, 3)], &["d", "e"]);
        // Nothing changed: an empty delta.
        assert!(round_trip(&base, &base).is_empty());
        // One file changed: only its entry travels.
        let mut one = base.clone();
        one.files[2] = file("d/c", 3 << 20, 9);
        let d = round_trip(&base, &one);
        assert_eq!((d.files.len(), d.removed_files.len()), (1, 0));
        // A rename, a deletion, an empty file, a new dir and a removed one.
        let renamed = manifest(vec![file("a", 10, 1), file("e/b", 0, 2), file("d/z", 0, 4)], &["d", "e", "e/f"]);
        let d = round_trip(&base, &renamed);
        assert_eq!(d.removed_files, vec!["d/b".to_string(), "d/c".to_string()]);
        round_trip(&renamed, &base);
        // From and to nothing.
        let empty = manifest(vec![], &[]);
        round_trip(&empty, &base);
        round_trip(&base, &empty);
    }

    #[test]
    fn pseudo_random_changes_round_trip() {
        let mut x: u64 = 0x9e37_79b9;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let names: Vec<String> = (0..40).map(|i| format!("f{i:02}")).collect();
        let mut pick = |seed: u8| {
            let mut files = Vec::new();
            for p in &names {
                if next(3) != 0 {
                    files.push(file(p, next(3000), seed ^ next(4) as u8));
                }
            }
            manifest(files, &[])
        };
        let mut prev = pick(0);
        for round in 1..30 {
            let new = pick(round);
            round_trip(&prev, &new);
            prev = new;
        }
    }

    #[test]
    fn a_delta_for_another_base_or_garbage_is_refused() {
        let a = manifest(vec![file("a", 10, 1), file("b", 10, 2)], &[]);
        let b = manifest(vec![file("b", 10, 2)], &[]);
        let other = manifest(vec![file("x", 10, 1)], &[]);
        let d = Delta::between(&a, &b);
        assert!(matches!(d.apply(&other), Err(DeltaError::WrongBase(_))));
        // A delta adding a file under a dir the base lacks gives an invalid manifest.
        let with_dir = manifest(vec![file("d/x", 1, 1)], &["d"]);
        let d = Delta::between(&with_dir, &manifest(vec![file("d/x", 1, 1), file("d/y", 1, 2)], &["d"]));
        assert!(matches!(d.apply(&other), Err(DeltaError::Invalid(_))));
        let bytes = Delta::between(&a, &b).to_bytes();
        assert!(matches!(Delta::from_bytes(b"LSMF\x01\x00"), Err(DeltaError::BadMagic)));
        let mut v9 = bytes.clone();
        v9[4] = 9;
        assert!(matches!(Delta::from_bytes(&v9), Err(DeltaError::UnsupportedVersion(9))));
        for cut in [0, 6, bytes.len() - 1] {
            assert!(Delta::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
