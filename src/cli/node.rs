//! Options every node command (`master`, `peer`) shares, among them the swarm secret and how
//! each side resolves it.
//!
//! Secure by default: a master with no secret given uses the machine's stored one (made on first
//! start) and prints the exact peer command; a peer with no secret refuses to start, since it
//! could only join an open swarm. `--open` asks for the original's open swarm explicitly.

use std::path::PathBuf;

use anyhow::Context;

use crate::secret::SwarmSecret;
use crate::transport::Security;

#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Print status snapshots as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not use the hash cache (hash everything on every scan).
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SecurityArgs {
    /// Swarm secret (join code): only hosts that know it can join, fetch or be fetched from.
    #[arg(long, env = "LANSCATTER_SECRET", hide_env_values = true, conflicts_with_all = ["secret_file", "open"])]
    pub secret: Option<String>,
    /// Read the swarm secret from this file.
    #[arg(long, env = "LANSCATTER_SECRET_FILE", conflicts_with = "open")]
    pub secret_file: Option<PathBuf>,
    /// Run an open swarm, as the original did: anyone on the LAN may join, fetch and read.
    #[arg(long)]
    pub open: bool,
}

impl SecurityArgs {
    /// The secret given on the command line or in the environment, if any.
    pub(super) fn given(&self) -> anyhow::Result<Option<SwarmSecret>> {
        if let Some(s) = &self.secret {
            return Ok(Some(SwarmSecret::parse(s)?));
        }
        match &self.secret_file {
            Some(f) => Ok(Some(SwarmSecret::from_file(f)?)),
            None => Ok(None),
        }
    }

    /// The master's security: the given secret, else the machine's stored one (made now if
    /// there is none yet). Returns the secret too, to print how peers join.
    pub fn for_master(&self) -> anyhow::Result<(Security, Option<SwarmSecret>)> {
        if self.open {
            return Ok((Security::Open, None));
        }
        let secret = match self.given()? {
            Some(s) => s,
            None => {
                let dir = SwarmSecret::default_dir()?;
                let (s, made) = SwarmSecret::load_or_create(&dir)?;
                if made {
                    eprintln!("lanscatter master: made a swarm secret in {}", dir.display());
                }
                s
            }
        };
        let security = Security::from_secret(&secret).context("cannot set up TLS")?;
        Ok((security, Some(secret)))
    }

    /// The peer's security: it must be told the secret, or told the swarm is open.
    pub fn for_peer(&self) -> anyhow::Result<Security> {
        if self.open {
            return Ok(Security::Open);
        }
        match self.given()? {
            Some(s) => Ok(Security::from_secret(&s).context("cannot set up TLS")?),
            None => anyhow::bail!(
                "no swarm secret: give the one the master printed with --secret (or --secret-file, or \
                 LANSCATTER_SECRET), or --open to join an open swarm"
            ),
        }
    }
}
