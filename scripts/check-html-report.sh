#!/usr/bin/env bash
# Checks the HTML report in a real browser (headless Chromium): the page renders (a
# screenshot that is not blank), logs no console errors, and its DOM holds the SVG charts.
#
#   scripts/check-html-report.sh [--out DIR]
#       Makes a real report first: builds blaster, starts `blaster serve` on a free loopback
#       port, runs `blaster run ... -d 3s --json DIR/r.json` against it and renders
#       DIR/report.html (with `blaster report --html` when the CLI has it, otherwise through
#       the renderer in tests/tests/html_report.rs), then checks it.
#   scripts/check-html-report.sh --check FILE.html [--out DIR] [--min-charts N]
#       Only the browser check of an existing page (tests/tests/html_report.rs calls this).
#
# Outputs in DIR (default: a new temp dir, printed): screenshot.png, dom.html, chromium-*.log.
# Needs chromium (installed with apt-get when missing and running as root) and python3.
# Exit status 0 when every check passes, 1 otherwise. All traffic stays on 127.0.0.1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

html=""
out=""
min_charts=""
while [ $# -gt 0 ]; do
    case "$1" in
    --check) html="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --min-charts) min_charts="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
    esac
done
[ -n "$out" ] || out=$(mktemp -d /tmp/blaster-html-check.XXXXXX)
mkdir -p "$out"
out=$(cd "$out" && pwd)

fail() {
    echo "check-html-report: FAIL: $*" >&2
    exit 1
}

# --- Chromium --------------------------------------------------------------------------------
find_chromium() {
    if [ -n "${CHROMIUM:-}" ]; then
        echo "$CHROMIUM"
        return
    fi
    for c in chromium chromium-browser google-chrome; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return
        fi
    done
}
chromium=$(find_chromium)
if [ -z "$chromium" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends chromium
        chromium=$(find_chromium)
    fi
    [ -n "$chromium" ] || fail "chromium is not installed (apt-get install chromium)"
fi
command -v python3 >/dev/null 2>&1 || fail "python3 is not installed (apt-get install python3)"

# --- A real report, unless one was given -----------------------------------------------------
serve_pid=""
cleanup() {
    if [ -n "$serve_pid" ]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [ -z "$html" ]; then
    echo "building blaster"
    cargo build -q -p blaster --bin blaster
    blaster="$root/target/debug/blaster"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$blaster" serve --listen "127.0.0.1:$port" -t 1 >"$out/serve.log" 2>&1 &
    serve_pid=$!
    # Wait (at most 10 s) for the listening line.
    for _ in $(seq 100); do
        grep -q "listening on" "$out/serve.log" 2>/dev/null && break
        kill -0 "$serve_pid" 2>/dev/null || fail "blaster serve exited: $(cat "$out/serve.log")"
        sleep 0.1
    done
    grep -q "listening on" "$out/serve.log" || fail "blaster serve did not start: $(cat "$out/serve.log")"
    echo "running 3 s of load against 127.0.0.1:$port"
    timeout 60 "$blaster" run "http://127.0.0.1:$port/delay/1" -c 16 -t 1 -d 3s \
        --report-interval 250ms -q --json "$out/r.json" || fail "blaster run failed"
    cleanup
    serve_pid=""
    html="$out/report.html"
    if "$blaster" report --help 2>/dev/null | grep -q -- '--html'; then
        "$blaster" report "$out/r.json" --html "$html"
    else
        # The CLI has no --html yet: render through the library, from the test crate.
        BLASTER_HTML_JSON="$out/r.json" BLASTER_HTML_OUT="$html" \
            cargo test -q -p blaster-tests --test html_report render_json_from_env \
            -- --exact --nocapture >"$out/render.log" 2>&1 ||
            fail "rendering failed: $(cat "$out/render.log")"
    fi
    [ -s "$html" ] || fail "no HTML written to $html"
    [ -n "$min_charts" ] || min_charts=4  # latency x2, throughput, connections
fi
[ -n "$min_charts" ] || min_charts=1
[ -s "$html" ] || fail "$html is missing or empty"
html=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")

# --- The browser -----------------------------------------------------------------------------
chrome() {
    local profile
    profile=$(mktemp -d /tmp/blaster-chromium.XXXXXX)
    local rc=0
    timeout 90 "$chromium" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --no-default-browser-check --user-data-dir="$profile" \
        --enable-logging=stderr --v=0 "$@" || rc=$?
    rm -rf "$profile"
    return $rc
}

start=$(date +%s.%N)
rm -f "$out/screenshot.png"
chrome --screenshot="$out/screenshot.png" --window-size=1280,2400 "file://$html" \
    >"$out/chromium-screenshot.out" 2>"$out/chromium-screenshot.log" ||
    fail "chromium --screenshot failed (see $out/chromium-screenshot.log)"
chrome --dump-dom "file://$html" >"$out/dom.html" 2>"$out/chromium-dom.log" ||
    fail "chromium --dump-dom failed (see $out/chromium-dom.log)"
elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")

# Console messages (the page has no script: any message is a problem) and failed loads.
if grep -hE 'CONSOLE|Uncaught|net::ERR_' "$out/chromium-screenshot.log" "$out/chromium-dom.log" >"$out/console.txt"; then
    fail "console messages in the browser:
$(cat "$out/console.txt")"
fi

# The DOM as the browser built it: the charts and their lines are there.
charts=$(grep -o '<svg class="chart"' "$out/dom.html" | wc -l)
paths=$(grep -o '<path class="series"' "$out/dom.html" | wc -l)
grep -q '<h1>blaster report</h1>' "$out/dom.html" || fail "the DOM has no report heading"
[ "$charts" -ge "$min_charts" ] || fail "the DOM has $charts charts, expected at least $min_charts"
[ "$charts" -eq 0 ] || [ "$paths" -ge 1 ] || fail "the charts in the DOM have no lines"

# The screenshot is a real page: enough distinct colours and some ink.
[ -s "$out/screenshot.png" ] || fail "no screenshot written"
python3 - "$out/screenshot.png" <<'PY' || fail "the screenshot looks blank"
import struct, sys, zlib

path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit("not a PNG")

try:  # Pillow when present (python3-pil), else a small decoder of our own.
    from PIL import Image
    img = Image.open(path).convert("RGB")
    width, height = img.size
    pixels = list(img.getdata())
except ImportError:
    pos, idat, width = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                sys.exit(f"unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    pixels = []
    # Unfilter the rows (PNG filters 0-4); every 4th row is sampled.
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        if y % 4 == 0:
            pixels.extend(tuple(line[i:i + 3]) for i in range(0, stride, bpp))

colours = len(set(pixels))
background = max(set(pixels[: width * 4]), key=pixels[: width * 4].count)
ink = sum(1 for p in pixels if p != background) / max(1, len(pixels))
print(f"screenshot: {width}x{height}, {colours} distinct colours, {ink:.1%} non-background")
if colours < 16 or ink < 0.02:
    sys.exit(f"blank-looking screenshot: {colours} colours, {ink:.1%} ink")
PY

echo "check-html-report: OK: $charts charts, $paths lines, no console messages; browser took ${elapsed}s"
echo "screenshot: $out/screenshot.png"
echo "dom: $out/dom.html"
