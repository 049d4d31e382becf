#!/usr/bin/env bash
# Start a MongoDB *wire-compatible fake* on loopback for the store conformance
# suite, and print the URI to use:
#
#   eval "$(bash .ci/mongo.sh)"      # sets MONGODB_URI and MONGO_SHIM_PID
#   cargo test --features mongodb --test store_conformance
#   kill "$MONGO_SHIM_PID"
#
# Why a fake: no real MongoDB can be installed on these machines. Debian has
# no server package (only drivers), FerretDB needs Go or PostgreSQL's
# DocumentDB extension (neither packaged here), and the npm/PyPI packages
# that "ship" mongod (mongodb-memory-server, pymongo-inmemory, ...) download
# the binary at run time, which this network refuses. The fake is Debian's
# mockupdb (wire protocol) in front of Debian's mongomock (in-memory engine),
# glued by .ci/mongo_shim.py. Point MONGODB_URI at a real server instead to
# run the same suite for real.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! /usr/bin/python3 -c 'import mockupdb, mongomock, pymongo' 2>/dev/null; then
    echo "installing python3-mockupdb python3-mongomock python3-pymongo" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-mockupdb python3-mongomock python3-pymongo >&2
fi

port_file="$(mktemp)"
log="${MONGO_SHIM_LOG:-/tmp/mongo_shim.log}"
/usr/bin/python3 "$here/mongo_shim.py" "$port_file" >"$log" 2>&1 </dev/null &
pid=$!

# Wait (up to 30 s) for the port file; a loaded machine can be slow to start Python.
for _ in $(seq 1 300); do
    if [ -s "$port_file" ]; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "mongo_shim exited early:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$port_file" ]; then
    echo "mongo_shim did not start within 30 s" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
fi
port="$(tr -d '[:space:]' <"$port_file")"
rm -f "$port_file"
echo "export MONGODB_URI='mongodb://127.0.0.1:${port}/?directConnection=true'"
echo "export MONGO_SHIM_PID=${pid}"
