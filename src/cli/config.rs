//! Where a flag's value comes from when the command line does not give it: the environment
//! (`LANSCATTER_<FLAG>`), then a TOML config file, then the built-in default.
//!
//! Services and installers cannot always edit a command line, and secrets belong out of `ps`,
//! so every flag can come from three more places. The precedence (flag > env > file > default)
//! is implemented once, here, on the clap `Command` the derive definitions build, before
//! parsing: every long flag of every subcommand gets `env = LANSCATTER_<FLAG>` (upper case,
//! `-` as `_`), and each value in the config file is installed as that flag's default. clap
//! itself then ranks the command line above the environment above any default. A flag added
//! to any subcommand later gets its variable and its config key with no code of its own.
//! Positional arguments (folders, the master's address) have neither: they stay on the command
//! line, where a service unit names them next to its sandbox paths.
//!
//! The file: `--config FILE` (or `LANSCATTER_CONFIG`), else the first that exists of the user
//! config file (`directories`: `~/.config/lanscatter/config.toml` on Linux) and the system one
//! (`/etc/lanscatter/config.toml` on Unix, `%ProgramData%\LANScatter\config.toml` on Windows).
//! One table per subcommand (`[master]`, `[peer]`, …) whose keys are the long flag names;
//! top-level keys are the global flags (`verbose`). A key or section the command does not have
//! is an error naming it and the file, as is a value the flag would refuse.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

/// Prefix of every flag's environment variable.
pub const ENV_PREFIX: &str = "LANSCATTER_";

/// Why the config file cannot be used; the text names the file and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}; fix the path given with --config or LANSCATTER_CONFIG")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "unknown section [{section}] in the config file {path}; sections are named after the \
         subcommands: {known}"
    )]
    UnknownSection { path: PathBuf, section: String, known: String },
    #[error(
        "unknown key `{key}` in {section} of the config file {path}; keys are the long flag names \
         of that command: {known}"
    )]
    UnknownKey { path: PathBuf, section: String, key: String, known: String },
    #[error("bad value for `{key}` in {section} of the config file {path}: {message}; fix or remove it")]
    BadValue { path: PathBuf, section: String, key: String, message: String },
}

/// The environment variable of a long flag: `upload-slots` → `LANSCATTER_UPLOAD_SLOTS`.
pub fn env_name(long: &str) -> String {
    format!("{ENV_PREFIX}{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// `cmd` with every source layered in: env names on all long flags, then the config file
/// `args` (the full argv) points at, or the default one if it exists.
pub fn layered(cmd: Command, args: &[OsString]) -> Result<Command, ConfigError> {
    let cmd = with_env(cmd);
    // The tray app keeps its settings in its own file, which its own `--config` (and
    // `LANSCATTER_CONFIG`) names: no TOML layering under `gui`.
    if subcommand(args).is_some_and(|s| s == "gui") {
        return Ok(cmd);
    }
    let explicit = config_arg(args).or_else(|| std::env::var_os(env_name("config")).filter(|v| !v.is_empty()));
    let path = match explicit {
        Some(p) => PathBuf::from(p),
        None => match default_files().into_iter().find(|p| p.is_file()) {
            Some(p) => p,
            None => return Ok(cmd),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    with_file(cmd, &text, &path)
}

/// Where a config file is looked for when none is given, in order (the first that exists wins).
pub fn default_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(d) = directories::ProjectDirs::from("", "", "lanscatter") {
        out.push(d.config_dir().join("config.toml"));
    }
    #[cfg(unix)]
    out.push(PathBuf::from("/etc/lanscatter/config.toml"));
    #[cfg(windows)]
    if let Some(pd) = std::env::var_os("ProgramData") {
        out.push(PathBuf::from(pd).join("LANScatter").join("config.toml"));
    }
    out
}

/// Every long flag of `cmd` and its subcommands, recursively, reads `LANSCATTER_<FLAG>` unless
/// it already names its own variable.
pub fn with_env(cmd: Command) -> Command {
    cmd.mut_args(|a| match a.get_long() {
        Some(long) if a.get_env().is_none() && !a.is_positional() => {
            let name = env_name(long);
            a.env(name)
        }
        _ => a,
    })
    .mut_subcommands(with_env)
}

/// The subcommand in argv: the first argument after argv[0] that is not a flag (the only
/// global flag with a value, `--config`, is stepped over with its value).
fn subcommand(args: &[OsString]) -> Option<&OsString> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--config" {
            it.next();
        } else if !a.to_string_lossy().starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// The value of `--config FILE` / `--config=FILE` in argv (before clap parses, since the file
/// shapes the parser). A `--` ends the flags.
fn config_arg(args: &[OsString]) -> Option<OsString> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            return None;
        }
        if a == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(OsString::from(v));
        }
    }
    None
}

