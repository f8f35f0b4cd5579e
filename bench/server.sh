# Sourced by bench/run.sh and bench/flamegraph.sh: one release server on a fresh SQLite data
# folder, limits off, the benchmarks' secrets. Expects `server` (the binary) and `port`; sets
# `data` and `pid`, which the caller's EXIT trap cleans up if a run stops half-way.

# The service the introspect scenario asks as.
BENCH_SERVICE=bench-service:bench-service-secret-0123456789abcdef01

start_server() { # rotation
    data=$(mktemp -d)
    DATA_DIR=$data PORT=$port REFRESH_TOKEN_ROTATION=$1 \
        LOGIN_RATE_LIMIT=off LOGIN_IP_RATE_LIMIT=off LOGIN_ACCOUNT_FAILURE_LIMIT=off \
        REFRESH_RATE_LIMIT=off RUST_LOG=warn INTROSPECTION_CLIENTS="$BENCH_SERVICE" \
        JWT_SECRET=bench-access-secret-0123456789abcdef0123456789 \
        REFRESH_JWT_SECRET=bench-refresh-secret-0123456789abcdef012345678 \
        "$server" >"$data/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/_ready" && return
        sleep 0.1
    done
    echo "the server did not start:" >&2
    cat "$data/server.log" >&2
    exit 1
}

stop_server() {
    kill "$pid"
    wait "$pid" || true
    rm -rf "$data"
}
