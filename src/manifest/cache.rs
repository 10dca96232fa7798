//! Persistent per-folder hash cache: re-indexing an unchanged folder reads no file contents.
//!
//! Where: one file per indexed folder under the user cache dir (`directories`:
//! `~/.cache/lanscatter/index` on Linux, `~/Library/Caches/…` on macOS, `%LOCALAPPDATA%\…` on
//! Windows), named by a hash of the folder's canonical path. Never inside the indexed folder:
//! the master's folder is read-only, and a cache there would itself be indexed and synced.
//!
//! Validity: an entry is reused only if the file's [`FileStamp`] (size, mtime with nanoseconds,
//! and on Unix ctime and inode) is unchanged and the chunk size the rule gives is the same.
//! ctime catches a same-size rewrite whose mtime was restored (`touch -r`, `cp -p`, rsync -t),
//! which mtime alone misses; the inode catches a file replaced by rename.
//!
//! Racy entries: filesystem timestamps are coarse (kernel ticks; 2 s on FAT), so a file
//! rewritten within the same tick right after being hashed would keep its stamp. As in git's
//! "racy clean" rule, an entry is stored only if its mtime and ctime are older than the start of
//! hashing by more than [`ScanOptions::racy_window`](super::ScanOptions); a younger file is
//! simply hashed again next time.
//!
//! Integrity: magic, format version, the folder path (foreign caches are detected), and a
//! BLAKE2b checksum over everything. Anything that does not check out is discarded with a
//! warning and rebuilt, never trusted. Writes go to a temp file that is then renamed, so a crash
//! never leaves a half-written cache.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ChunkHash, Mtime, HASH_LEN};

const MAGIC: &[u8; 4] = b"LSHC";
const VERSION: u16 = 1;

/// Where the hash cache lives.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The user cache dir (`directories::ProjectDirs`); disabled with a warning if the OS has none.
    #[default]
    Default,
    /// A specific directory (tests use a temp dir so they never touch the real user cache).
    Dir(PathBuf),
    /// No cache: hash everything, store nothing.
    Disabled,
}

impl CacheMode {
    /// The directory holding cache files, if caching is on and a location exists.
    pub fn dir(&self) -> Option<PathBuf> {
        match self {
            CacheMode::Default => {
                directories::ProjectDirs::from("", "", "lanscatter").map(|d| d.cache_dir().join("index"))
            }
            CacheMode::Dir(p) => Some(p.clone()),
            CacheMode::Disabled => None,
        }
    }
}

/// What must be unchanged for a cached hash to be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime: Mtime,
    /// Unix ctime (inode change time); zero where the OS has none.
    pub ctime: Mtime,
    /// Unix inode number; zero where the OS has none.
    pub inode: u64,
}

impl FileStamp {
    pub fn of(meta: &fs::Metadata) -> Self {
        let mtime = meta.modified().map(Mtime::from).unwrap_or_default();
        #[cfg(unix)]
        let (ctime, inode) = {
            use std::os::unix::fs::MetadataExt;
            (Mtime { secs: meta.ctime(), nanos: meta.ctime_nsec().clamp(0, 999_999_999) as u32 }, meta.ino())
        };
        #[cfg(not(unix))]
        let (ctime, inode) = (Mtime::default(), 0);
        FileStamp { size: meta.len(), mtime, ctime, inode }
    }

