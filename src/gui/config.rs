//! Tray-app settings: what the user chose last time, persisted as JSON in the user's config dir.
//!
//! The GUI has no command line to repeat, so everything a `lanscatter master|peer` invocation would
//! say lives here: mode, the folder *per mode* (a master's source and a peer's target are kept
//! apart so switching modes never points a peer at the folder it just served), server address,
//! ports, slots, rate limits, chunk size, start-at-login and auto-start, and the swarm secret
//! (join code) or the choice of an open swarm.
//!
//! Secure by default, as on the command line: a master with no secret set uses the machine's stored
//! one, kept beside this file ([`SwarmSecret::load_or_create`] in its directory); a peer needs the
//! master's join code, or `open` ticked, to start.
//!
//! Where the file lives: `--config PATH` wins, then `LANSCATTER_CONFIG`, then
//! `<config dir>/lanscatter/gui.json` from `directories` (e.g. `~/.config/lanscatter/gui.json`,
//! `%APPDATA%\lanscatter\config\gui.json`, `~/Library/Application Support/lanscatter/gui.json`).
//! Tests point the first two at a temp dir, which also moves the instance lock (it sits beside the file).
//!
//! Unknown keys are ignored and missing keys take defaults (`#[serde(default)]`), so a file written
//! by an older or newer version still loads. Saving writes a temp file and renames it, so a crash
//! mid-save never leaves a truncated config behind.

use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::SwarmSecret;
use crate::transport::{self, AddrError, MASTER_PORT};
use crate::units;

/// How many recent servers the menu remembers.
pub const MAX_RECENT_SERVERS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find a config directory for this user (no home directory?); pass --config PATH")]
    NoConfigDir,
    #[error("cannot read settings file {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("settings file {} is not valid JSON ({source}); fix or delete it to start with defaults", .path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write settings file {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// Which engine the tray app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Peer,
    Master,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Peer => "peer",
            Mode::Master => "master",
        }
    }
}

/// Everything the settings page edits. Rates are bytes/s; `None` means unlimited. Rates and the
/// chunk size are saved as numbers but also read from text in the program's units
/// ([`crate::units`]), which is what the settings page sends: the user types `100Mbit/s` or
/// `12MB/s` there exactly as on the command line, and one parser decides what it means.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub mode: Mode,
    /// Folder a master serves (never written).
    pub master_folder: Option<PathBuf>,
    /// Folder a peer mirrors into (everything in it may be replaced or deleted).
    pub peer_folder: Option<PathBuf>,
    /// Master address for peer mode, `host:port` (port defaults to [`MASTER_PORT`]).
    pub server: String,
    /// Most recent first, without duplicates.
    pub recent_servers: Vec<String>,
    /// Local listen port; 0 picks the mode's default (master 10564, peer any free port).
    pub local_port: u16,
    pub upload_slots: u32,
    pub download_slots: u32,
    #[serde(deserialize_with = "rate_field")]
    pub max_upload_bps: Option<u64>,
    #[serde(deserialize_with = "rate_field")]
    pub max_download_bps: Option<u64>,
    /// Master only: chunk size in bytes; 0 = the engine's default.
    #[serde(deserialize_with = "size_field")]
    pub chunk_size: u64,
    pub start_at_login: bool,
    /// Start the chosen mode as soon as the app launches.
    pub autostart_sync: bool,
    /// Swarm secret (join code). A master without one uses the machine's stored secret; a peer
    /// without one cannot start unless `open`. Empty text counts as none.
    pub secret: Option<String>,
    /// Run or join an open swarm (the original's behaviour): no secret, anyone on the LAN may join.
    pub open: bool,
}

/// Never shows the secret (settings end up in panics and debug output).
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("master_folder", &self.master_folder)
            .field("peer_folder", &self.peer_folder)
            .field("server", &self.server)
            .field("recent_servers", &self.recent_servers)
            .field("local_port", &self.local_port)
            .field("upload_slots", &self.upload_slots)
            .field("download_slots", &self.download_slots)
            .field("max_upload_bps", &self.max_upload_bps)
            .field("max_download_bps", &self.max_download_bps)
            .field("chunk_size", &self.chunk_size)
            .field("start_at_login", &self.start_at_login)
            .field("autostart_sync", &self.autostart_sync)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("open", &self.open)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Peer,
            master_folder: None,
            peer_folder: None,
            server: String::new(),
            recent_servers: Vec::new(),
            local_port: 0,
            upload_slots: 8,
            download_slots: 8,
            max_upload_bps: None,
            max_download_bps: None,
            chunk_size: 0,
            start_at_login: false,
            autostart_sync: false,
            secret: None,
            open: false,
        }
    }
}

