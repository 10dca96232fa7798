//! Every connection the program makes or accepts, and every address and URL it builds.
//!
//! Why one module: TLS, authentication or a proxy leg change *how bytes cross the network*, and
//! that should be one place, not a dozen. The engines above speak in messages and chunks; this
//! module turns them into sockets:
//! - [`serve`]: the one HTTP serve loop under master, peer and the settings page (header
//!   timeout, websocket upgrades, the client's address, graceful stop).
//! - [`fetch`]: the one chunk client (`GET /chunk/<hex>`: stall timeout, minimum rate, LZ4,
//!   BLAKE2b verification before anything is returned).
//! - [`channel`]: the control channel, one framing for master and peer alike (a JSON handshake
//!   frame each way, then postcard-encoded binary frames), the server's websocket upgrade and
//!   the peer's connector.
//! - [`fdlimit`]: the open-file limit, raised to the hard limit at the first engine start.
//! - [`frames`]: the byte-stream wrapper under the channel that refuses an oversized message
//!   from its frame header, before it is buffered.
//! - [`pace`]: caps each upload flow of a serve loop at its share of the link once the node's
//!   flows lose packets (shallow switch queues, BBR).
//! - [`probe`]: a plain loopback copy, the yardstick `lanscatter demo` compares the swarm with.
//! - [`tls`]: mutual TLS pinned to the identity every member derives from the swarm secret.
//! - [`discovery`]: the master's mDNS announcement and the peer's `auto` search for it.
//! - [`api`]: the client of a node's web API (a bounded `GET` with the web token), for
//!   `lanscatter status`.
//! - here: [`Security`] (open swarm, or secured by a secret), default ports, the address
//!   normaliser, the one check of an advertised host ([`validate_host`]) and the URL builders. URLs name a node; whether the bytes go over TLS is decided
//!   by the node's [`Security`], not by the URL, so messages carry the same URLs either way.
//!
//! Wire paths and chunk semantics live elsewhere ([`crate::paths`], [`crate::transfer`]).

pub mod api;
pub mod channel;
pub mod discovery;
pub mod fdlimit;
pub mod fetch;
pub mod frames;
pub mod pace;
pub mod probe;
pub mod serve;
pub mod tls;

pub use serve::{serve, serve_secured, ServeLimits, DEFAULT_MAX_PEERS, HEADER_READ_TIMEOUT};

use std::sync::Arc;

use crate::secret::SwarmSecret;

/// How a node's connections are protected.
#[derive(Debug, Clone, Default)]
pub enum Security {
    /// The original's behaviour: anyone on the LAN may join, fetch and read the status page.
    #[default]
    Open,
    /// Members only: mutual TLS with the swarm identity for every member connection; plain HTTP
    /// on the same port serves only the status page, `/api/*` and `/metrics`, with the web token.
    Swarm(Arc<SwarmKeys>),
}

/// What a member derives from the swarm secret.
#[derive(Debug)]
pub struct SwarmKeys {
    pub tls: tls::Tls,
    /// Opens the status page and its API over plain HTTP (`?token=`, bearer or cookie).
    pub web_token: String,
}

impl Security {
    pub fn from_secret(secret: &SwarmSecret) -> Result<Security, tls::TlsError> {
        let keys = SwarmKeys { tls: tls::Tls::new(secret)?, web_token: secret.web_token() };
        Ok(Security::Swarm(Arc::new(keys)))
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Security::Open)
    }

    pub(crate) fn tls(&self) -> Option<&tls::Tls> {
        match self {
            Security::Open => None,
            Security::Swarm(k) => Some(&k.tls),
        }
    }

    pub fn web_token(&self) -> Option<&str> {
        match self {
            Security::Open => None,
            Security::Swarm(k) => Some(&k.web_token),
        }
    }
}

/// Default control and chunk port of a master.
pub const MASTER_PORT: u16 = 10564;
/// Default chunk-server port of a peer.
pub const PEER_PORT: u16 = 10565;

