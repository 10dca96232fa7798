//! The swarm secret: what makes a LAN host a member of the swarm.
//!
//! Every node of a secured swarm knows the same secret. It never crosses the wire: each node
//! derives from it the swarm's TLS identity ([`crate::transport::tls`]), so a host that does not
//! know it can neither complete a connection to a member nor accept one from a member, and the
//! status page token. A master with no secret configured makes one on first start and keeps it in
//! the user config dir (one per machine, file mode 0600), so restarts keep the same swarm.
//!
//! A generated secret is 160 random bits written as eight groups of four Crockford base32
//! characters (`7K3M-9QXA-…`): short enough to read out or type, long enough that guessing is
//! hopeless. Typed join codes are accepted in any letter case, with or without the dashes.

use std::fmt;
use std::path::{Path, PathBuf};

/// Shortest secret accepted (after normalisation).
pub const MIN_LEN: usize = 16;

/// File name of the stored secret in the config dir.
const FILE_NAME: &str = "swarm-secret";

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the swarm secret is too short ({0} characters, at least {MIN_LEN}): use the one the master printed, or make \
         one with `head -c 24 /dev/urandom | base64`"
    )]
    TooShort(usize),
    #[error("cannot read the swarm secret from {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot store the swarm secret in {path}: {source}; give one with --secret or --secret-file")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no config dir for the swarm secret on this system; give one with --secret or --secret-file")]
    NoConfigDir,
    #[error("the random number generator failed: {0}")]
    Random(String),
}

/// A swarm secret (its `Debug` form never shows it).
#[derive(Clone, PartialEq, Eq)]
pub struct SwarmSecret(String);

impl fmt::Debug for SwarmSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwarmSecret(…)")
    }
}

/// A join code typed by hand: dashes and letter case do not matter.
fn normalize(s: &str) -> String {
    let s = s.trim();
    let code = s.chars().all(|c| c == '-' || CROCKFORD.contains(&(c.to_ascii_uppercase() as u8)));
    if code && s.contains('-') {
        s.chars().filter(|&c| c != '-').map(|c| c.to_ascii_uppercase()).collect()
    } else {
        s.to_string()
    }
}

impl SwarmSecret {
    /// Parse a secret given by the user (`--secret`, `LANSCATTER_SECRET`, a secret file).
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let n = normalize(s);
        if n.chars().count() < MIN_LEN {
            return Err(SecretError::TooShort(n.chars().count()));
        }
        Ok(SwarmSecret(n))
    }

    /// A new random secret.
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = [0u8; 20];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut out = String::with_capacity(32);
        for b in bytes {
            bits = (bits << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 5 {
                nbits -= 5;
                out.push(CROCKFORD[((bits >> nbits) & 31) as usize] as char);
            }
        }
        Ok(SwarmSecret(out))
    }

    /// Read a secret from a file (surrounding white space ignored).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read { path: path.into(), source })?;
        SwarmSecret::parse(&text)
    }

    /// The machine's stored secret, made and stored on first use. `true` when it was just made.
    pub fn load_or_create(config_dir: &Path) -> Result<(Self, bool), SecretError> {
        let path = config_dir.join(FILE_NAME);
        match SwarmSecret::from_file(&path) {
            Ok(s) => return Ok((s, false)),
            Err(SecretError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let s = SwarmSecret::generate()?;
        write_private(&path, &s.join_code()).map_err(|source| SecretError::Write { path: path.clone(), source })?;
        Ok((s, true))
    }

    /// The machine's stored secret, if a master here made one (never makes one).
    pub fn load_stored(config_dir: &Path) -> Result<Option<Self>, SecretError> {
        match SwarmSecret::from_file(&config_dir.join(FILE_NAME)) {
            Ok(s) => Ok(Some(s)),
            Err(SecretError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The user's config dir for lanscatter (where the master keeps its secret).
    pub fn default_dir() -> Result<PathBuf, SecretError> {
        let dirs = directories::ProjectDirs::from("", "", "lanscatter").ok_or(SecretError::NoConfigDir)?;
        Ok(dirs.config_dir().to_path_buf())
    }

    /// How to show the secret to a person: a generated one in dashed groups of four.
    pub fn join_code(&self) -> String {
        let generated = self.0.len() == 32 && self.0.bytes().all(|b| CROCKFORD.contains(&b));
        if !generated {
            return self.0.clone();
        }
        let groups: Vec<&str> = (0..8).map(|i| &self.0[i * 4..i * 4 + 4]).collect();
        groups.join("-")
    }

    /// 32 bytes derived from the secret for one `purpose`; different purposes give unrelated keys.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let h = blake2b_simd::Params::new()
            .hash_length(32)
            .personal(b"lanscatter-swarm")
            .to_state()
            .update(purpose.as_bytes())
            .update(&[0])
            .update(self.0.as_bytes())
            .finalize();
        let mut out = [0u8; 32];
        out.copy_from_slice(h.as_bytes());
        out
    }

    /// The token that opens the status page, `/api/*` and `/metrics` of this swarm's nodes.
    pub fn web_token(&self) -> String {
        self.derive("web token")[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Write `text` to a file only its owner can read (created with mode 0600 on Unix).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(format!("{text}\n").as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_random_join_codes_that_parse_back() {
        let a = SwarmSecret::generate().unwrap();
        let b = SwarmSecret::generate().unwrap();
        assert_ne!(a, b);
        let code = a.join_code();
        assert_eq!(code.len(), 39, "{code}");
        assert_eq!(SwarmSecret::parse(&code).unwrap(), a);
        assert_eq!(SwarmSecret::parse(&code.to_lowercase()).unwrap(), a, "letter case does not matter");
        assert_eq!(SwarmSecret::parse(&format!("  {code}\n")).unwrap(), a);
        assert!(!format!("{a:?}").contains(&code[..4]), "Debug never shows the secret");
    }

    #[test]
    fn short_secrets_are_refused_with_a_way_out() {
        let e = SwarmSecret::parse("hunter2").unwrap_err();
        assert!(e.to_string().contains("at least 16") && e.to_string().contains("urandom"), "{e}");
        assert!(SwarmSecret::parse("a long enough passphrase").is_ok());
    }

    #[test]
    fn derived_keys_depend_on_secret_and_purpose() {
        let a = SwarmSecret::parse("correct horse battery staple").unwrap();
        let b = SwarmSecret::parse("correct horse battery staplf").unwrap();
        assert_ne!(a.derive("tls"), b.derive("tls"));
        assert_ne!(a.derive("tls"), a.derive("web token"));
        assert_eq!(a.derive("tls"), a.clone().derive("tls"));
        assert_eq!(a.web_token().len(), 32);
    }

    #[test]
    fn the_stored_secret_is_made_once_and_private() {
        let d = tempfile::tempdir().unwrap();
        let (s1, made) = SwarmSecret::load_or_create(d.path()).unwrap();
        assert!(made);
        let (s2, made) = SwarmSecret::load_or_create(d.path()).unwrap();
        assert!(!made);
        assert_eq!(s1, s2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join(FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