    /// Newest of the timestamps that a modification updates.
    fn newest(&self) -> Mtime {
        self.mtime.max(self.ctime)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    stamp: FileStamp,
    chunk_size: u64,
    hashes: Vec<ChunkHash>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    root: String,
    entries: Vec<(String, Entry)>,
}

/// The loaded cache of one folder, plus what this scan learned.
#[derive(Debug)]
pub struct HashCache {
    file: Option<PathBuf>,
    root: String,
    old: HashMap<String, Entry>,
    new: Vec<(String, Entry)>,
    /// Number of lookups served; a save is skipped when nothing changed.
    hits: usize,
    misses: usize,
}

impl HashCache {
    /// Load the cache for `root` (canonical path). Returns the cache and, if an existing cache
    /// file had to be discarded, a message saying why.
    pub fn load(mode: &CacheMode, root: &Path) -> (Self, Option<String>) {
        let root_str = root.to_string_lossy().into_owned();
        let file = mode.dir().map(|d| d.join(format!("{}.idx", ChunkHash::of(root_str.as_bytes()).to_hex())));
        let mut cache =
            HashCache { file: file.clone(), root: root_str, old: HashMap::new(), new: Vec::new(), hits: 0, misses: 0 };
        if *mode == CacheMode::Default && file.is_none() {
            return (cache, Some("no user cache directory on this system; hash cache disabled".into()));
        }
        let Some(file) = file else { return (cache, None) };
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (cache, None),
            Err(e) => {
                return (cache, Some(format!("cannot read hash cache {}: {e}; re-hashing everything", file.display())))
            }
        };
        match parse(&bytes, &cache.root) {
            Ok(entries) => {
                cache.old = entries.into_iter().collect();
                (cache, None)
            }
            Err(why) => {
                (cache, Some(format!("hash cache {} discarded ({why}); re-hashing everything", file.display())))
            }
        }
    }

    /// Cached chunk hashes for `path`, if its stamp and chunk size are unchanged.
    pub fn lookup(&mut self, path: &str, stamp: &FileStamp, chunk_size: u64) -> Option<Vec<ChunkHash>> {
        let hit = self
            .old
            .get(path)
            .filter(|e| e.stamp == *stamp && e.chunk_size == chunk_size)
            .filter(|e| e.hashes.len() as u64 == super::chunking::chunk_count(stamp.size, chunk_size))
            .map(|e| e.hashes.clone());
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }

    /// Record a verified result for saving, unless the file is too young to be trusted later
    /// (see the module doc on racy entries).
    pub fn record(
        &mut self,
        path: &str,
        stamp: FileStamp,
        chunk_size: u64,
        hashes: &[ChunkHash],
        trusted_before: Mtime,
    ) {
        // Nothing is saved without a cache file: recording would only hold a second copy of
        // every path and hash until the scan ends (160 bytes per file, 32 MB at 200,000 files).
        if self.file.is_some() && stamp.newest() < trusted_before {
            self.new.push((path.to_string(), Entry { stamp, chunk_size, hashes: hashes.to_vec() }));
        }
    }

    /// Keep an entry that was served from the cache (so it survives into the saved file).
    pub fn keep(&mut self, path: &str) {
        if self.file.is_none() {
            return; // nothing is saved: see `record`
        }
        if let Some(e) = self.old.get(path) {
            self.new.push((path.to_string(), e.clone()));
        }
    }

    /// Number of files served from the cache.
    pub fn hits(&self) -> usize {
        self.hits
    }

    /// Write the cache if anything changed: new hashes, or files gone since the last save.
    pub fn save(mut self) -> Result<(), String> {
        let Some(file) = self.file.take() else { return Ok(()) };
        if self.misses == 0 && self.new.len() == self.old.len() {
            return Ok(());
        }
        self.new.sort_by(|a, b| a.0.cmp(&b.0));
        let body = CacheFile { root: self.root, entries: self.new };
        let mut bytes = Vec::with_capacity(64 + body.entries.len() * 96);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        let mut bytes = postcard::to_extend(&body, bytes).map_err(|e| format!("cannot encode hash cache: {e}"))?;
        let sum = ChunkHash::of(&bytes);
        bytes.extend_from_slice(&sum.0);
        let dir = file.parent().unwrap_or(Path::new("."));
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(dir)?;
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &file).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        };
        write().map_err(|e| format!("cannot write hash cache {}: {e}", file.display()))
    }
}

