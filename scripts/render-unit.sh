#!/usr/bin/env bash
# Why this exists: the service unit has one source, systemd/drone-discord.service.in,
# and two renderings that differ only in where the binary lives (@BINDIR@):
#   /usr/local/bin  systemd/drone-discord.service, committed: by hand and `make deploy`;
#   /usr/bin        the Debian package's unit (scripts/deb.sh).
# .ci/systemd-check.sh fails when the committed rendering is not this script's output.
#
# Usage: scripts/render-unit.sh BINDIR [TEMPLATE]   (writes the unit to stdout)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bindir=${1:-}
template=${2:-$ROOT/systemd/drone-discord.service.in}

case $bindir in
    /*) ;;
    *) echo "usage: scripts/render-unit.sh BINDIR [TEMPLATE]  (BINDIR absolute, e.g. /usr/bin)" >&2; exit 2 ;;
esac
case $bindir in
    *[!A-Za-z0-9/._-]*) echo "render-unit: BINDIR has characters a unit path cannot hold: $bindir" >&2; exit 2 ;;
esac
[ -f "$template" ] || { echo "render-unit: no template at $template" >&2; exit 2; }
grep -q '@BINDIR@' "$template" || { echo "render-unit: $template has no @BINDIR@" >&2; exit 1; }

out=$(sed "s|@BINDIR@|${bindir%/}|g" "$template")
if printf '%s\n' "$out" | grep -q '@[A-Z_]*@'; then
    echo "render-unit: $template has a placeholder other than @BINDIR@" >&2
    exit 1
fi
printf '%s\n' "$out"