/// Install the values of the TOML `text` (read from `path`) as defaults of `cmd`'s flags.
pub fn with_file(cmd: Command, text: &str, path: &Path) -> Result<Command, ConfigError> {
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
    let mut built = cmd.clone();
    built.build();
    let mut cmd = cmd;
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) => {
                let (Some(sub), Some(built_sub)) = (cmd.find_subcommand(key), built.find_subcommand(key)) else {
                    let known = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect::<Vec<_>>().join(", ");
                    return Err(ConfigError::UnknownSection { path: path.into(), section: key.clone(), known });
                };
                let mut defaults = Vec::new();
                for (k, v) in section {
                    let place = Place { path, section: format!("[{key}]"), key: k };
                    defaults.push(resolve(sub, built_sub, &place, v)?);
                }
                cmd = cmd.mut_subcommand(key, |mut s| {
                    for (id, vals) in defaults {
                        s = s.mut_arg(id, |a| a.default_values(vals));
                    }
                    s
                });
            }
            v => {
                let place = Place { path, section: "the top level".into(), key };
                let (id, vals) = resolve(&cmd, &built, &place, v)?;
                cmd = cmd.mut_arg(id, |a| a.default_values(vals));
            }
        }
    }
    Ok(cmd)
}

/// Where a value sits in the file, for error messages.
struct Place<'a> {
    path: &'a Path,
    section: String,
    key: &'a str,
}

impl Place<'_> {
    fn bad(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            path: self.path.into(),
            section: self.section.clone(),
            key: self.key.into(),
            message: message.into(),
        }
    }
}

