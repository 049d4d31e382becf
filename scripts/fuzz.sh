#!/usr/bin/env bash
# Runs the cargo fuzz targets in fuzz/ (libFuzzer, nightly). The properties they
# check live in src/fuzz_props/; tests/fuzz_corpus.rs runs the same ones over the
# seeds on every `cargo test`.
#
#   scripts/fuzz.sh [target...]          each target for FUZZ_SECONDS (default 600) in turn
#   scripts/fuzz.sh --smoke [target...]  CI's bounded pass: build every target, run each over
#                                        its seeds, then FUZZ_SMOKE_SECONDS (default 5) of fuzzing
#
# New inputs go to fuzz/work/<target>/ (not committed); the seeds in fuzz/corpus/<target>/
# (and the Drone fixtures for drone_render) are only read. A crash or a broken property
# stops the run with the input under fuzz/artifacts/<target>/: fix it, add a regression
# test beside the code, and copy the input into fuzz/corpus/<target>/.
# Prints libFuzzer's final figures (executions, exec/s, cov, ft, corpus) per target.
set -euo pipefail
cd "$(dirname "$0")/.."

NIGHTLY=${NIGHTLY:-nightly}
# Builds at the usual niceness; the long runs at the lowest, beside other work.
BUILD_NICE=${NICE:-nice -n 10}
NICE=${FUZZ_NICE:-nice -n 19}
TARGET_DIR=${CARGO_TARGET_DIR:-target}/fuzz
# Absolute, so that it means the same from fuzz/ (the build) and from here (the runs).
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
smoke=false
if [ "${1:-}" = "--smoke" ]; then
    smoke=true
    shift
fi
seconds=$([ "$smoke" = true ] && echo "${FUZZ_SMOKE_SECONDS:-5}" || echo "${FUZZ_SECONDS:-600}")
# The chunked decoder is fuzzed through http_response (inputs starting with `~`).
ALL=(http_request signature drone_render http_response gateway store_codec routing_file)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL[@]}")

log() { printf '==> fuzz: %s\n' "$*"; }

if ! cargo +"$NIGHTLY" fuzz --version >/dev/null 2>&1; then
    # .ci/deps.sh installs it; without it the properties still ran over the seeds in
    # `cargo test` (tests/fuzz_corpus.rs), only the libFuzzer pass cannot run.
    log "cargo-fuzz is not installed (cargo install cargo-fuzz --locked); libFuzzer pass not run"
    exit 1
fi

start=$(date +%s)
# Long runs: cargo fuzz's defaults (optimised, with debug assertions and overflow checks,
# address sanitizer). The smoke pass: --dev (the same checks without optimisation, so a
# cold build on a CI machine costs less; its few seconds need no speed).
if [ "$smoke" = true ]; then
    profile=(--dev)
    bin_dir=debug
else
    profile=()
    bin_dir=release
fi
log "building ${targets[*]} (cargo +$NIGHTLY fuzz build ${profile[*]}, address sanitizer)"
build() { (cd fuzz && $BUILD_NICE cargo +"$NIGHTLY" fuzz build "${profile[@]}" --target-dir "$TARGET_DIR" "$@"); }
if [ "${#targets[@]}" -eq "${#ALL[@]}" ]; then
    build
else
    for t in "${targets[@]}"; do build "$t"; done
fi
for t in "${targets[@]}"; do
    test -x "$TARGET_DIR/x86_64-unknown-linux-gnu/$bin_dir/$t" || { log "target $t did not build"; exit 1; }
done
built=$(date +%s)
log "built in $(( built - start )) s"

seed_dirs() {
    local t=$1
    printf '%s\n' "fuzz/corpus/$t"
    if [ "$t" = drone_render ]; then
        printf '%s\n' test/fixtures/drone test/fixtures/synthetic
    fi
}

results=()
for t in "${targets[@]}"; do
    if [ "$smoke" = true ]; then
        work=$(mktemp -d)
    else
        work="fuzz/work/$t"
    fi
    mkdir -p "$work" "fuzz/artifacts/$t"
    mapfile -t seeds < <(seed_dirs "$t")
    # The smoke pass logs apart, so it never mixes with a long run of the same target.
    out="fuzz/work/$t$([ "$smoke" = true ] && echo .smoke).log"
    mkdir -p fuzz/work
    log "$t: ${seconds}s over ${seeds[*]}"
    # -max_len bounds generated inputs (the long Drone fixtures are read up to it).
    if ! $NICE cargo +"$NIGHTLY" fuzz run "${profile[@]}" --target-dir "$TARGET_DIR" --fuzz-dir fuzz "$t" \
        "$work" "${seeds[@]}" -- -max_total_time="$seconds" -max_len=20000 -timeout=10 -rss_limit_mb=1024 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$out" 2>&1; then
        tail -n 40 "$out"
        log "$t FAILED: the input is in fuzz/artifacts/$t/ (log: $out)"
        exit 1
    fi
    [ "$smoke" = true ] && rm -rf "$work"
    done_line=$(grep -aE '^#[0-9]+[[:space:]]+DONE ' "$out" | tail -n 1 || true)
    runs=$(grep -aE '^stat::number_of_executed_units:' "$out" | awk '{print $2}' || true)
    speed=$(grep -aE '^stat::average_exec_per_sec:' "$out" | awk '{print $2}' || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/p' <<<"$done_line")
    results+=("$(printf '| %-13s | %6s s | %12s | %7s | %5s | %6s | %-10s |' "$t" "$seconds" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done

printf '\n| %-13s | %8s | %12s | %7s | %5s | %6s | %-10s |\n' target time executions exec/s cov ft corpus
printf '|%s|%s|%s|%s|%s|%s|%s|\n' --------------- ---------- -------------- --------- ------- -------- ------------
printf '%s\n' "${results[@]}"
log "all ${#targets[@]} targets passed in $(( $(date +%s) - start )) s (build $(( built - start )) s)"
