#!/usr/bin/env bash
# The eBPF probe's overhead: `blaster serve` throughput at saturation without and with
# `blaster probe` attached to its port, side by side in one run.
#
# The target (`blaster serve`, io_uring, 1 thread) is pinned to SERVER_CPU; the load
# (`blaster run`, 1 thread, closed model) to CLIENT_CPU. Each round runs the load twice,
# once without and once with the probe watching the port, alternating which goes first
# (A B, B A, ...) so drift on a shared machine hits both sides alike. Reported: responses/s
# of each, their median over the rounds, and the loss with the probe.
#
# Two workloads (MODES):
#   keepalive  CONNS persistent connections: per request the probe sees a receive-queue
#              wait (sk_data_ready + sock_recv_length), tcp_probe segments and io_uring
#              completions.
#   close      `Connection: close`: a new connection per request, so also the handshake,
#              accept-queue (io_uring completion lookups) and state-change paths.
#
# Needs root (the probe) and the probe build prerequisites (`cargo xtask setup`). Not run
# in CI. Loopback only.
#
# Environment:
#   DURATION  seconds per run (default 10)
#   REPEATS   rounds per mode (default 3)
#   CONNS     connections (default 64)
#   MODES     workloads (default "keepalive close")
#   PORT      loopback port for the target (default 18490)
#   CLIENT_CPU / SERVER_CPU  CPUs to pin to (default 0 / 1)
#   OUT       directory for raw results (default: a new temp dir, kept)
set -euo pipefail

DURATION="${DURATION:-10}"
REPEATS="${REPEATS:-3}"
CONNS="${CONNS:-64}"
MODES="${MODES:-keepalive close}"
PORT="${PORT:-18490}"
CLIENT_CPU="${CLIENT_CPU:-0}"
SERVER_CPU="${SERVER_CPU:-1}"
HOST=127.0.0.1 # loopback only

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

if [ "$(id -u)" -ne 0 ]; then
    echo "the probe needs root: run this script as root" >&2
    exit 1
fi
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
command -v python3 >/dev/null 2>&1 || { echo "python3 is needed to read the reports" >&2; exit 1; }

echo "building blaster with the probe (release)"
cargo xtask build --release
BLASTER="$ROOT/target/release/blaster"

if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
    echo "port $PORT is already in use; set PORT" >&2
    exit 1
fi

OUT="${OUT:-$(mktemp -d /tmp/bench-probe.XXXXXX)}"
mkdir -p "$OUT"
echo "raw results in $OUT"

SERVE_PID=""
PROBE_PID=""
cleanup() {
    [ -z "$PROBE_PID" ] || kill -INT "$PROBE_PID" 2>/dev/null || true
    [ -z "$SERVE_PID" ] || kill -INT "$SERVE_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$BLASTER" serve --listen "$HOST:$PORT" -t 1 >"$OUT/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$OUT/serve.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening on" "$OUT/serve.log" || { cat "$OUT/serve.log"; exit 1; }

start_probe() {
    "$BLASTER" probe --port "$PORT" --interval 1000s >"$OUT/probe.log" 2>&1 &
    PROBE_PID=$!
    for _ in $(seq 100); do
        grep -q "watching port" "$OUT/probe.log" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$OUT/probe.log" >&2
    exit 1
}

stop_probe() {
    kill -INT "$PROBE_PID"
    wait "$PROBE_PID" || true # 130: stopped by the signal
    PROBE_PID=""
}

# run MODE NAME ROUND: one load run, its responses/s on stdout.
run() {
    local mode=$1 name=$2 round=$3 json="$OUT/$1-$2-$3.json"
    local extra=()
    [ "$mode" = close ] && extra=(-H "Connection: close")
    taskset -c "$CLIENT_CPU" "$BLASTER" run "http://$HOST:$PORT/" -c "$CONNS" -t 1 \
        -d "${DURATION}s" "${extra[@]}" -q --json "$json" >/dev/null 2>"$OUT/$mode-$name-$round.err"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f %d" % (r["rps"], r["errors"]["total"]))' "$json"
}

median() {
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

echo
echo "kernel $(uname -r), $(nproc) CPUs; serve on CPU $SERVER_CPU, load on CPU $CLIENT_CPU; ${DURATION}s runs, $CONNS connections"
printf '%-10s %-6s %14s %14s %8s\n' mode round "without rps" "with rps" "loss"
for mode in $MODES; do
    without=()
    with=()
    for round in $(seq "$REPEATS"); do
        if [ $((round % 2)) -eq 1 ]; then
            read -r a ea < <(run "$mode" without "$round")
            start_probe
            read -r b eb < <(run "$mode" with "$round")
            stop_probe
        else
            start_probe
            read -r b eb < <(run "$mode" with "$round")
            stop_probe
            read -r a ea < <(run "$mode" without "$round")
        fi
        without+=("$a")
        with+=("$b")
        loss=$(python3 -c "print(f'{(1 - $b / $a) * 100:.1f}%')")
        printf '%-10s %-6s %14s %14s %8s' "$mode" "$round" "$a" "$b" "$loss"
        [ "$ea$eb" = 00 ] || printf '  (errors: %s / %s)' "$ea" "$eb"
        printf '\n'
    done
    ma=$(median "${without[@]}")
    mb=$(median "${with[@]}")
    loss=$(python3 -c "print(f'{(1 - $mb / $ma) * 100:.1f}%')")
    printf '%-10s %-6s %14s %14s %8s\n' "$mode" median "$ma" "$mb" "$loss"
done
