#!/usr/bin/env bash
# Why this exists: the README promises that `serve --dry-run` shows at /preview every
# message the bot would post, as Discord would show it, and that nothing from a payload
# runs in the browser. This checks both in a real browser (Debian's headless chromium),
# on the rendered page's elements and text, never on pixels:
#   1. `serve --dry-run` on a free port with a throw-away state directory;
#   2. `make test-curls` (the nine fixtures) → /preview shows five cards (the five build
#      fixtures are one build, shown in its final state) with Discord's field grid, and the
#      page's script ran (it fetched the cards and says "live · 5 messages");
#   3. test/fixtures/preview/hostile_commit.json (a commit message with <script>, an
#      onerror image, javascript: and data: links, markdown tricks) → a sixth card that
#      shows all of it as text: no element of it, no handler attribute, and document.title
#      (which every trick would set to "pwned") unchanged;
#   4. `render FIXTURE --html` of the same payload, opened from a file: the same;
#   5. a screenshot of step 2's page (to --screenshot FILE, else a temporary file).
# Usage: scripts/preview-check.sh [--screenshot FILE] [binary]
#        (binary default: $CARGO_TARGET_DIR or target, /debug/drone-discord;
#         the browser: $CHROMIUM, else `chromium` on PATH, which .ci/deps.sh installs)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shot=
if [ "${1:-}" = --screenshot ]; then
    [ $# -ge 2 ] || { echo "usage: $0 [--screenshot FILE] [binary]" >&2; exit 2; }
    shot=$2
    shift 2
fi
bin=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/drone-discord}
[ -x "$bin" ] || { echo "preview-check: no binary at $bin (cargo build first)" >&2; exit 1; }
chromium=${CHROMIUM:-$(command -v chromium || true)}
if [ -z "$chromium" ]; then
    echo "preview-check: FAILED: no chromium on PATH (Debian's chromium package; .ci/deps.sh installs it)" >&2
    exit 1
fi

state=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
secret="preview-check-$(date +%s)-$$"
base="http://127.0.0.1:$port"
log="$state/serve.log"
DRONE_WEBHOOK_SECRET="$secret" LISTEN_ADDR="127.0.0.1:$port" STATE_DIR="$state/store" \
    "$bin" serve --dry-run 2>"$log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT
fail() { echo "preview-check: FAILED: $*" >&2; echo "--- serve log (last 20 lines)" >&2; tail -n 20 "$log" >&2; exit 1; }

for _ in $(seq 1 100); do
    curl -fsS "$base/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || fail "serve exited"
    sleep 0.2
done

# Waits (bounded) until the relay has delivered every queued event and the board holds $1 messages.
wait_for_cards() {
    local want=$1 n=0 pending=1
    for _ in $(seq 1 150); do
        n=$(curl -fsS "$base/preview/messages" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["ids"]))') || n=0
        pending=$(curl -fsS "$base/queue" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending"])') || pending=1
        [ "$n" = "$want" ] && [ "$pending" = 0 ] && return 0
        sleep 0.2
    done
    fail "after 30 s the preview holds $n messages ($pending events pending), not $want"
}

# One headless chromium run; its own profile each time, no network beyond loopback asked.
browse() {
    local profile
    profile=$(mktemp -d "$state/chrome.XXXXXX")
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --virtual-time-budget=5000 "$@" 2>>"$state/chromium.log" \
        || { tail -n 20 "$state/chromium.log" >&2; fail "chromium $* failed"; }
}

# Element-level assertions on a DOM dump, with Python's HTML parser.
check_dom() {
    python3 - "$@" <<'PY'
import sys
from html.parser import HTMLParser

mode, path = sys.argv[1], sys.argv[2]
dom = open(path, encoding="utf-8").read()

class Dom(HTMLParser):
    """Every element with its attributes and the text inside it."""
    VOID = {"img", "br", "meta", "link", "input", "hr"}
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements, self.open = [], []
    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "text": "", "kids": [], "parent": self.open[-1] if self.open else None}
        if el["parent"]:
            el["parent"]["kids"].append(el)
        self.elements.append(el)
        if tag not in self.VOID:
            self.open.append(el)
    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i]["tag"] == tag:
                del self.open[i:]
                break
    def handle_data(self, data):
        for el in self.open:
            el["text"] += data

d = Dom()
d.feed(dom)
els = d.elements

def cls(el):
    return el["attrs"].get("class", "").split()
def find(root_els, c, tag=None):
    return [e for e in root_els if c in cls(e) and (tag is None or e["tag"] == tag)]
def within(el):
    out, todo = [], list(el["kids"])
    while todo:
        e = todo.pop(0)
        out.append(e)
        todo.extend(e["kids"])
    return out

errors = []
def check(ok, what):
    if not ok:
        errors.append(what)

title = [e["text"] for e in els if e["tag"] == "title"]
check(title == ["drone-discord preview"], f"document.title is {title!r}, not 'drone-discord preview'")
cards = find(els, "msg", "article")

def card_title(c):
    t = find(within(c), "title")
    return t[0]["text"].strip() if t else ""

