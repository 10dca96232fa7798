#!/usr/bin/env bash
# check-msi.sh: inspect the MSI and exe that scripts/package-windows.sh built, without Windows.
#
# Why: an MSI can build cleanly and still be wrong (a stale exe, a missing shortcut, a changed
# UpgradeCode that would make upgrades install side by side). These checks read the MSI's own
# tables with msitools (`msiinfo`, `msidump`, `msiextract`) and the exe's resources with
# icoutils' `wrestool`, and fail loudly, naming what is wrong, on any mismatch.
#
# Usage: scripts/check-msi.sh [MSI [EXE]]
#   defaults: target/dist/lanscatter-<Cargo version>-x86_64.msi and target/dist/lanscatter.exe
# Needs: msitools, icoutils, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

# Never change: Windows Installer finds older LANScatter installs by this code (MajorUpgrade).
UPGRADE_CODE='{BA736444-8B43-4842-A631-3CEB509A29F0}'

VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
MSI_VERSION=${VERSION%%-*}
MSI=${1:-target/dist/lanscatter-$VERSION-x86_64.msi}
EXE=${2:-target/dist/lanscatter.exe}

failures=0
pass() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*" >&2; failures=$((failures + 1)); }
need() { command -v "$1" >/dev/null || { echo "check-msi.sh: $1 not found; run: apt-get install $2" >&2; exit 2; }; }
need msiinfo msitools
need msidump msitools
need msiextract msitools
need wrestool icoutils
need python3 python3

