#!/usr/bin/env bash
# The HTTP benchmarks on PostgreSQL: two instances of a build on one fresh database, nginx
# round-robin in front (as deploy/nginx.conf), the load generator against nginx.
#
#   bench/postgres.sh <server binary> [runs] [scenarios…]
#
# Scenarios as bench/run.sh names them (default: health refresh refresh-rotate one-user); 64
# connections sharing 80 users (one-user: 72 connections of one user), 10 s each, a fresh
# database a run. Needs nginx (`apt-get install nginx-light`) and PostgreSQL at
# PGHOST=127.0.0.1 (trust auth, user postgres). One JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?server binary}
runs=${2:-1}
shift $(( $# < 2 ? $# : 2 ))
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(health refresh refresh-rotate one-user)
loadgen=${LOADGEN:-${CARGO_TARGET_DIR:-target}/release/loadgen}
port=${BENCH_PORT:-18301}
psql() { command psql -h 127.0.0.1 -U postgres -d test -qAt "$@"; }
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start() { # rotation
    local db=bench_$$_$RANDOM
    psql -c "CREATE DATABASE $db"
    for i in 1 2; do
        mkdir -p "$work/$i"
        DATA_DIR=$work/$i PORT=$((port + i)) REFRESH_TOKEN_ROTATION=$1 \
            DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db \
            LOGIN_RATE_LIMIT=off LOGIN_IP_RATE_LIMIT=off LOGIN_ACCOUNT_FAILURE_LIMIT=off \
            REFRESH_RATE_LIMIT=off RUST_LOG=warn \
            JWT_SECRET=bench-access-secret-0123456789abcdef0123456789 \
            REFRESH_JWT_SECRET=bench-refresh-secret-0123456789abcdef012345678 \
            LEDGER_KEY=6c6564676572206b657920666f72207468652074657374733b207075626c6963 \
            CHECKPOINT_KEY=636865636b706f696e74207365656420666f72207465737473207075626c6963 \
            PERSONAL_DATA_KEY=706572736f6e616c2064617461206b657920666f722074657374732c20707562 \
            "$server" >"$work/$i.log" 2>&1 &
        pids+=($!)
        until curl -fs -o /dev/null "http://127.0.0.1:$((port + i))/_ready"; do sleep 0.2; done
    done
    cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 1024; }
http {
    access_log off;
    upstream tokenledger {
        server 127.0.0.1:$((port + 1));
        server 127.0.0.1:$((port + 2));
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://tokenledger;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
    nginx -c "$work/nginx.conf" -p "$work"
    database=$db
}

stop() {
    nginx -c "$work/nginx.conf" -p "$work" -s quit
    for p in "${pids[@]}"; do kill "$p"; wait "$p" || true; done
    pids=()
    sleep 0.5
    psql -c "DROP DATABASE $database WITH (FORCE)"
}

for r in $(seq "$runs"); do
    for scenario in "${scenarios[@]}"; do
        case $scenario in
            health) args=(--scenario health --connections 64); rotation=false ;;
            refresh) args=(--scenario refresh --connections 64 --users 80); rotation=false ;;
            refresh-rotate) args=(--scenario refresh-rotate --connections 64 --users 80); rotation=true ;;
            one-user) args=(--scenario refresh-rotate --connections 72 --users 1); rotation=true ;;
            *) echo "unknown scenario $scenario" >&2; exit 2 ;;
        esac
        start "$rotation"
        report=$("$loadgen" --base-url "http://127.0.0.1:$port" "${args[@]}" \
            --duration "${BENCH_SECONDS:-10}s" --warmup 2s --json 2>/dev/null)
        echo "{\"backend\":\"postgres\",\"instances\":2,\"scenario\":\"$scenario\",\"run\":$r,\"report\":$report}"
        stop
    done
done
