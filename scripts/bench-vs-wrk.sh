#!/usr/bin/env bash
# Client CPU per request: blaster vs wrk against nginx on loopback.
#
# nginx (1 worker, `return 200 "ok"`, high keepalive_requests) is pinned to CPU 1; each client
# runs pinned to CPU 0 with one thread. For each concurrency, runs alternate wrk / blaster and
# repeat REPEATS times. A client's CPU time (user+sys, from /usr/bin/time) divided by the
# responses it completed is its cost per request; lower is better.
#
# Not run in CI. Needs root for apt (only when nginx, wrk, time or jq are missing).
#
# Environment:
#   DURATION  seconds per run (default 10)
#   REPEATS   rounds per concurrency (default 3)
#   CONNS     concurrencies (default "100 1000 10000")
#   PORT      loopback port for nginx (default 18480)
#   CLIENT_CPU / SERVER_CPU  CPUs to pin to (default 0 / 1)
#   OUT       directory for raw results (default: a new temp dir, kept)
set -euo pipefail

DURATION="${DURATION:-10}"
REPEATS="${REPEATS:-3}"
CONNS="${CONNS:-100 1000 10000}"
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

echo "building blaster (release)"
cargo build --release -q -p blaster --bin blaster
BLASTER="$ROOT/target/release/blaster"

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

echo "results in $OUT (duration ${DURATION}s, $REPEATS rounds, c = $CONNS)"
for rep in $(seq 1 "$REPEATS"); do
    for c in $CONNS; do
        echo "round $rep/$REPEATS c=$c: wrk"
        run_wrk "$c" "$rep"
        sleep 1
        echo "round $rep/$REPEATS c=$c: blaster"
        run_blaster "$c" "$rep"
        sleep 1
    done
done

echo
echo "raw runs ($RESULTS):"
column -t -s $'\t' "$RESULTS" 2>/dev/null || cat "$RESULTS"
echo
# Per concurrency: total CPU / total responses over all rounds, and mean rps.
awk -F'\t' -v conns="$CONNS" '
NR > 1 {
    key = $1 SUBSEP $2
    cpu[key] += $5; n[key] += $4; rps[key] += $6; runs[key]++
}
END {
    printf "%-7s %14s %18s %17s %12s %14s\n", "c", "wrk us/req", "blaster us/req", "blaster/wrk", "wrk rps", "blaster rps"
    split(conns, cs, " ")
    for (i = 1; i in cs; i++) {
        c = cs[i]; w = "wrk" SUBSEP c; b = "blaster" SUBSEP c
        wu = n[w] ? cpu[w] / n[w] * 1e6 : 0
        bu = n[b] ? cpu[b] / n[b] * 1e6 : 0
        ratio = wu ? bu / wu : 0
        printf "%-7s %14.3f %18.3f %16.2fx %12.0f %14.0f\n", c, wu, bu, ratio, \
            runs[w] ? rps[w] / runs[w] : 0, runs[b] ? rps[b] / runs[b] : 0
    }
}' "$RESULTS" | tee "$OUT/table.txt"
echo
echo "goals (blaster/wrk CPU per request): c=100 <= 0.75x, c=1000 <= 0.70x, c=10000 <= 0.60x"
