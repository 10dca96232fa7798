//! `lanscatter master <source-dir>`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// Folder to distribute. It is never written to.
    pub source_dir: PathBuf,
}

pub fn run(_args: MasterArgs) -> anyhow::Result<ExitCode> {
    super::not_implemented("master")
}
