#!/usr/bin/env bash
# package-macos.sh: assemble LANScatter.app (a tray-only app) and, on macOS, a dmg around it.
#
# Why it runs on Linux too: the bundle layout, Info.plist and icon are where macOS packaging
# usually breaks, and none of them need a Mac. So on any OS this script builds and validates
#   target/dist/macos/LANScatter.app/Contents/{Info.plist, PkgInfo, MacOS/, Resources/lanscatter.icns}
# and only the steps that truly need Apple's toolchain are skipped elsewhere:
#   - the macOS binary: linking needs the macOS SDK (not redistributable, so not on Linux CI).
#     On Linux, Contents/MacOS/lanscatter_gui is a clearly labelled placeholder shell script
#     that says so and exits 1, unless LANSCATTER_MAC_BINARY points at a real macOS binary.
#   - the dmg: `hdiutil` exists only on macOS.
#
# Design choices:
#   - CFBundleExecutable is `lanscatter_gui`: the binary picks its mode from its file name
#     (src/cli/mod.rs), and Finder launches bundles without arguments, so that name alone makes
#     a double-click start the tray app. The same file symlinked as `lanscatter`,
#     `lanscatter_master`, `lanscatter_peer` gives the terminal commands (README, "Install").
#   - LSUIElement=true: no Dock icon or app menu; the app lives in the menu bar only.
#   - On macOS the binary is universal (arm64 + x86_64 via lipo), ad-hoc signed so Apple
#     Silicon runs it; notarization needs a paid Developer ID and is not done here.
#
# Env: LANSCATTER_PROFILE (default installer), LANSCATTER_FEATURES (default gui),
#      LANSCATTER_MAC_TARGETS (default "aarch64-apple-darwin x86_64-apple-darwin"),
#      LANSCATTER_MAC_BINARY (use this prebuilt macOS binary instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${LANSCATTER_PROFILE:-installer}
FEATURES=${LANSCATTER_FEATURES-gui}
MAC_TARGETS=${LANSCATTER_MAC_TARGETS:-aarch64-apple-darwin x86_64-apple-darwin}
OUT=target/dist/macos
APP=$OUT/LANScatter.app
EXE_NAME=lanscatter_gui
BUNDLE_ID=org.lanscatter.LANScatter

die() { echo "package-macos.sh: $*" >&2; exit 1; }
on_macos=false
[[ "$(uname -s)" == Darwin ]] && on_macos=true

VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
[[ -n "$VERSION" ]] || die "could not read the package version from Cargo.toml"
SHORT_VERSION=${VERSION%%-*}
# Any python3 writes and checks the plist; the Linux icon path also needs Pillow, which Debian's
# python3-pil installs for /usr/bin/python3 (a pyenv or venv python3 first on PATH may lack it).
PY=python3
command -v "$PY" >/dev/null || die "python3 is needed to write and validate Info.plist"
if ! $on_macos && ! "$PY" -c 'import PIL' 2>/dev/null && /usr/bin/python3 -c 'import PIL' 2>/dev/null; then
    PY=/usr/bin/python3
fi

rm -rf "$APP"
mkdir -p "$APP/Contents/MacOS" "$APP/Contents/Resources"

# ---- executable ---------------------------------------------------------------------------
binary_kind=
if [[ -n "${LANSCATTER_MAC_BINARY:-}" ]]; then
    [[ -f "$LANSCATTER_MAC_BINARY" ]] || die "LANSCATTER_MAC_BINARY=$LANSCATTER_MAC_BINARY does not exist"
    cp "$LANSCATTER_MAC_BINARY" "$APP/Contents/MacOS/$EXE_NAME"
    binary_kind="prebuilt ($LANSCATTER_MAC_BINARY)"
