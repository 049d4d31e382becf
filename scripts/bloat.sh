#!/usr/bin/env bash
# Why this exists: `make bloat` — where the bytes of the lean aarch64 Pi binary go,
# per crate (cargo-bloat's --crates table, the one the README shows), so that a
# change's size delta can be traced to a crate. Needs `cargo install cargo-bloat`
# and the aarch64 toolchain (`make cross-deps`).
#
# Usage: scripts/bloat.sh [TARGET] [-- extra cargo-bloat args, e.g. -n 40 without --crates]
#   default TARGET: aarch64-unknown-linux-musl; the table lists the 30 largest crates.
set -euo pipefail

target=${1:-aarch64-unknown-linux-musl}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift

if ! cargo bloat --version >/dev/null 2>&1; then
    echo "cargo-bloat is not installed: cargo install cargo-bloat" >&2
    exit 2
fi
# It measures the stable-std build: cargo-bloat looks for std's rlibs in the toolchain,
# which the shipped build (`make aarch64`, nightly -Z build-std, no backtrace code,
# ~240 KB smaller, mostly in std) does not use; README says how its table was made.
# cargo-bloat builds the release profile without stripping (it needs the symbols);
# .text is what it can attribute, the file size it prints is the unstripped one.
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--crates -n 30)
${NICE:-nice -n 10} cargo bloat --release --target "$target" "${args[@]}"
