//! `lanscatter index <dir>`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Folder to index.
    pub dir: PathBuf,
}

pub fn run(_args: IndexArgs) -> anyhow::Result<ExitCode> {
    super::not_implemented("index")
}
