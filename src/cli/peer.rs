//! `lanscatter peer <server-address> <dst-dir>`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// Master address, `host` or `host:port` (default port 10564).
    pub server: String,
    /// Folder to mirror the master's folder into. Files the master lacks are deleted.
    pub dst_dir: PathBuf,
}

pub fn run(_args: PeerArgs) -> anyhow::Result<ExitCode> {
    super::not_implemented("peer")
}