impl Settings {
    /// Folder used by the current mode.
    pub fn folder(&self) -> Option<&Path> {
        match self.mode {
            Mode::Master => self.master_folder.as_deref(),
            Mode::Peer => self.peer_folder.as_deref(),
        }
    }

    pub fn set_folder(&mut self, mode: Mode, folder: PathBuf) {
        match mode {
            Mode::Master => self.master_folder = Some(folder),
            Mode::Peer => self.peer_folder = Some(folder),
        }
    }

    /// Server address with the default port filled in; error if empty or malformed.
    pub fn server_addr(&self) -> Result<String, ConfigError> {
        normalize_server(&self.server)
    }

    /// Remember `server` at the top of the recent list (deduplicated, bounded).
    pub fn remember_server(&mut self, server: &str) {
        let server = server.trim().to_string();
        if server.is_empty() {
            return;
        }
        self.recent_servers.retain(|s| s != &server);
        self.recent_servers.insert(0, server);
        self.recent_servers.truncate(MAX_RECENT_SERVERS);
    }

    /// Check that the current mode can start: folder chosen and safe, server given for a peer,
    /// numbers sane. The message says what to fix.
    pub fn validate_for_start(&self) -> Result<(), ConfigError> {
        self.validate_numbers()?;
        let folder = self.folder().ok_or_else(|| {
            ConfigError::Invalid(format!(
                "no {} folder chosen yet: use \"Choose folder…\" or the settings page",
                self.mode.as_str()
            ))
        })?;
        match self.mode {
            Mode::Master => {
                crate::folders::check_master_folder(folder).map_err(|e| ConfigError::Invalid(e.to_string()))?
            }
            Mode::Peer => {
                crate::folders::check_peer_folder(folder, self.master_folder.as_deref())
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
                self.server_addr()?;
                if !self.open && self.swarm_secret()?.is_none() {
                    return Err(ConfigError::Invalid(NO_PEER_SECRET.into()));
                }
            }
        }
        Ok(())
    }

    /// The secret set in the settings, parsed; `None` when none is set (empty text included).
    /// The error is the parser's, which says what to do.
    pub fn swarm_secret(&self) -> Result<Option<SwarmSecret>, ConfigError> {
        match self.secret.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => SwarmSecret::parse(s).map(Some).map_err(|e| ConfigError::Invalid(e.to_string())),
        }
    }

    /// The secret a master started with these settings uses: `None` for an open swarm, else the
    /// one set here, else the machine's stored one in `config_dir` (made now if there is none
    /// yet; the `bool` says so).
    pub fn master_secret(&self, config_dir: &Path) -> Result<Option<(SwarmSecret, bool)>, ConfigError> {
        if self.open {
            return Ok(None);
        }
        if let Some(s) = self.swarm_secret()? {
            return Ok(Some((s, false)));
        }
        let stored = SwarmSecret::load_or_create(config_dir)
            .map_err(|e| ConfigError::Invalid(format!("{e} (or set a secret in Settings, or tick 'open swarm')")))?;
        Ok(Some(stored))
    }

    /// Checks that do not depend on the file system (used when the settings page saves).
    pub fn validate_numbers(&self) -> Result<(), ConfigError> {
        if self.upload_slots > 64 || self.download_slots == 0 || self.download_slots > 64 {
            return Err(ConfigError::Invalid(
                "slots must be between 1 and 64 (upload slots may be 0 to never upload)".into(),
            ));
        }
        if self.max_upload_bps == Some(0) || self.max_download_bps == Some(0) {
            return Err(ConfigError::Invalid(
                "a rate limit of 0 would stall the sync; leave it empty for unlimited".into(),
            ));
        }
        if self.chunk_size != 0 && !(64 * 1024..=1024 * 1024 * 1024).contains(&self.chunk_size) {
            return Err(ConfigError::Invalid(
                "chunk size must be between 64 KiB and 1 GiB (or empty for the default)".into(),
            ));
        }
        if !self.server.trim().is_empty() {
            normalize_server(&self.server)?;
        }
        self.swarm_secret()?;
        Ok(())
    }
}

