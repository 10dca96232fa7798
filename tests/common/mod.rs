//! Shared helpers for integration tests: deterministic pseudo-random data and folder trees,
//! temp folders, scan options that never touch the real user cache, and privilege checks.
//!
//! Deterministic on purpose (seeded xorshift, no `rand` dependency): a failing test can be
//! re-run with the same tree. Each test file uses only part of this module.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lanscatter::manifest::{CacheMode, ScanOptions};

/// Small, fast, seeded PRNG (xorshift64*), good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
    /// Half the time compressible text, else random bytes: sync tests cover both LZ4 paths.
    pub fn mixed_bytes(&mut self, len: usize) -> Vec<u8> {
        if self.below(2) == 1 {
            return self.bytes(len);
        }
        let mut v = Vec::with_capacity(len + 32);
        while v.len() < len {
            let x = self.next_u64();
            v.extend_from_slice(format!("line {} of some text\n", x % 1000).as_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Write `data` to `root/rel`, creating parent dirs.
pub fn write_file(root: &Path, rel: &str, data: &[u8]) -> PathBuf {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("create parent dirs");
    }
    fs::write(&p, data).expect("write test file");
    p
}

/// Set the modification time of the file at `path`.
pub fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

/// One entry found by [`walk`].
#[derive(Debug)]
pub struct Found {
    /// Path below the root, with `/`.
    pub rel: String,
    pub path: PathBuf,
    /// Of the entry itself: links are not followed.
    pub meta: fs::Metadata,
}

/// Every entry below `root` (files, folders, links; a link to a folder is not entered), parents
/// before children. The root's `.lanscatter` (a peer's marker, never synced) is left out, as
/// the engines' own scans leave it out: a peer's folder compares equal to its master's.
///
/// Sync tests walk folders while a peer is still working, so an entry that vanishes between
/// listing and reading is simply left out: callers compare whole trees and poll again.
pub fn walk(root: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if dir == root && lanscatter::paths::is_state_dir(&e.file_name().to_string_lossy()) {
                continue;
            }
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                dirs.push(path.clone());
            }
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push(Found { rel, path, meta });
        }
    }
    out
}

/// The relative path of every entry under `root`, sorted.
pub fn tree_paths(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(root).into_iter().map(|f| f.rel).collect();
    v.sort();
    v
}

/// Relative path → contents of every file under `root` (folders left out).
pub fn tree_contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(root).into_iter().filter(|f| !f.meta.is_dir()).filter_map(|f| Some((f.rel, fs::read(&f.path).ok()?))).collect()
}

/// Write `root/rel` (parents created) with a fixed mtime: `mtime_secs` plus 123456789 ns (so
/// sub-second precision is checked too).
pub fn write_file_at(root: &Path, rel: &str, data: &[u8], mtime_secs: i64) -> PathBuf {
    let p = write_file(root, rel, data);
    let secs = std::time::Duration::from_secs(mtime_secs as u64);
    set_mtime(&p, std::time::UNIX_EPOCH + secs + std::time::Duration::from_nanos(123_456_789));
    p
}

/// Shape of a generated tree.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    pub files: usize,
    /// Sizes are drawn log-uniformly between these bounds (inclusive)...
    pub min_size: u64,
    pub max_size: u64,
    /// ...or, when this is not empty, from these sizes.
    pub sizes: Vec<u64>,
    /// Maximum directory depth below the root.
    pub max_depth: usize,
    /// Fraction (0..=1) of files that duplicate an earlier file's content.
    pub dup_fraction: f64,
    /// Empty directories to add (each with an empty directory inside).
    pub empty_dirs: usize,
    /// Half the files compressible text ([`Rng::mixed_bytes`]) instead of all random bytes.
    pub compressible: bool,
    /// Fixed mtimes: the n-th file written gets this plus n seconds (see [`write_file_at`]).
    pub mtime: Option<i64>,
    /// Add an empty file, unicode names (`日本語/ファイル.txt`, `ünïcödé/ñame with spaces.bin`)
    /// and two files with the first file's content (`copies/a.bin`, `copies/b.bin`).
    pub special_files: bool,
}

impl Default for TreeSpec {
    fn default() -> Self {
        TreeSpec {
            files: 20,
            min_size: 0,
            max_size: 256 * 1024,
            sizes: Vec::new(),
            max_depth: 3,
            dup_fraction: 0.1,
            empty_dirs: 2,
            compressible: false,
            mtime: None,
            special_files: false,
        }
    }
}

