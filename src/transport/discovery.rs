//! LAN discovery: a master announces itself by mDNS/DNS-SD (`_lanscatter._tcp`), and a peer
//! started with `auto` in place of the master's address finds it, so nobody types the master's
//! address on 200 machines.
//!
//! Discovery only finds an address: the swarm secret still decides who is a member (a
//! rogue announcement leads a peer to a TLS handshake that fails). With several masters on the
//! network a peer refuses to guess and lists them, unless `--swarm NAME` picks one; that
//! choice is [`choose`], pure and unit-tested. The announcement carries the swarm name (the
//! master's `--swarm`, by default its name) in its TXT record.
//!
//! A master bound to a loopback address announces nothing (nothing on the LAN could reach it),
//! one bound to a single address announces only on that interface, and one bound to all
//! interfaces on all of them (IPv4). The mDNS socket (UDP 5353) is `mdns-sd`'s, in its own
//! thread; both calls here are blocking and short.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

/// The DNS-SD service type of a lanscatter master.
pub const SERVICE: &str = "_lanscatter._tcp.local.";
/// How long a peer listens for announcements.
pub const BROWSE_TIME: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot use mDNS on this host: {0}; give the master's address instead of `auto`, or start the master with --no-announce")]
    Mdns(#[from] mdns_sd::Error),
}

/// A master that answered: its swarm name and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub swarm: String,
    pub addr: String,
}

fn list(found: &[Found]) -> String {
    found.iter().map(|f| format!("{} ({})", f.swarm, f.addr)).collect::<Vec<_>>().join(", ")
}

/// Why `auto` found no single master; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error(
        "no lanscatter master answered on this network (mDNS, UDP port 5353); is one running without \
         --no-announce, and does this network pass multicast? Give the master's address instead of `auto`"
    )]
    NoneFound,
    #[error("no master of swarm {want:?} answered; found {}; check --swarm, or give the master's address", list(.found))]
    NoSuchSwarm { want: String, found: Vec<Found> },
    #[error(
        "several lanscatter masters answer on this network: {}; pick one with --swarm NAME, or give its \
         address instead of `auto`", list(.found)
    )]
    Several { found: Vec<Found> },
}

/// The one master `auto` means: the only one found, or the only one of swarm `want`.
pub fn choose(found: &[Found], want: Option<&str>) -> Result<Found, ChoiceError> {
    let all: Vec<Found> = found.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let pick: Vec<Found> = match want {
        Some(w) => all.iter().filter(|f| f.swarm == w).cloned().collect(),
        None => all.clone(),
    };
    match (pick.len(), want) {
        (1, _) => Ok(pick[0].clone()),
        (0, None) => Err(ChoiceError::NoneFound),
        (0, Some(w)) => Err(ChoiceError::NoSuchSwarm { want: w.into(), found: all }),
        _ => Err(ChoiceError::Several { found: pick }),
    }
}

/// A master's announcement; withdrawn (a goodbye packet) when dropped.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Announcer({})", self.fullname)
    }
}

/// A DNS label from a host name: letters, digits and `-` only.
fn label(s: &str) -> String {
    let l: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(40).collect();
    if l.is_empty() {
        "lanscatter".into()
    } else {
        l
    }
}

impl Announcer {
    /// Announce swarm `swarm` served at `listen`; `None` when bound to loopback.
    pub fn start(swarm: &str, listen: SocketAddr) -> Result<Option<Announcer>, DiscoveryError> {
        let ip = listen.ip();
        if ip.is_loopback() {
            return Ok(None);
        }
        let daemon = ServiceDaemon::new()?;
        daemon.disable_interface(IfKind::IPv6)?;
        daemon.disable_interface(IfKind::LoopbackV4)?;
        if !ip.is_unspecified() {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Addr(ip))?;
        }
        // Hosts in one network namespace setup (or cloned VMs) share a host name: a per-process
        // mDNS host name keeps two masters' address records apart.
        let nonce = (crate::host::unix_now() * 1e6) as u64 ^ u64::from(std::process::id());
        let host = format!("{}-{:06x}.local.", label(&crate::host::host_name()), nonce & 0xff_ffff);
        let instance = format!("{} {:06x}", label(swarm), nonce & 0xff_ffff);
        let props = [("swarm", swarm), ("v", env!("CARGO_PKG_VERSION"))];
        let info = if ip.is_unspecified() {
            ServiceInfo::new(SERVICE, &instance, &host, (), listen.port(), &props[..])?.enable_addr_auto()
        } else {
            ServiceInfo::new(SERVICE, &instance, &host, ip, listen.port(), &props[..])?
        };
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        tracing::info!("announcing swarm {swarm:?} on the LAN (mDNS {SERVICE})");
        Ok(Some(Announcer { daemon, fullname }))
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = rx.recv_timeout(Duration::from_millis(500));
        }
        let _ = self.daemon.shutdown();
    }
}

/// Listen for masters for `time` (blocking) and return what answered, one address each (IPv4,
/// not loopback unless that is all a master has).
pub fn browse(time: Duration) -> Result<Vec<Found>, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    daemon.disable_interface(IfKind::IPv6)?;
    let rx = daemon.browse(SERVICE)?;
    let deadline = Instant::now() + time;
    let mut found = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                let mut ips: Vec<IpAddr> = s.addresses.iter().map(|a| a.to_ip_addr()).filter(IpAddr::is_ipv4).collect();
                ips.sort_by_key(|ip| (ip.is_loopback(), *ip));
                let swarm = s.txt_properties.get_property_val_str("swarm").unwrap_or("?").to_string();
                if let Some(ip) = ips.first() {
                    found.push(Found { swarm, addr: SocketAddr::new(*ip, s.port).to_string() });
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(swarm: &str, addr: &str) -> Found {
        Found { swarm: swarm.into(), addr: addr.into() }
    }

    #[test]
    fn one_master_is_taken_and_none_is_an_error_that_says_what_to_do() {
        assert_eq!(choose(&[f("lab", "198.18.0.1:10564")], None), Ok(f("lab", "198.18.0.1:10564")));
        let e = choose(&[], None).unwrap_err();
        assert_eq!(e, ChoiceError::NoneFound);
        assert!(e.to_string().contains("instead of `auto`"), "{e}");
    }

    #[test]
    fn several_masters_are_refused_and_listed_unless_a_swarm_picks_one() {
        let found = [f("lab", "198.18.0.1:10564"), f("office", "198.18.0.2:10564"), f("lab", "198.18.0.1:10564")];
        let e = choose(&found, None).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("lab (198.18.0.1:10564)") && text.contains("office (198.18.0.2:10564)"), "{text}");
        assert!(text.contains("--swarm"), "{text}");
        assert_eq!(
            choose(&found, Some("office")),
            Ok(f("office", "198.18.0.2:10564")),
            "the repeat of lab is one master"
        );
        let e = choose(&found, Some("attic")).unwrap_err();
        assert!(matches!(&e, ChoiceError::NoSuchSwarm { found, .. } if found.len() == 2), "{e:?}");
    }

    #[test]
    fn two_masters_of_one_swarm_name_are_still_several() {
        let found = [f("lab", "198.18.0.1:10564"), f("lab", "198.18.0.9:10564")];
        assert!(matches!(choose(&found, Some("lab")), Err(ChoiceError::Several { found }) if found.len() == 2));
    }

    #[test]
    fn labels_are_dns_safe() {
        assert_eq!(label("my host.example"), "my-host-example");
        assert_eq!(label(""), "lanscatter");
    }
}
