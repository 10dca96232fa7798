#!/usr/bin/env bash
# wine-msi-smoke.sh: install, run, upgrade and uninstall the MSI under Wine, on Linux.
#
# Why: check-msi.sh proves the MSI's tables are right; this proves Windows Installer (Wine's
# implementation) actually acts on them: files land in Program Files, the Start-menu shortcut
# and registry entries appear, the installed exe runs and reports the embedded version, the
# argv[0] entry points dispatch, a higher version replaces (not joins) the old one, and the
# uninstaller removes everything. It is not run by .ci/run: Wine is ~100 MB of packages and
# this adds ~1 min; run it by hand after scripts/package-windows.sh.
#
# What was seen (Debian 12, wine 8.0, 2026-11-29): all steps pass. Two Wine quirks, neither
# a property of the MSI:
#   - Wine 8.0 lacks bcryptprimitives.dll, whose ProcessPrng Rust's std (1.78+) imports on
#     Windows, so the exe fails to start with status c0000135. This script builds a 10-line
#     shim DLL with mingw (ProcessPrng -> RtlGenRandom) into the throwaway prefix only.
#     Real Windows 10/11 ship that DLL; the installer does not and must not carry it.
#   - Wine puts the all-users shortcut under the user's Start Menu folder; the script looks
#     for it anywhere under drive_c.
#
# Usage: scripts/wine-msi-smoke.sh [MSI]   (default: the one package-windows.sh built)
# Needs: wine64 (apt-get install --no-install-recommends wine64), gcc-mingw-w64-x86-64, wixl.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
MSI=${1:-target/dist/lanscatter-$VERSION-x86_64.msi}
EXE=target/dist/lanscatter.exe
[[ -f "$MSI" && -f "$EXE" ]] || { echo "wine-msi-smoke.sh: run scripts/package-windows.sh first" >&2; exit 2; }

WINE=$(command -v wine64 || true)
[[ -n "$WINE" ]] || WINE=/usr/lib/wine/wine64
[[ -x "$WINE" ]] || { echo "wine-msi-smoke.sh: wine64 not found; apt-get install --no-install-recommends wine64" >&2; exit 2; }
WINESERVER=$(command -v wineserver || echo /usr/lib/wine/wineserver)

export WINEPREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" WINEARCH=win64
WINEPREFIX=$(mktemp -d /tmp/lanscatter-wine.XXXXXX)
work=$(mktemp -d)
cleanup() { "$WINESERVER" -k 2>/dev/null || true; rm -rf "$WINEPREFIX" "$work"; }
trap cleanup EXIT

failures=0
pass() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*" >&2; failures=$((failures + 1)); }
w() { timeout 300 "$WINE" "$@"; }
drive_c=$WINEPREFIX/drive_c
install_dir="$drive_c/Program Files/LANScatter"
reg_has() { w reg query "$1" >/dev/null 2>&1; }
# DisplayVersion of every installed product named LANScatter, one per line.
installed_versions() {
    w reg query 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall' /s 2>/dev/null | tr -d '\r' |
        awk '/DisplayName +REG_SZ +LANScatter$/ {hit=1} /^HKEY/ {hit=0; ver=""} /DisplayVersion/ {ver=$3}
             hit && ver != "" {print ver; hit=0}'
}

echo "==> wine prefix $WINEPREFIX"
w wineboot --init >/dev/null 2>&1

cat >"$work/shim.c" <<'EOF'
/* Test-only stand-in for Windows 10's bcryptprimitives.dll, missing from Wine 8.0. */
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len); /* RtlGenRandom, advapi32 */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
EOF
printf 'LIBRARY bcryptprimitives\nEXPORTS\nProcessPrng\n' >"$work/shim.def"
if [[ ! -e "$drive_c/windows/system32/bcryptprimitives.dll" ]]; then
    x86_64-w64-mingw32-gcc -O2 -shared -o "$drive_c/windows/system32/bcryptprimitives.dll" \
        "$work/shim.c" "$work/shim.def" -ladvapi32
    echo "  (installed test-only bcryptprimitives.dll shim into the wine prefix)"
fi

echo "-- msiexec /i $MSI"
w msiexec /i "$(pwd)/$MSI" /qn && pass "msiexec /i exited 0" || fail "msiexec /i failed"
for name in lanscatter.exe lanscatter_master.exe lanscatter_peer.exe; do
    if cmp -s "$install_dir/$name" "$EXE"; then pass "installed C:\\Program Files\\LANScatter\\$name"
    else fail "$name missing or different in $install_dir"; fi
