#!/usr/bin/env bash
# Why this exists: `make deploy PI=user@host` — put a freshly cross-built binary
# and its systemd unit on a Raspberry Pi and prove it came back healthy. It checks
# the Pi's CPU first (`uname -m`) and refuses a binary of the wrong architecture,
# so a mistaken TARGET can never replace a working service with one that cannot run.
#
# Usage: scripts/deploy.sh PI TARGET BINARY [UNIT]
#   PI      ssh destination, e.g. pi@raspberrypi.local
#   TARGET  aarch64 | armv7
#   BINARY  the cross-built binary to install
#   UNIT    systemd unit file (default systemd/drone-discord.service if present);
#           a socket unit of the same name next to it (drone-discord.socket) is
#           installed and enabled too, so the restart below queues webhooks in
#           the kernel's backlog instead of refusing them
# Env: PI_PORT (port of /health on the Pi, default 5000), HEALTH_TIMEOUT (s, default 60),
#      SSH (default ssh), SCP (default scp), SUDO (default sudo; empty when ssh'ing as root)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pi=${1:-}
target=${2:-}
bin=${3:-}
unit=${4:-$ROOT/systemd/drone-discord.service}
port=${PI_PORT:-5000}
health_timeout=${HEALTH_TIMEOUT:-60}
ssh_cmd=${SSH:-ssh}
scp_cmd=${SCP:-scp}
sudo_cmd=${SUDO-sudo}

log() { printf '==> deploy: %s\n' "$*"; }
die() { printf '!!! deploy: %s\n' "$*" >&2; exit 1; }

[ -n "$pi" ] || die "no Pi given: make deploy PI=user@host [TARGET=aarch64|armv7]"
case $target in
    aarch64|armv7) ;;
    *) die "TARGET must be aarch64 or armv7 (got '$target')" ;;
esac
[ -f "$bin" ] || die "no binary at $bin (make $target)"

# Which of our targets runs on a machine that reports this `uname -m`.
# Prints the target, or nothing if none does.
target_for_machine() {
    case $1 in
        aarch64|arm64) echo aarch64 ;;   # 64-bit kernel (static aarch64 runs even with a 32-bit userland)
        armv7l|armv7|armv8l) echo armv7 ;; # 32-bit OS on a Pi 2/3/4/5
        *) echo "" ;;
    esac
}

log "checking the CPU of $pi (uname -m)"
machine=$($ssh_cmd "$pi" uname -m </dev/null) || die "ssh $pi uname -m failed"
machine=$(printf '%s' "$machine" | tr -d '\r\n ')
want=$(target_for_machine "$machine")
case $machine in
    armv6l|armv6*)
        die "$pi is ARMv6 ($machine: Raspberry Pi Zero / Zero W / 1). It is not supported: armv7 binaries use instructions ARMv6 lacks. Nothing was changed." ;;
esac
[ -n "$want" ] || die "$pi reports '$machine', which no drone-discord build targets. Nothing was changed."
if [ "$want" != "$target" ]; then
    die "$pi is $machine, which needs TARGET=$want, not TARGET=$target. Nothing was changed. Run: make deploy PI=$pi TARGET=$want"
fi
log "$pi is $machine: TARGET=$target matches"

# A private staging folder on the Pi (mktemp: no predictable /tmp name).
stage=$($ssh_cmd "$pi" "mktemp -d /tmp/drone-discord-deploy.XXXXXX" </dev/null | tr -d '\r\n') ||
    die "could not create a staging folder on $pi"
[ -n "$stage" ] || die "could not create a staging folder on $pi"
log "copying $(basename "$bin") ($(wc -c <"$bin" | tr -d ' ') bytes) to $pi:$stage"
files=("$bin")
have_unit=0
if [ -f "$unit" ]; then files+=("$unit"); have_unit=1; else log "no unit file at $unit; installing the binary only"; fi
$scp_cmd -q "${files[@]}" "$pi:$stage/"

unit_name=drone-discord.service
[ $have_unit = 1 ] && unit_name=$(basename "$unit")
socket_unit=${unit%.service}.socket
socket_name=${unit_name%.service}.socket
have_socket=0
if [ $have_unit = 1 ] && [ -f "$socket_unit" ]; then
    $scp_cmd -q "$socket_unit" "$pi:$stage/"
    have_socket=1
fi
# The first time the socket unit arrives the service still holds the port
# itself: stop it, start the socket, then start the service on the socket.
# Afterwards a restart leaves the socket (and its backlog) in place.
remote="set -e
$sudo_cmd install -m 0755 $stage/$(basename "$bin") /usr/local/bin/drone-discord
if [ $have_unit = 1 ]; then $sudo_cmd install -m 0644 $stage/$unit_name /etc/systemd/system/$unit_name; fi
if [ $have_socket = 1 ]; then $sudo_cmd install -m 0644 $stage/$socket_name /etc/systemd/system/$socket_name; fi
rm -rf $stage
$sudo_cmd systemctl daemon-reload
$sudo_cmd systemctl enable $unit_name >/dev/null 2>&1 || true
if [ $have_socket = 1 ] && ! $sudo_cmd systemctl is-active --quiet $socket_name; then
    $sudo_cmd systemctl stop $unit_name
    $sudo_cmd systemctl enable --now $socket_name
fi
$sudo_cmd systemctl restart $unit_name
/usr/local/bin/drone-discord --version || true"
log "installing to /usr/local/bin/drone-discord, daemon-reload, restart $unit_name$([ $have_socket = 1 ] && printf ' (on %s)' "$socket_name")"
$ssh_cmd "$pi" "$remote" </dev/null

log "waiting up to ${health_timeout}s for http://127.0.0.1:$port/health on $pi"
probe="if command -v curl >/dev/null; then curl -s -o /dev/stderr -w '%{http_code}' --max-time 5 http://127.0.0.1:$port/health; else wget -q -O /dev/stderr -T 5 http://127.0.0.1:$port/health && printf 200; fi"
deadline=$(( SECONDS + health_timeout ))
code=
while [ $SECONDS -lt $deadline ]; do
    code=$($ssh_cmd "$pi" "$probe" 2>"${TMPDIR:-/tmp}/drone-discord-health.$$" </dev/null || true)
    if [ "$code" = 200 ]; then
        log "healthy: GET /health -> 200 $(head -c 300 "${TMPDIR:-/tmp}/drone-discord-health.$$" | tr '\n' ' ')"
        rm -f "${TMPDIR:-/tmp}/drone-discord-health.$$"
        exit 0
    fi
    sleep 2
done
body=$(head -c 300 "${TMPDIR:-/tmp}/drone-discord-health.$$" 2>/dev/null | tr '\n' ' ' || true)
rm -f "${TMPDIR:-/tmp}/drone-discord-health.$$"
die "not healthy after ${health_timeout}s (last: ${code:-no answer} $body). See: make logs PI=$pi"
