#!/usr/bin/env bash
# Why this exists: scripts/deploy.sh decides whether to overwrite a running
# service on a real Pi, which no CI machine has. This drives it against a fake
# `ssh`/`scp` pair (a shell stub that plays a Pi with a chosen `uname -m` and
# /health answer, and records every command) and checks each decision:
# refusals change nothing, a match installs, restarts and polls /health.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/ssh" <<'STUB'
#!/usr/bin/env bash
# fake ssh: $1 = destination, rest = remote command
shift
printf 'ssh %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
    "uname -m") printf '%s\n' "$FAKE_MACHINE" ;;
    mktemp*) printf '/tmp/drone-discord-deploy.fake\n' ;;
    *curl*/health*) printf '{"status":"fake"}' >&2; printf '%s' "$FAKE_HEALTH" ;;
esac
STUB
cat >"$work/scp" <<'STUB'
#!/usr/bin/env bash
printf 'scp %s\n' "$*" >>"$FAKE_LOG"
STUB
chmod +x "$work/ssh" "$work/scp"
printf 'fake binary' >"$work/drone-discord"
printf '[Unit]\n' >"$work/drone-discord.service"

passed=0 failed=0
# run_case NAME MACHINE TARGET HEALTH WANT_RC WANT_OUTPUT [WANT_LOG...]
run_case() {
    local name=$1 machine=$2 target=$3 health=$4 want_rc=$5 want_out=$6; shift 6
    : >"$work/log"
    local rc=0 out
    out=$(FAKE_LOG="$work/log" FAKE_MACHINE=$machine FAKE_HEALTH=$health \
        SSH="$work/ssh" SCP="$work/scp" SUDO='' HEALTH_TIMEOUT=1 \
        "$ROOT/scripts/deploy.sh" pi@fake "$target" "$work/drone-discord" "$work/drone-discord.service" 2>&1) || rc=$?
    local ok=1 why=""
    [ "$rc" = "$want_rc" ] || { ok=0; why="exit $rc, wanted $want_rc"; }
    grep -qF -- "$want_out" <<<"$out" || { ok=0; why="$why; output lacks '$want_out'"; }
    local pat
    for pat in "$@"; do
        case $pat in
            '!'*) if grep -qF -- "${pat#!}" "$work/log"; then ok=0; why="$why; log has '${pat#!}'"; fi ;;
            *) grep -qF -- "$pat" "$work/log" || { ok=0; why="$why; log lacks '$pat'"; } ;;
        esac
    done
    if [ $ok = 1 ]; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name: $why"; sed 's/^/     | /' <<<"$out"; sed 's/^/     log| /' "$work/log"
    fi
}

run_case "armv6 Pi Zero is refused before anything is copied" armv6l armv7 200 1 "ARMv6" '!scp' '!install'
run_case "aarch64 Pi refuses an armv7 binary" aarch64 armv7 200 1 "needs TARGET=aarch64" '!scp' '!install'
run_case "armv7l Pi refuses an aarch64 binary" armv7l aarch64 200 1 "needs TARGET=armv7" '!scp'
run_case "unknown CPU is refused" x86_64 aarch64 200 1 "no drone-discord build targets" '!scp'
run_case "armv7l Pi takes armv7: copy, install, restart, healthy" armv7l armv7 200 0 "healthy: GET /health -> 200" \
    "scp -q $work/drone-discord $work/drone-discord.service pi@fake:/tmp/drone-discord-deploy.fake/" "install -m 0755" "/usr/local/bin/drone-discord" \
    "systemctl daemon-reload" "systemctl restart drone-discord.service"
run_case "arm64 (as some OSes say) takes aarch64" arm64 aarch64 200 0 "healthy" "systemctl restart"
run_case "unhealthy after restart is reported as a failure" aarch64 aarch64 503 1 "not healthy after 1s" "systemctl restart"

# With the socket unit next to the service: it is copied, installed, enabled
# (stopping the service first if the socket is not active yet), then restart.
printf '[Socket]\n' >"$work/drone-discord.socket"
run_case "a socket unit next to the service is installed and enabled" aarch64 aarch64 200 0 "healthy" \
    "scp -q $work/drone-discord.socket pi@fake:/tmp/drone-discord-deploy.fake/" \
    "install -m 0644 /tmp/drone-discord-deploy.fake/drone-discord.socket /etc/systemd/system/drone-discord.socket" \
    "is-active --quiet drone-discord.socket" "enable --now drone-discord.socket" "systemctl restart drone-discord.service"
rm -f "$work/drone-discord.socket"

echo "$passed passed, $failed failed"
[ $failed = 0 ]
