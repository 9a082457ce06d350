#!/usr/bin/env bash
# Client CPU per request: blaster vs wrk against nginx on loopback.
#
# nginx (1 worker, `return 200 "ok"`, high keepalive_requests) is pinned to CPU 1; each client
# runs pinned to CPU 0 with one thread. For each concurrency, runs alternate between the
# clients and repeat REPEATS times. A client's CPU time (user+sys, from /usr/bin/time) divided
# by the responses it completed is its cost per request; lower is better.
#
# Clients (CLIENTS, default "wrk blaster floor"):
#   wrk         wrk 4 (epoll), 1 thread
#   blaster     blaster run, 1 thread, all timing and histograms on
#   floor       uring-floor (benches/src/bin/uring-floor.rs): the least an io_uring client
#               does (same ring features as blaster, no timing, no parsing; counts bytes),
#               the yardstick for what blaster's own work costs
#   floor-skip  the same with IOSQE_CQE_SKIP_SUCCESS on sends (no completion per send)
#
# Not run in CI. Needs root for apt (only when nginx, wrk, time or jq are missing).
#
# Environment:
#   DURATION  seconds per run (default 10)
#   REPEATS   rounds per concurrency (default 3)
#   CONNS     concurrencies (default "100 1000 10000")
#   CLIENTS   clients to compare (default "wrk blaster floor"; wrk is the reference)
#   PORT      loopback port for nginx (default 18480)
#   CLIENT_CPU / SERVER_CPU  CPUs to pin to (default 0 / 1)
#   OUT       directory for raw results (default: a new temp dir, kept)
set -euo pipefail

DURATION="${DURATION:-10}"
REPEATS="${REPEATS:-3}"
CONNS="${CONNS:-100 1000 10000}"
CLIENTS="${CLIENTS:-wrk blaster floor}"
PORT="${PORT:-18480}"
CLIENT_CPU="${CLIENT_CPU:-0}"
SERVER_CPU="${SERVER_CPU:-1}"
HOST=127.0.0.1 # loopback only

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
command -v jq >/dev/null 2>&1 || need+=(jq)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Do not let the package start a system nginx.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

echo "building blaster and uring-floor (release)"
cargo build --release -q -p blaster --bin blaster
cargo build --release -q -p blaster-benches --bin uring-floor
BLASTER="$ROOT/target/release/blaster"
FLOOR="$ROOT/target/release/uring-floor"

# 10000 connections need more descriptors than the default soft limit.
ulimit -n "$(ulimit -Hn)"
max_c=0
for c in $CONNS; do [ "$c" -gt "$max_c" ] && max_c=$c; done
if [ "$(ulimit -n)" -lt $((max_c + 100)) ]; then
    echo "ulimit -n is $(ulimit -n), too low for c=$max_c" >&2
    exit 1
fi

if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
    echo "port $PORT is already in use; set PORT" >&2
    exit 1
fi

OUT="${OUT:-$(mktemp -d /tmp/bench-vs-wrk.XXXXXX)}"
mkdir -p "$OUT/nginx"
cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
daemon off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
events { worker_connections $(( $(ulimit -n) - 100 )); multi_accept on; }
http {
    access_log off;
    client_body_temp_path $OUT/nginx/body;
    proxy_temp_path $OUT/nginx/proxy;
    fastcgi_temp_path $OUT/nginx/fastcgi;
    uwsgi_temp_path $OUT/nginx/uwsgi;
    scgi_temp_path $OUT/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen $HOST:$PORT backlog=65535 reuseport;
        location / { default_type text/plain; return 200 "ok"; }
    }
}
EOF

taskset -c "$SERVER_CPU" "$NGINX" -p "$OUT/nginx" -e "$OUT/nginx/error.log" \
    -c "$OUT/nginx/nginx.conf" &
