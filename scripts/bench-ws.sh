#!/usr/bin/env bash
# WebSocket echo: blaster vs artillery (npm) against one third-party echo server, side by side.
#
# The server is Python `websockets` (apt python3-websockets), pinned to SERVER_CPU; each client
# runs pinned to CLIENT_CPU. Both clients drive the same load: CONNS connections, each sending
# RATE messages/s of PAYLOAD bytes for DURATION seconds. A client's CPU (user+sys from
# /usr/bin/time) divided by the messages it sent is its cost per message; lower is better.
# Also: blaster's CPU per HTTP request at the same payload and rate against `blaster serve`
# (the issue's goal: an echo message costs no more than a request), and the client RSS of
# HOLD held WebSocket connections (goal: 10,000 in under 64 MB).
#
# Not run in CI. Needs root for apt (python3-websockets, time, jq) and npm for artillery
# (installed under ARTILLERY_DIR if missing).
#
# Environment:
#   DURATION (default 10)  CONNS (default 100)  RATE per connection (default 20)
#   PAYLOAD bytes (default 256)  HOLD (default 10000)  PORT (default 18590)
#   CLIENT_CPU / SERVER_CPU (default 0 / 1)  ARTILLERY_DIR (default /work/tools/artillery)
#   OUT  directory for raw results (default: a new temp dir, kept)
set -euo pipefail

DURATION="${DURATION:-10}"
CONNS="${CONNS:-100}"
RATE="${RATE:-20}"
PAYLOAD="${PAYLOAD:-256}"
HOLD="${HOLD:-10000}"
PORT="${PORT:-18590}"
CLIENT_CPU="${CLIENT_CPU:-0}"
SERVER_CPU="${SERVER_CPU:-1}"
ARTILLERY_DIR="${ARTILLERY_DIR:-/work/tools/artillery}"
HOST=127.0.0.1 # loopback only

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
OUT="${OUT:-$(mktemp -d /tmp/bench-ws.XXXXXX)}"
mkdir -p "$OUT"

need=()
# The distribution's python3 (apt installs python3-websockets for it; a pyenv or venv python3
# earlier on PATH may lack it).
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
"$PY" -c "import websockets" >/dev/null 2>&1 || need+=(python3-websockets)
[ -x /usr/bin/time ] || need+=(time)
command -v jq >/dev/null 2>&1 || need+=(jq)
if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
ARTILLERY="$ARTILLERY_DIR/node_modules/.bin/artillery"
if [ ! -x "$ARTILLERY" ]; then
    echo "installing artillery into $ARTILLERY_DIR (npm)"
    # Artillery pulls in Playwright, whose install script downloads a browser (not needed for
    # WebSocket tests, and not reachable from every machine).
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --ignore-scripts \
        --prefix "$ARTILLERY_DIR" artillery@2 >/dev/null
fi

echo "building blaster (release)"
cargo build --release -q -p blaster --bin blaster
BLASTER="$ROOT/target/release/blaster"
ulimit -n "$(ulimit -Hn)"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# The third-party echo server.
taskset -c "$SERVER_CPU" "$PY" - "$PORT" >"$OUT/server.log" 2>&1 <<'PY' &
import asyncio, sys, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), ping_interval=None, max_size=None):
        await asyncio.Future()
asyncio.run(main())
PY
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/$HOST/$PORT) 2>/dev/null && break; sleep 0.1; done

cpu_of() { awk '{print $1 + $2}' "$1"; }

# blaster: CONNS connections echoing RATE msg/s each.
/usr/bin/time -f "%U %S %M" -o "$OUT/blaster.time" taskset -c "$CLIENT_CPU" \
    "$BLASTER" run "ws://$HOST:$PORT/" --mode echo -c "$CONNS" --message-rate "$RATE" \
    --payload "$PAYLOAD" -d "${DURATION}s" -t 1 -q --json "$OUT/blaster.json"
b_sent=$(jq '.ws.msgs_sent' "$OUT/blaster.json")
b_recv=$(jq '.ws.msgs_received' "$OUT/blaster.json")
b_p99=$(jq '.ws.msg_latency_us.p99' "$OUT/blaster.json")
b_cpu=$(cpu_of "$OUT/blaster.time")

# artillery: the same connections, each sending RATE msg/s (think 1/RATE s) for DURATION s.
count=$((RATE * DURATION))
think=$(awk -v r="$RATE" 'BEGIN{printf "%.4f", 1/r}')
msg=$(head -c "$PAYLOAD" /dev/zero | tr '\0' 'x')
cat >"$OUT/artillery.yml" <<YML
config:
  target: "ws://$HOST:$PORT"
  phases:
    - duration: 1
      arrivalCount: $CONNS
