//! The sample folder `lanscatter demo` distributes when it is not given one: what a real share
//! holds in miniature, so the demo exercises what a sync must get right.
//!
//! A mix, in a size the caller picks: MiB-sized incompressible files (most of the bytes, so the
//! throughput shown is not LZ4's), small text files in nested folders, an empty file, an empty
//! folder, a name with non-ASCII letters and spaces, and one file that duplicates another (peers
//! copy it locally instead of downloading it twice). The content is pseudo-random from a fixed
//! seed: fast to make, the same on every run, and not compressible.

use std::io::{self, Write};
use std::path::Path;

/// Sizes of the big files, in turn (odd sizes on purpose: chunks that do not end on a boundary).
const BIG: [u64; 6] = [4 * MIB + 123, MIB, 2 * MIB - 1, 6 * MIB, 3 * MIB + 7, 8 * MIB];
/// Folders the big files go to, in turn.
const BIG_DIRS: [&str; 4] = ["media", "data/set-a", "data/set-b/raw", "builds/2026"];
/// Folders the small text files go to, in turn.
const SMALL_DIRS: [&str; 4] = ["docs", "docs/notes", "docs/specs/v1", "docs/Überblick und Notizen"];
const MIB: u64 = 1024 * 1024;
/// At most this many small files, and at most an eighth of the bytes.
const SMALL_FILES: usize = 24;

/// What goes into one file of the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fill {
    /// Pseudo-random bytes from this seed.
    Random(u64),
    /// Lines of text from this seed.
    Text(u64),
    /// The same bytes as the file at this index of the plan.
    CopyOf(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    rel: String,
    size: u64,
    fill: Fill,
}

/// What [`write`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub files: usize,
    pub bytes: u64,
}

/// The files of a sample of exactly `size` bytes (pure, so the mix is testable).
fn plan(size: u64) -> Vec<Planned> {
    let mut rng = Rng(size ^ 0x5eed_cafe);
    let mut out = vec![Planned { rel: "empty.txt".into(), size: 0, fill: Fill::Text(0) }];
    let mut rest = size;
    let mut small_budget = size / 8;
    for i in 0..SMALL_FILES {
        let s = 200 + rng.next() % (16 * 1024);
        if s > small_budget {
            break;
        }
        small_budget -= s;
        rest -= s;
        let dir = SMALL_DIRS[i % SMALL_DIRS.len()];
        out.push(Planned { rel: format!("{dir}/note {i:02}.txt"), size: s, fill: Fill::Text(rng.next()) });
    }
    let mut big = 0;
    while rest > 0 {
        // The first big file leaves room for its duplicate and for more files.
        let cap = if big == 0 { (rest / 3).max(1) } else { rest };
        let s = BIG[big % BIG.len()].min(cap);
        let dir = BIG_DIRS[big % BIG_DIRS.len()];
        out.push(Planned { rel: format!("{dir}/file-{big}.bin"), size: s, fill: Fill::Random(rng.next()) });
        rest -= s;
        if big == 0 && s <= rest {
            let of = out.len() - 1;
            out.push(Planned { rel: "media/copy of file-0.bin".into(), size: s, fill: Fill::CopyOf(of) });
            rest -= s;
        }
        big += 1;
    }
    out
}

/// Write a sample of exactly `size` bytes under `root` (created), plus an empty folder.
pub fn write(root: &Path, size: u64) -> io::Result<Sample> {
    let files = plan(size);
    std::fs::create_dir_all(root.join("empty folder"))?;
    for f in &files {
        let path = root.join(&f.rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let source = match f.fill {
            Fill::CopyOf(i) => &files[i],
            _ => f,
        };
        let mut out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        fill(&mut out, source)?;
        out.flush()?;
    }
    Ok(Sample { files: files.len(), bytes: size })
}

fn fill(out: &mut impl Write, f: &Planned) -> io::Result<()> {
    let mut left = f.size;
    let mut buf = Vec::with_capacity(64 * 1024);
    let (seed, text) = match f.fill {
        Fill::Random(seed) => (seed, false),
        Fill::Text(seed) => (seed, true),
        // `write` hands over the original instead.
        Fill::CopyOf(_) => return Err(io::Error::other("a copy has no content of its own")),
    };
    let mut rng = Rng(seed);
    let mut line = 0u64;
    while left > 0 {
        buf.clear();
        while buf.len() < 64 * 1024 {
            if text {
                line += 1;
                let word = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                buf.extend_from_slice(format!("{line:5}: the {word} stays byte-identical on every peer\n").as_bytes());
            } else {
                buf.extend_from_slice(&rng.next().to_le_bytes());
            }
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

const WORDS: [&str; 6] = ["report", "drawing", "installer", "template", "photo", "dataset"];

/// xorshift64*: plenty for sample data, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_the_promised_mix_of_exactly_the_size() {
        for size in [0, 1, 1000, MIB, 32 * MIB, 100 * MIB + 3] {
            let p = plan(size);
            assert_eq!(p.iter().map(|f| f.size).sum::<u64>(), size, "size {size}");
            let mut names: Vec<&str> = p.iter().map(|f| f.rel.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), p.len(), "names are unique for size {size}");
        }
        let p = plan(32 * MIB);
        assert!(p.iter().any(|f| f.size == 0), "an empty file");
        assert!(p.iter().filter(|f| f.size >= MIB).count() >= 4, "MiB-sized files: {p:?}");
        assert!(p.iter().filter(|f| f.size < 20 * 1024 && f.size > 0).count() >= 10, "small files");
        assert!(p.iter().any(|f| f.rel.matches('/').count() >= 2), "nested folders");
        let copy = p.iter().find_map(|f| match f.fill {
            Fill::CopyOf(i) => Some((f, i)),
            _ => None,
        });
        let (copy, of) = copy.expect("a duplicate");
        assert_eq!(copy.size, p[of].size);
        assert!(matches!(p[of].fill, Fill::Random(_)));
    }

    #[test]
    fn written_sample_matches_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        let s = write(dir.path(), 3 * MIB + 5).unwrap();
        assert_eq!(s.bytes, 3 * MIB + 5);
        assert!(dir.path().join("empty folder").is_dir());
        let a = std::fs::read(dir.path().join("media/file-0.bin")).unwrap();
        let b = std::fs::read(dir.path().join("media/copy of file-0.bin")).unwrap();
        assert!(a == b && !a.is_empty());
        assert!(a.windows(8).take(1000).collect::<std::collections::HashSet<_>>().len() > 900, "not repetitive");
        let text = std::fs::read_to_string(dir.path().join("docs/note 00.txt")).unwrap();
        assert!(text.contains("byte-identical"));
        let total: u64 =
            plan(3 * MIB + 5).iter().map(|f| std::fs::metadata(dir.path().join(&f.rel)).unwrap().len()).sum();
        assert_eq!(total, 3 * MIB + 5);
    }
}
