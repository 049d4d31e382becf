#!/usr/bin/env bash
# Why this exists: the README promises that `make test-curls` against a running
# `serve` gets every fixture accepted and that the old static-signature curls
# are refused. This checks exactly that, with the real binary on loopback:
#   1. `serve --dry-run` on a free port with a throw-away state directory;
#   2. `make test-curls` (every fixture, freshly signed) → all 200;
#   3. `test/test-curls.sh --legacy` (the old static headers) → all 401;
#   4. SIGTERM → exit code 0.
# Usage: scripts/curls-smoke.sh [binary]   (default $CARGO_TARGET_DIR or target, /debug/drone-discord)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/drone-discord}
[ -x "$bin" ] || { echo "curls-smoke: no binary at $bin (cargo build first)" >&2; exit 1; }

state=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
secret="curls-smoke-$(date +%s)-$$"
log="$state/serve.log"
DRONE_WEBHOOK_SECRET="$secret" LISTEN_ADDR="127.0.0.1:$port" STATE_DIR="$state" \
    "$bin" serve --dry-run 2>"$log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "curls-smoke: serve exited" >&2; exit 1; }
    sleep 0.2
done

echo "==> curls-smoke: make test-curls HOST=127.0.0.1:$port (every fixture must be accepted)"
make --no-print-directory -C "$ROOT" test-curls HOST="127.0.0.1:$port" SECRET="$secret"
echo "==> curls-smoke: test/test-curls.sh --legacy (the old static signature must be refused)"
"$ROOT/test/test-curls.sh" --legacy -H "127.0.0.1:$port"

kill -TERM "$pid"
code=0; wait "$pid" || code=$?
trap - EXIT; rm -rf "$state"
[ "$code" -eq 0 ] || { echo "curls-smoke: serve exited $code after SIGTERM" >&2; exit 1; }
echo "==> curls-smoke: ok (all fixtures accepted, legacy refused, clean SIGTERM)"