[[ -f "$MSI" ]] || { echo "check-msi.sh: $MSI not found; run scripts/package-windows.sh first" >&2; exit 2; }
[[ -f "$EXE" ]] || { echo "check-msi.sh: $EXE not found; run scripts/package-windows.sh first" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Rows of an MSI table as tab-separated lines, without the 3 header lines msiinfo prints.
table() { msiinfo export "$MSI" "$1" | tail -n +4 | tr -d '\r'; }
# The row of table $1 whose column 1 equals $2.
row() { table "$1" | awk -F'\t' -v k="$2" '$1 == k'; }
# Column $3 (1-based) of that row.
col() { row "$1" "$2" | cut -f"$3"; }

echo "== MSI: $MSI"
exe_size=$(stat -c %s "$EXE")

echo "-- summary information"
suminfo=$(msiinfo suminfo "$MSI")
if grep -q '^Template: x64;1033' <<<"$suminfo"; then pass "64-bit package (Template x64;1033)"
else fail "package is not marked x64: $(grep '^Template' <<<"$suminfo")"; fi

echo "-- File table (exe and entry points at the exe's size, $exe_size bytes)"
for name in lanscatter.exe lanscatter_master.exe lanscatter_peer.exe; do
    line=$(table File | awk -F'\t' -v n="$name" '$3 == n || $3 ~ ("\\|" n "$")')
    if [[ -z "$line" ]]; then fail "$name is not in the File table"; continue; fi
    size=$(cut -f4 <<<"$line")
    if [[ "$size" == "$exe_size" ]]; then pass "$name in File table, FileSize $size"
    else fail "$name has FileSize $size in the MSI but the exe is $exe_size bytes"; fi
done
dir=$(col Component MainExecutable 3)
[[ "$dir" == INSTALLDIR ]] && pass "lanscatter.exe installs into INSTALLDIR" || fail "MainExecutable goes to '$dir'"
parent=$(col Directory INSTALLDIR 2)
[[ "$parent" == ProgramFiles64Folder ]] && pass "INSTALLDIR is under ProgramFiles64Folder" ||
    fail "INSTALLDIR's parent is '$parent', not ProgramFiles64Folder"

echo "-- embedded cabinet holds exactly the built exe"
mkdir -p "$work/extract"
(cd "$work/extract" && msiextract "$OLDPWD/$MSI" >/dev/null)
for name in lanscatter.exe lanscatter_master.exe lanscatter_peer.exe; do
    got=$(find "$work/extract" -name "$name" -type f | head -n1)
    if [[ -z "$got" ]]; then fail "$name not found in the extracted cabinet"
    elif cmp -s "$got" "$EXE"; then pass "$name extracted byte-identical to $EXE"
    else fail "$name in the cabinet differs from $EXE (stale build?)"; fi
done

echo "-- Start-menu shortcut"
sc=$(row Shortcut LanscatterShortcut)
if [[ -z "$sc" ]]; then fail "no LanscatterShortcut row in the Shortcut table"
else
    # cut, not `read`: read merges adjacent tabs, shifting columns after an empty field.
    sdir=$(cut -f2 <<<"$sc") sname=$(cut -f3 <<<"$sc") starget=$(cut -f5 <<<"$sc") sargs=$(cut -f6 <<<"$sc")
    [[ "$sdir" == ProgramMenuFolder ]] && pass "shortcut in ProgramMenuFolder" || fail "shortcut directory is '$sdir'"
    [[ "$sname" == *LANScatter ]] && pass "shortcut named LANScatter" || fail "shortcut name is '$sname'"
    [[ "$starget" == '[INSTALLDIR]lanscatter.exe' ]] && pass "shortcut targets [INSTALLDIR]lanscatter.exe" ||
        fail "shortcut target is '$starget'"
    [[ "$sargs" == gui ]] && pass "shortcut starts the tray app (argument 'gui')" || fail "shortcut arguments are '$sargs'"
fi

echo "-- upgrade code and MajorUpgrade"
got_code=$(col Property UpgradeCode 2)
[[ "$got_code" == "$UPGRADE_CODE" ]] && pass "UpgradeCode $got_code" ||
    fail "UpgradeCode is '$got_code', expected $UPGRADE_CODE (changing it breaks upgrades)"
upgrade_rows=$(table Upgrade | awk -F'\t' -v c="$UPGRADE_CODE" '$1 == c' | wc -l)
[[ "$upgrade_rows" -ge 2 ]] && pass "Upgrade table has $upgrade_rows rows for the UpgradeCode (older removed, newer detected)" ||
    fail "Upgrade table has $upgrade_rows rows for $UPGRADE_CODE; MajorUpgrade missing?"
table InstallExecuteSequence | grep -q '^RemoveExistingProducts' && pass "RemoveExistingProducts scheduled" ||
    fail "RemoveExistingProducts is not in InstallExecuteSequence"
got_version=$(col Property ProductVersion 2)
[[ "$got_version" == "$MSI_VERSION" ]] && pass "ProductVersion $got_version" ||
    fail "ProductVersion is '$got_version', expected $MSI_VERSION from Cargo.toml"

echo "-- terminal entry points and autostart"
for name in lanscatter.exe lanscatter_master.exe lanscatter_peer.exe; do
    table Registry | grep -qF "App Paths\\$name" && pass "App Paths entry for $name" || fail "no App Paths entry for $name"
done
run=$(table Registry | awk -F'\t' '$3 ~ /CurrentVersion\\Run$/')
[[ "$run" == *'"[INSTALLDIR]lanscatter.exe" gui'* ]] && pass "Run-key value starts the tray app" || fail "no Run-key autostart value"
level=$(col Feature Autostart 6)
[[ "$level" -gt 1 ]] && pass "Autostart feature is opt-in (Level $level > INSTALLLEVEL 1)" ||
    fail "Autostart feature Level is '$level'; it would be installed by default"

echo "-- msidump round-trip (every table readable)"
if (cd "$work" && msidump "$OLDPWD/$MSI" >/dev/null 2>&1) && [[ -f "$work/File.idt" && -f "$work/Shortcut.idt" ]]; then
    pass "msidump wrote $(ls "$work"/*.idt | wc -l) tables"
else fail "msidump could not dump the MSI"; fi

echo "== EXE: $EXE"
echo "-- PE header and imports"
if command -v x86_64-w64-mingw32-objdump >/dev/null; then
    x86_64-w64-mingw32-objdump -f "$EXE" | grep -q 'file format pei-x86-64' && pass "PE32+ x86-64 executable" ||
        fail "not a 64-bit Windows executable"
    subsystem=$(x86_64-w64-mingw32-objdump -p "$EXE" | awk '/^Subsystem/ {print $3, $4}')
    pass "subsystem $subsystem"
    dlls=$(x86_64-w64-mingw32-objdump -p "$EXE" | awk '/DLL Name:/ {print tolower($3)}' | sort -u)
    # mingw runtime DLLs (libgcc_s_seh-1, libwinpthread-1, libstdc++-6) exist on no stock Windows.
    bad=$(grep -E '^lib' <<<"$dlls" || true)
    [[ -z "$bad" ]] && pass "imports only system DLLs: $(tr '\n' ' ' <<<"$dlls")" ||
        fail "exe imports mingw runtime DLLs that Windows lacks: $(tr '\n' ' ' <<<"$bad")"
else
    echo "  (x86_64-w64-mingw32-objdump not found: PE header checks skipped)"
fi
echo "-- resources"
res=$(wrestool -l "$EXE" 2>&1 || true)
grep -q -- '--type=14 --name=1 ' <<<"$res" && pass "group icon resource 1" || fail "no icon (group icon 1) in the exe"
grep -q -- '--type=16 ' <<<"$res" && pass "version resource" || fail "no version resource in the exe"
grep -q -- '--type=24 --name=1 ' <<<"$res" && pass "manifest resource 1" || fail "no application manifest (type 24, id 1)"

echo "-- version info"
if wrestool -x --raw --type=16 "$EXE" >"$work/version.bin" 2>/dev/null && [[ -s "$work/version.bin" ]] &&
    python3 scripts/pe-version-info.py <"$work/version.bin" >"$work/version.json"; then
    cat "$work/version.json" | sed 's/^/    /'
    vcheck=$(python3 - "$work/version.json" "$VERSION" "$MSI_VERSION" <<'EOF'
import json, sys
info, version, numeric = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
s = info["strings"]
problems = []
if info["file_version"] != numeric + ".0":
    problems.append(f"fixed FileVersion {info['file_version']} != {numeric}.0")
if s.get("FileVersion") != version:
    problems.append(f"FileVersion string {s.get('FileVersion')!r} != {version!r}")
if not s.get("ProductVersion", "").startswith(version):
    problems.append(f"ProductVersion string {s.get('ProductVersion')!r} does not start with {version!r}")
for key, want in [("ProductName", "LANScatter"), ("OriginalFilename", "lanscatter.exe")]:
    if s.get(key) != want:
        problems.append(f"{key} {s.get(key)!r} != {want!r}")
print("; ".join(problems) or "ok " + s.get("ProductVersion", ""))
EOF
)
    [[ "$vcheck" == ok* ]] && pass "version info matches Cargo.toml ($vcheck)" || fail "version info: $vcheck"
else
    fail "could not extract/decode the version resource"
fi

echo "-- application manifest"
if wrestool -x --raw --type=24 --name=1 "$EXE" >"$work/manifest.xml" 2>/dev/null && [[ -s "$work/manifest.xml" ]]; then
    mcheck=$(python3 - "$work/manifest.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
text = {el.tag.split('}')[-1]: (el.attrib, (el.text or '').strip()) for el in root.iter()}
problems = []
if text.get("requestedExecutionLevel", ({}, ""))[0].get("level") != "asInvoker":
    problems.append("requestedExecutionLevel is not asInvoker")
if text.get("dpiAwareness", ({}, ""))[1] != "PerMonitorV2":
    problems.append("dpiAwareness is not PerMonitorV2")
if text.get("longPathAware", ({}, ""))[1] != "true":
    problems.append("longPathAware is not true")
print("; ".join(problems) or "ok")
EOF
)
    [[ "$mcheck" == ok ]] && pass "manifest parses: asInvoker, PerMonitorV2, longPathAware" || fail "manifest: $mcheck"
else
    fail "could not extract the manifest"
fi

echo
if ((failures)); then
    echo "check-msi.sh: $failures check(s) FAILED" >&2
    exit 1
fi
echo "check-msi.sh: all checks passed"
