//! Service mode: how `master` and `peer` learn that they should stop, and the `service`
//! subcommand that runs them under the Windows service manager.
//!
//! A service manager stops a process with a signal (systemd: SIGTERM) or a control request
//! (Windows: the SCM's stop); a user with Ctrl-C, Ctrl-Break or by closing the console. All of
//! them end in [`stop_signal`], which the `master` and `peer` loops wait on and answer with
//! `Engine::shutdown()`: in-flight chunk fetches are dropped (their bytes were never written,
//! and a restart re-hashes whatever the folder holds), uploads get a few seconds, and the
//! process exits 0 after one line naming what stopped it.
//!
//! `lanscatter service run master|peer …` is what an installed Windows service starts: it
//! re-parses the rest as an ordinary command line (so flags, `LANSCATTER_*` and the config file
//! work as in a console) and turns the SCM's stop into [`request_stop`]. `service install` and
//! `service uninstall` register and remove it (`service_windows.rs`). systemd needs none of
//! this: its units (`packaging/systemd/`) run `master`/`peer` directly.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::LazyLock;

use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServiceAction {
    /// Run `master …` or `peer …` under the Windows service manager (what an installed
    /// service starts; in a console run `lanscatter master …` instead).
    Run(ServiceCommand),
    /// Register `master …` or `peer …` as a Windows service started at boot (administrator).
    Install(ServiceCommand),
    /// Stop and remove a service `install` registered (administrator).
    Uninstall {
        /// `master` or `peer`: removes the service named lanscatter-master or lanscatter-peer.
        mode: String,
        /// Service name, if `install` was given one.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServiceCommand {
    /// Service name (default: lanscatter-master or lanscatter-peer).
    #[arg(long)]
    pub name: Option<String>,
    /// `master` or `peer`, then its folder(s) and flags as on the command line.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// The mode a service command runs; only the long-running node modes make sense as services.
pub fn mode_of(command: &[OsString]) -> anyhow::Result<&'static str> {
    match command.first().and_then(|m| m.to_str()) {
        Some("master") => Ok("master"),
        Some("peer") => Ok("peer"),
        other => anyhow::bail!(
            "a service runs `master …` or `peer …`, not {:?}; e.g. lanscatter service install master C:\\Share",
            other.unwrap_or_default()
        ),
    }
}

/// The service's name: the one given, else `lanscatter-<mode>`.
pub fn service_name(mode: &str, name: Option<&str>) -> String {
    name.map(str::to_string).unwrap_or_else(|| format!("lanscatter-{mode}"))
}

static STOP: LazyLock<watch::Sender<Option<&'static str>>> = LazyLock::new(|| watch::channel(None).0);

/// Make [`stop_signal`] resolve as if a signal named `why` had come (the Windows service stop).
pub fn request_stop(why: &'static str) {
    STOP.send_replace(Some(why));
}

/// Resolves with the name of the first stop request: a signal, a console event, or
/// [`request_stop`]. Signal handlers are installed on the first poll, so poll it before the
/// engine's work begins (the `master`/`peer` loops do: it sits in their first `select!`).
pub async fn stop_signal() -> &'static str {
    let mut rx = STOP.subscribe();
    let requested = async move {
        // The guard `wait_for` returns must not live across the next await (not `Send`).
        let why = rx.wait_for(Option::is_some).await.ok().and_then(|r| *r);
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        why = os_signal() => why,
        why = requested => why,
    }
}

#[cfg(unix)]
async fn os_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot watch for SIGTERM and SIGINT ({e}): they will end the process without a clean stop");
            std::future::pending().await
        }
    }
}

#[cfg(windows)]
async fn os_signal() -> &'static str {
    use tokio::signal::windows;
    // Each event on its own: one that cannot be watched (no console under the SCM) must not
    // disable the others.
    let ctrl_c = async {
        match windows::ctrl_c() {
            Ok(mut s) => {
                s.recv().await;
                "Ctrl-C"
            }
            Err(_) => std::future::pending().await,
        }
    };
    let ctrl_break = async {
        match windows::ctrl_break() {
            Ok(mut s) => {
                s.recv().await;
                "Ctrl-Break"
            }
            Err(_) => std::future::pending().await,
        }
    };
    let close = async {
        match windows::ctrl_close() {
            Ok(mut s) => {
                s.recv().await;
                "console close"
            }
            Err(_) => std::future::pending().await,
        }
    };
    let shutdown = async {
        match windows::ctrl_shutdown() {
            Ok(mut s) => {
                s.recv().await;
                "system shutdown"
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        why = ctrl_c => why,
        why = ctrl_break => why,
        why = close => why,
        why = shutdown => why,
    }
}

#[cfg(not(any(unix, windows)))]
async fn os_signal() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        Err(_) => std::future::pending().await,
    }
}

#[cfg(all(windows, feature = "winsvc"))]
pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    super::service_windows::run(args)
}

#[cfg(all(windows, not(feature = "winsvc")))]
pub fn run(_: ServiceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this lanscatter was built without Windows service support; rebuild with `--features winsvc`, \
         or run `lanscatter master …`/`peer …` under another service wrapper"
    )
}

#[cfg(not(windows))]
pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    if let ServiceAction::Run(c) | ServiceAction::Install(c) = &args.action {
        mode_of(&c.command)?;
    }
    anyhow::bail!(
        "`lanscatter service` manages Windows services; here run `lanscatter master …` or `lanscatter peer …` \
         under the system's service manager (systemd units: packaging/systemd; README: Running as a service)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_node_modes_become_services() {
        let c = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(mode_of(&c(&["master", "C:\\Share"])).unwrap(), "master");
        assert_eq!(mode_of(&c(&["peer", "srv", "D:\\Mirror", "--secret-file", "s"])).unwrap(), "peer");
        let err = mode_of(&c(&["gui"])).unwrap_err().to_string();
        assert!(err.contains("\"gui\"") && err.contains("service install master"), "{err}");
        assert_eq!(service_name("peer", None), "lanscatter-peer");
        assert_eq!(service_name("peer", Some("mirror-d")), "mirror-d");
    }

    #[tokio::test]
    async fn a_stop_request_ends_the_wait_with_its_name() {
        let waiting = tokio::spawn(stop_signal());
        tokio::task::yield_now().await;
        request_stop("service stop");
        assert_eq!(waiting.await.unwrap(), "service stop");
        // Late waiters (the peer loop after a restart inside one process) see it at once.
        assert_eq!(stop_signal().await, "service stop");
    }
}
