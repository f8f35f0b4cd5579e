#!/usr/bin/env bash
# A flamegraph of the server while it serves one load scenario (issue 20: where the HTTP
# path's time goes), drawn by bench/flamegraph.py:
#
#   bench/flamegraph.sh <server binary> <scenario> <out.svg>
#
# Scenarios as bench/run.sh names them: health, refresh, refresh-rotate, one-user, login. The
# server starts as in bench/run.sh (bench/server.sh: fresh SQLite folder, limits off), the load
# generator runs 64 connections (BENCH_CONNECTIONS) over 80 users (BENCH_USERS; one-user: 72
# connections of one user), and once its measured window opens, `perf record` samples the
# server for FLAME_SECONDS (default 10) at 499 Hz with DWARF call stacks. Writes <out.svg> and
# beside it <out>.txt: the run, then `flamegraph.py --top 25`. perf.data stays in a temporary
# folder, removed at the end (FLAME_KEEP=DIR keeps it and the folded stacks). Needs perf (as
# root, or perf_event_paranoid ≤ 1; `-e cpu-clock`, as this machine has no hardware counters)
# and python3.
#
# The rate under perf is lower than bench/run.sh's and follows whatever else runs on the
# machine; the graph's shares are the point, not the rate.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?server binary}
scenario=${2:?scenario}
out=${3:?out.svg}
connections=${BENCH_CONNECTIONS:-64}
users=${BENCH_USERS:-80}
seconds=${FLAME_SECONDS:-10}
loadgen=${LOADGEN:-${CARGO_TARGET_DIR:-target}/release/loadgen}
port=${BENCH_PORT:-18181}
work=$(mktemp -d)
trap 'kill "${load:-}" "${pid:-}" 2>/dev/null || true; [ -z "${data:-}" ] || rm -rf "$data"; rm -rf "$work"' EXIT
. bench/server.sh

case $scenario in
    health) args=(--scenario health --connections "$connections"); rotation=false ;;
    login) args=(--scenario login --connections "$connections"); rotation=false ;;
    refresh) args=(--scenario refresh --connections "$connections" --users "$users"); rotation=false ;;
    refresh-rotate) args=(--scenario refresh-rotate --connections "$connections" --users "$users"); rotation=true ;;
    one-user) args=(--scenario refresh-rotate --connections 72 --users 1); rotation=true ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac

start_server "$rotation"
# The measured window is the recording's, give or take the second it takes to see it open.
"$loadgen" --base-url "http://127.0.0.1:$port" "${args[@]}" --duration "$((seconds + 1))s" \
    --warmup 2s --json >"$work/loadgen.json" 2>"$work/loadgen.log" &
load=$!
# Users registered and logged in (argon2, unmeasured) and the warm-up over.
for _ in $(seq 600); do
    grep -q measuring "$work/loadgen.log" && break
    kill -0 "$load" 2>/dev/null || { cat "$work/loadgen.log" >&2; exit 1; }
    sleep 0.2
done
grep -q measuring "$work/loadgen.log" || { echo "the load never started" >&2; exit 1; }
perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" \
    -- sleep "$seconds" 2>"$work/perf.log" || { cat "$work/perf.log" >&2; exit 1; }
wait "$load"
load=
stop_server

perf script -i "$work/perf.data" 2>/dev/null | python3 bench/flamegraph.py --folded >"$work/folded"
# FLAME_KEEP=DIR (outside the repository: perf.data is large): keep perf.data and the folded stacks.
[ -z "${FLAME_KEEP:-}" ] || { mkdir -p "$FLAME_KEEP" && cp "$work/perf.data" "$work/folded" "$FLAME_KEEP/"; }
rate=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(round(r["success"] / r["duration_secs"]))' "$work/loadgen.json")
title="tokenledger, $scenario (${args[*]}), perf ${seconds} s at 499 Hz"
subtitle="$(date +%F) $server: $rate answered/s under perf on a shared machine; the shares are the point, not the rate"
python3 bench/flamegraph.py --input-folded --title "$title" --subtitle "$subtitle" <"$work/folded" >"$out"
{
    echo "# bench/flamegraph.sh $server $scenario $out"
    echo "# loadgen ${args[*]}: $rate answered/s while perf sampled (shared machine: the shares, not the rate)"
    python3 bench/flamegraph.py --input-folded --top 25 --title "$title" <"$work/folded"
} >"${out%.svg}.txt"
echo "$out: $(wc -c <"$out") bytes; ${out%.svg}.txt" >&2
