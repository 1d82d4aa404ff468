#!/usr/bin/env bash
# Browser test of the web page served at GET /.
# Usage: tests/test_page.sh BUILD_DIR MODEL_DIR
# Starts BUILD_DIR/ufbd on a free port, loads /?text=... in headless Chromium, checks that the
# page shows a label the model has (element id="result-label"), then takes a screenshot and
# checks it is a real PNG over 10 KB. Screenshot and DOM dump go to $OUT (default
# BUILD_DIR/test-page). Without chromium the test fails, unless UFBD_ALLOW_SKIP_BROWSER=1.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR MODEL_DIR" >&2
    exit 2
fi
BUILD_DIR=$1
MODEL_DIR=$2
OUT=${OUT:-$BUILD_DIR/test-page}

CHROMIUM=
for c in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then CHROMIUM=$c; break; fi
done
if [ -z "$CHROMIUM" ]; then
    if [ "${UFBD_ALLOW_SKIP_BROWSER:-0}" = 1 ]; then
        echo "SKIP: chromium not installed (UFBD_ALLOW_SKIP_BROWSER=1)"
        exit 0
    fi
    echo "FAIL: chromium not installed (apt-get install -y chromium, or set UFBD_ALLOW_SKIP_BROWSER=1)" >&2
    echo "page: 0 passed, 1 failed"
    exit 1
fi
for tool in curl python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "FAIL: $tool not installed" >&2; exit 1; }
done
[ -x "$BUILD_DIR/ufbd" ] || { echo "FAIL: $BUILD_DIR/ufbd not found or not executable" >&2; exit 1; }

mkdir -p "$OUT"
WORK=$(mktemp -d)
SRV_PID=
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill -TERM "$SRV_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$SRV_PID" 2>/dev/null && kill -KILL "$SRV_PID" 2>/dev/null
        wait "$SRV_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass=0
fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
finish() {
    echo "page: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

# --- start the server and wait for the listening line + readiness (30 s) ---
"$BUILD_DIR/ufbd" --model "$MODEL_DIR" --port 0 --host 127.0.0.1 >"$WORK/server.log" 2>&1 &
SRV_PID=$!
PORT=
READY=0
for _ in $(seq 1 300); do
    if ! kill -0 "$SRV_PID" 2>/dev/null; then break; fi
    if [ -z "$PORT" ]; then
        PORT=$(sed -n 's|.*ufbd: listening on http://[^:]*:\([0-9][0-9]*\).*|\1|p' "$WORK/server.log" | head -n1)
    fi
    if [ -n "$PORT" ] && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/health/ready" 2>/dev/null; then
        READY=1
        break
    fi
    sleep 0.1
done
if [ "$READY" != 1 ]; then
    if kill -0 "$SRV_PID" 2>/dev/null; then
        echo "FAIL: server did not become ready within 30 s (port '${PORT}'); its output:" >&2
    else
        wait "$SRV_PID"
        echo "FAIL: server exited with status $? before it was ready; its output:" >&2
        SRV_PID=
    fi
    sed 's/^/  | /' "$WORK/server.log" >&2
    bad "server start"
    finish
fi
BASE="http://127.0.0.1:$PORT"

# labels the model has, one per line
if ! curl -fsS --max-time 5 "$BASE/info" -o "$WORK/info.json" ||
    ! python3 -c 'import json,sys; [print(l) for l in json.load(open(sys.argv[1]))["labels"]]' \
        "$WORK/info.json" >"$WORK/labels.txt" || [ ! -s "$WORK/labels.txt" ]; then
    bad "GET /info lists labels"
    finish
fi

CHROME_FLAGS=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
    --hide-scrollbars --user-data-dir="$WORK/profile" --virtual-time-budget=10000)
URL="$BASE/?text=a%20gorgeous%20film"

# --- 1: the DOM after auto-classification shows a known label ---
timeout 90 "$CHROMIUM" "${CHROME_FLAGS[@]}" --dump-dom "$URL" >"$OUT/page.dom.html" 2>"$WORK/chromium1.log"
LABEL=$(python3 - "$OUT/page.dom.html" <<'EOF'
import html, re, sys
m = re.search(r'id="result-label"[^>]*>([^<]*)<', open(sys.argv[1], encoding="utf-8", errors="replace").read())
print(html.unescape(m.group(1)).strip() if m else "")
EOF
)
if [ -n "$LABEL" ] && grep -Fxq -- "$LABEL" "$WORK/labels.txt"; then
    ok "result-label shows '$LABEL'"
else
    bad "result-label shows a model label (got '${LABEL}'; labels: $(tr '\n' ' ' <"$WORK/labels.txt"))"
    grep -o '<section id="error"[^>]*>.*' "$OUT/page.dom.html" | head -c 600 >&2
    tail -n 5 "$WORK/chromium1.log" >&2
fi

# --- 2: a screenshot of the rendered page ---
rm -f "$OUT/page.png"
timeout 90 "$CHROMIUM" "${CHROME_FLAGS[@]}" --window-size=1200,1400 --screenshot="$OUT/page.png" "$URL" \
    >/dev/null 2>"$WORK/chromium2.log"
SIZE=$(stat -c %s "$OUT/page.png" 2>/dev/null || echo 0)
if [ "$SIZE" -gt 10240 ] && [ "$(head -c 8 "$OUT/page.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
    ok "screenshot $OUT/page.png ($SIZE bytes)"
else
    bad "screenshot $OUT/page.png is a PNG over 10 KB (size $SIZE)"
    tail -n 5 "$WORK/chromium2.log" >&2
fi

finish
