#!/usr/bin/env bash
# The HTTP benchmarks of BENCHMARKS.md: each scenario against a fresh release server on SQLite
# (a new temporary data folder each run), the load generator on the same machine.
#
#   bench/run.sh [runs] [connections] [seconds]      (defaults: 3 runs, 64 connections, 10 s)
#
# BENCH_USERS=N: the refresh scenarios' connections share N users (default: one each).
# BENCH_SCENARIOS="health refresh …": only these (default: all). `one-user` is 72 connections
# of a single user, each its own session, rotating (one user's sessions at once).
#
# Prints one JSON line per run, `{"scenario":…,"run":…,"report":<loadgen --json>}`, and a summary
# of medians on stderr. Needs python3 for the summary only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
connections=${2:-64}
seconds=${3:-10}
cargo build --release -q -p tokenledger -p loadgen
# BENCH_SERVER: another build of the server to measure (an older commit, say).
built=${CARGO_TARGET_DIR:-target}/release
server=${BENCH_SERVER:-$built/tokenledger}
loadgen=$built/loadgen
port=${BENCH_PORT:-18181}
out=$(mktemp)
trap 'rm -f "$out"; kill "${pid:-}" 2>/dev/null || true; [ -z "${data:-}" ] || rm -rf "$data"' EXIT

. bench/server.sh

run() { # name scenario rotation [loadgen args]
    local name=$1 scenario=$2 rotation=$3
    shift 3
    wanted "$name" || return 0
    start_server "$rotation"
    report=$("$loadgen" --base-url "http://127.0.0.1:$port" --scenario "$scenario" \
        --duration "${seconds}s" --warmup 2s --json "$@" 2>/dev/null)
    echo "{\"scenario\":\"$name\",\"run\":$r,\"report\":$report}" | tee -a "$out"
    stop_server
}

users=()
[ -n "${BENCH_USERS:-}" ] && users=(--users "$BENCH_USERS")
wanted() { [ -z "${BENCH_SCENARIOS:-}" ] || [[ " $BENCH_SCENARIOS " == *" $1 "* ]]; }
# Scenarios run only when BENCH_SCENARIOS names them.
named() { [[ " ${BENCH_SCENARIOS:-} " == *" $1 "* ]]; }

flood_run() { # refreshes while a login flood runs on the same server
    start_server false
    "$loadgen" --base-url "http://127.0.0.1:$port" --scenario login --connections 16 \
        --duration 600s --warmup 0s --json >/dev/null 2>&1 &
    flood=$!
    sleep 3 # its users registered, the flood running
    report=$("$loadgen" --base-url "http://127.0.0.1:$port" --scenario refresh \
        --connections "$connections" "${users[@]}" --duration "${seconds}s" --warmup 2s --json 2>/dev/null)
    echo "{\"scenario\":\"refresh-under-login-flood\",\"run\":$r,\"report\":$report}" | tee -a "$out"
    kill "$flood"
    wait "$flood" || true
    stop_server
}

password_cost() {
    data=$(mktemp -d)
    echo "{\"scenario\":\"password-cost\",\"run\":$r,\"report\":$(DATA_DIR=$data "$built/tokenledger" password-cost 2>/dev/null)}" | tee -a "$out"
    rm -rf "$data"
}

for r in $(seq "$runs"); do
    run health health false --connections "$connections"
    run refresh refresh false --connections "$connections" "${users[@]}"
    run refresh-rotate refresh-rotate true --connections "$connections" "${users[@]}"
    run one-user refresh-rotate true --connections 72 --users 1
    run login login false --connections "$connections"
    if wanted refresh-under-login-flood; then flood_run; fi
    if wanted password-cost; then password_cost; fi
    # Introspection of the users' access tokens, and GET /api/users/me with the same tokens.
    if named introspect; then
        run introspect introspect false --connections "$connections" "${users[@]}" \
            --introspection-client "$BENCH_SERVICE"
    fi
    if named me; then run me me false --connections "$connections" "${users[@]}"; fi
done

python3 - "$out" <<'EOF' >&2
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
# Answered successfully, per second: a login refused at once (503, the password queue full)
# is no login, and the load generator backs off a second after one.
def done(report):
    return report["success"] / report["duration_secs"]
by = {}
for row in rows:
    by.setdefault(row["scenario"], []).append(row["report"])
print("medians of", len(by.get("health", [])), "runs")
for scenario, reports in by.items():
    if scenario == "password-cost":
        ms = statistics.median(r["verify_ms_median"] for r in reports)
        bound = statistics.median(r["logins_per_sec_bound"] for r in reports)
        print(f"{scenario:28} verify {ms:.1f} ms  bound {bound:.1f} logins/s")
        continue
    rps = statistics.median(done(r) for r in reports)
    p99 = statistics.median(r["latency_ms"]["p99"] for r in reports)
    errors = sum(r["errors"] for r in reports)
    print(f"{scenario:28} {rps:10.0f} req/s  p99 {p99:7.2f} ms  errors {errors}")
# Ratios within each run, then their median.
def ratio(label, a, b, key_b=None):
    pairs = list(zip(by.get(a, []), by.get(b, [])))
    if pairs:  # both scenarios ran (BENCH_SCENARIOS may leave one out)
        value = statistics.median(done(x) / (y[key_b] if key_b in y else done(y)) for x, y in pairs)
        print(f"{label:28} {value:.3f}")
ratio("refresh-rotate / health", "refresh-rotate", "health")
ratio("refresh / health", "refresh", "health")
ratio("login / argon2 bound", "login", "password-cost", "logins_per_sec_bound")
EOF
