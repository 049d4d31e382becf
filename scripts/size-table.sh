#!/usr/bin/env bash
# Why this exists: `make size` — one table of what each Pi build weighs once
# stripped, plus the size budget CI enforces for the lean aarch64 binary.
#
# Usage: scripts/size-table.sh [--budget BYTES] label=path [label=path...]
#   --budget applies to the first label=path (the lean aarch64 build); exit 1 if over.
set -euo pipefail

budget=
if [ "${1:-}" = "--budget" ]; then budget=$2; shift 2; fi

strip_tool=
for t in llvm-strip rust-objcopy; do
    if command -v "$t" >/dev/null; then strip_tool=$t; break; fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '%-34s %12s %9s  %s\n' "build" "bytes" "MiB" "kind"
printf '%-34s %12s %9s  %s\n' "----------------------------------" "------------" "---------" "----"
first=1 over=0
for pair in "$@"; do
    label=${pair%%=*} path=${pair#*=}
    if [ ! -f "$path" ]; then
        printf '%-34s %12s %9s  %s\n' "$label" "-" "-" "not built ($path)"
        [ $first = 1 ] && [ -n "$budget" ] && over=1
        first=0
        continue
    fi
    # The release profile already strips; strip a copy anyway so the number is
    # "stripped" whatever profile produced the file.
    cp "$path" "$tmp/bin"
    case $strip_tool in
        llvm-strip) llvm-strip --strip-all "$tmp/bin" 2>/dev/null || cp "$path" "$tmp/bin" ;;
        rust-objcopy) rust-objcopy --strip-all "$tmp/bin" 2>/dev/null || cp "$path" "$tmp/bin" ;;
    esac
    bytes=$(wc -c <"$tmp/bin" | tr -d ' ')
    mib=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
    kind=$(file -b "$path" 2>/dev/null | cut -d, -f1-2,4 | sed 's/ELF //' || echo "?")
    printf '%-34s %12s %9s  %s\n' "$label" "$bytes" "$mib" "$kind"
    if [ $first = 1 ] && [ -n "$budget" ] && [ "$bytes" -gt "$budget" ]; then over=1; fi
    first=0
done
if [ -n "$budget" ]; then
    budget_mib=$(awk -v b="$budget" 'BEGIN { printf "%.2f", b / 1048576 }')
    if [ $over = 1 ]; then
        echo "size budget: FAIL — ${1%%=*} is over ${budget_mib} MiB ($budget bytes)" >&2
        exit 1
    fi
    echo "size budget: ok — ${1%%=*} is within ${budget_mib} MiB"
fi
