#!/usr/bin/env bash
# Why this exists: a Debian package of drone-discord carries one static binary, and a
# binary of the wrong CPU or one that needs a loader would install fine and then fail
# on the Pi. This says whether FILE is a statically linked ELF executable for the
# Debian architecture ARCH, from `file`'s description, in one place for scripts/deb.sh
# (before packaging) and .ci/deb-check.sh (the binary taken back out of the package).
#
# Usage: scripts/elf-check.sh ARCH FILE   (ARCH: amd64 | arm64 | armhf)
# Prints `file`'s description (plain or static-pie executables); exits 1 if it does not match, 2 on usage errors.
set -euo pipefail

arch=${1:-}
bin=${2:-}
[ -n "$arch" ] && [ -n "$bin" ] || { echo "usage: scripts/elf-check.sh ARCH FILE" >&2; exit 2; }
[ -f "$bin" ] || { echo "elf-check: no file at $bin" >&2; exit 2; }
command -v file >/dev/null || { echo "elf-check: \`file\` is not installed (make cross-deps)" >&2; exit 2; }

case $arch in
    amd64) want="ELF 64-bit LSB *executable, x86-64, *" ;;
    arm64) want="ELF 64-bit LSB *executable, ARM aarch64, *" ;;
    # armhf: 32-bit ARM, EABI5 (the hard-float ABI is not in file's description).
    armhf) want="ELF 32-bit LSB *executable, ARM, EABI5 *" ;;
    *) echo "elf-check: unknown Debian architecture $arch (amd64, arm64 or armhf)" >&2; exit 2 ;;
esac

kind=$(file -b "$bin")
printf '%s\n' "$kind"
# shellcheck disable=SC2254 # $want is a glob pattern on purpose
case $kind in
    $want) ;;
    *) echo "elf-check: $bin is not an $arch executable" >&2; exit 1 ;;
esac
case $kind in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) echo "elf-check: $bin is not statically linked (it would need a loader and libraries)" >&2; exit 1 ;;
esac
