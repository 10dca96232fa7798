#!/usr/bin/env bash
# package-windows.sh: cross-compile lanscatter.exe for 64-bit Windows and wrap it in an MSI.
#
# Why this script exists: the MSI is built on Linux with Debian's `wixl` (msitools) from the
# same wix/lanscatter.wxs that WiX v3 builds on Windows, so CI can build and inspect the real
# installer on every run (scripts/check-msi.sh) without a Windows machine.
#
# Output (target/dist/):
#   lanscatter-<version>-x86_64.msi   the installer
#   lanscatter.exe                    the exact exe inside it (for inspection and check-msi.sh)
#
# Needs: rustup target x86_64-pc-windows-gnu, gcc-mingw-w64-x86-64 (linker and windres),
# wixl. On Debian/Ubuntu:
#   apt-get install gcc-mingw-w64-x86-64 wixl msitools && rustup target add x86_64-pc-windows-gnu
#
# Environment knobs:
#   LANSCATTER_PROFILE   cargo profile (default `installer`: release without debug info or LTO,
#                        to keep a 2-core CI build within minutes; use `release` for
#                        smaller, slower-to-build binaries)
#   LANSCATTER_FEATURES  cargo features (default `gui`: the tray app the Start-menu shortcut
#                        starts; set it empty for a CLI-only build)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
PROFILE=${LANSCATTER_PROFILE:-installer}
FEATURES=${LANSCATTER_FEATURES-gui}
DIST=target/dist

die() { echo "package-windows.sh: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found; install Rust (rustup) first"
command -v x86_64-w64-mingw32-gcc >/dev/null ||
    die "x86_64-w64-mingw32-gcc not found; run: apt-get install gcc-mingw-w64-x86-64"
command -v x86_64-w64-mingw32-windres >/dev/null ||
    die "x86_64-w64-mingw32-windres not found; run: apt-get install binutils-mingw-w64-x86-64"
command -v wixl >/dev/null || die "wixl not found; run: apt-get install wixl msitools"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
    die "Rust target $TARGET missing; run: rustup target add $TARGET"
fi

# Cargo's package version; the MSI wants a purely numeric major.minor.patch, so a pre-release
# suffix (0.2.0-beta.1) is dropped there (the exe's own version string keeps it).
VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
[[ -n "$VERSION" ]] || die "could not read the package version from Cargo.toml"
MSI_VERSION=${VERSION%%-*}
[[ "$MSI_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "version '$VERSION' is not major.minor.patch"

feature_args=()
[[ -n "$FEATURES" ]] && feature_args=(--features "$FEATURES")

echo "==> building lanscatter.exe ($TARGET, profile $PROFILE, features '${FEATURES}')"
start=$(date +%s)
# rustc's windows-gnu target links with x86_64-w64-mingw32-gcc by default when cross-compiling.
cargo build --locked --target "$TARGET" --profile "$PROFILE" "${feature_args[@]}" --bin lanscatter
echo "    built in $(( $(date +%s) - start ))s"

EXE=${CARGO_TARGET_DIR:-target}/$TARGET/$PROFILE/lanscatter.exe
[[ -f "$EXE" ]] || die "cargo finished but $EXE is missing"

mkdir -p "$DIST"
cp "$EXE" "$DIST/lanscatter.exe"
MSI=$DIST/lanscatter-$VERSION-x86_64.msi
rm -f "$MSI"

echo "==> building $MSI with wixl"
# wixl resolves File/@Source and Icon/@SourceFile relative to the working directory and
# rejects absolute paths, hence the repo-relative paths.
wixl --arch x64 \
    -D "Version=$MSI_VERSION" \
    -D "ExeSource=$DIST/lanscatter.exe" \
    -D "IconFile=assets/lanscatter.ico" \
    -o "$MSI" wix/lanscatter.wxs
[[ -s "$MSI" ]] || die "wixl produced no $MSI"

ls -l "$DIST/lanscatter.exe" "$MSI"
echo "==> done: $MSI"