elif $on_macos; then
    feature_args=()
    [[ -n "$FEATURES" ]] && feature_args=(--features "$FEATURES")
    slices=()
    for t in $MAC_TARGETS; do
        echo "==> building lanscatter for $t (profile $PROFILE, features '$FEATURES')"
        cargo build --locked --target "$t" --profile "$PROFILE" "${feature_args[@]}" --bin lanscatter
        slices+=("${CARGO_TARGET_DIR:-target}/$t/$PROFILE/lanscatter")
    done
    if ((${#slices[@]} > 1)); then
        lipo -create -output "$APP/Contents/MacOS/$EXE_NAME" "${slices[@]}"
        binary_kind="universal ($MAC_TARGETS)"
    else
        cp "${slices[0]}" "$APP/Contents/MacOS/$EXE_NAME"
        binary_kind="$MAC_TARGETS"
    fi
else
    cat >"$APP/Contents/MacOS/$EXE_NAME" <<EOF
#!/bin/sh
# PLACEHOLDER, not LANScatter: this LANScatter.app was assembled on $(uname -s) by
# scripts/package-macos.sh to check the bundle layout. A macOS binary can only be linked on
# macOS (it needs Apple's SDK); run scripts/package-macos.sh on a Mac for a working app.
echo "LANScatter.app placeholder: built on a non-macOS host without a macOS binary" >&2
exit 1
EOF
    binary_kind="PLACEHOLDER script (no macOS binary can be linked on $(uname -s))"
fi
chmod 755 "$APP/Contents/MacOS/$EXE_NAME"
printf 'APPL????' >"$APP/Contents/PkgInfo"

# ---- icon ---------------------------------------------------------------------------------
# The icns holds PNGs at the sizes Finder and the Dock ask for, never larger than the source
# (upscaled icons look blurry; macOS scales the largest one present instead).
ICON_SRC=assets/lanscatter.png
ICNS=$APP/Contents/Resources/lanscatter.icns
[[ -f "$ICON_SRC" ]] || die "$ICON_SRC missing"
if $on_macos; then
    iconset=$(mktemp -d)/lanscatter.iconset
    mkdir -p "$iconset"
    src_px=$(sips -g pixelWidth "$ICON_SRC" | awk '/pixelWidth/ {print $2}')
    for s in 16 32 128 256 512; do
        ((s <= src_px)) && sips -z "$s" "$s" "$ICON_SRC" --out "$iconset/icon_${s}x${s}.png" >/dev/null
        ((2 * s <= src_px)) && sips -z $((2 * s)) $((2 * s)) "$ICON_SRC" --out "$iconset/icon_${s}x${s}@2x.png" >/dev/null
    done
    iconutil -c icns -o "$ICNS" "$iconset"
else
    command -v png2icns >/dev/null || die "png2icns not found; run: apt-get install icnsutils"
    "$PY" -c 'import PIL' 2>/dev/null || die "Pillow not found; run: apt-get install python3-pil"
    tmp=$(mktemp -d)
    "$PY" - "$ICON_SRC" "$tmp" <<'EOF'
import sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
im = Image.open(src).convert("RGBA")
for s in (16, 32, 48, 128, 256, 512, 1024):
    if s <= im.width:
        im.resize((s, s), Image.LANCZOS).save(f"{out}/icon_{s}.png")
EOF
    png2icns "$ICNS" "$tmp"/icon_*.png >/dev/null
    rm -rf "$tmp"
fi

# ---- Info.plist ---------------------------------------------------------------------------
"$PY" - "$APP/Contents/Info.plist" "$VERSION" "$SHORT_VERSION" "$EXE_NAME" "$BUNDLE_ID" <<'EOF'
import plistlib, sys
path, version, short, exe, bundle_id = sys.argv[1:]
plist = {
    "CFBundleDevelopmentRegion": "en",
    "CFBundleDisplayName": "LANScatter",
    "CFBundleExecutable": exe,
    "CFBundleIconFile": "lanscatter",
    "CFBundleIdentifier": bundle_id,
    "CFBundleInfoDictionaryVersion": "6.0",
    "CFBundleName": "LANScatter",
    "CFBundlePackageType": "APPL",
    "CFBundleShortVersionString": short,
    "CFBundleSignature": "????",
    "CFBundleVersion": version,
    "LSApplicationCategoryType": "public.app-category.utilities",
    "LSMinimumSystemVersion": "11.0",
    # Tray-only: no Dock icon, no menu bar of its own.
    "LSUIElement": True,
    "NSHighResolutionCapable": True,
    "NSHumanReadableCopyright": "MIT License, LANScatter contributors",
    # The peer talks to the master and other peers over the LAN.
    "NSLocalNetworkUsageDescription": "LANScatter syncs folders with other computers on your local network.",
}
with open(path, "wb") as f:
    plistlib.dump(plist, f, fmt=plistlib.FMT_XML, sort_keys=True)
EOF

# ---- validate the bundle --------------------------------------------------------------------
"$PY" - "$APP" <<'EOF'
import os, plistlib, sys
app = sys.argv[1]
problems = []
with open(os.path.join(app, "Contents", "Info.plist"), "rb") as f:
    p = plistlib.load(f)  # raises on malformed XML or plist structure
for key, typ in [("CFBundleExecutable", str), ("CFBundleIdentifier", str), ("CFBundleName", str),
                 ("CFBundlePackageType", str), ("CFBundleShortVersionString", str),
                 ("CFBundleVersion", str), ("CFBundleIconFile", str), ("LSUIElement", bool),
                 ("CFBundleInfoDictionaryVersion", str)]:
    if not isinstance(p.get(key), typ):
        problems.append(f"{key} missing or not a {typ.__name__}")
if p.get("LSUIElement") is not True:
    problems.append("LSUIElement is not true (the app would show a Dock icon)")
if p.get("CFBundlePackageType") != "APPL":
    problems.append("CFBundlePackageType is not APPL")
exe = os.path.join(app, "Contents", "MacOS", p.get("CFBundleExecutable", ""))
if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
    problems.append(f"CFBundleExecutable {exe} missing or not executable")
icns = os.path.join(app, "Contents", "Resources", p.get("CFBundleIconFile", "") + ".icns")
try:
    with open(icns, "rb") as f:
        head = f.read(8)
    if head[:4] != b"icns" or int.from_bytes(head[4:8], "big") != os.path.getsize(icns):
        problems.append(f"{icns} is not a well-formed icns file")
except OSError as e:
    problems.append(f"icon {icns} unreadable: {e}")
with open(os.path.join(app, "Contents", "PkgInfo"), "rb") as f:
    if f.read() != b"APPL????":
        problems.append("PkgInfo is not APPL????")
if problems:
    sys.exit("package-macos.sh: invalid bundle: " + "; ".join(problems))
print(f"    Info.plist valid: {p['CFBundleIdentifier']} {p['CFBundleShortVersionString']} "
      f"({p['CFBundleVersion']}), executable {p['CFBundleExecutable']}, LSUIElement {p['LSUIElement']}")
EOF
if command -v icns2png >/dev/null; then
    echo "    icns sizes: $(icns2png -l "$ICNS" | grep -o " [0-9]*x[0-9]* 32-bit" | awk '{print $1}' | tr '\n' ' ')"
fi
echo "    executable: $binary_kind"

# ---- sign and dmg (macOS only) --------------------------------------------------------------
if $on_macos; then
    plutil -lint "$APP/Contents/Info.plist"
    # Ad-hoc signature: Apple Silicon refuses unsigned arm64 code, and editing the bundle after
    # the linker's own ad-hoc signature invalidates it. A Developer ID would replace "-".
    codesign --force --deep --sign - "$APP"
    codesign --verify --deep --strict "$APP"
    stage=$(mktemp -d)
    cp -R "$APP" "$stage/"
    ln -s /Applications "$stage/Applications"
    DMG=target/dist/LANScatter-$VERSION.dmg
    rm -f "$DMG"
    hdiutil create -volname "LANScatter $VERSION" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$DMG"
    hdiutil verify "$DMG"
    rm -rf "$stage"
    echo "==> done: $DMG"
else
    echo "==> $APP assembled and validated."
    echo "    The dmg step needs macOS (hdiutil), and so does a real binary (Apple's SDK):"
    echo "    skipped here. Run scripts/package-macos.sh on a Mac to get LANScatter-$VERSION.dmg."
fi
