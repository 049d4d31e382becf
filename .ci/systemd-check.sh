#!/usr/bin/env bash
# Check systemd/drone-discord.service (and drone-discord.socket next to it)
# the way systemd itself would read them (after checking that the committed unit
# is its template, systemd/drone-discord.service.in, rendered for /usr/local/bin):
#   1. `systemd-analyze verify` must print nothing for either unit (it exits 0
#      even for unknown keys or bad values, so any output counts as a failure);
#   2. `systemd-analyze security --offline=yes` must rate the sandbox at an
#      exposure of at most MAX_EXPOSURE (default 2.0; 0 = locked down, 10 = none).
#
# `verify` insists that ExecStart's binary exists, so it runs against a
# throw-away root: the unit file (unmodified) in <root>/etc/systemd/system, a
# stub executable at <root>/usr/local/bin/drone-discord (and one for each other
# command an Exec line names, e.g. ExecReload's /bin/kill), and copies of the
# host's stock units (sysinit.target, network-online.target, ...) that the
# unit's dependencies name. No root privileges and no running systemd needed.
#
# Exits 0 (with a SKIP line) when systemd-analyze is not installed.
set -euo pipefail

unit=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/systemd/drone-discord.service}
max=${MAX_EXPOSURE:-2.0}
name=$(basename "$unit")
# The socket unit of the same name, verified together with the service.
socket_unit=${unit%.service}.socket
socket_name=$(basename "$socket_unit")

# The committed unit is its template rendered for /usr/local/bin (scripts/render-unit.sh;
# the Debian package renders the same template for /usr/bin): edit the template, then
# `make unit`. Checked only for the default unit, not for one given as an argument.
if [ $# -eq 0 ]; then
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    rendered=$("$here/scripts/render-unit.sh" /usr/local/bin)
    if [ "$rendered" != "$(cat "$unit")" ]; then
        diff -u <(printf '%s\n' "$rendered") "$unit" || true
        echo "FAIL: systemd/$name is not systemd/$name.in rendered for /usr/local/bin (make unit)" >&2
        exit 1
    fi
    echo "ok: systemd/$name is systemd/$name.in rendered for /usr/local/bin"
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze not found (install systemd to check $name)"
    exit 0
fi
[ -f "$unit" ] || { echo "systemd-check: no such unit file: $unit" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc/systemd/system" "$root/usr/local/bin" "$root/usr/lib/systemd"
cp "$unit" "$root/etc/systemd/system/$name"
names=("$name")
if [ -f "$socket_unit" ]; then
    cp "$socket_unit" "$root/etc/systemd/system/$socket_name"
    names+=("$socket_name")
fi
printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/drone-discord"
chmod 0755 "$root/usr/local/bin/drone-discord"
# The other commands the unit runs (ExecReload=/bin/kill ...) are the host's:
# each must exist here, and gets a stub in the root so that verify finds it.
for cmd in $(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$unit" | sort -u); do
    [ -e "$root$cmd" ] && continue
    if [ ! -x "$cmd" ]; then
        echo "FAIL: systemd/$name runs $cmd, which is not an executable on this machine" >&2
        exit 1
    fi
    mkdir -p "$root$(dirname "$cmd")"
    printf '#!/bin/sh\nexit 0\n' >"$root$cmd"
    chmod 0755 "$root$cmd"
done
for stock in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$stock" ]; then
        cp -r "$stock" "$root/usr/lib/systemd/"
        break
    fi
done

status=0
echo "== systemd-analyze verify ${names[*]}"
if ! out=$(systemd-analyze verify --root="$root" "${names[@]}" 2>&1); then
    status=1
fi
if [ -n "$out" ]; then
    # Show paths as the repository's, not the temporary root's.
    printf '%s\n' "${out//$root\/etc\/systemd\/system\//systemd/}"
    status=1
fi
[ $status -eq 0 ] && echo "ok: no warnings"

echo "== systemd-analyze security --offline=yes $name"
sec=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1) || true
exposure=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]\).*/\1/p' | tail -n 1)
if [ -z "$exposure" ]; then
    printf '%s\n' "$sec"
    echo "FAIL: could not read the exposure level" >&2
    exit 1
fi
printf '%s\n' "$sec" | grep -v '✓' || true
if awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e + 0 <= m + 0) }'; then
    echo "ok: exposure $exposure <= $max"
else
    echo "FAIL: exposure $exposure > $max" >&2
    status=1
fi
exit $status