scenarios:
  - engine: ws
    flow:
      - loop:
          - send: "$msg"
          - think: $think
        count: $count
YML
/usr/bin/time -f "%U %S %M" -o "$OUT/artillery.time" taskset -c "$CLIENT_CPU" \
    "$ARTILLERY" run --output "$OUT/artillery.json" "$OUT/artillery.yml" >"$OUT/artillery.log" 2>&1 || true
a_sent=$(jq '[.aggregate.counters["websocket.messages_sent"] // 0] | add' "$OUT/artillery.json" 2>/dev/null || echo 0)
a_cpu=$(cpu_of "$OUT/artillery.time")

# blaster's CPU per HTTP request at the same payload and total rate, against blaster serve.
taskset -c "$SERVER_CPU" "$BLASTER" serve --listen "$HOST:$((PORT + 1))" -t 1 >"$OUT/serve.log" 2>&1 &
pids+=($!)
sleep 0.5
body=$(head -c "$PAYLOAD" /dev/zero | tr '\0' 'x')
/usr/bin/time -f "%U %S %M" -o "$OUT/http.time" taskset -c "$CLIENT_CPU" \
    "$BLASTER" run "http://$HOST:$((PORT + 1))/" -m POST --body "$body" -c "$CONNS" \
    --rate "$((CONNS * RATE))" -d "${DURATION}s" -t 1 -q --json "$OUT/http.json"
h_reqs=$(jq '.responses' "$OUT/http.json")
h_cpu=$(cpu_of "$OUT/http.time")
# ... and blaster's WebSocket echo against the same server, for the like-for-like goal.
/usr/bin/time -f "%U %S %M" -o "$OUT/echo-serve.time" taskset -c "$CLIENT_CPU" \
    "$BLASTER" run "ws://$HOST:$((PORT + 1))/ws/echo" --mode echo -c "$CONNS" \
    --message-rate "$RATE" --payload "$PAYLOAD" -d "${DURATION}s" -t 1 -q --json "$OUT/echo-serve.json"
e_sent=$(jq '.ws.msgs_sent' "$OUT/echo-serve.json")
e_cpu=$(cpu_of "$OUT/echo-serve.time")

# Client RSS of HOLD held WebSocket sessions (against blaster serve, which holds them).
"$BLASTER" run "ws://$HOST:$((PORT + 1))/ws/echo" --mode hold -c "$HOLD" -d 8s -t 1 -q \
    --json "$OUT/hold.json"
h_sessions=$(jq '.ws.sessions' "$OUT/hold.json")
h_rss=$(jq '.memory.rss_peak_bytes' "$OUT/hold.json")

per() { awk -v c="$1" -v n="$2" 'BEGIN{ if (n > 0) printf "%.2f", c * 1e6 / n; else print "n/a" }'; }
b_per=$(per "$b_cpu" "$b_sent")
a_per=$(per "$a_cpu" "$a_sent")
h_per=$(per "$h_cpu" "$h_reqs")
e_per=$(per "$e_cpu" "$e_sent")
ratio=$(awk -v a="$b_per" -v b="$a_per" 'BEGIN{ if (b > 0) printf "%.3f", a / b; else print "n/a" }')
echo
echo "WebSocket echo, $CONNS connections x $RATE msg/s, $PAYLOAD B, ${DURATION}s (client on CPU $CLIENT_CPU, Python websockets on CPU $SERVER_CPU)"
printf '%-34s %12s %12s %14s\n' client "messages" "CPU s" "µs CPU/msg"
printf '%-34s %12s %12s %14s\n' "blaster (echo p99 ${b_p99} µs)" "$b_sent" "$b_cpu" "$b_per"
printf '%-34s %12s %12s %14s\n' "artillery" "$a_sent" "$a_cpu" "$a_per"
echo "blaster / artillery CPU per message: $ratio"
echo "blaster received $b_recv of $b_sent echoes"
echo "against blaster serve (pinned to CPU $SERVER_CPU), same payload and rate:"
echo "  blaster WebSocket echo: $e_per µs CPU/message ($e_sent messages)"
echo "  blaster HTTP POST:      $h_per µs CPU/request ($h_reqs requests)"
echo "held WebSocket sessions: $h_sessions, client RSS peak $((h_rss / 1048576)) MiB"
echo "raw results: $OUT"