/// Route of the control websocket on a master.
pub const JOIN_ROUTE: &str = "/join";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("no server address given: give the master's address, e.g. 192.168.1.10 or 192.168.1.10:{MASTER_PORT}")]
    Empty,
    #[error("server address {0:?} {1}; expected host or host:port, e.g. 192.168.1.10:{MASTER_PORT}")]
    Bad(String, &'static str),
}

/// Normalise a user-given `host`, `host:port`, `IPv6` or `[IPv6]:port` to `host:port` (IPv6 in
/// brackets), with `default_port` when none is given. A leading `http://` and a trailing `/`
/// are tolerated (people paste status-page URLs); any other path, scheme or space is refused.
pub fn normalize_addr(input: &str, default_port: u16) -> Result<String, AddrError> {
    let s = input.trim().trim_start_matches("http://").trim_end_matches('/');
    let bad = |why| AddrError::Bad(input.trim().to_string(), why);
    if s.is_empty() {
        return Err(AddrError::Empty);
    }
    if s.contains("://") || s.contains('/') || s.contains(char::is_whitespace) {
        return Err(bad("is not a plain address"));
    }
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    if s.starts_with('[') {
        return Err(bad("has a bad IPv6 form"));
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(host_port(s, default_port));
    }
    let hostport = match s.rsplit_once(':') {
        Some((host, port)) => {
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad("has a bad port"));
            }
            s.to_string()
        }
        None => host_port(s, default_port),
    };
    hostport.parse::<hyper::Uri>().map_err(|_| bad("is not a valid host name"))?;
    Ok(hostport)
}

/// `host:port`, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Base URL of a node's chunk server (`http://host:port`), from [`host_port`]'s form.
pub fn chunk_base(hostport: &str) -> String {
    format!("http://{hostport}")
}

/// Longest host a peer may advertise: a full DNS name (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "advertised host {0:?} {1}: give only an IP address or a DNS name, e.g. 192.168.1.20 or pc-12.lan \
     (no scheme, user, port, path or query; the port is --port)"
)]
pub struct HostError(pub String, pub &'static str);

/// Check a host a peer advertises for others to fetch from (`--advertise`, `Hello::advertise_host`):
/// an IP address or a DNS name, nothing else. Returns it as it goes into [`host_port`] (an
/// IPv6 address without brackets). This is the only check: the CLI, the master and the chunk
/// client ([`chunk_uri`]) all call it, so a URL is only ever built from a host that passed it.
pub fn validate_host(input: &str) -> Result<String, HostError> {
    let bad = |why| Err(HostError(input.chars().take(80).collect(), why));
    let s = input.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(input);
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let why = if s.is_empty() {
        "is empty"
    } else if s.len() > MAX_HOST_LEN {
        "is longer than 253 bytes"
    } else if s.contains("://") {
        "has a scheme"
    } else if s.contains('@') {
        "has user info"
    } else if s.contains('/') || s.contains('\\') {
        "has a path"
    } else if s.contains(['?', '#']) {
        "has a query"
    } else if s.contains(':') {
        "has a port"
    } else if !s.trim_end_matches('.').split('.').all(dns_label) {
        "is not a valid host name"
    } else {
        return Ok(s.to_string());
    };
    bad(why)
}

/// One label of a DNS name: 1-63 letters, digits, `-` (not at either end) or `_` (LAN host
/// names carry it, e.g. Windows machine names).
fn dns_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// The URI of `GET /chunk/<hex>` at a chunk server whose base URL (`http://host:port`, from
/// [`chunk_base`]) the master sent. Built from the checked host and port, never by pasting the
/// base, so a base with a path, query or user info cannot make the request go anywhere else.
pub fn chunk_uri(base: &str, hash: &crate::manifest::ChunkHash) -> Result<hyper::Uri, HostError> {
    let bad = |why| HostError(base.chars().take(80).collect(), why);
    let hostport = base.strip_prefix("http://").ok_or_else(|| bad("is not an http:// base URL"))?;
    let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("has a bad port"))?;
    let authority = host_port(&validate_host(host)?, port);
    hyper::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(format!("{}{}", crate::transfer::CHUNK_ROUTE, hash.to_hex()))
        .build()
        .map_err(|_| bad("is not a valid URL"))
}

