#!/usr/bin/env bash
# Indexing benchmark: lanscatter vs b2sum over the same >= 2 GiB mixed data set, in RAM.
#
# Prints throughput of both, their ratio (goal >= 2.0 on 2 cores), warm-cache re-index time as
# a fraction of the cold time (goal < 2 %), and lanscatter's peak RSS (goal < 100 MiB).
# The data set lives in a tmpfs (/dev/shm by default) so both tools read from RAM, and is
# deleted afterwards. b2sum (coreutils, BLAKE2b-512, single-threaded) is the reference measured
# in the same run; each tool runs RUNS times and the best run counts, since this machine may be
# shared with other work.
#
# Usage: bench/index.sh [--size-mib N] [--runs N] [--dir TMPFS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=2304
RUNS=3
BASE=/dev/shm
while (($#)); do
    case "$1" in
        --size-mib) SIZE_MIB=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --dir) BASE=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

command -v b2sum >/dev/null || { echo "b2sum not found (coreutils)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time not found (apt-get install time)" >&2; exit 1; }

cargo build --release --locked -q
BIN=$PWD/target/release/lanscatter

WORK=$(mktemp -d "$BASE/lanscatter-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
DATA=$WORK/data
CACHE=$WORK/cache
mkdir -p "$DATA"

echo "== generating ${SIZE_MIB} MiB of mixed-size random files in $DATA"
python3 - "$DATA" "$SIZE_MIB" <<'PY'
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(1)
MiB = 1 << 20
# Mixed sizes: one big file (tests parallelism inside a file), a few large, many medium,
# many small (tests per-file overhead).
plan = [(1, total * 40 // 100), (4, total * 30 // 100 // 4), (100, total * 20 // 100 // 100)]
rest = total - sum(n * s for n, s in plan)
plan.append((rest // (64 * 1024), 64 * 1024))
written = 0
i = 0
for count, size in plan:
    for _ in range(count):
        d = os.path.join(root, f"d{i % 7}", f"e{i % 3}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
            left = size
            while left:
                n = min(left, 8 * MiB)
                f.write(rng.randbytes(n))
                left -= n
        written += size
        i += 1
print(f"   {i} files, {written / MiB:.0f} MiB")
PY
BYTES=$(du -sb "$DATA" | cut -f1)
FILES=$(find "$DATA" -type f | wc -l)

# measure CMD...: run once under /usr/bin/time; sets WALL, CPU (user+sys) and RSS_KIB.
measure() {
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" "$@" >"$WORK/out.txt"
    read -r WALL user sys RSS_KIB <"$WORK/time.txt"
    CPU=$(echo "$user + $sys" | bc -l)
}
min() { printf '%s\n' "$@" | sort -g | head -1; }

echo "== b2sum (single-threaded BLAKE2b-512), $RUNS runs"
b2_wall=(); b2_cpu=()
for _ in $(seq "$RUNS"); do
    measure sh -c "cd '$DATA' && find . -type f -print0 | xargs -0 b2sum"
    b2_wall+=("$WALL"); b2_cpu+=("$CPU")
done
echo "   wall: ${b2_wall[*]}   cpu: ${b2_cpu[*]}"

echo "== lanscatter index --no-cache (all cores), $RUNS runs"
ls_wall=(); ls_cpu=(); RSS=0
for _ in $(seq "$RUNS"); do
    measure "$BIN" index "$DATA" --no-cache
    ls_wall+=("$WALL"); ls_cpu+=("$CPU")
    ((RSS_KIB > RSS)) && RSS=$RSS_KIB
done
echo "   wall: ${ls_wall[*]}   cpu: ${ls_cpu[*]}"
sed 's/^/   /' "$WORK/out.txt"

echo "== lanscatter cold (empty hash cache) then warm re-index, $RUNS runs each"
cold=(); warm=()
for _ in $(seq "$RUNS"); do
    rm -rf "$CACHE"
    measure "$BIN" index "$DATA" --cache-dir "$CACHE"
    cold+=("$WALL")
    ((RSS_KIB > RSS)) && RSS=$RSS_KIB
    measure "$BIN" index "$DATA" --cache-dir "$CACHE"
    warm+=("$WALL")
    ((RSS_KIB > RSS)) && RSS=$RSS_KIB
done
echo "   cold: ${cold[*]}   warm: ${warm[*]}"

B2=$(min "${b2_wall[@]}"); LS=$(min "${ls_wall[@]}")
B2C=$(min "${b2_cpu[@]}"); LSC=$(min "${ls_cpu[@]}")
COLD=$(min "${cold[@]}"); WARM=$(min "${warm[@]}")
gbps() { echo "scale=3; $BYTES / $1 / 1000000000" | bc -l; }
echo
echo "== results: $FILES files, $((BYTES >> 20)) MiB, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '   b2sum:          %6.3f s wall %6.3f GB/s   (cpu %6.3f s)\n' "$B2" "$(gbps "$B2")" "$B2C"
printf '   lanscatter:     %6.3f s wall %6.3f GB/s   (cpu %6.3f s)\n' "$LS" "$(gbps "$LS")" "$LSC"
printf '   ratio:          %6.2fx wall-clock throughput (goal >= 2.0); %.2fx less CPU time per byte\n' \
    "$(echo "$B2 / $LS" | bc -l)" "$(echo "$B2C / $LSC" | bc -l)"
printf '   warm re-index:  %6.3f s = %.2f %% of cold %.3f s (goal < 2 %%)\n' "$WARM" "$(echo "100 * $WARM / $COLD" | bc -l)" "$COLD"
printf '   peak RSS:       %6.1f MiB (goal < 100 MiB)\n' "$(echo "$RSS / 1024" | bc -l)"
if [[ $(cut -d' ' -f1 /proc/loadavg | cut -d. -f1) -ge $(nproc) ]]; then
    echo "   NOTE: the machine was busy (load >= cores); wall-clock numbers understate both tools."
fi
