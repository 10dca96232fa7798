//! Command-line entry point: one executable, many modes.
//!
//! The mode comes from the subcommand (`lanscatter master …`) or, for installers and shortcuts
//! that cannot pass arguments, from the executable's own name: `lanscatter_master`,
//! `lanscatter-master`, `lanscatter_peer`, `lanscatter_proxy`, `lanscatter_gui` (with or without
//! `.exe`) behave as `lanscatter master`, `lanscatter peer`, `lanscatter proxy`, `lanscatter gui`.
//!
//! Parsing is two-step as in ripgrep: clap turns argv into the raw `*Args` structs here, each
//! subcommand's `run` validates them into its engine's config. Each subcommand lives in its own
//! file so that its flags sit next to the code that interprets them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod completions;
pub mod config;
mod demo;
mod gui;
mod index;
mod master;
mod node;
mod peer;
mod proxy;
pub mod service;
#[cfg(all(windows, feature = "winsvc"))]
mod service_windows;
mod simulate;
mod status;

#[derive(Debug, Parser)]
#[command(
    name = "lanscatter",
    version = crate::VERSION,
    about = "P2P-assisted one-way folder sync from one master to many peers on a LAN",
    propagate_version = true
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Config file: TOML with a [master] and a [peer] table whose keys are the long flag names.
    /// Default: the user's config.toml, else the system's (README: Running as a service).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a folder (read-only) to the swarm and coordinate peers.
    Master(master::MasterArgs),
    /// Join a master's swarm and mirror its folder into a local folder.
    Peer(peer::PeerArgs),
    /// Relay a master's folder to a site behind a slow link: a peer upstream, a master downstream.
    Proxy(proxy::ProxyArgs),
    /// Run the tray app.
    Gui(gui::GuiArgs),
    /// Index a folder (chunk + hash) and print a summary or the manifest.
    Index(index::IndexArgs),
    /// Simulate a swarm in virtual time to measure the planner.
    Simulate(simulate::SimulateArgs),
    /// Run, install or remove `master`/`peer` as a Windows service.
    Service(service::ServiceArgs),
    /// Show it work: a sample folder, a master and peers on this machine, checked byte for byte.
    Demo(demo::DemoArgs),
    /// Ask a running master how the swarm is doing (table, --json, --watch).
    Status(status::StatusArgs),
    /// Print shell completions (bash, zsh, fish, powershell, elvish) to stdout.
    Completions(completions::CompletionsArgs),
    /// Print the man page, or write one per command with --out DIR.
    Manpage(completions::ManpageArgs),
}

/// Subcommand implied by the executable's file name, if any.
pub fn mode_from_argv0(argv0: &std::ffi::OsStr) -> Option<&'static str> {
    let name = std::path::Path::new(argv0).file_name()?.to_str()?.to_ascii_lowercase();
    let stem = name.strip_suffix(".exe").unwrap_or(&name);
    for mode in ["master", "peer", "proxy", "gui"] {
        for sep in ["_", "-"] {
            if stem == format!("lanscatter{sep}{mode}") {
                return Some(mode);
            }
        }
    }
    None
}

/// argv with the implied subcommand inserted after argv[0] when the binary is called by a mode name.
pub fn effective_args(args: Vec<OsString>) -> Vec<OsString> {
    match args.first().and_then(|a0| mode_from_argv0(a0)) {
        Some(mode) => {
            let mut out = Vec::with_capacity(args.len() + 1);
            out.push(args[0].clone());
            out.push(OsString::from(mode));
            out.extend(args.into_iter().skip(1));
            out
        }
        None => args,
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Parse argv, run the chosen mode, and turn its outcome into an exit code.
pub fn main() -> ExitCode {
    // Before parsing: no-args double-click opens the tray; Windows console attach (gui::launch).
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0_mode = args.first().and_then(|a0| mode_from_argv0(a0));
    let cli = match parse(effective_args(crate::gui::launch::prepare(args, argv0_mode))) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(cli.verbose);
    exit_code(dispatch(cli))
}

/// argv parsed with every source of flag values layered in (flag > env > file > default, see
/// [`config`]); an error is printed and becomes the exit code (2, as clap's usage errors).
pub(crate) fn parse(args: Vec<OsString>) -> Result<Cli, ExitCode> {
    let cmd = match config::layered(Cli::command(), &args) {
        Ok(cmd) => cmd,
        Err(err) => {
            eprintln!("lanscatter: error: {err}");
            return Err(ExitCode::from(2));
        }
    };
    let parsed = cmd.try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m));
    parsed.map_err(|e| {
        let _ = e.print();
        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
    })
}

/// Run the chosen mode.
pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Master(a) => master::run(a),
        Command::Peer(a) => peer::run(a),
        Command::Proxy(a) => proxy::run(a),
        Command::Gui(a) => gui::run(a),
        Command::Index(a) => index::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Service(a) => service::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Status(a) => status::run(a),
        Command::Completions(a) => completions::completions(a),
        Command::Manpage(a) => completions::manpage(a),
    }
}

/// A mode's outcome as the process exit code (errors printed).
pub(crate) fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lanscatter: error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping a cause whose text the message before it already quotes
/// (our error types name their source inline, so `{:#}` would print it twice).
fn error_text(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_does_not_repeat_an_inline_source() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let err = anyhow::Error::new(io)
            .context("cannot listen on 127.0.0.1:1: Address already in use; choose another --port");
        assert_eq!(error_text(&err), "cannot listen on 127.0.0.1:1: Address already in use; choose another --port");
        let err = anyhow::anyhow!("disk gone").context("cannot write x");
        assert_eq!(error_text(&err), "cannot write x: disk gone");
    }

    #[test]
    fn argv0_modes() {
        for (name, want) in [
            ("lanscatter_master", Some("master")),
            ("/usr/bin/lanscatter-peer", Some("peer")),
            ("C:\\x\\LANSCATTER_GUI.EXE", None), // backslash is not a separator on Unix
            ("lanscatter_gui.exe", Some("gui")),
            ("lanscatter_proxy", Some("proxy")),
            ("lanscatter", None),
            ("lanscatter_foo", None),
        ] {
            #[cfg(windows)]
            let want = if name.starts_with("C:") { Some("gui") } else { want };
            assert_eq!(mode_from_argv0(std::ffi::OsStr::new(name)), want, "{name}");
        }
    }

    #[test]
    fn argv0_inserts_subcommand() {
        let args: Vec<OsString> = ["lanscatter_peer", "host", "dir"].iter().map(OsString::from).collect();
        let cli = Cli::try_parse_from(effective_args(args)).expect("parses");
        assert!(matches!(cli.command, Command::Peer(_)));
    }
}