/// Why a peer without a secret does not start.
pub const NO_PEER_SECRET: &str = "no swarm secret: paste the master's join code in Settings, or tick 'open swarm'";

/// The directory beside the settings file: the instance lock, the log and the stored secret live there.
pub fn config_dir(config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A number as saved, or text as typed (see [`Settings`]).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

/// Bytes per second, or text read by [`units::parse_rate`]; `null` or empty text = unlimited.
fn rate_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<NumberOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrText::Number(n)) => Ok(Some(n)),
        Some(NumberOrText::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(NumberOrText::Text(t)) => units::parse_rate(&t).map(Some).map_err(D::Error::custom),
    }
}

/// Bytes, or text read by [`units::parse_size`]; empty text = 0 (the default).
fn size_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(t) if t.trim().is_empty() => Ok(0),
        NumberOrText::Text(t) => units::parse_size(&t).map_err(D::Error::custom),
    }
}

/// The master's address with the default port filled in, by the same rules as the command line
/// ([`transport::normalize_addr`]); only the "nothing entered" message speaks of the settings page.
pub fn normalize_server(s: &str) -> Result<String, ConfigError> {
    transport::normalize_addr(s, MASTER_PORT).map_err(|e| match e {
        AddrError::Empty => {
            ConfigError::Invalid("no server address set: enter the master's address in the settings page".into())
        }
        e => ConfigError::Invalid(e.to_string()),
    })
}

/// Resolve the settings file path: explicit path, then `LANSCATTER_CONFIG`, then the user config dir.
pub fn config_path(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("LANSCATTER_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dirs = directories::ProjectDirs::from("", "", "lanscatter").ok_or(ConfigError::NoConfigDir)?;
    Ok(dirs.config_dir().join("gui.json"))
}

/// Load settings; a missing file gives defaults (first launch), a broken one is an error.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(source) => Err(ConfigError::Read { path: path.to_path_buf(), source }),
    }
}