/// URI of the batch route (`POST /chunks`) at a source's base URL, checked like [`chunk_uri`].
pub fn batch_uri(base: &str) -> Result<hyper::Uri, HostError> {
    let any = crate::manifest::ChunkHash([0; crate::manifest::HASH_LEN]);
    let mut parts = chunk_uri(base, &any)?.into_parts();
    parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static(crate::transfer::batch::BATCH_ROUTE));
    hyper::Uri::from_parts(parts).map_err(|_| HostError(base.chars().take(80).collect(), "is not a valid URL"))
}

/// URL of a master's control websocket, from [`host_port`]'s form.
pub fn join_url(hostport: &str) -> String {
    format!("ws://{hostport}{JOIN_ROUTE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalise_to_host_port() {
        let n = |s| normalize_addr(s, MASTER_PORT);
        assert_eq!(n("host").unwrap(), "host:10564");
        assert_eq!(n(" http://host:99/ ").unwrap(), "host:99");
        assert_eq!(n("10.0.0.1:99").unwrap(), "10.0.0.1:99");
        assert_eq!(n("::1").unwrap(), "[::1]:10564");
        assert_eq!(n("[::1]:5").unwrap(), "[::1]:5");
        assert_eq!(n(""), Err(AddrError::Empty));
        for bad in ["a b", "host/x", "ftp://h", "h:0", "h:99999", ":5", "[::1"] {
            assert!(matches!(n(bad), Err(AddrError::Bad(..))), "{bad} accepted");
        }
        assert_eq!(chunk_base(&host_port("fe80::1", 7)), "http://[fe80::1]:7");
        assert_eq!(join_url("h:1"), "ws://h:1/join");
    }

    #[test]
    fn advertised_hosts_are_ips_or_dns_names() {
        for (good, as_used) in [
            ("192.168.1.20", "192.168.1.20"),
            ("pc-12.lan", "pc-12.lan"),
            ("PC_12", "PC_12"),
            ("host.", "host."),
            ("fe80::1", "fe80::1"),
            ("[::1]", "::1"),
        ] {
            assert_eq!(validate_host(good).as_deref(), Ok(as_used), "{good}");
        }
        for (bad, why) in [
            ("http://evil", "scheme"),
            ("user@host", "user info"),
            ("host:8080", "port"),
            ("10.0.0.1:99", "port"),
            ("host/x", "path"),
            ("host?a=1", "query"),
            ("", "empty"),
            ("a b", "not a valid host name"),
            ("-a.b", "not a valid host name"),
            ("a..b", "not a valid host name"),
        ] {
            let e = validate_host(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(e.to_string().contains("give only an IP address or a DNS name"), "{e}");
        }
        assert!(validate_host(&"a".repeat(300)).is_err());
    }

    #[test]
    fn chunk_uris_are_built_from_checked_parts() {
        let h = crate::manifest::ChunkHash::of(b"x");
        let uri = chunk_uri(&chunk_base(&host_port("fe80::1", 7)), &h).unwrap();
        assert_eq!(uri.to_string(), format!("http://[fe80::1]:7/chunk/{}", h.to_hex()));
        assert_eq!(chunk_uri("http://pc:9", &h).unwrap().path(), format!("/chunk/{}", h.to_hex()));
        for bad in ["http://u@pc:9", "http://pc:9/admin?x=", "https://pc:9", "http://pc", "http://pc:0", "pc:9"] {
            assert!(chunk_uri(bad, &h).is_err(), "{bad} accepted");
        }
    }
}
