#!/usr/bin/env bash
# Scale: how many idle connections blaster holds, how fast it opens them, what they cost.
#
# Phase 1 (hold): `blaster serve` on a free loopback port with enough threads x descriptor
# tables for CONNS connections; `blaster run --mode hold -c CONNS` from SOURCES loopback source
# addresses (each carrying <= PER_SOURCE connections), held HOLD seconds. Prints connections
# held at the end, time to open them all (the report's connections.all_open_s), connect
# latency p50/p99, client RSS peak and bytes per
# connection, the server's VmRSS, and MemAvailable/Slab before and while held (kernel memory
# per connection pair is estimated from the drop minus both processes' RSS).
#
# Phase 2 (rate): client pinned to CPU CLIENT_CPU (`taskset`, `-t 1`: one worker, which drives
# as many rings of 20k direct descriptors as RATE_CONNS needs), server
# pinned to SERVER_CPU and listening on a range of ports, RATE_CONNS connections opened as
# fast as possible, spread over RATE_PORTS target ports (no source addresses, so no bind
# before connect); connections/s = RATE_CONNS / connections.all_open_s. Each of RATE_ROUNDS rounds runs blaster and then uring-floor
# (benches/src/bin/uring-floor.rs: the same connect chain and held receive, nothing else,
# RATE_CONNECTING connects in flight like blaster's default) against the same server; the
# medians and their ratio are printed.
#
# Everything stays on 127.0.0.0/8. A watchdog kills the client (by PID) if MemAvailable drops
# below MIN_AVAIL_GIB. Not run in CI.
#
# Environment:
#   CONNS          connections to hold (default 1000000)
#   HOLD           seconds to hold them once open (default 20)
#   OPEN_BUDGET    seconds allowed for opening them (default ceil(CONNS / 15000) + 5; 1M took
#                  47 s on 2 CPUs); the client runs -d OPEN_BUDGET + HOLD, since -d counts from
#                  the start and includes the opening
#   CONNECT_RATE   phase 1 --connect-rate (default: none, as fast as possible; 20000 keeps
#                  the built-in target's accept queues from overflowing on 2 CPUs, see
#                  docs/PERFORMANCE.md)
#   PER_SOURCE     max connections per source address (default 13000; keep < ~14000)
#   SOURCES        number of source addresses (default ceil(CONNS / PER_SOURCE))
#   RATE_CONNS     connections for phase 2 (default 100000; 0 skips phase 2)
#   RATE_PORTS     phase 2 target ports per run (default 8: 12,500 connections each)
#   RATE_ROUNDS    phase 2 rounds (default 3)
#   RATE_CONNECTING  uring-floor's connects in flight (default 256, blaster's default)
#   PHASES         "hold rate" (default), or one of them
#   CLIENT_CPU / SERVER_CPU  CPUs for phase 2 (default 0 / 1)
#   MIN_AVAIL_GIB  abort threshold for MemAvailable (default 3)
#   OUT            directory for raw results (default: a new temp dir, kept)
set -euo pipefail

CONNS="${CONNS:-1000000}"
HOLD="${HOLD:-20}"
OPEN_BUDGET="${OPEN_BUDGET:-$(((CONNS + 14999) / 15000 + 5))}"
RUN_S=$((OPEN_BUDGET + HOLD))
PER_SOURCE="${PER_SOURCE:-13000}"
SOURCES="${SOURCES:-$(((CONNS + PER_SOURCE - 1) / PER_SOURCE))}"
RATE_CONNS="${RATE_CONNS:-100000}"
RATE_PORTS="${RATE_PORTS:-8}"
RATE_ROUNDS="${RATE_ROUNDS:-3}"
RATE_CONNECTING="${RATE_CONNECTING:-256}"
CONNECT_RATE="${CONNECT_RATE:-}"
PHASES="${PHASES:-hold rate}"
CLIENT_CPU="${CLIENT_CPU:-0}"
SERVER_CPU="${SERVER_CPU:-1}"
MIN_AVAIL_GIB="${MIN_AVAIL_GIB:-3}"
TABLE=20000       # direct descriptors per ring (server thread; a client worker drives several)
SERVER_FILL=16000 # SO_REUSEPORT hashes unevenly: plan each server thread for this many

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
OUT="${OUT:-$(mktemp -d /tmp/bench-scale.XXXXXX)}"
mkdir -p "$OUT"
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 1; }

if [ "$SOURCES" -gt 250 ]; then
    echo "SOURCES=$SOURCES: more than 127.0.0.2-127.0.0.251; lower CONNS" >&2
    exit 1
