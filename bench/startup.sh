#!/usr/bin/env bash
# Start-up and memory of BENCHMARKS.md: starts the server on an existing data folder (one
# `tokenledger seed` filled), times until /_ready answers 200 (the projections caught up), and reads its resident memory then
# and 10 s later (the allocator gives back what the replay used).
#
#   bench/startup.sh <data dir> [server binary]
#
# With an empty data folder it measures the idle server. Prints one JSON line.
set -euo pipefail
data=${1:?the data folder}
server=${2:-${CARGO_TARGET_DIR:-target}/release/tokenledger}
port=${BENCH_PORT:-18182}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
started=$(date +%s.%N)
DATA_DIR=$data PORT=$port RUST_LOG=info LOG_FORMAT=json \
    JWT_SECRET=bench-access-secret-0123456789abcdef0123456789 \
    REFRESH_JWT_SECRET=bench-refresh-secret-0123456789abcdef012345678 \
    "$server" >"$log" 2>&1 &
pid=$!
until curl -fs -o /dev/null "http://127.0.0.1:$port/_ready"; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
ready=$(printf '%.3f' "$(echo "$(date +%s.%N) - $started" | bc)")
rss_ready=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
sleep 10
rss_later=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
kill "$pid"
wait "$pid" || true
events=$(grep 'projections rebuilt' "$log" | sed -n 's/.*"events":\([0-9]*\).*/\1/p' | head -1)
sessions=$(grep 'projections rebuilt' "$log" | sed -n 's/.*"sessions":\([0-9]*\).*/\1/p' | head -1)
echo "{\"ready_secs\":$ready,\"rss_kib_at_ready\":$rss_ready,\"rss_kib_10s_later\":$rss_later,\"events\":${events:-0},\"sessions\":${sessions:-0}}"
