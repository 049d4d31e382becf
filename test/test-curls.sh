#!/usr/bin/env bash
# Sign Drone webhook fixtures exactly as Drone does (draft-cavage HTTP Signatures,
# hmac-sha256 over "date" and "digest") with openssl, and POST them with curl.
# It exercises a running drone-discord the way a real Drone server would; it is
# what `make test-curls` runs.
#
# Usage:
#   test/test-curls.sh [-H host:port] [-s secret] [fixture.json...]
#       POST every fixture (default: test/fixtures/drone/*.json), print
#       "fixture -> status body", exit 1 unless every answer is 200.
#   test/test-curls.sh --legacy [-H host:port] [fixture.json...]
#       Send the old static Date/Digest/Signature headers (a signature that is
#       valid for its own headers but years old and matching no fixture body);
#       exit 1 unless every answer is 401.
#   test/test-curls.sh --print [--date 'Fri, 12 Nov 2021 23:33:47 GMT'] [-s secret] fixture.json
#       Print the three headers (Date, Digest, Signature) instead of sending.
#
# Environment: HOST (default localhost:5000), SECRET (default
# $DRONE_WEBHOOK_SECRET; required except with --legacy), CURL_MAX_TIME (s, default 30).
# HOST may be host:port or a full http(s):// URL (its path is the request target).
#
# Note: openssl takes the HMAC key on its command line, so the secret is
# briefly visible in the local process list while each request is signed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
host=${HOST:-localhost:5000}
secret=${SECRET:-${DRONE_WEBHOOK_SECRET:-}}
mode=send
fixed_date=
fixtures=()

# The old static header set. Its signature is correct for exactly these two
# header lines under the key "webhook-secret", so a receiver must refuse it
# for its age and for its digest, not for a bad HMAC.
legacy_date='Fri, 12 Nov 2021 23:33:47 GMT'
legacy_digest='SHA-256=kCit1zUa+1aDpnZhDSBCa0iVYPTeF6k2jCjHwE2lnQY='
legacy_signature='keyId="hmac-key",algorithm="hmac-sha256",signature="nMQOWQSyloFPh3ZB8Uoh/D9QyzCtnVf0tk/jemJm058=",headers="date digest"'

usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "test-curls: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        -H|--host) [ $# -ge 2 ] || usage; host=$2; shift 2 ;;
        -s|--secret) [ $# -ge 2 ] || usage; secret=$2; shift 2 ;;
        --date) [ $# -ge 2 ] || usage; fixed_date=$2; shift 2 ;;
        --print) mode=print; shift ;;
        --legacy) mode=legacy; shift ;;
        -h|--help) usage ;;
        --) shift; fixtures+=("$@"); break ;;
        -*) echo "test-curls: unknown option $1" >&2; usage ;;
        *) fixtures+=("$1"); shift ;;
    esac
done

if [ ${#fixtures[@]} -eq 0 ]; then
    fixtures=("$here"/fixtures/drone/*.json)
fi
for f in "${fixtures[@]}"; do
    [ -f "$f" ] && [ -r "$f" ] || die "no such fixture: $f"
done
if [ "$mode" != legacy ] && [ -z "$secret" ]; then
    die "no secret: pass -s SECRET or set SECRET or DRONE_WEBHOOK_SECRET"
fi
if [ "$mode" = print ] && [ ${#fixtures[@]} -ne 1 ]; then
    die "--print takes exactly one fixture"
fi
command -v openssl >/dev/null || die "openssl not found"
[ "$mode" = print ] || command -v curl >/dev/null || die "curl not found"

b64() { openssl base64 -A; }

# Sets date, digest, signature for fixture $1.
sign() {
    if [ -n "$fixed_date" ]; then
        date=$fixed_date
    else
        date=$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S GMT')
    fi
    digest="SHA-256=$(openssl dgst -sha256 -binary <"$1" | b64)"
    local mac
    # printf, not echo: exactly one \n between the lines and none at the end.
    mac=$(printf 'date: %s\ndigest: %s' "$date" "$digest" |
        openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | b64)
    signature="keyId=\"hmac-key\",algorithm=\"hmac-sha256\",signature=\"$mac\",headers=\"date digest\""
}

# Drone's X-Drone-Event is the payload's top-level "event" (the first key in
# Drone's JSON); fall back to the file name's prefix (build_created -> build).
event_of() {
    local ev
    ev=$(sed -n 's/^[[:space:]]\{0,4\}"event"[[:space:]]*:[[:space:]]*"\([a-z_]*\)".*/\1/p' "$1" | head -n 1)
    if [ -z "$ev" ]; then
        ev=$(basename "$1" .json)
        ev=${ev%%_*}
    fi
    printf '%s' "$ev"
}

case $host in
    http://*|https://*) url=$host ;;
    *) url="http://$host/" ;;
esac

if [ "$mode" = print ]; then
    sign "${fixtures[0]}"
    printf 'Date: %s\nDigest: %s\nSignature: %s\n' "$date" "$digest" "$signature"
    exit 0
fi

want=200
[ "$mode" = legacy ] && want=401
failed=0
out=$(mktemp)
trap 'rm -f "$out" "$out.err"' EXIT

for f in "${fixtures[@]}"; do
    if [ "$mode" = legacy ]; then
        date=$legacy_date digest=$legacy_digest signature=$legacy_signature
    else
        sign "$f"
    fi
    status=$(curl -sS -o "$out" -w '%{http_code}' --max-time "${CURL_MAX_TIME:-30}" \
        -X POST \
        -H 'Content-Type: application/json' \
        -H "X-Drone-Event: $(event_of "$f")" \
        -H "Date: $date" \
        -H "Digest: $digest" \
        -H "Signature: $signature" \
        --data-binary "@$f" \
        "$url" 2>"$out.err") || true
    body=$(head -c 300 "$out" | tr '\n' ' ')
    [ -s "$out.err" ] && body="$body$(head -c 300 "$out.err" | tr '\n' ' ')"
    rm -f "$out.err"
    echo "$(basename "$f") -> ${status:-000} $body"
    [ "$status" = "$want" ] || failed=$((failed + 1))
done

if [ $failed -gt 0 ]; then
    echo "test-curls: $failed of ${#fixtures[@]} answers were not $want" >&2
    exit 1
fi
