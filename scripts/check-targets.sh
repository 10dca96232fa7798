#!/usr/bin/env bash
# check-targets.sh: type-check the whole crate, tray app included, for macOS and Windows from Linux.
#
# Why: the code behind #[cfg(windows)] / #[cfg(target_os = "macos")] (rfd dialogs, the console
# dance, the Windows service, notify-rust's toast and Notification Center backends) is never
# compiled by a Linux build, so a typo there only shows on a user's machine. `cargo check` for
# the two targets compiles all of it, tests and benches included (--all-targets), without linking.
#
# macOS: ring (rustls' crypto) compiles C in its build script even under `cargo check`, and its
# headers include <stdint.h> and Apple's <TargetConditionals.h>, which Linux's cc and clang do
# not have. zig ships the macOS libc headers, so cargo-zigbuild (zig as the C compiler for the
# target) gets ring through without the macOS SDK and without changing any crate: the product
# keeps ring, and nothing is faked. notify-rust's macOS backend (mac-notification-sys) compiles
# Objective-C against Cocoa's headers, which only the macOS SDK has; its build script skips that
# when DOCS_RS is set (as on docs.rs), so the check sets it. Its Rust side is still type-checked;
# only an object file that a check never links is left out. Both tools come from PyPI (`ziglang` is the Zig project's own
# wheel) into a venv beside the cargo target, installed on first use. Linking a macOS binary
# still needs the SDK (frameworks); that is scripts/package-macos.sh's business, on a Mac.
# Windows: mingw's gcc cross-compiles ring, as scripts/package-windows.sh does.
#
# Not in .ci/run: from a cold target the two checks cost several minutes of 2 cores (measured
# in README "Desktop build vs headless build"), and CI is over its time budget. Run it after
# touching platform-gated code.
#
# Usage: scripts/check-targets.sh [macos] [windows]   (default: both)
# Needs: rustup, python3 (venv), gcc-mingw-w64-x86-64 for Windows.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-target}
VENV=$TARGET_DIR/zig-venv
die() { echo "check-targets.sh: $*" >&2; exit 1; }

add_target() {
    rustup target list --installed | grep -qx "$1" || rustup target add "$1"
}

check_macos() {
    add_target x86_64-apple-darwin
    if [[ ! -x "$VENV/bin/cargo-zigbuild" ]]; then
        echo "==> installing ziglang and cargo-zigbuild (PyPI) into $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv failed; apt-get install python3-venv"
        "$VENV/bin/pip" install -q ziglang cargo-zigbuild || die "pip install ziglang cargo-zigbuild failed"
    fi
    echo "==> cargo check --features gui --all-targets --target x86_64-apple-darwin (C via zig)"
    DOCS_RS=1 PATH=$VENV/bin:$PATH "$VENV/bin/cargo-zigbuild" check --locked --features gui --all-targets \
        --target x86_64-apple-darwin
}

check_windows() {
    add_target x86_64-pc-windows-gnu
    command -v x86_64-w64-mingw32-gcc >/dev/null || die "apt-get install gcc-mingw-w64-x86-64"
    echo "==> cargo check --features gui,winsvc --all-targets --target x86_64-pc-windows-gnu"
    cargo check --locked --features gui,winsvc --all-targets --target x86_64-pc-windows-gnu
}

targets=("$@")
((${#targets[@]})) || targets=(macos windows)
for t in "${targets[@]}"; do
    start=$(date +%s)
    case "$t" in
        macos) check_macos ;;
        windows) check_windows ;;
        *) die "unknown target '$t' (macos, windows)" ;;
    esac
    echo "    $t checked in $(($(date +%s) - start))s"
done
