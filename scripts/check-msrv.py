#!/usr/bin/env python3
"""Check that Cargo.toml's `rust-version` is at least what every locked dependency declares.

A `rust-version` lower than a dependency's makes `cargo +<ours> build --locked` fail on the
user's machine with an error about some crate they never heard of; the number in Cargo.toml
must be a promise we keep. The dependencies' own `rust-version` fields are read from
`cargo metadata --locked --all-features` (every package in the lock file that any target and
feature of ours can build, Windows- and macOS-only crates included). Without a network or
cargo (e.g. offline with an empty registry cache) it falls back to Cargo.lock plus the unpacked
crates under ~/.cargo/registry/src, and says which ones it could not read.

Usage: scripts/check-msrv.py [--verbose]   (from the repository root; CI runs it in .ci/run)
Exit 0: ours >= every dependency's. Exit 1: a dependency needs newer Rust (the message names it
and the value to set). Our own code may need more than the dependencies do; that is checked by
building with the declared toolchain where one can be installed (README "Dependency notes").
"""

import glob
import json
import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def version_key(v):
    """'1.83' / '1.83.0' -> (1, 83, 0), so versions compare as numbers."""
    parts = [int(p) for p in v.strip().split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def from_metadata():
    """{(name, version): rust_version or None} of every locked dependency, or None if cargo fails."""
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"check-msrv: `{' '.join(cmd)}` failed ({e}); reading the registry cache instead", file=sys.stderr)
        return None
    meta = json.loads(out)
    ours = set(meta["workspace_members"])
    return {(p["name"], p["version"]): p.get("rust_version") for p in meta["packages"] if p["id"] not in ours}


def from_registry():
    """The same from Cargo.lock and ~/.cargo/registry/src; unreadable crates map to '?'."""
    with open(os.path.join(ROOT, "Cargo.lock"), "rb") as f:
        lock = tomllib.load(f)
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = {}
    for p in lock.get("package", []):
        if "source" not in p:
            continue  # our own crate
        key = (p["name"], p["version"])
        paths = glob.glob(os.path.join(home, "registry", "src", "*", f"{p['name']}-{p['version']}", "Cargo.toml"))
        if not paths:
            found[key] = "?"
            continue
        with open(paths[0], "rb") as f:
            pkg = tomllib.load(f).get("package", {})
        rv = pkg.get("rust-version")
        found[key] = rv if isinstance(rv, str) else None
    return found


def main():
    verbose = "--verbose" in sys.argv[1:]
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        ours = tomllib.load(f)["package"]["rust-version"]
    deps = from_metadata()
    if deps is None:
        deps = from_registry()
    unknown = sorted(f"{n} {v}" for (n, v), rv in deps.items() if rv == "?")
    declared = {k: rv for k, rv in deps.items() if rv not in (None, "?")}
    if not declared:
        print("check-msrv: no dependency declares a rust-version; is the lock file empty?", file=sys.stderr)
        return 1
    need = max(declared.values(), key=version_key)
    needers = sorted(f"{n} {v}" for (n, v), rv in declared.items() if version_key(rv) == version_key(need))
    if verbose:
        for (n, v), rv in sorted(declared.items(), key=lambda kv: version_key(kv[1]), reverse=True)[:15]:
            print(f"  {rv:8} {n} {v}")
    print(f"check-msrv: {len(deps)} locked dependencies, {len(declared)} declare a rust-version; "
          f"the highest is {need} ({', '.join(needers)}); ours is {ours}")
    if unknown:
        print(f"check-msrv: not in the registry cache, not checked: {', '.join(unknown)}; run `cargo fetch`", file=sys.stderr)
    if version_key(ours) < version_key(need):
        print(f"check-msrv: Cargo.toml says rust-version = \"{ours}\" but {', '.join(needers)} need(s) Rust {need}: "
              f"set rust-version = \"{need}\" (or pin an older version of those crates in Cargo.lock)", file=sys.stderr)
        return 1
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
