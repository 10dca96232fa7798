//! Issue 16, discovery: in network namespaces of this test's own on a bridge (addresses in
//! 198.18.0.0/15 only; multicast crosses the bridge), a master announces itself by mDNS and
//! three `lanscatter peer auto` nodes find it and sync; with a second master on the network
//! `auto` refuses and lists both; `--swarm` picks one. Real binaries, run with `ip netns exec`.
//!
//! Needs root and iproute2 (CI has both); elsewhere it prints `SKIPPED: <reason>` and passes.
//! Everything it creates is removed when it ends, pass or fail (`Lab`'s `Drop`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sync::*;
use common::{Lines, Proc};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The namespaces: a switch with a bridge, and one host namespace per name, each with one
/// veth on the bridge and an address in 198.18.1.0/24.
struct Lab {
    tag: String,
    made: Vec<String>,
}

impl Lab {
    fn up(hosts: &[(&str, &str)]) -> Lab {
        let mut lab = Lab { tag: format!("lsd{:04x}", std::process::id() % 65536), made: Vec::new() };
        let sw = lab.ns("sw");
        lab.add(&sw);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (name, addr) in hosts {
            assert!(addr.starts_with("198.18."), "the lab only uses 198.18.0.0/15");
            let ns = lab.ns(name);
            lab.add(&ns);
            let sw_if = format!("v-{name}");
            ip(&["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &sw_if, "netns", &sw]);
            ip(&["-n", &sw, "link", "set", &sw_if, "master", "br0", "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    fn add(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.made.push(ns.to_string());
        for key in ["all", "default"] {
            let st = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")])
                .status()
                .expect("sysctl runs");
            assert!(st.success());
        }
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// `lanscatter <args>` in host `name`'s namespace (announcing allowed), stderr as lines.
    fn spawn(&self, name: &str, args: &[&str], cache: &Path) -> Proc {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(name)]).arg(common::bin()).args(args);
        c.env("XDG_CACHE_HOME", cache.join(name)).env_remove("LANSCATTER_NO_ANNOUNCE").stdout(Stdio::null());
        Proc::start(c, Lines::Stderr)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn skip_reason() -> Option<String> {
    if !common::is_root() {
        return Some("not root: network namespaces need root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no `ip` (iproute2) on this machine".into()),
    }
}

fn source(root: &Path, name: &str, seed: u64) -> PathBuf {
    let dir = root.join(name);
    random_tree(&dir, seed, &sync_tree(1));
    dir
}

fn start_master(lab: &Lab, host: &str, dir: &Path, swarm: &str, cache: &Path) -> Proc {
    let d = dir.to_string_lossy().to_string();
    let mut m = lab.spawn(host, &["master", &d, "--open", "--swarm", swarm, "--chunk-size", "64K"], cache);
    m.wait_line("ready:", Duration::from_secs(60));
    m
}

/// `peer auto` run to its end: its exit status and output.
fn peer_auto(lab: &Lab, host: &str, dst: &Path, extra: &[&str], cache: &Path) -> (bool, String) {
    let d = dst.to_string_lossy().to_string();
    let mut args = vec!["peer", "auto", &d, "--open", "--exit-when-done"];
    args.extend_from_slice(extra);
    let (st, out) = lab.spawn(host, &args, cache).wait_exit(Duration::from_secs(120));
    (st.success(), out)
}

#[test]
fn peers_find_their_master_on_the_lan_and_refuse_to_guess_between_two() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let t = tmp();
    let cache = t.path().join("cache");
    let hosts = [
        ("m1", "198.18.1.1"),
        ("m2", "198.18.1.2"),
        ("p0", "198.18.1.11"),
        ("p1", "198.18.1.12"),
        ("p2", "198.18.1.13"),
    ];
    let lab = Lab::up(&hosts);
    let lab_dir = source(t.path(), "lab", 1);
    let _m1 = start_master(&lab, "m1", &lab_dir, "lab", &cache);

    // Three peers at once, each finding the one master by itself.
    let peers: Vec<_> = ["p0", "p1", "p2"]
        .iter()
        .map(|p| {
            let dst = t.path().join(format!("{p}-lab"));
            let d = dst.to_string_lossy().to_string();
            (lab.spawn(p, &["peer", "auto", &d, "--open", "--exit-when-done"], &cache), dst)
        })
        .collect();
    for (p, dst) in peers {
        let (st, out) = p.wait_exit(Duration::from_secs(120));
        assert!(st.success(), "peer auto syncs: {out}");
        assert!(out.contains("found master lab at 198.18.1.1:10564"), "{out}");
        assert_same_tree(&lab_dir, &dst);
    }

    let office_dir = source(t.path(), "office", 2);
    let _m2 = start_master(&lab, "m2", &office_dir, "office", &cache);
    let (ok, out) = peer_auto(&lab, "p0", &t.path().join("p0-which"), &[], &cache);
    assert!(!ok, "two masters: auto refuses to guess: {out}");
    assert!(out.contains("several lanscatter masters"), "{out}");
    assert!(out.contains("lab (198.18.1.1:10564)") && out.contains("office (198.18.1.2:10564)"), "both listed: {out}");
    assert!(!t.path().join("p0-which").exists(), "nothing was created");

    let dst = t.path().join("p1-office");
    let (ok, out) = peer_auto(&lab, "p1", &dst, &["--swarm", "office"], &cache);
    assert!(ok, "--swarm picks one: {out}");
    assert_same_tree(&office_dir, &dst);
}