/// Save atomically (temp file + rename), creating the directory if needed.
pub fn save(path: &Path, settings: &Settings) -> Result<(), ConfigError> {
    let werr = |source| ConfigError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let json = serde_json::to_vec_pretty(settings).map_err(|e| werr(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/gui.json");
        assert_eq!(load(&path).unwrap(), Settings::default(), "missing file = defaults");
        let mut s = Settings {
            mode: Mode::Master,
            master_folder: Some(dir.path().join("src")),
            peer_folder: Some(dir.path().join("dst")),
            server: "10.0.0.5:9000".into(),
            local_port: 12345,
            upload_slots: 2,
            download_slots: 7,
            max_upload_bps: Some(1_000_000),
            max_download_bps: None,
            chunk_size: 4 << 20,
            start_at_login: true,
            autostart_sync: true,
            ..Settings::default()
        };
        s.remember_server("a:1");
        s.remember_server("b:2");
        s.remember_server("a:1");
        save(&path, &s).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.recent_servers, vec!["a:1".to_string(), "b:2".to_string()]);
    }

    #[test]
    fn tolerant_of_unknown_and_missing_keys_but_not_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gui.json");
        std::fs::write(&path, br#"{"mode":"master","future_key":1}"#).unwrap();
        let s = load(&path).unwrap();
        assert_eq!(s.mode, Mode::Master);
        assert_eq!(s.upload_slots, Settings::default().upload_slots);
        assert_eq!((s.secret.as_deref(), s.open), (None, false), "files from before the secret load");
        std::fs::write(&path, b"{not json").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn recent_servers_bounded() {
        let mut s = Settings::default();
        for i in 0..20 {
            s.remember_server(&format!("h{i}:1"));
        }
        assert_eq!(s.recent_servers.len(), MAX_RECENT_SERVERS);
        assert_eq!(s.recent_servers[0], "h19:1");
    }

    #[test]
    fn server_addresses() {
        assert_eq!(normalize_server("host").unwrap(), format!("host:{MASTER_PORT}"));
        assert_eq!(normalize_server(" 10.1.2.3:99 ").unwrap(), "10.1.2.3:99");
        assert_eq!(normalize_server("[::1]:5").unwrap(), "[::1]:5");
        assert_eq!(normalize_server("::1").unwrap(), format!("[::1]:{MASTER_PORT}"));
        // A pasted status-page URL is tolerated, as on the command line.
        assert_eq!(normalize_server("http://x/").unwrap(), format!("x:{MASTER_PORT}"));
        for bad in ["", "http://x/y", "ftp://x", "x:0", "x:99999", "a b", "x/y", ":5"] {
            assert!(normalize_server(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_server(" ").unwrap_err().to_string().contains("settings page"));
    }

    #[test]
    fn number_validation() {
        let mut s = Settings::default();
        assert!(s.validate_numbers().is_ok());
        s.download_slots = 0;
        assert!(s.validate_numbers().is_err());
        s.download_slots = 2;
        s.max_upload_bps = Some(0);
        assert!(s.validate_numbers().is_err());
        s.max_upload_bps = None;
        s.chunk_size = 10;
        assert!(s.validate_numbers().is_err());
    }

    #[test]
    fn rates_and_chunk_size_read_as_numbers_or_as_typed() {
        let s: Settings =
            serde_json::from_str(r#"{"max_upload_bps":"100Mbit/s","max_download_bps":"12MB/s","chunk_size":"4M"}"#)
                .unwrap();
        assert_eq!((s.max_upload_bps, s.max_download_bps, s.chunk_size), (Some(12_500_000), Some(12_000_000), 4 << 20));
        let s: Settings =
            serde_json::from_str(r#"{"max_upload_bps":1000,"max_download_bps":" ","chunk_size":""}"#).unwrap();
        assert_eq!((s.max_upload_bps, s.max_download_bps, s.chunk_size), (Some(1000), None, 0));
        let s: Settings = serde_json::from_str(r#"{"max_upload_bps":null}"#).unwrap();
        assert_eq!(s.max_upload_bps, None);
        let err = serde_json::from_str::<Settings>(r#"{"max_upload_bps":"fast"}"#).unwrap_err().to_string();
        assert!(err.contains("not a rate") && err.contains("12MB/s"), "{err}");
        assert!(serde_json::from_str::<Settings>(r#"{"chunk_size":"4 parsecs"}"#).is_err());
    }

    #[test]
    fn secrets_are_checked_and_a_peer_needs_one_or_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings {
            peer_folder: Some(dir.path().join("mirror")),
            server: "10.0.0.5".into(),
            secret: Some("  ".into()),
            ..Settings::default()
        };
        assert!(s.swarm_secret().unwrap().is_none(), "blank = none");
        let err = s.validate_for_start().unwrap_err().to_string();
        assert_eq!(err, NO_PEER_SECRET);
        s.open = true;
        s.validate_for_start().unwrap();
        s.open = false;
        s.secret = Some("hunter2".into());
        let err = s.validate_numbers().unwrap_err().to_string();
        assert!(err.contains("too short") && err.contains("at least 16"), "{err}");
        s.secret = Some("correct horse battery staple".into());
        s.validate_for_start().unwrap();
        assert!(!format!("{s:?}").contains("horse"), "Debug never shows the secret");
    }

    #[test]
    fn master_secret_is_the_given_one_or_the_stored_one_beside_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings { mode: Mode::Master, ..Settings::default() };
        let (stored, made) = s.master_secret(dir.path()).unwrap().unwrap();
        assert!(made && dir.path().join("swarm-secret").is_file());
        let (again, made) = s.master_secret(dir.path()).unwrap().unwrap();
        assert!(!made && again == stored, "the stored secret is kept");
        s.secret = Some("correct horse battery staple".into());
        let (given, _) = s.master_secret(dir.path()).unwrap().unwrap();
        assert_eq!(given, SwarmSecret::parse("correct horse battery staple").unwrap());
        s.open = true;
        assert!(s.master_secret(dir.path()).unwrap().is_none());
        assert_eq!(config_dir(Path::new("gui.json")), PathBuf::from("."));
        assert_eq!(config_dir(&dir.path().join("gui.json")), dir.path());
    }

    #[test]
    fn explicit_path_wins() {
        let p = config_path(Some(Path::new("/tmp/x.json"))).unwrap();
        assert_eq!(p, PathBuf::from("/tmp/x.json"));
    }
}
