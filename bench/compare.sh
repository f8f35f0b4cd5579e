#!/usr/bin/env bash
# Two builds of the server, alternating, against one load generator: for a ratio measured in
# one run when a change touches every request (BENCHMARKS.md says which).
#
#   bench/compare.sh <server A> <server B> [runs] [scenarios…]
#
# Defaults: 3 runs of health, refresh and refresh-rotate, 32 connections, 10 s each, every
# server on a fresh DATA_DIR with the limits off and RUST_LOG=warn. One JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?server A}
b=${2:?server B}
runs=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(health refresh refresh-rotate)
cargo build --release -q -p loadgen
loadgen=${CARGO_TARGET_DIR:-target}/release/loadgen
port=${BENCH_PORT:-18191}
trap '[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; [ -n "${data:-}" ] && rm -rf "$data"; true' EXIT
for r in $(seq "$runs"); do
  for build in A B; do
    server=$a; [ "$build" = B ] && server=$b
    for scenario in "${scenarios[@]}"; do
      rotation=false; [ "$scenario" = refresh-rotate ] && rotation=true
      data=$(mktemp -d)
      DATA_DIR=$data PORT=$port REFRESH_TOKEN_ROTATION=$rotation \
        LOGIN_RATE_LIMIT=off LOGIN_IP_RATE_LIMIT=off REFRESH_RATE_LIMIT=off RUST_LOG=warn \
        JWT_SECRET=bench-access-secret-0123456789abcdef0123456789 \
        REFRESH_JWT_SECRET=bench-refresh-secret-0123456789abcdef012345678 \
        "$server" >"$data/server.log" 2>&1 &
      pid=$!
      # /_health, not /_ready: an older build may not have it, and an empty log folds at once.
      until curl -fs -o /dev/null "http://127.0.0.1:$port/_health"; do sleep 0.1; done
      report=$("$loadgen" --base-url "http://127.0.0.1:$port" --scenario "$scenario" \
        --connections 32 --duration 10s --warmup 2s --json 2>/dev/null)
      echo "{\"build\":\"$build\",\"run\":$r,\"scenario\":\"$scenario\",\"report\":$report}"
      kill "$pid"; wait "$pid" || true; rm -rf "$data"; pid=""; data=""
    done
  done
done
