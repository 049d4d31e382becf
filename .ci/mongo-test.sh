#!/usr/bin/env bash
# Runs the MongoDB side of the tests: the mongodb feature's unit tests and the
# store conformance suite over the wire. Against MONGODB_URI when it is set (a
# real server), else against the wire-compatible fake from .ci/mongo.sh, which
# it starts and always stops.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${MONGODB_URI:-}" ]; then
    echo "==> mongodb tests against MONGODB_URI (a real server)"
else
    eval "$(bash .ci/mongo.sh)"
    trap 'kill "$MONGO_SHIM_PID" 2>/dev/null || true' EXIT
    echo "==> mongodb tests against the wire-compatible fake (.ci/mongo_shim.py; not a real MongoDB)"
fi
${NICE:-} cargo test --features mongodb --lib --test store_conformance