fi
if [ $(((CONNS + SOURCES - 1) / SOURCES)) -gt 14000 ]; then
    echo "more than 14000 connections per source address; raise SOURCES" >&2
    exit 1
fi

echo "building blaster and uring-floor (release)"
cargo build --release -q -p blaster --bin blaster
cargo build --release -q -p blaster-benches --bin uring-floor
BLASTER="$ROOT/target/release/blaster"
FLOOR="$ROOT/target/release/uring-floor"
ulimit -n "$(ulimit -Hn)"

SERVER_PID=""
CLIENT_PID=""
cleanup() {
    [ -z "$CLIENT_PID" ] || kill "$CLIENT_PID" 2>/dev/null || true
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    [ -z "$CLIENT_PID" ] || wait "$CLIENT_PID" 2>/dev/null || true
    [ -z "$SERVER_PID" ] || wait "$SERVER_PID" 2>/dev/null || true
    CLIENT_PID=""
    SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

meminfo() { awk -v k="$1:" '$1 == k { printf "%.0f\n", $2 * 1024 }' /proc/meminfo; }
gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }
rss_of() {
    local r
    r="$(awk '/^VmRSS:/ { printf "%.0f\n", $2 * 1024 }' "/proc/$1/status" 2>/dev/null || true)"
    echo "${r:-0}"
}

free_port() {
    local p
    for p in $(seq 19100 19199); do
        if ! ss -ltnH "sport = :$p" | grep -q .; then
            echo "$p"
            return
        fi
    done
    echo "no free port in 19100-19199" >&2
    exit 1
}

# start_server CONNS [LISTEN] [taskset-prefix...]: blaster serve sized for CONNS connections,
# on LISTEN (127.0.0.1:PORT or a port range; default a free port, set in PORT); waits until
# the listen address's last port listens.
start_server() {
    local n="$1" listen="${2:-}"
    shift 2 || shift $#
    local threads=$(((n + SERVER_FILL - 1) / SERVER_FILL))
    if [ -z "$listen" ]; then
        PORT="$(free_port)"
        listen="127.0.0.1:$PORT"
    fi
    local last="${listen##*[:-]}"
    "$@" "$BLASTER" serve --listen "$listen" -t "$threads" --max-connections "$TABLE" \
        >"$OUT/server-$PHASE.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        ss -ltnH "sport = :$last" | grep -q . && break
        sleep 0.1
    done
    ss -ltnH "sport = :$last" | grep -q . || { echo "server did not listen" >&2; exit 1; }
    echo "server: pid $SERVER_PID, $listen, $threads threads x $TABLE descriptors"
}

# Watch memory while the client runs; kill it if MemAvailable gets too low. Writes
# min MemAvailable, Slab at that moment and max server RSS to $OUT/watch-$PHASE.
watch_client() {
    local min_avail slab_at avail srv max_srv=0 limit=$((MIN_AVAIL_GIB * 1073741824))
    min_avail="$(meminfo MemAvailable)"
    slab_at="$(meminfo Slab)"
    while kill -0 "$CLIENT_PID" 2>/dev/null; do
        avail="$(meminfo MemAvailable)"
        srv="$(rss_of "$SERVER_PID")"
        [ "$srv" -gt "$max_srv" ] && max_srv=$srv
        if [ "$avail" -lt "$min_avail" ]; then
            min_avail=$avail
            slab_at="$(meminfo Slab)"
        fi
        if [ "$avail" -lt "$limit" ]; then
            echo "MemAvailable $(gib "$avail") < ${MIN_AVAIL_GIB} GiB: killing client $CLIENT_PID" >&2
            kill "$CLIENT_PID" 2>/dev/null || true
            echo "aborted" >"$OUT/aborted-$PHASE"
        fi
        sleep 0.5
    done
    echo "$min_avail $slab_at $max_srv" >"$OUT/watch-$PHASE"
}

# time_to_open JSON: seconds from the start until every connection was open at once
time_to_open() {
    jq -r '.connections.all_open_s // "never"' "$1"
}

