#!/usr/bin/env bash
# Why this exists: proves that a cross-built drone-discord actually runs on its
# target CPU before anyone copies it to a Pi. It runs the binary under user-mode
# qemu (no binfmt needed) and checks, over loopback only:
#   1. `--version` exits 0 and names the package version;
#   2. `serve --dry-run` comes up and answers GET /health with 200;
#   3. one signed Drone fixture (test/test-curls.sh) is accepted with 200;
#   4. the server stops on SIGTERM.
#
# Usage: scripts/qemu-smoke.sh <target-triple> <binary>
# Env:   SMOKE_TIMEOUT  seconds to wait for /health (default 120; qemu on a busy
#                       2-core machine starts slowly)
#        SMOKE_FIXTURE  fixture to post (default test/fixtures/drone/build_created.json)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${1:?usage: qemu-smoke.sh <target-triple> <binary>}
bin=${2:?usage: qemu-smoke.sh <target-triple> <binary>}
timeout_s=${SMOKE_TIMEOUT:-120}
fixture=${SMOKE_FIXTURE:-$ROOT/test/fixtures/drone/build_created.json}
secret=test-secret

log() { printf '==> smoke[%s]: %s\n' "$target" "$*"; }
fail() { printf '!!! smoke[%s]: FAIL: %s\n' "$target" "$*" >&2; exit 1; }

case $target in
    aarch64-*) qemu="qemu-aarch64-static" ;;
    armv7-*|arm-*) qemu="qemu-arm-static" ;;
    x86_64-*) qemu= ;;
    *) fail "no qemu known for $target" ;;
esac
[ -x "$bin" ] || fail "no binary at $bin (build it first)"
if [ -n "$qemu" ]; then
    command -v "$qemu" >/dev/null || fail "$qemu not found (run make cross-deps)"
fi
command -v curl >/dev/null || fail "curl not found"

# The command as an array, so that `"${cmd[@]}" ... &` starts qemu itself (not a
# subshell around it) and $! is the process that signals must reach.
if [ -n "$qemu" ]; then cmd=("$qemu" "$bin"); else cmd=("$bin"); fi

# 0. A Pi has no musl loader: the binary must be static (plain or static-pie).
if command -v file >/dev/null; then
    kind=$(file -b "$bin")
    case $kind in
        *"statically linked"*|*"static-pie linked"*) log "static binary: $(cut -d, -f1-2 <<<"$kind")" ;;
        *) fail "not a static binary: $kind" ;;
    esac
fi

# 1. --version
version=$(grep -m1 '^version' "$ROOT/Cargo.toml" | sed 's/.*"\(.*\)".*/\1/')
out=$("${cmd[@]}" --version 2>&1) || fail "--version exited non-zero: $out"
log "--version -> $out"
case $out in
    *"$version"*) ;;
    *) fail "--version did not print $version" ;;
esac

# 2. serve --dry-run on a free loopback port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return 0
    # No python: pick a high port at random and hope; retried below on bind failure.
    echo $(( 20000 + (RANDOM % 20000) ))
}

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

start_server() {
    port=$(free_port)
    mkdir -p "$work/state"
    log "serve --dry-run on 127.0.0.1:$port (STATE_DIR=$work/state)"
    DRONE_WEBHOOK_SECRET=$secret LISTEN_ADDR=127.0.0.1:$port STATE_DIR=$work/state \
        RUST_LOG=${RUST_LOG:-info} \
        "${cmd[@]}" serve --dry-run >"$work/server.log" 2>&1 &
    pid=$!
}

wait_health() {
    local deadline=$(( SECONDS + timeout_s )) code
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        code=$(curl -s -o "$work/health.json" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/health" || true)
        if [ "$code" = 200 ]; then
            log "GET /health -> 200 $(head -c 300 "$work/health.json" | tr '\n' ' ')"
            return 0
        fi
        sleep 0.5
    done
    return 1
}

ok=
for attempt in 1 2 3; do
    start_server
    rc=0; wait_health || rc=$?
    if [ $rc -eq 0 ]; then ok=1; break; fi
    if [ $rc -eq 1 ]; then
        sed 's/^/    server: /' "$work/server.log" >&2 || true
        fail "no 200 from /health within ${timeout_s}s"
    fi
    # The server exited: a port race is the only thing worth retrying.
    wait "$pid" 2>/dev/null || true
    pid=
    sed 's/^/    server: /' "$work/server.log" >&2 || true
    grep -qi 'in use' "$work/server.log" || fail "serve --dry-run exited before answering /health"
    log "port $port was taken, retrying ($attempt)"
done
[ -n "$ok" ] || fail "could not start serve --dry-run"

# 3. One signed fixture.
if [ -x "$ROOT/test/test-curls.sh" ]; then
    log "test/test-curls.sh -H 127.0.0.1:$port $(basename "$fixture")"
    "$ROOT/test/test-curls.sh" -H "127.0.0.1:$port" -s "$secret" "$fixture" ||
        { sed 's/^/    server: /' "$work/server.log" >&2; fail "signed fixture was not accepted"; }
else
    # Stand-in signer (same draft-cavage scheme Drone uses) until test/test-curls.sh lands.
    log "test/test-curls.sh absent: signing with the openssl stand-in"
    command -v openssl >/dev/null || fail "openssl not found"
    date=$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S GMT')
    digest="SHA-256=$(openssl dgst -sha256 -binary <"$fixture" | openssl base64 -A)"
    mac=$(printf 'date: %s\ndigest: %s' "$date" "$digest" |
        openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | openssl base64 -A)
    code=$(curl -s -o "$work/post.json" -w '%{http_code}' --max-time 30 -X POST \
        -H 'Content-Type: application/json' -H 'X-Drone-Event: build' \
        -H "Date: $date" -H "Digest: $digest" \
        -H "Signature: keyId=\"hmac-key\",algorithm=\"hmac-sha256\",signature=\"$mac\",headers=\"date digest\"" \
        --data-binary "@$fixture" "http://127.0.0.1:$port/" || true)
    log "$(basename "$fixture") -> ${code:-000} $(head -c 300 "$work/post.json" 2>/dev/null | tr '\n' ' ')"
    [ "$code" = 200 ] || { sed 's/^/    server: /' "$work/server.log" >&2; fail "signed fixture was not accepted"; }
fi

# 4. Graceful stop.
kill -TERM "$pid"
deadline=$(( SECONDS + 30 ))
while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
if kill -0 "$pid" 2>/dev/null; then
    fail "serve did not stop within 30s of SIGTERM"
fi
wait "$pid" 2>/dev/null || true
pid=
log "ok"