fn parse(bytes: &[u8], root: &str) -> Result<Vec<(String, Entry)>, String> {
    if bytes.len() < 6 + HASH_LEN || &bytes[..4] != MAGIC {
        return Err("not a lanscatter hash cache".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - HASH_LEN);
    if ChunkHash::of(body).0 != sum {
        return Err("checksum mismatch: file is corrupt".into());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(format!("format version {version}, this build uses {VERSION}"));
    }
    let cf: CacheFile = postcard::from_bytes(&body[6..]).map_err(|e| format!("undecodable: {e}"))?;
    if cf.root != root {
        return Err(format!("it belongs to folder {:?}, not this one", cf.root));
    }
    Ok(cf.entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64) -> FileStamp {
        FileStamp { size, mtime: Mtime { secs: 100, nanos: 5 }, ctime: Mtime { secs: 100, nanos: 5 }, inode: 7 }
    }

    #[test]
    fn save_load_hit_and_miss() {
        let dir = tempfile::tempdir().unwrap();
        let mode = CacheMode::Dir(dir.path().to_path_buf());
        let root = Path::new("/some/folder");
        let (mut c, warn) = HashCache::load(&mode, root);
        assert!(warn.is_none());
        assert!(c.lookup("a", &stamp(3), 1024).is_none());
        let h = vec![ChunkHash::of(b"abc")];
        c.record("a", stamp(3), 1024, &h, Mtime { secs: 1000, nanos: 0 });
        c.record("young", stamp(3), 1024, &h, Mtime { secs: 50, nanos: 0 });
        c.save().unwrap();

        let (mut c, warn) = HashCache::load(&mode, root);
        assert!(warn.is_none());
        assert_eq!(c.lookup("a", &stamp(3), 1024), Some(h.clone()));
        assert!(c.lookup("young", &stamp(3), 1024).is_none(), "racy entry was not stored");
        assert!(c.lookup("a", &stamp(3), 2048).is_none(), "chunk size changed");
        let mut s = stamp(3);
        s.ctime.nanos += 1;
        assert!(c.lookup("a", &s, 1024).is_none(), "ctime changed");
        let mut s = stamp(3);
        s.inode = 8;
        assert!(c.lookup("a", &s, 1024).is_none(), "inode changed");
        assert_eq!(c.hits(), 1);
    }

    #[test]
    fn corrupt_and_foreign_caches_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mode = CacheMode::Dir(dir.path().to_path_buf());
        let root = Path::new("/f");
        let (mut c, _) = HashCache::load(&mode, root);
        c.record("a", stamp(1), 1024, &[ChunkHash::of(b"x")], Mtime { secs: 1000, nanos: 0 });
        c.save().unwrap();
        let file = fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        let good = fs::read(&file).unwrap();

        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        fs::write(&file, &bad).unwrap();
        let (mut c, warn) = HashCache::load(&mode, root);
        assert!(warn.unwrap().contains("corrupt"));
        assert!(c.lookup("a", &stamp(1), 1024).is_none());

        fs::write(&file, b"garbage").unwrap();
        assert!(HashCache::load(&mode, root).1.unwrap().contains("not a lanscatter"));

        // Same bytes placed under another folder's name: detected as foreign.
        let other = Path::new("/g");
        let other_file = dir.path().join(format!("{}.idx", ChunkHash::of(b"/g").to_hex()));
        fs::write(&other_file, &good).unwrap();
        let (mut c, warn) = HashCache::load(&mode, other);
        assert!(warn.unwrap().contains("belongs to folder"));
        assert!(c.lookup("a", &stamp(1), 1024).is_none());
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let (mut c, warn) = HashCache::load(&CacheMode::Disabled, Path::new("/x"));
        assert!(warn.is_none());
        c.record("a", stamp(1), 1, &[], Mtime { secs: 1000, nanos: 0 });
        c.save().unwrap();
    }
}