/// Generate a deterministic random tree under `root`; returns the relative paths (with `/`) of
/// the files written, with their sizes.
pub fn random_tree(root: &Path, seed: u64, spec: &TreeSpec) -> Vec<(String, u64)> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut contents: Vec<Vec<u8>> = Vec::new();
    for i in 0..spec.files {
        let depth = rng.below(spec.max_depth as u64 + 1);
        let mut rel = String::new();
        for d in 0..depth {
            rel.push_str(&format!("d{d}_{}/", rng.below(3)));
        }
        rel.push_str(&format!("f{i}.bin"));
        let data = if !contents.is_empty() && (rng.below(1000) as f64) < spec.dup_fraction * 1000.0 {
            contents[rng.below(contents.len() as u64) as usize].clone()
        } else {
            let size = match spec.sizes.len() as u64 {
                0 => log_uniform(&mut rng, spec.min_size, spec.max_size),
                n => spec.sizes[rng.below(n) as usize],
            };
            if spec.compressible {
                rng.mixed_bytes(size as usize)
            } else {
                rng.bytes(size as usize)
            }
        };
        out.push((rel, data.len() as u64));
        contents.push(data);
    }
    if spec.special_files {
        let first = contents.first().cloned().unwrap_or_default();
        for (rel, data) in [
            ("empty.txt", Vec::new()),
            ("日本語/ファイル.txt", "こんにちは".as_bytes().to_vec()),
            ("ünïcödé/ñame with spaces.bin", rng.mixed_bytes(1000)),
            ("copies/a.bin", first.clone()),
            ("copies/b.bin", first),
        ] {
            out.push((rel.to_string(), data.len() as u64));
            contents.push(data);
        }
    }
    for (n, ((rel, _), data)) in out.iter().zip(&contents).enumerate() {
        match spec.mtime {
            Some(t) => write_file_at(root, rel, data, t + n as i64),
            None => write_file(root, rel, data),
        };
    }
    for i in 0..spec.empty_dirs {
        fs::create_dir_all(root.join(format!("empty dir {i}/nested empty"))).expect("create empty dir");
    }
    out
}

fn log_uniform(rng: &mut Rng, min: u64, max: u64) -> u64 {
    if max <= min {
        return min;
    }
    let lo = ((min.max(1)) as f64).ln();
    let hi = (max as f64).ln();
    let x = lo + (hi - lo) * (rng.below(1_000_000) as f64 / 1_000_000.0);
    let v = x.exp() as u64;
    if min == 0 && rng.below(10) == 0 {
        0
    } else {
        v.clamp(min, max)
    }
}

/// Scan options whose hash cache lives in `cache_dir` (never the real user cache) and that
/// trusts files however recently they were written (tests write and scan within milliseconds).
pub fn scan_opts(cache_dir: &Path) -> ScanOptions {
    ScanOptions {
        cache: CacheMode::Dir(cache_dir.to_path_buf()),
        racy_window: std::time::Duration::ZERO,
        ..ScanOptions::default()
    }
}

/// Scan options with the cache disabled.
pub fn no_cache_opts() -> ScanOptions {
    ScanOptions { cache: CacheMode::Disabled, ..ScanOptions::default() }
}

/// True when running as root (permission bits do not stop root).
pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Set a file's permission bits.
#[cfg(unix)]
pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Run `lanscatter index` on `dir` as an unprivileged user. As root, permission bits do not
/// apply, so the real binary is started with uid/gid 65534 (nobody) to make them apply.
#[cfg(unix)]
pub fn index_as_unprivileged(dir: &Path, extra: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = cli(["index"]);
    cmd.arg(dir).arg("--no-cache").args(extra);
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd.output().expect("run lanscatter")
}

/// A temp dir that an unprivileged user can enter (tempdir creates 0700 dirs).
#[cfg(unix)]
pub fn shared_tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    chmod(d.path(), 0o755);
    d
}

#[cfg(unix)]
fn binary_reachable_by_nobody() -> bool {
    // The test binary path must be traversable and executable by "other" for the uid switch.
    use std::os::unix::fs::PermissionsExt;
    let mut p = bin();
    loop {
        match fs::metadata(&p) {
            Ok(m) if m.permissions().mode() & 0o001 != 0 => {}
            _ => return false,
        }
        if !p.pop() || p.as_os_str().is_empty() {
            return true;
        }
    }
}

/// As root with a test binary uid 65534 cannot reach, permission bits cannot be exercised: says
/// so (the test is skipped).
#[cfg(unix)]
pub fn permission_bits_do_not_apply() -> bool {
    let skip = is_root() && !binary_reachable_by_nobody();
    if skip {
        eprintln!("SKIPPED: running as root and the test binary is not reachable by uid 65534, so permission bits cannot be exercised");
    }
    skip
}

/// Path of the built `lanscatter` binary; start it with [`cli`] or [`Proc`].
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanscatter"))
}

/// Starting the binary: run to completion, or long-running with line waiting.
pub mod process;

/// Xvfb, trayer, D-Bus notifications and xdotool for the tray tests (Linux, `gui` feature).
#[cfg(all(feature = "gui", target_os = "linux"))]
pub mod desktop;
pub use process::{cli, Lines, Proc};

/// Run a seeded simulation to its end and check the planner's promises (every peer completes;
/// no duplicate order, slot overrun, order from a node without the chunk, or upload from a
/// 0-slot peer).
pub fn simulate_checked(cfg: &lanscatter::sim::SimConfig) -> lanscatter::sim::SimResult {
    let r = lanscatter::sim::run(cfg, f64::INFINITY, None);
    assert!(r.all_complete, "not all peers completed: {r:?}");
    assert_eq!(
        (r.duplicate_orders, r.slot_violations, r.bad_source_orders, r.zero_slot_uploads),
        (0, 0, 0, 0),
        "planner broke a promise: {r:?}"
    );
    r
}

/// Helpers for the sync integration tests (engines, trees with mtimes, polling).
pub mod sync;

/// The fault-injecting storage middleware (full, slow, failing, lying disks).
pub mod storage;

/// A recording, bit-flipping TCP proxy.
pub mod proxy;

/// The seeded fuzz driver and its targets (`tests/fuzz_*.rs`; the AFL++ binary in `fuzz/`
/// includes the targets by path).
pub mod fuzz;
pub mod fuzz_seeds;
pub mod fuzz_targets;