phase_hold() {
    PHASE=hold
    local last=$((1 + SOURCES)) json="$OUT/hold.json"
    echo
    echo "== phase 1: hold $CONNS connections from 127.0.0.2-127.0.0.$last, -d ${RUN_S}s (${OPEN_BUDGET}s to open + ${HOLD}s held)"
    free -b | tee "$OUT/free-before-hold.txt"
    local avail0 slab0
    avail0="$(meminfo MemAvailable)"
    slab0="$(meminfo Slab)"
    start_server "$CONNS" ""
    local cmd=("$BLASTER" run "http://127.0.0.1:$PORT/" --mode hold -c "$CONNS"
        --source "127.0.0.2-127.0.0.$last" -d "${RUN_S}s" --report-interval 1s
        --json "$json" -q)
    [ -z "$CONNECT_RATE" ] || cmd+=(--connect-rate "$CONNECT_RATE")
    echo "client: ${cmd[*]}"
    "${cmd[@]}" >"$OUT/client-hold.log" 2>&1 &
    CLIENT_PID=$!
    # Sample memory while connections are held, before the client's hold ends.
    (sleep $((RUN_S - 2)); free -b >"$OUT/free-during-hold.txt") &
    local sampler=$!
    watch_client
    local rc=0
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=""
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local srv_rss_end
    srv_rss_end="$(rss_of "$SERVER_PID")"
    read -r min_avail slab_min max_srv <"$OUT/watch-hold"
    cleanup
    echo "client exit code: $rc"
    [ -s "$OUT/client-hold.log" ] && { echo "client output:"; tail -20 "$OUT/client-hold.log"; }
    echo "free -b while held:"
    cat "$OUT/free-during-hold.txt" 2>/dev/null || true
    [ -s "$json" ] || { echo "no JSON report" >&2; return 1; }
    local tto c_rss
    tto="$(time_to_open "$json")"
    c_rss="$(jq .memory.rss_peak_bytes "$json")"
    echo
    echo "-- hold results ($json)"
    jq -r '"connections held at end:   \(.connections.open_at_end) (opened \(.connections.opened), failed \(.connections.failed), closed by peer \(.connections.closed_by_peer), on error \(.connections.closed_on_error))"' "$json"
    echo "time to open all $CONNS:   ${tto} s"
    [ "$tto" != "never" ] || echo "  (not all open within -d ${RUN_S}s: raise OPEN_BUDGET)"
    jq -r '"connect latency:           p50 \(.connect_latency_us.p50) us, p99 \(.connect_latency_us.p99) us, max \(.connect_latency_us.max) us (count \(.connect_latency_us.count))"' "$json"
    jq -r '"client RSS:                start \(.memory.rss_start_bytes) B, peak \(.memory.rss_peak_bytes) B at \(.memory.peak_open_connections) open -> \(.memory.bytes_per_connection) B/connection (upper bound)"' "$json"
    jq -r '"client CPU:                \(.client_cpu_s) s over \(.duration_s) s"' "$json"
    echo "server VmRSS:              max $max_srv B, at end $srv_rss_end B ($((max_srv / CONNS)) B/connection)"
    echo "MemAvailable:              before $(gib "$avail0"), min while held $(gib "$min_avail") (drop $(((avail0 - min_avail) / CONNS)) B/connection pair)"
    echo "Slab:                      before $(gib "$slab0"), at that point $(gib "$slab_min") (+$(((slab_min - slab0) / CONNS)) B/connection pair)"
    echo "kernel memory estimate:    $(((avail0 - min_avail - c_rss - max_srv) / CONNS)) B/connection pair (MemAvailable drop minus client peak RSS and server RSS)"
    jq -c '[.timeseries[] | [.t_s, .open_connections, .connections_opened]]' "$json" >"$OUT/hold-timeseries.txt"
    echo "time series [t_s, open, opened]: $(cat "$OUT/hold-timeseries.txt")"
    [ ! -e "$OUT/aborted-hold" ] || { echo "phase 1 ABORTED (memory)"; return 1; }
}

# One blaster run of phase 2 against ports FIRST..LAST: prints "RATE P50_US P99_US" (RATE =
# n / all_open_s).
rate_blaster() { # round first last
    local n="$RATE_CONNS" json="$OUT/rate-blaster-$1.json"
    local cmd=(taskset -c "$CLIENT_CPU" "$BLASTER" run "http://127.0.0.1:$2-$3/" --mode hold
        -c "$n" -t 1 -d 10s --report-interval 100ms --json "$json" -q)
    echo "client: ${cmd[*]}" >>"$OUT/rate-commands.txt"
    "${cmd[@]}" >"$OUT/client-rate-$1.log" 2>&1 || true
    if [ ! -s "$json" ] || [ "$(time_to_open "$json")" = never ]; then
        echo "0 0 0"
        return
    fi
    jq -r --argjson n "$n" '"\($n / .connections.all_open_s | floor) \(.connect_latency_us.p50) \(.connect_latency_us.p99)"' "$json"
}

