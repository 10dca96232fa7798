//! `lanscatter completions <shell>` and `lanscatter manpage [--out DIR]`: shell completions and
//! man pages generated from the clap definitions in this module tree, so they never drift from
//! the real flags.
//!
//! Completions go to stdout (the shell's usual install step redirects them). Man pages: without
//! `--out` the top-level page `lanscatter(1)` goes to stdout; with `--out DIR` one page per
//! command is written there (`lanscatter.1`, `lanscatter-master.1`, …), which is how the Linux
//! release archive gets its `man/` folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManpageArgs {
    /// Write one page per command into this folder (made if missing) instead of printing
    /// `lanscatter(1)` to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn command() -> clap::Command {
    super::Cli::command()
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "lanscatter", &mut out);
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out).and_then(|()| stdout.flush()).context("cannot write the completions to stdout")?;
    Ok(ExitCode::SUCCESS)
}

pub fn manpage(args: ManpageArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.out else {
        // Without the `help` subcommand, as `generate_to` renders it: no page points to a
        // `lanscatter-help(1)` that is never written.
        let mut out = Vec::new();
        clap_mangen::Man::new(command().disable_help_subcommand(true))
            .render(&mut out)
            .context("cannot render the man page")?;
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&out).and_then(|()| stdout.flush()).context("cannot write the man page to stdout")?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot make {}; give a folder you can write with --out", dir.display()))?;
    clap_mangen::generate_to(command(), &dir)
        .with_context(|| format!("cannot write the man pages into {}; give a folder you can write", dir.display()))?;
    eprintln!("lanscatter manpage: wrote the man pages into {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