done
lnk=$(find "$drive_c" -name 'LANScatter.lnk' | head -n1)
[[ -n "$lnk" ]] && pass "Start-menu shortcut ${lnk#"$drive_c"/}" || fail "no LANScatter.lnk created"
reg_has 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\App Paths\lanscatter_master.exe' &&
    pass "App Paths entry for lanscatter_master.exe" || fail "App Paths entry missing"
reg_has 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run' &&
    ! w reg query 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run' /v LANScatter >/dev/null 2>&1 &&
    pass "no autostart entry by default" || fail "autostart entry present without ADDLOCAL"
mapfile -t versions < <(installed_versions)
[[ "${versions[*]}" == "${VERSION%%-*}" ]] && pass "Add/Remove Programs lists LANScatter ${versions[*]}" ||
    fail "installed products: '${versions[*]}'"

echo "-- run the installed exe"
out=$(w 'C:\Program Files\LANScatter\lanscatter.exe' --version | tr -d '\r') || true
embedded=$(wrestool -x --raw --type=16 "$EXE" | python3 scripts/pe-version-info.py |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["strings"]["ProductVersion"])')
[[ "$out" == "lanscatter $embedded" ]] && pass "lanscatter.exe --version: '$out' (matches the version resource)" ||
    fail "lanscatter.exe --version printed '$out', version resource says '$embedded'"
help=$(w 'C:\Program Files\LANScatter\lanscatter_master.exe' --help | tr -d '\r') || true
grep -q 'Usage: lanscatter_master.exe master' <<<"$help" && pass "lanscatter_master.exe dispatches to 'master'" ||
    fail "lanscatter_master.exe --help did not show master usage: $(head -n3 <<<"$help")"
help=$(w 'C:\Program Files\LANScatter\lanscatter_peer.exe' --help | tr -d '\r') || true
grep -q 'Usage: lanscatter_peer.exe peer' <<<"$help" && pass "lanscatter_peer.exe dispatches to 'peer'" ||
    fail "lanscatter_peer.exe --help did not show peer usage"

echo "-- major upgrade to a higher version, with the Autostart feature"
IFS=. read -r maj min pat <<<"${VERSION%%-*}"
next="$maj.$min.$((pat + 1))"
wixl --arch x64 -D "Version=$next" -D "ExeSource=$EXE" -D IconFile=assets/lanscatter.ico \
    -o "$work/upgrade.msi" wix/lanscatter.wxs 2>/dev/null
w msiexec /i "$work/upgrade.msi" /qn ADDLOCAL=ALL &&
    pass "msiexec /i (version $next, ADDLOCAL=ALL) exited 0" || fail "upgrade install failed"
mapfile -t versions < <(installed_versions)
[[ "${versions[*]}" == "$next" ]] && pass "upgrade replaced the old version (installed: ${versions[*]})" ||
    fail "after upgrade, installed versions are '${versions[*]}' (expected only $next)"
run=$(w reg query 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run' /v LANScatter 2>/dev/null | tr -d '\r' || true)
grep -qF '"C:\Program Files\LANScatter\lanscatter.exe" gui' <<<"$run" && pass "autostart Run entry set" ||
    fail "autostart Run entry missing after ADDLOCAL=ALL: $run"

echo "-- msiexec /x"
w msiexec /x "$work/upgrade.msi" /qn && pass "msiexec /x exited 0" || fail "msiexec /x failed"
[[ ! -e "$install_dir/lanscatter.exe" ]] && pass "files removed" || fail "lanscatter.exe still installed"
[[ -z "$(find "$drive_c" -name 'LANScatter.lnk')" ]] && pass "shortcut removed" || fail "shortcut left behind"
! reg_has 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\App Paths\lanscatter_master.exe' &&
    pass "App Paths entries removed" || fail "App Paths entry left behind"
! w reg query 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run' /v LANScatter >/dev/null 2>&1 &&
    pass "autostart entry removed" || fail "autostart entry left behind"
[[ -z "$(installed_versions)" ]] && pass "no LANScatter left in Add/Remove Programs" || fail "still registered as installed"

echo
if ((failures)); then echo "wine-msi-smoke.sh: $failures check(s) FAILED" >&2; exit 1; fi
echo "wine-msi-smoke.sh: all checks passed"
