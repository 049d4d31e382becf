#!/usr/bin/env bash
# Why this exists: CI's Raspberry Pi leg. Builds the static musl binaries for both
# Pi targets (and the aarch64 +mongodb variant), runs each under user-mode qemu
# (scripts/qemu-smoke.sh: --version, serve --dry-run, GET /health, one signed
# fixture, SIGTERM), and fails if the lean aarch64 binary outgrows its size budget.
# Prints the wall time of every step so the 90-minute CI budget stays visible.
# Called by the lead's .ci/run; runnable by hand (`make cross-ci`).
#
# Env: CROSS_SKIP_DEPS=1   skip .ci/deps.sh (toolchains already installed)
#      CROSS_SKIP_MONGODB=1 skip the +mongodb build (local iteration only)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

AARCH64=aarch64-unknown-linux-musl
ARMV7=armv7-unknown-linux-musleabihf
timings=()

step() {
    local name=$1; shift
    printf '\n==> cross: %s\n' "$name"
    local start=$SECONDS
    "$@"
    local took=$(( SECONDS - start ))
    timings+=("$(printf '%-44s %5ss' "$name" "$took")")
    printf '==> cross: %s done in %ss\n' "$name" "$took"
}

report() {
    printf '\n==> cross: step times\n'
    local t
    for t in "${timings[@]}"; do printf '    %s\n' "$t"; done
}
trap report EXIT

if [ "${CROSS_SKIP_DEPS:-0}" != 1 ]; then
    step "deps (.ci/deps.sh)" .ci/deps.sh
fi
step "shellcheck (Pi build scripts)" shellcheck -x -S warning .ci/deps.sh .ci/cross.sh scripts/*.sh \
    cross/armv7-musl/arm-linux-musleabihf-gcc
step "deploy script decisions (fake ssh)" scripts/deploy-test.sh
step "build $AARCH64" make --no-print-directory aarch64
step "smoke $AARCH64 (qemu)" scripts/qemu-smoke.sh "$AARCH64" "dist/$AARCH64/drone-discord"
step "build $ARMV7" make --no-print-directory armv7
step "smoke $ARMV7 (qemu)" scripts/qemu-smoke.sh "$ARMV7" "dist/$ARMV7/drone-discord"
size_args=("$AARCH64=dist/$AARCH64/drone-discord" "$ARMV7=dist/$ARMV7/drone-discord")
if [ "${CROSS_SKIP_MONGODB:-0}" != 1 ]; then
    step "build $AARCH64 +mongodb" make --no-print-directory aarch64-mongodb
    step "smoke $AARCH64 +mongodb (qemu)" scripts/qemu-smoke.sh "$AARCH64" "dist/$AARCH64-mongodb/drone-discord"
    size_args+=("$AARCH64 +mongodb=dist/$AARCH64-mongodb/drone-discord")
fi
step "size budget" scripts/size-table.sh --budget "${SIZE_BUDGET:-2097152}" "${size_args[@]}"
printf '\n==> cross: ok\n'