/// The flag a key names in `cmd` (as written, without globals) and its checked values; `built`
/// is the same command after `build()`, whose flags carry their final value parsers.
fn resolve(
    cmd: &Command,
    built: &Command,
    place: &Place,
    value: &toml::Value,
) -> Result<(String, Vec<String>), ConfigError> {
    let settable = |a: &&Arg| !a.is_positional() && a.get_long().is_some_and(|l| l != "config");
    let Some(arg) = cmd.get_arguments().filter(settable).find(|a| a.get_long() == Some(place.key)) else {
        let known = cmd.get_arguments().filter(settable).filter_map(Arg::get_long).collect::<Vec<_>>().join(", ");
        return Err(ConfigError::UnknownKey {
            path: place.path.into(),
            section: place.section.clone(),
            key: place.key.into(),
            known: if known.is_empty() { "none".into() } else { known },
        });
    };
    let many = matches!(arg.get_action(), ArgAction::Append);
    let vals = match value {
        toml::Value::Array(items) if many => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
        toml::Value::Array(_) => return Err(place.bad("this flag takes one value, not a list")),
        v => scalar(v).map(|s| vec![s]),
    };
    let vals = vals.ok_or_else(|| place.bad("expected a string, a number or true/false"))?;
    let id = arg.get_id().to_string();
    let built_arg = built.get_arguments().find(|a| a.get_id() == id.as_str()).unwrap_or(arg);
    check(built_arg, &vals).map_err(|m| place.bad(m))?;
    Ok((id, vals))
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Run `vals` through the flag's own value parser, so a bad value in the file is reported as
/// the file's, not as a puzzling command-line error.
fn check(arg: &Arg, vals: &[String]) -> Result<(), String> {
    let mut probe = Arg::new(arg.get_id().clone())
        .action(arg.get_action().clone())
        .value_parser(arg.get_value_parser().clone())
        .default_values(vals.to_vec());
    if let Some(long) = arg.get_long() {
        probe = probe.long(long.to_string());
    }
    if let Some(names) = arg.get_value_names() {
        probe = probe.value_names(names.to_vec());
    }
    let res = Command::new("lanscatter").arg(probe).try_get_matches_from(["lanscatter"]);
    res.map(|_| ()).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        first.strip_prefix("error: ").unwrap_or(first).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    use crate::cli::{Cli, Command as Sub};

    const FILE: &str = "/etc/lanscatter/test.toml";

    fn parse(file: Option<&str>, argv: &[&str]) -> Result<Cli, String> {
        let mut cmd = with_env(Cli::command());
        if let Some(text) = file {
            cmd = with_file(cmd, text, Path::new(FILE)).map_err(|e| e.to_string())?;
        }
        let m = cmd.try_get_matches_from(argv).map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&m).map_err(|e| e.to_string())
    }

    fn master(cli: Cli) -> crate::cli::master::MasterArgs {
        match cli.command {
            Sub::Master(a) => a,
            other => panic!("not master: {other:?}"),
        }
    }

    // One flag per level, each used by no other test: the env test sets a real variable.
    #[test]
    fn default_level_applies_without_flag_env_or_file() {
        let m = master(parse(None, &["lanscatter", "master", "/srv"]).unwrap());
        assert_eq!(m.upload_slots, 8);
        assert!(!m.no_compress);
    }

    #[test]
    fn file_level_beats_the_default() {
        let file = "verbose = 2\n[master]\nupload-slots = 3\nno-compress = true\nmax-upload = \"100M\"\n";
        let cli = parse(Some(file), &["lanscatter", "master", "/srv"]).unwrap();
        assert_eq!(cli.verbose, 2);
        let m = master(cli);
        assert_eq!((m.upload_slots, m.no_compress, m.max_upload.as_deref()), (3, true, Some("100M")));
    }

    #[test]
    fn flag_level_beats_the_file() {
        let file = "[master]\nupload-slots = 3\n";
        let m = master(parse(Some(file), &["lanscatter", "master", "/srv", "--upload-slots", "5"]).unwrap());
        assert_eq!(m.upload_slots, 5);
    }

    #[test]
    fn env_level_beats_the_file_and_loses_to_the_flag() {
        let var = env_name("rescan-interval");
        assert_eq!(var, "LANSCATTER_RESCAN_INTERVAL");
        std::env::set_var(&var, "7");
        let file = Some("[master]\nrescan-interval = 30\n");
        let from_env = parse(file, &["lanscatter", "master", "/srv"]).map(master);
        let from_flag = parse(file, &["lanscatter", "master", "/srv", "--rescan-interval", "9"]).map(master);
        std::env::remove_var(&var);
        assert_eq!(from_env.unwrap().rescan_interval, 7);
        assert_eq!(from_flag.unwrap().rescan_interval, 9);
        let from_file = parse(file, &["lanscatter", "master", "/srv"]).map(master);
        assert_eq!(from_file.unwrap().rescan_interval, 30);
    }

    #[test]
    fn unknown_keys_and_sections_name_themselves_and_the_file() {
        let err = parse(Some("[peer]\ndownload-slot = 3\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("`download-slot`") && err.contains("[peer]") && err.contains(FILE), "{err}");
        assert!(err.contains("download-slots"), "lists the known keys: {err}");
        let err = parse(Some("[mastr]\nport = 1\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("[mastr]") && err.contains(FILE) && err.contains("master"), "{err}");
        let err = parse(Some("port = 1\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("`port`") && err.contains("top level"), "{err}");
        let err = parse(Some("[master]\nsource-dir = \"/srv\"\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("`source-dir`"), "positionals are not keys: {err}");
    }

    #[test]
    fn bad_values_are_the_files_fault() {
        let err = parse(Some("[master]\nport = \"http\"\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("`port`") && err.contains(FILE) && err.contains("http"), "{err}");
        let err = parse(Some("[master]\nopen = \"yes please\"\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("`open`"), "{err}");
        let err = parse(Some("[master]\nport = [1, 2]\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("one value"), "{err}");
        let err = parse(Some("[master\n"), &["lanscatter"]).unwrap_err();
        assert!(err.contains("not valid TOML") && err.contains(FILE), "{err}");
    }

    #[test]
    fn every_long_flag_has_its_variable() {
        let cmd = with_env(Cli::command());
        for sub in cmd.get_subcommands() {
            for a in sub.get_arguments().filter(|a| a.get_long().is_some()) {
                let env = a.get_env().and_then(|e| e.to_str()).unwrap_or_default();
                assert!(env.starts_with(ENV_PREFIX), "{} --{:?} has env {env:?}", sub.get_name(), a.get_long());
            }
        }
        let m = cmd.find_subcommand("master").unwrap();
        let port = m.get_arguments().find(|a| a.get_long() == Some("port")).unwrap();
        assert_eq!(port.get_env().unwrap(), "LANSCATTER_PORT");
    }

    #[test]
    fn config_flag_is_found_before_parsing() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(config_arg(&a(&["x", "master", "--config", "f.toml", "d"])), Some("f.toml".into()));
        assert_eq!(config_arg(&a(&["x", "--config=g.toml", "peer"])), Some("g.toml".into()));
        assert_eq!(config_arg(&a(&["x", "master", "--", "--config"])), None);
        assert_eq!(
            subcommand(&a(&["x", "-v", "--config", "f.toml", "gui", "--config", "g.json"])),
            Some(&"gui".into())
        );
        assert!(layered(Cli::command(), &a(&["x", "gui", "--config", "/nonexistent/gui.json"])).is_ok());
    }
}