if mode in ("fixtures", "hostile"):
    want = 5 if mode == "fixtures" else 6
    check(len(cards) == want, f"{len(cards)} cards, not {want}")
    live = [e["text"] for e in els if e["attrs"].get("id") == "live"]
    check(live == [f"live · {want} messages"], f"the page's script did not run: #live is {live!r}")
    titles = sorted(card_title(c) for c in cards)
    expected = ["Diesel-Net/plex #189", "Repository disabled", "Repository enabled", "User created", "User deleted"]
    if mode == "hostile":
        expected = sorted(expected + ["Diesel-Net/plex #666"])
    check(titles == expected, f"card titles {titles}")
    build = [c for c in cards if card_title(c) == "Diesel-Net/plex #189"]
    if build:
        inside = within(build[0])
        fields = find(inside, "field")
        values = {f["kids"][0]["text"]: f["kids"][1]["text"] for f in fields if len(f["kids"]) == 2}
        # Five events, one message: the final state (success) and nothing after it.
        check(values.get("Status", "").endswith("Success"), f"build status {values.get('Status')!r}")
        check("(edited)" in build[0]["text"], "the build's card was not edited in place")
        grid = [f["attrs"].get("style", "") for f in fields]
        check(grid[:3] == ["grid-column:1/5", "grid-column:5/9", "grid-column:9/13"],
              f"the first three inline fields are not one row of Discord's grid: {grid[:3]}")
        check(len(fields) >= 7 and all(g.startswith("grid-column:") for g in grid), f"fields {grid}")
        bar = find(inside, "embed")
        check(bar and "border-left-color:#2ecc71" in bar[0]["attrs"].get("style", ""), "no green colour bar")
        check(find(inside, "author") and "Anonymou" in find(inside, "author")[0]["text"], "no author")
        check(any(e["tag"] == "time" for e in inside), "no timestamp")
else:
    check(len(cards) == 1, f"{len(cards)} cards in the standalone file, not 1")

if mode in ("hostile", "standalone"):
    evil = [c for c in cards if card_title(c) == "Diesel-Net/plex #666"]
    check(len(evil) == 1, "no card for the hostile build")
    if evil:
        inside = within(evil[0])
        text = evil[0]["text"]
        for shown in ["<script>document.title='pwned'</script>", "\"><img src=x onerror=",
                      "[click me](javascript:document.title='pwned')", "<b onmouseover=", "<svg onload="]:
            check(shown in text, f"{shown!r} is not shown as text")
        check([e["text"] for e in inside if e["tag"] == "strong"] == ["bold"], "**bold** is not bold")
        codes = [e["text"] for e in inside if e["tag"] == "code"]
        check("<b>code</b>" in codes and "<img src=x onerror=alert(1)>" in codes,
              f"code spans are not shown as written: {codes}")
        tags = sorted({e["tag"] for e in inside})
        for bad in ("script", "img", "svg", "b", "iframe", "object"):
            check(bad not in tags, f"a <{bad}> element came from the payload ({tags})")
scripts = [e for e in els if e["tag"] == "script"]
check(len(scripts) == (0 if mode == "standalone" else 1), f"{len(scripts)} script elements")
for e in els:
    for k, v in e["attrs"].items():
        check(not k.startswith("on"), f"<{e['tag']} {k}=...> handler attribute")
        if k in ("href", "src"):
            check((v or "").lower().startswith(("http://", "https://")), f"<{e['tag']} {k}={v!r}>")

if errors:
    print("\n".join(f"preview-check: {mode}: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"preview-check: {mode}: ok ({len(cards)} cards)")
PY
}

echo "==> preview-check: make test-curls HOST=127.0.0.1:$port (the nine fixtures)"
make --no-print-directory -C "$ROOT" test-curls HOST="127.0.0.1:$port" SECRET="$secret" >/dev/null
wait_for_cards 5
echo "==> preview-check: chromium --dump-dom $base/preview"
browse --dump-dom "$base/preview" >"$state/fixtures.html"
check_dom fixtures "$state/fixtures.html" || fail "the fixtures' page is wrong"
png=${shot:-$state/preview.png}
mkdir -p "$(dirname "$png")"
browse --screenshot="$png" --window-size="${PREVIEW_WINDOW:-1200,2000}" --hide-scrollbars "$base/preview" >/dev/null
[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "no PNG screenshot at $png"
echo "==> preview-check: screenshot $png ($(wc -c <"$png") bytes)"

hostile="$ROOT/test/fixtures/preview/hostile_commit.json"
echo "==> preview-check: test/test-curls.sh $hostile"
"$ROOT/test/test-curls.sh" -H "127.0.0.1:$port" -s "$secret" "$hostile" >/dev/null
wait_for_cards 6
browse --dump-dom "$base/preview" >"$state/hostile.html"
check_dom hostile "$state/hostile.html" || fail "the hostile payload was not shown as text"

echo "==> preview-check: drone-discord render --html, opened from a file"
"$bin" render "$hostile" --html --out "$state/card.html"
browse --dump-dom "file://$state/card.html" >"$state/card-dom.html"
check_dom standalone "$state/card-dom.html" || fail "render --html is wrong"

kill -TERM "$pid"
code=0; wait "$pid" || code=$?
trap - EXIT; rm -rf "$state"
[ "$code" -eq 0 ] || { echo "preview-check: serve exited $code after SIGTERM" >&2; exit 1; }
echo "==> preview-check: ok (five cards and the field grid in chromium; the hostile payload shown as text, never run)"