NGINX_PID=$!
cleanup() {
    # Fast shutdown of the nginx master this script started (its worker goes with it).
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null || {
    echo "nginx did not start:" >&2
    cat "$OUT/nginx/error.log" >&2
    exit 1
}

URL="http://$HOST:$PORT/"
RESULTS="$OUT/results.tsv"
printf 'client\tc\trep\tresponses\tcpu_s\trps\terrors\n' >"$RESULTS"

run_wrk() { # c rep
    local c=$1 rep=$2 log="$OUT/wrk-c$1-r$2"
    /usr/bin/time -f "%U %S" -o "$log.time" \
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$c" -d"${DURATION}s" "$URL" >"$log.out" 2>&1 || true
    local n rps errs cpu
    n=$(awk '/requests in/ {print $1}' "$log.out")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$log.out")
    errs=$(awk '/Socket errors|Non-2xx/ {printf "%s ", $0}' "$log.out")
    cpu=$(awk 'END {print $1 + $2}' "$log.time")
    printf 'wrk\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$rep" "${n:-0}" "$cpu" "${rps:-0}" "${errs:-0}" >>"$RESULTS"
}

run_blaster() { # c rep
    local c=$1 rep=$2 log="$OUT/blaster-c$1-r$2"
    /usr/bin/time -f "%U %S" -o "$log.time" \
        taskset -c "$CLIENT_CPU" "$BLASTER" run "$URL" -t 1 -c "$c" -d "${DURATION}s" \
        --json "$log.json" -q >"$log.out" 2>&1 || true
    local n rps errs cpu
    n=$(jq -r '.responses // 0' "$log.json" 2>/dev/null || echo 0)
    rps=$(jq -r '.rps // 0' "$log.json" 2>/dev/null || echo 0)
    errs=$(jq -r '.errors.total // 0' "$log.json" 2>/dev/null || echo "no-report")
    cpu=$(awk 'END {print $1 + $2}' "$log.time")
    printf 'blaster\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$rep" "${n:-0}" "$cpu" "${rps:-0}" "$errs" >>"$RESULTS"
}

run_floor() { # name c rep [flag]
    local name=$1 c=$2 rep=$3 flag=${4:-} log="$OUT/$1-c$2-r$3"
    # shellcheck disable=SC2086 # flag is empty or one word
    /usr/bin/time -f "%U %S" -o "$log.time" \
        taskset -c "$CLIENT_CPU" "$FLOOR" http "$URL" -c "$c" -d "$DURATION" $flag \
        >"$log.out" 2>&1 || true
    local n secs cpu errs=0
    n=$(grep -o 'responses=[0-9]*' "$log.out" | cut -d= -f2)
    secs=$(grep -o 'secs=[0-9.]*' "$log.out" | cut -d= -f2)
    grep -q '^mode=http' "$log.out" || errs="failed: $(head -c 200 "$log.out")"
    cpu=$(awk 'END {print $1 + $2}' "$log.time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$rep" "${n:-0}" "$cpu" \
        "$(awk -v n="${n:-0}" -v s="${secs:-1}" 'BEGIN {printf "%.0f", n / s}')" "$errs" >>"$RESULTS"
}

run_client() { # name c rep
    case $1 in
    wrk) run_wrk "$2" "$3" ;;
    blaster) run_blaster "$2" "$3" ;;
    floor) run_floor floor "$2" "$3" ;;
    floor-skip) run_floor floor-skip "$2" "$3" --skip-send-cqe ;;
    *) echo "unknown client $1 in CLIENTS" >&2; exit 1 ;;
    esac
}

echo "results in $OUT (duration ${DURATION}s, $REPEATS rounds, c = $CONNS)"
for rep in $(seq 1 "$REPEATS"); do
    for c in $CONNS; do
        for client in $CLIENTS; do
            echo "round $rep/$REPEATS c=$c: $client"
            run_client "$client" "$c" "$rep"
            sleep 1
        done
    done
done

echo
echo "raw runs ($RESULTS):"
column -t -s $'\t' "$RESULTS" 2>/dev/null || cat "$RESULTS"
echo
# Per concurrency and client: total CPU / total responses over all rounds, the ratio to wrk,
# and mean rps.
awk -F'\t' -v conns="$CONNS" -v clients="$CLIENTS" '
NR > 1 {
    key = $1 SUBSEP $2
    cpu[key] += $5; n[key] += $4; rps[key] += $6; runs[key]++
}
END {
    split(conns, cs, " "); nc = split(clients, cl, " ")
    printf "%-7s", "c"
    for (j = 1; j <= nc; j++) printf " %12s", cl[j] " us/req"
    for (j = 1; j <= nc; j++) if (cl[j] != "wrk") printf " %11s", cl[j] "/wrk"
    for (j = 1; j <= nc; j++) printf " %13s", cl[j] " rps"
    printf "\n"
    for (i = 1; i in cs; i++) {
        c = cs[i]; w = "wrk" SUBSEP c
        wu = n[w] ? cpu[w] / n[w] * 1e6 : 0
        printf "%-7s", c
        for (j = 1; j <= nc; j++) { k = cl[j] SUBSEP c; printf " %12.3f", n[k] ? cpu[k] / n[k] * 1e6 : 0 }
        for (j = 1; j <= nc; j++) if (cl[j] != "wrk") {
            k = cl[j] SUBSEP c; u = n[k] ? cpu[k] / n[k] * 1e6 : 0
            printf " %10.2fx", wu ? u / wu : 0
        }
        for (j = 1; j <= nc; j++) { k = cl[j] SUBSEP c; printf " %13.0f", runs[k] ? rps[k] / runs[k] : 0 }
        printf "\n"
    }
}' "$RESULTS" | tee "$OUT/table.txt"
echo
echo "goals (blaster/wrk CPU per request): c=100 <= 0.75x, c=1000 <= 0.70x, c=10000 <= 0.60x"
