//! `lanscatter gui`: the tray app (built with the `gui` feature).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct GuiArgs {}

pub fn run(_args: GuiArgs) -> anyhow::Result<ExitCode> {
    super::not_implemented("gui")
}
