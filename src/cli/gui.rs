//! `lanscatter gui`: the tray app (see `crate::gui`; the tray itself needs the `gui` feature).
//!
//! Also reached by the `lanscatter_gui` executable name and, on Windows and macOS, by starting the
//! executable without arguments from Explorer/Finder (see `crate::gui::launch`).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct GuiArgs {
    /// Settings file (default: gui.json in the user config dir). The instance lock and gui.log
    /// live beside it.
    #[arg(long, env = "LANSCATTER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print status as JSON lines on stdout (one object per line, with a "type" field).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: GuiArgs) -> anyhow::Result<ExitCode> {
    Ok(crate::gui::run(crate::gui::GuiOptions { config: args.config, json: args.json })?)
}
