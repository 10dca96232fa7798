#!/usr/bin/env bash
# bench/sync3.sh: wall time and peak RSS of a loopback sync (no shaping) of a 1.5 GB folder in
# 210 files to 3 peers, verified with diff -r. The sync issue asks for these figures; the
# original LANScatter took 55-73 s for 1.5 GB to 3 peers on this machine.
#
# usage: bench/sync3.sh [--bin PATH] [--root DIR]   (default root: /var/tmp/lanscatter-sync3)
set -euo pipefail
BIN=target/release/lanscatter
ROOT=/var/tmp/lanscatter-sync3
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --root) ROOT=$2; shift 2 ;;
    *) echo "usage: $0 [--bin PATH] [--root DIR]" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no binary at $BIN; run: cargo build --release --locked" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install -y time)" >&2; exit 2; }
SRC=$ROOT/src
if [ ! -f "$SRC/.complete" ]; then
  echo "generating 10 x 100 MB + 200 x 2.5 MB in $SRC" >&2
  rm -rf "$SRC"; mkdir -p "$SRC/big" "$SRC/small"
  for i in $(seq 0 9); do head -c 100000000 /dev/urandom > "$SRC/big/f$i.bin"; done
  for i in $(seq 0 199); do head -c 2500000 /dev/urandom > "$SRC/small/s$i.bin"; done
  touch "$SRC/.complete"
fi
rm -rf "$ROOT"/p? "$ROOT"/*.log
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# .complete is part of the folder; it is synced like any other file.
/usr/bin/time -v "$BIN" master "$SRC" --port 20564 --bind 127.0.0.1 --no-cache 2> "$ROOT/master.log" &
PIDS+=($!)
for _ in $(seq 1 600); do grep -q "ready" "$ROOT/master.log" 2>/dev/null && break; sleep 0.1; done
grep -q "ready" "$ROOT/master.log" || { echo "master did not get ready; see $ROOT/master.log" >&2; exit 1; }
start=$(date +%s.%N)
PEERS=()
for i in 0 1 2; do
  /usr/bin/time -v "$BIN" peer 127.0.0.1:20564 "$ROOT/p$i" --port $((20570 + i)) --bind 127.0.0.1 \
    --advertise 127.0.0.1 --no-cache --exit-when-done 2> "$ROOT/p$i.log" &
  PEERS+=($!)
done
for p in "${PEERS[@]}"; do wait "$p"; done
end=$(date +%s.%N)
# GNU time ignores SIGINT while it waits: signal the master itself (its child).
pkill -INT -P "${PIDS[0]}"; wait "${PIDS[0]}" || true
PIDS=()
for i in 0 1 2; do diff -r -x .lanscatter "$SRC" "$ROOT/p$i" > /dev/null || { echo "p$i differs from the master" >&2; exit 1; }; done
rss() { awk -F: '/Maximum resident/ {gsub(/ /, "", $2); printf "%.1f", $2 / 1024}' "$1"; }
bytes=$(du -sb "$SRC" | cut -f1)
files=$(find "$SRC" -type f | wc -l)
printf 'loopback sync: %d bytes in %d files to 3 peers: %.1f s; peak RSS MiB: master %s, peers %s %s %s; all identical (diff -r)\n' \
  "$bytes" "$files" "$(echo "$end - $start" | bc)" "$(rss "$ROOT/master.log")" "$(rss "$ROOT/p0.log")" "$(rss "$ROOT/p1.log")" "$(rss "$ROOT/p2.log")"
