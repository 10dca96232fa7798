//! Build script: embeds a version string that names the git revision, so a bug report from any
//! installed copy says exactly which code it ran. Later: Windows resources (icon, manifest).

use std::process::Command;

fn main() {
    let pkg = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let rev = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let version = match rev {
        Some(rev) => format!("{pkg} ({rev})"),
        None => pkg,
    };
    println!("cargo:rustc-env=LANSCATTER_VERSION={version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=LANSCATTER_VERSION_OVERRIDE");
}
