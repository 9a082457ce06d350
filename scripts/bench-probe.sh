#!/usr/bin/env bash
# The eBPF probe's overhead: `blaster serve` throughput at saturation without and with
# `blaster probe` attached to its port, side by side in one run.
#
# The target (`blaster serve`, io_uring, 1 thread) is pinned to SERVER_CPU; the load
# (`blaster run`, 1 thread, closed model) to CLIENT_CPU. Each round runs the load twice,
# once without and once with the probe watching the port, alternating which goes first
# (A B, B A, ...) so drift on a shared machine hits both sides alike. Reported: responses/s
# of each, their median over the rounds, and the loss with the probe; and the CPU time
# per response (blaster run's workers plus the serve process, user + system), which other
# load on a shared machine disturbs less than throughput does. (Softirq time spent in
# those tasks' context counts unless the kernel accounts IRQ time separately.)
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
#   PROBE_ARGS  extra `blaster probe` arguments, e.g. --no-accept-syscalls (blaster serve
#             accepts through io_uring, so it loses nothing)
#   PORT      loopback port for the target (default 18490)
#   PROBE_PORT  the port the probe watches (default PORT). Another port (e.g. 1) leaves the
#             target's sockets unwatched: every program still runs for them and returns
#             after its socket lookup misses, which is the least an attached probe costs
#   CLIENT_CPU / SERVER_CPU  CPUs to pin to (default 0 / 1)
#   OUT       directory for raw results (default: a new temp dir, kept)
set -euo pipefail

DURATION="${DURATION:-10}"
REPEATS="${REPEATS:-3}"
CONNS="${CONNS:-64}"
MODES="${MODES:-keepalive close}"
PORT="${PORT:-18490}"
PROBE_PORT="${PROBE_PORT:-$PORT}"
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
    # shellcheck disable=SC2086 # PROBE_ARGS is a list of words
    "$BLASTER" probe --port "$PROBE_PORT" --interval 1000s ${PROBE_ARGS:-} >"$OUT/probe.log" 2>&1 &
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

# CPU time (user + system, clock ticks) of the serve process so far.
serve_ticks() {
    awk '{print $14 + $15}' "/proc/$SERVE_PID/stat"
}

# run MODE NAME ROUND: one load run; prints its responses/s, errors and CPU µs per response.
run() {
    local mode=$1 name=$2 round=$3 json="$OUT/$1-$2-$3.json"
    local extra=()
    [ "$mode" = close ] && extra=(-H "Connection: close")
    local t0 t1
    t0=$(serve_ticks)
    taskset -c "$CLIENT_CPU" "$BLASTER" run "http://$HOST:$PORT/" -c "$CONNS" -t 1 \
        -d "${DURATION}s" "${extra[@]}" -q --json "$json" >/dev/null 2>"$OUT/$mode-$name-$round.err"
    t1=$(serve_ticks)
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); s=(int(sys.argv[3])-int(sys.argv[2]))/int(sys.argv[4]); print("%.0f %d %.2f" % (r["rps"], r["errors"]["total"], (r["client_cpu_s"]+s)*1e6/max(r["responses"],1)))' \
        "$json" "$t0" "$t1" "$(getconf CLK_TCK)"
}

median() {
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

echo
echo "kernel $(uname -r), $(nproc) CPUs; serve on CPU $SERVER_CPU, load on CPU $CLIENT_CPU; ${DURATION}s runs, $CONNS connections; probe watches port $PROBE_PORT; probe args: ${PROBE_ARGS:-none}"
printf '%-10s %-6s %12s %12s %7s   %12s %12s %7s\n' mode round "rps without" "rps with" loss \
    "CPU/resp w/o" "CPU/resp w/" more
# pct A B: how much A is above B, in percent.
pct() { python3 -c "import sys; print('%.1f%%' % ((float(sys.argv[1]) / float(sys.argv[2]) - 1) * 100))" "$1" "$2"; }
# loss WITHOUT WITH: the throughput lost, in percent.
loss() { python3 -c "import sys; print('%.1f%%' % ((1 - float(sys.argv[2]) / float(sys.argv[1])) * 100))" "$1" "$2"; }
for mode in $MODES; do
    without=() with=() cpu_without=() cpu_with=() losses=() mores=()
    for round in $(seq "$REPEATS"); do
        if [ $((round % 2)) -eq 1 ]; then
            read -r a ea ca < <(run "$mode" without "$round")
            start_probe
            read -r b eb cb < <(run "$mode" with "$round")
            stop_probe
        else
            start_probe
            read -r b eb cb < <(run "$mode" with "$round")
            stop_probe
            read -r a ea ca < <(run "$mode" without "$round")
        fi
        without+=("$a") with+=("$b") cpu_without+=("$ca") cpu_with+=("$cb")
        losses+=("$(loss "$a" "$b" | tr -d %)") mores+=("$(pct "$cb" "$ca" | tr -d %)")
        printf '%-10s %-6s %12s %12s %7s   %10sus %10sus %7s' "$mode" "$round" "$a" "$b" \
            "$(loss "$a" "$b")" "$ca" "$cb" "$(pct "$cb" "$ca")"
        [ "$ea$eb" = 00 ] || printf '  (errors: %s / %s)' "$ea" "$eb"
        printf '\n'
    done
    ma=$(median "${without[@]}") mb=$(median "${with[@]}")
    mca=$(median "${cpu_without[@]}") mcb=$(median "${cpu_with[@]}")
    printf '%-10s %-6s %12s %12s %7s   %10sus %10sus %7s\n' "$mode" median "$ma" "$mb" \
        "$(loss "$ma" "$mb")" "$mca" "$mcb" "$(pct "$mcb" "$mca")"
    # The rounds' own pairs (without and with run back to back) are steadier than the
    # medians of each side when the machine's speed jumps between runs.
    printf '%-10s %-6s %12s %12s %7s   %10s   %10s   %7s\n' "$mode" "pairs" "" "" \
        "$(median "${losses[@]}")%" "" "" "$(median "${mores[@]}")%"
done
echo "loss: 1 - with/without throughput; more: extra CPU per response with the probe"
echo "median: of each side's values; pairs: median of the rounds' own loss and CPU figures"
