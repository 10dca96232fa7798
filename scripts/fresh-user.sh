#!/usr/bin/env bash
# What a new user does with the README on a fresh machine (issue 15), as a script CI runs:
#   1. a fresh clone of this checkout's HEAD (committed files only, nothing local helps);
#   2. the Quick start's build-and-run command, verbatim: the demo must exit 0 and say that
#      every peer is identical to the source;
#   3. the README's test command, verbatim, with GTK unreachable as on a machine without its
#      headers: pkg-config gets an empty search path. First proven: `cargo build --features gui`
#      must fail for want of GTK under the same environment.
# The two commands are taken from README.md by the rule tests/readme.rs uses: the first line of
# the first ```sh block after "## Quick start", and of the first one after "Run the tests".
#
# Usage: scripts/fresh-user.sh [--print-commands]
#   --print-commands  print the two commands, one a line, and exit (tests/readme.rs checks them)
# The clone builds into FRESH_USER_TARGET, else $CARGO_TARGET_DIR, else this checkout's target/
# (linked as the clone's ./target, so `./target/release/…` in the README still holds): crates.io
# dependencies built before are reused, lanscatter itself is built afresh from the clone.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

fail() {
    echo "fresh-user.sh: FAILED: $*" >&2
    exit 1
}

# The first non-empty line of the first ```sh block after the first line containing $1.
readme_command() {
    awk -v start="$1" '
        !found && index($0, start) { found = 1; next }
        found && !inblock && index($0, "```sh") == 1 { inblock = 1; next }
        inblock && index($0, "```") == 1 { exit }
        inblock && NF { gsub(/^[ \t]+|[ \t]+$/, ""); print; exit }
    ' "$repo/README.md"
}

build_run=$(readme_command "## Quick start")
test_cmd=$(readme_command "Run the tests")
[[ -n $build_run && -n $test_cmd ]] || fail "README.md lacks the Quick start command or the test command"
if [[ ${1:-} == --print-commands ]]; then
    printf '%s\n%s\n' "$build_run" "$test_cmd"
    exit 0
fi
[[ $build_run == *"lanscatter demo"* ]] || fail "the Quick start command does not run the demo: $build_run"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target=${FRESH_USER_TARGET:-${CARGO_TARGET_DIR:-$repo/target}}
unset CARGO_TARGET_DIR
mkdir -p "$target"
git clone --quiet "$repo" "$work/lanscatter"
cd "$work/lanscatter"
ln -s "$target" target
echo "fresh-user.sh: fresh clone of $(git rev-parse --short HEAD) in $PWD"

start=$(date +%s)
echo "fresh-user.sh: \$ $build_run"
bash -c "$build_run" 2>&1 | tee "$work/demo.log"
grep -Eq '^lanscatter demo: ok: [0-9]+ peers identical to the source' "$work/demo.log" ||
    fail "the demo did not report identical peers (output above)"
echo "fresh-user.sh: build and demo passed in $(($(date +%s) - start)) s"

# GTK out of reach: pkg-config searches only an empty folder.
mkdir "$work/no-pkgconfig"
no_gtk=(env PKG_CONFIG_LIBDIR="$work/no-pkgconfig" PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=)
if "${no_gtk[@]}" cargo build --locked --features gui >"$work/gui-build.log" 2>&1; then
    fail "GTK is still reachable: cargo build --features gui succeeded with an empty pkg-config path"
fi
grep -Eq 'glib-2\.0|gtk\+-3\.0|gdk-3\.0|PKG_CONFIG' "$work/gui-build.log" ||
    fail "cargo build --features gui failed, but not for want of GTK: $(tail -n 20 "$work/gui-build.log")"
echo "fresh-user.sh: GTK is unreachable (cargo build --features gui fails: $(grep -Eom1 'glib-2\.0|gtk\+-3\.0|gdk-3\.0' "$work/gui-build.log" || echo pkg-config) not found)"

start=$(date +%s)
echo "fresh-user.sh: \$ $test_cmd   (without GTK)"
"${no_gtk[@]}" bash -c "$test_cmd"
echo "fresh-user.sh: the README's test command passed without GTK in $(($(date +%s) - start)) s"
