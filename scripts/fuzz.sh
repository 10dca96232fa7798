#!/usr/bin/env bash
# Long fuzz runs (issue 13). The targets live in tests/common/fuzz_targets.rs; two drivers run them:
#
#   scripts/fuzz.sh afl [TARGET...]   coverage-guided AFL++ (cargo-afl, stable toolchain), one
#                                     target after another, each until FUZZ_EXECS executions
#                                     (default 10,000,000) or FUZZ_SECONDS (if set) have passed;
#                                     prints each target's executions and crashes.
#   scripts/fuzz.sh prop [CASES [SLOW]] the seeded property tests of tests/fuzz_*.rs with CASES
#                                     cases per target (default 1,000,000), SLOW (default
#                                     CASES/100) for the real-master and whole-swarm ones.
#   scripts/fuzz.sh corpus            rewrites the seeds in fuzz/corpus/ (after changing one).
#   scripts/fuzz.sh list              the target names.
#
# AFL++ comes from Debian (`apt-get install afl++`), cargo-afl from crates.io; both are installed
# here when missing. Findings land in FUZZ_OUT (default /tmp/lanscatter-fuzz/<target>/crashes);
# a crash is fixed in its module and its input added to fuzz/corpus/<target>/ as a regression
# seed (tests/fuzz_corpus.rs runs every corpus file). Runs at nice 19: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${FUZZ_OUT:-/tmp/lanscatter-fuzz}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
afl_target_dir=$target_dir/afl
bin=$afl_target_dir/release/lanscatter-fuzz

all_targets() {
    sed -n 's/^    ("\([a-z_0-9]*\)", .*/\1/p' tests/common/fuzz_targets.rs
}

need_afl() {
    if ! command -v afl-fuzz >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++
    fi
    if ! cargo afl --version >/dev/null 2>&1; then
        cargo install --locked cargo-afl
    fi
    # The runtime cargo-afl links into instrumented builds, built once per toolchain.
    cargo afl config --build >/dev/null 2>&1 || true
    (cd fuzz && CARGO_TARGET_DIR=$afl_target_dir nice -n 19 cargo afl build --release --locked)
}

# One field of a finished AFL++ run's statistics, 0 when it has none.
afl_stat() {
    local v
    v=$(sed -n "s/^$2 *: //p" "$1/default/fuzzer_stats" 2>/dev/null || true)
    echo "${v:-0}"
}

run_afl() {
    need_afl
    local targets=("$@") failed=0
    ((${#targets[@]})) || mapfile -t targets < <(all_targets)
    local limit=(-E "${FUZZ_EXECS:-10000000}")
    [[ -n ${FUZZ_SECONDS:-} ]] && limit=(-V "$FUZZ_SECONDS")
    for t in "${targets[@]}"; do
        # Each run starts afresh (afl-fuzz will not reuse an output folder): keep crashes elsewhere.
        rm -rf "${out:?}/$t"
        mkdir -p "$out/$t"
        # -t: the hash cache target writes a file per execution; the planner runs 400 events.
        # -m: a decoder that allocates what a length field claims shows up as a crash.
        AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
            AFL_SUPPRESS_STARTUP_WARNING=1 \
            nice -n 19 cargo afl fuzz -i "fuzz/corpus/$t" -o "$out/$t" "${limit[@]}" -t 2000 -m 1024 -- "$bin" "$t" \
            >"$out/$t.log" 2>&1 || true
        local execs crashes
        execs=$(afl_stat "$out/$t" execs_done)
        crashes=$(afl_stat "$out/$t" saved_crashes)
        printf 'afl %-15s %12s executions, %s crashes, %s hangs (%s)\n' "$t" "$execs" "$crashes" \
            "$(afl_stat "$out/$t" saved_hangs)" "$out/$t"
        ((crashes == 0)) || failed=1
        ((execs > 0)) || { echo "afl did not run $t: see $out/$t.log" >&2; failed=1; }
    done
    return $failed
}

run_prop() {
    local cases=${1:-1000000}
    local slow=${2:-$((cases / 100))}
    local filter='^fuzz |panicked|saved to|^test result'
    LANSCATTER_FUZZ_CASES=$cases nice -n 19 cargo test --locked \
        --test fuzz_protocol --test fuzz_manifest --test fuzz_transfer --test fuzz_parsers --test fuzz_planner \
        -- --nocapture --test-threads 1 --skip random_swarms 2>&1 | grep -E "$filter"
    # A real master per case, and whole simulated swarms: a hundred times dearer per case.
    LANSCATTER_FUZZ_CASES=$slow nice -n 19 cargo test --locked --test fuzz_channel --test fuzz_planner \
        -- --nocapture --test-threads 1 --skip hostile_event 2>&1 | grep -E "$filter"
}

case ${1:-} in
    afl) shift; run_afl "$@" ;;
    prop) shift; run_prop "$@" ;;
    corpus) cargo test --locked --test fuzz_corpus -- --ignored write_corpus ;;
    list) all_targets ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
esac
