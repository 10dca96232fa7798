//! `lanscatter service run|install|uninstall` on Windows, with the `windows-service` crate.
//!
//! An installed service's command line is `lanscatter.exe service run --name <name> master …`
//! (or `peer …`). `run` hands the process to the service control dispatcher, whose service
//! thread re-parses `master …` as an ordinary command line (flags, `LANSCATTER_*` and the config
//! file apply as in a console), reports Running, and runs it; the SCM's Stop or Shutdown becomes
//! [`super::service::request_stop`], which the master/peer loop answers with a clean
//! `Engine::shutdown()`, and the service reports Stopped with the command's exit code.
//! Type-checked on Linux with `cargo check --target x86_64-pc-windows-gnu` (README: Running as
//! a service); it cannot run here.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode, ServiceInfo,
    ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::service::{mode_of, request_stop, service_name, ServiceAction, ServiceArgs, ServiceCommand};

/// The service's name and command, for the service thread the dispatcher starts.
static COMMAND: OnceLock<(String, Vec<OsString>)> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        ServiceAction::Run(c) => run_under_scm(c),
        ServiceAction::Install(c) => install(c),
        ServiceAction::Uninstall { mode, name } => {
            let mode = mode_of(&[OsString::from(mode)])?;
            uninstall(&service_name(mode, name.as_deref()))
        }
    }
}

fn run_under_scm(c: ServiceCommand) -> anyhow::Result<ExitCode> {
    let name = service_name(mode_of(&c.command)?, c.name.as_deref());
    let _ = COMMAND.set((name.clone(), c.command));
    service_dispatcher::start(&name, ffi_service_main).with_context(|| {
        format!(
            "cannot connect to the Windows service manager as {name}: `service run` is what an installed \
             service starts; in a console run `lanscatter master …` or `lanscatter peer …`"
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn service_main(_scm_args: Vec<OsString>) {
    let Some((name, command)) = COMMAND.get() else { return };
    if let Err(e) = serve(name, command) {
        tracing::error!("service {name}: {e:#}");
    }
}

fn status(state: ServiceState, exit_code: ServiceExitCode) -> ServiceStatus {
    let controls_accepted = match state {
        ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        _ => ServiceControlAccept::empty(),
    };
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        // Engine::shutdown gives uploads and the session up to 15 s.
        wait_hint: Duration::from_secs(20),
        process_id: None,
    }
}

/// The service thread: report Running, run the command until it ends or the SCM stops it.
fn serve(name: &str, command: &[OsString]) -> anyhow::Result<()> {
    let handler = |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            request_stop("service stop");
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(name, handler).context("cannot register the service handler")?;
    handle.set_service_status(status(ServiceState::Running, ServiceExitCode::Win32(0)))?;
    let mut argv = vec![OsString::from("lanscatter")];
    argv.extend(command.iter().cloned());
    let code = match super::parse(argv) {
        Ok(cli) => super::exit_code(super::dispatch(cli)),
        Err(code) => code,
    };
    let exit = if code == ExitCode::SUCCESS { ServiceExitCode::Win32(0) } else { ServiceExitCode::ServiceSpecific(1) };
    handle.set_service_status(status(ServiceState::Stopped, exit))?;
    Ok(())
}

fn install(c: ServiceCommand) -> anyhow::Result<ExitCode> {
    let mode = mode_of(&c.command)?;
    let name = service_name(mode, c.name.as_deref());
    let access = ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE;
    let manager = ServiceManager::local_computer(None::<&str>, access)
        .context("cannot open the service manager: run `lanscatter service install` from an administrator prompt")?;
    let mut launch_arguments: Vec<OsString> =
        vec!["service".into(), "run".into(), "--name".into(), name.clone().into()];
    launch_arguments.extend(c.command);
    let info = ServiceInfo {
        name: name.clone().into(),
        display_name: format!("LANScatter {mode}").into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: std::env::current_exe().context("cannot find this program's path")?,
        launch_arguments,
        dependencies: vec![],
        account_name: None, // LocalSystem
        account_password: None,
    };
    let service = manager.create_service(&info, ServiceAccess::CHANGE_CONFIG).with_context(|| {
        format!("cannot create the service {name}; if it exists, remove it first with `lanscatter service uninstall {mode}`")
    })?;
    let what = if mode == "master" { "serves a folder to" } else { "mirrors a folder from" };
    service.set_description(format!("LANScatter {mode}: {what} a LAN swarm"))?;
    eprintln!("lanscatter: installed the service {name} (starts at boot); start it now with `sc start {name}`");
    Ok(ExitCode::SUCCESS)
}

fn uninstall(name: &str) -> anyhow::Result<ExitCode> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("cannot open the service manager: run `lanscatter service uninstall` from an administrator prompt")?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = manager
        .open_service(name, access)
        .with_context(|| format!("cannot open the service {name}: is it installed under that name (--name)?"))?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        // Stop first so the engine shuts down cleanly; deletion completes once it has stopped.
        let _ = service.stop();
    }
    service.delete().with_context(|| format!("cannot remove the service {name}"))?;
    eprintln!("lanscatter: removed the service {name}");
    Ok(ExitCode::SUCCESS)
}
