#!/usr/bin/env bash
# The lint gates CI enforces (issue 9): the tree is rustfmt-formatted with the
# repository's rustfmt.toml, and clippy has nothing to say about any target,
# for the default features and for `--features mongodb`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> lint: cargo fmt --check"
cargo fmt --all -- --check
echo "==> lint: cargo clippy --all-targets -- -D warnings"
${NICE:-} cargo clippy --all-targets -- -D warnings
echo "==> lint: cargo clippy --all-targets --features mongodb -- -D warnings"
${NICE:-} cargo clippy --all-targets --features mongodb -- -D warnings
echo "==> lint: ok"
