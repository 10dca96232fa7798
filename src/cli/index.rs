//! `lanscatter index <dir>`: index a folder and print a summary or the manifest as JSON.
//!
//! Useful on its own (checking what the master will serve, scripting with `--json`) and as the
//! benchmark entry point for the indexer (`bench/index.sh`). Warnings (skipped symlinks, names
//! Windows cannot hold, …) go to stderr so `--json` output stays clean. Exit status: 0 when the
//! index is complete, 3 when `--skip-unreadable` had to leave something out (not 2: that is a
//! usage error for every subcommand, README "Exit codes"), 1 on error.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::manifest::{scan, CacheMode, ChunkRule, ScanOptions, ScanProgress};
use crate::units::human_size;

#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Folder to index.
    pub dir: PathBuf,
    /// Print the whole manifest as JSON (files with chunks, dirs, warnings) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Chunk size for every file, e.g. 4M or 4MiB (4 x 1024 x 1024 bytes), 4MB (4,000,000 bytes),
    /// 512K, or `auto` (default: per file, 1-128 MiB, about 256 chunks per file).
    #[arg(long, value_name = "SIZE")]
    pub chunk_size: Option<ChunkRule>,
    /// Hash everything and do not read or write the hash cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Keep the hash cache in this directory instead of the user cache dir.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Leave out unreadable files/dirs with a warning instead of failing (exit status 3).
    #[arg(long)]
    pub skip_unreadable: bool,
    /// Hashing threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    let cache = match (&args.cache_dir, args.no_cache) {
        (_, true) => CacheMode::Disabled,
        (Some(d), false) => CacheMode::Dir(d.clone()),
        (None, false) => CacheMode::Default,
    };
    let bar = progress_bar(args.json);
    let progress = bar.clone().map(|bar| {
        Arc::new(move |p: ScanProgress| {
            bar.set_length(p.bytes_to_hash.max(1));
            bar.set_position(p.bytes_hashed);
        }) as Arc<dyn Fn(ScanProgress) + Send + Sync>
    });
    let opts = ScanOptions {
        chunk_rule: args.chunk_size.unwrap_or_default(),
        cache,
        progress,
        threads: args.threads,
        skip_unreadable: args.skip_unreadable,
        ..ScanOptions::default()
    };
    let started = Instant::now();
    let manifest = scan(&args.dir, &opts).with_context(|| format!("indexing {} failed", args.dir.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let mut err = io::stderr().lock();
    const SHOWN: usize = 50;
    for w in manifest.warnings.iter().take(SHOWN) {
        let _ = writeln!(err, "warning: {w}");
    }
    if manifest.warnings.len() > SHOWN {
        let _ = writeln!(err, "warning: … and {} more (see --json)", manifest.warnings.len() - SHOWN);
    }

    let out = io::stdout().lock();
    let written = if args.json { write_json(out, &manifest) } else { write_summary(out, &args, &manifest, secs) };
    match written {
        Ok(()) => {}
        // `lanscatter index --json | head` closing the pipe is not an error worth reporting.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("writing output"),
    }
    if !manifest.is_complete() {
        let _ = writeln!(err, "lanscatter: the index is INCOMPLETE: unreadable entries were skipped (see warnings)");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn write_json(out: impl Write, manifest: &crate::manifest::Manifest) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    serde_json::to_writer(&mut out, manifest).map_err(io::Error::from)?;
    writeln!(out)?;
    out.flush()
}

fn write_summary(mut out: impl Write, args: &IndexArgs, m: &crate::manifest::Manifest, secs: f64) -> io::Result<()> {
    let total = m.total_bytes();
    let unique = m.unique_chunks();
    let unique_bytes: u64 = unique.iter().map(|(_, s)| s).sum();
    writeln!(out, "Indexed {} in {secs:.2} s", args.dir.display())?;
    writeln!(out, "  files:         {} ({})", m.files.len(), human_size(total))?;
    writeln!(out, "  dirs:          {}", m.dirs.len())?;
    writeln!(out, "  chunks:        {}", m.chunk_count())?;
    writeln!(out, "  unique chunks: {} ({})", unique.len(), human_size(unique_bytes))?;
    writeln!(out, "  chunk rule:    {}", m.chunk_rule)?;
    writeln!(out, "  speed:         {:.2} GB/s", total as f64 / secs.max(1e-9) / 1e9)?;
    if !m.warnings.is_empty() {
        writeln!(out, "  warnings:      {} (printed on stderr)", m.warnings.len())?;
    }
    Ok(())
}

/// A byte progress bar on stderr when it is a terminal (indicatif hides it otherwise).
fn progress_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json || !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(1);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} hashing {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    Some(bar)
}