# One uring-floor run (the least an io_uring client does: benches/src/bin/uring-floor.rs)
# against ports FIRST..LAST; prints its connections/s.
rate_floor() { # round first last
    local cmd=(taskset -c "$CLIENT_CPU" "$FLOOR" connect "127.0.0.1:$2-$3" -n "$RATE_CONNS"
        --max-connecting "$RATE_CONNECTING")
    echo "floor: ${cmd[*]}" >>"$OUT/rate-commands.txt"
    "${cmd[@]}" >"$OUT/floor-rate-$1.log" 2>&1 || true
    local r
    r="$(grep -o 'connects_per_s=[0-9]*' "$OUT/floor-rate-$1.log" | cut -d= -f2)"
    echo "${r:-0}"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

phase_rate() {
    PHASE=rate
    local n="$RATE_CONNS" runs=$((2 * RATE_ROUNDS)) base=19300 p
    local per_port=$(((n + RATE_PORTS - 1) / RATE_PORTS))
    if [ "$per_port" -gt 14000 ]; then
        echo "more than 14000 connections per target port; raise RATE_PORTS" >&2
        return 1
    fi
    # Every run gets its own block of RATE_PORTS ports, so no run meets the TIME_WAIT
    # sockets of an earlier one on its (source, destination) pairs. No source addresses:
    # spreading over target ports needs no bind before connect.
    local last_port=$((base + runs * RATE_PORTS - 1))
    for p in $(seq "$base" "$last_port"); do
        if ss -ltnH "sport = :$p" | grep -q .; then
            echo "port $p (of $base-$last_port) is in use" >&2
            return 1
        fi
    done
    # Phase 1 leaves its client sockets in TIME_WAIT for 60 s; their expiry (a million
    # timers) would run on these CPUs in the middle of the storms. Wait for them to go.
    local tw waited=0
    while tw="$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat)" &&
        [ "${tw:-0}" -gt 10000 ] && [ "$waited" -lt 120 ]; do
        [ "$waited" -eq 0 ] && echo "waiting for $tw TIME_WAIT sockets of phase 1 to expire"
        sleep 5
        waited=$((waited + 5))
    done
    echo
    echo "== phase 2: open $n connections as fast as possible, client on CPU $CLIENT_CPU, server on CPU $SERVER_CPU, $RATE_ROUNDS rounds (blaster, then uring-floor), $RATE_PORTS target ports per run"
    start_server "$((n + n / 4))" "127.0.0.1:$base-$last_port" taskset -c "$SERVER_CPU"
    local r b f bl=() fl=() lat first
    printf '%-6s %16s %18s %16s\n' round "blaster conn/s" "connect p50/p99 us" "floor conn/s"
    for r in $(seq "$RATE_ROUNDS"); do
        sleep 3
        first=$((base + (2 * r - 2) * RATE_PORTS))
        read -r b lat < <(rate_blaster "$r" "$first" "$((first + RATE_PORTS - 1))")
        sleep 3
        first=$((first + RATE_PORTS))
        f="$(rate_floor "$r" "$first" "$((first + RATE_PORTS - 1))")"
        bl+=("$b")
        fl+=("$f")
        printf '%-6s %16s %18s %16s\n' "$r" "$b" "${lat/ //}" "$f"
    done
    cleanup
    local mb mf
    mb="$(median "${bl[@]}")"
    mf="$(median "${fl[@]}")"
    echo
    echo "-- rate results (raw in $OUT/rate-*.json, floor-rate-*.log; commands in $OUT/rate-commands.txt)"
    echo "new connections/s on 1 core, median of $RATE_ROUNDS: blaster $mb, uring-floor $mf ($(awk -v b="$mb" -v f="$mf" 'BEGIN { printf "%.2f", f ? b / f : 0 }')x of the floor); goal >= 40000"
    jq -c '[.timeseries[] | select(.connections_opened > 0) | [.t_s, .open_connections, .connections_opened]]' "$OUT/rate-blaster-1.json" >"$OUT/rate-timeseries.txt" 2>/dev/null || true
    echo "round 1 busy intervals [t_s, open, opened]: $(cat "$OUT/rate-timeseries.txt")"
}

echo "machine: $(nproc) CPUs, $(gib "$(meminfo MemTotal)"), kernel $(uname -r), ulimit -n $(ulimit -n)"
echo "output: $OUT"
status=0
for p in $PHASES; do
    case "$p" in
    hold) phase_hold || status=1 ;;
    rate) [ "$RATE_CONNS" -eq 0 ] || phase_rate || status=1 ;;
    *) echo "unknown phase $p" >&2; exit 2 ;;
    esac
done
exit $status
