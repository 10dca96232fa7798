//! The seeded fuzz driver of `tests/fuzz_*.rs`: mutates the corpus (`fuzz/corpus/<target>/`)
//! plus seeds built here with the real encoders, and feeds every input to a target of
//! [`targets`] under a bound on the memory it may allocate.
//!
//! It is the CI-sized counterpart of the coverage-guided AFL++ runs (`scripts/fuzz.sh`): no
//! coverage feedback, but deterministic (`LANSCATTER_FUZZ_SEED`), dependency-free and fast.
//! `LANSCATTER_FUZZ_CASES` sets the number of cases per target (the defaults keep the whole
//! set well under a minute in a debug build). A failing input is written under the system temp
//! folder and its path printed, so it can be added to the corpus as a regression seed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

pub use super::fuzz_targets as targets;
use super::Rng;

/// Cases per target: `LANSCATTER_FUZZ_CASES`, else `default`.
pub fn cases(default: u64) -> u64 {
    std::env::var("LANSCATTER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("LANSCATTER_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed)
}

/// The checked-in corpus of `target`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files.into_iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// How many bytes one call of a target may allocate for an input.
pub type Bound = Box<dyn Fn(&[u8]) -> usize>;

/// `factor` bytes per input byte plus 4 MiB: decoders bound lengths from the input before
/// allocating, so a short input claiming a huge length fails this.
pub fn per_byte(factor: usize) -> Bound {
    Box::new(move |input| input.len().saturating_mul(factor).saturating_add(4 << 20))
}

/// Run `target` on `cases` mutated inputs drawn from `seeds` and the checked-in corpus, each
/// call within `bound`. Prints the number of executions.
pub fn run(name: &str, cases: u64, seeds: Vec<Vec<u8>>, bound: Bound) {
    let target = targets::target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let mut pool = corpus(name);
    pool.extend(seeds);
    pool.push(Vec::new());
    let mut rng = Rng::new(seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let started = std::time::Instant::now();
    for case in 0..cases {
        // The seeds themselves first, unmutated.
        let input = match pool.get(case as usize) {
            Some(s) => s.clone(),
            None => mutate(&mut rng, &pool),
        };
        let limit = bound(&input);
        let outcome = catch_unwind(AssertUnwindSafe(|| peak_alloc(|| target(&input))));
        match outcome {
            Ok(peak) if peak <= limit => {}
            Ok(peak) => fail(name, case, &input, &format!("allocated {peak} bytes for {} input bytes", input.len())),
            Err(_) => fail(name, case, &input, "panicked (message above)"),
        }
        // Long runs report as they go, so a run cut short still tells how far it got.
        if cases >= 100_000 && (case + 1) % (cases / 20) == 0 {
            println!("fuzz {name}: {} of {cases} cases passed, {:.0} s", case + 1, started.elapsed().as_secs_f64());
        }
    }
    println!("fuzz {name}: {cases} cases without a failure in {:.1} s", started.elapsed().as_secs_f64());
}

fn fail(name: &str, case: u64, input: &[u8], what: &str) -> ! {
    let path = std::env::temp_dir().join(format!("lanscatter-fuzz-{name}-{case}.bin"));
    let _ = std::fs::write(&path, input);
    panic!("fuzz target {name}, case {case}: {what}; input ({} bytes) saved to {}", input.len(), path.display());
}

/// Bytes that make decoders take their length and varint paths.
const INTERESTING: &[&[u8]] = &[
    &[0],
    &[0xff],
    &[0x7f],
    &[0x80],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    b"\"",
    b"..",
    b"/",
    b"\\",
    b"\0",
    b"[",
    b"{",
    b"9999999999999999999999",
];

/// One input: a pool entry with 1 to 8 random edits (bit flips, interesting bytes, insertions,
/// deletions, duplications, truncation, splices of another entry).
pub fn mutate(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = pool[rng.below(pool.len() as u64) as usize].clone();
    for _ in 0..1 + rng.below(8) {
        let at = |rng: &mut Rng, v: &Vec<u8>| rng.below(v.len() as u64 + 1) as usize;
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                v[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = at(rng, &v);
                let bytes = INTERESTING[rng.below(INTERESTING.len() as u64) as usize];
                v.splice(i..i, bytes.iter().copied());
            }
            3 => {
                let (a, b) = (at(rng, &v), at(rng, &v));
                v.drain(a.min(b)..a.max(b));
            }
            4 => {
                let (a, b) = (at(rng, &v), at(rng, &v));
                let piece: Vec<u8> = v[a.min(b)..a.max(b)].to_vec();
                let i = at(rng, &v);
                v.splice(i..i, piece);
            }
            5 => {
                let i = at(rng, &v);
                v.truncate(i);
            }
            6 => {
                let other = &pool[rng.below(pool.len() as u64) as usize];
                let (a, b) = (rng.below(other.len() as u64 + 1) as usize, rng.below(other.len() as u64 + 1) as usize);
                let i = at(rng, &v);
                v.splice(i..i, other[a.min(b)..a.max(b)].iter().copied());
            }
            _ => {
                let i = at(rng, &v);
                let n = rng.below(16) as usize;
                v.splice(i..i, rng.bytes(n));
            }
        }
    }
    v
}

/// Allocation counter of the fuzz test binaries (each installs it as its global allocator):
/// live bytes per thread, so [`peak_alloc`] can bound what one decoder call allocates.
pub struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        track(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Most bytes live at once on this thread during `f`, above what was live before it (0 when
/// the binary does not install [`CountingAlloc`]).
pub fn peak_alloc(f: impl FnOnce()) -> usize {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    f();
    (PEAK.with(Cell::get) - start).max(0) as usize
}
