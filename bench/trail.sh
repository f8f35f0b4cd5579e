#!/usr/bin/env bash
# Paging an investigator's trail (BENCHMARKS.md): starts the server on a data folder that
# `tokenledger seed --users 2 --events N` filled, and reads user 1's whole trail through
# `GET /api/admin/users/1/events` page by page (`meta.next`), as the audit page does.
#
#   bench/trail.sh <data dir> [server binary] [page size]
#
# Prints one JSON line: pages, events and seconds.
set -euo pipefail
data=${1:?the data folder}
server=${2:-${CARGO_TARGET_DIR:-target}/release/tokenledger}
limit=${3:-1000}
port=${BENCH_PORT:-18183}
admin=bench-admin-token-0123456789abcdef0123456789
log=$(mktemp)
trap 'rm -f "$log"' EXIT
DATA_DIR=$data PORT=$port RUST_LOG=warn ADMIN_API_TOKEN=$admin \
    JWT_SECRET=bench-access-secret-0123456789abcdef0123456789 \
    REFRESH_JWT_SECRET=bench-refresh-secret-0123456789abcdef012345678 \
    "$server" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; rm -f "$log"' EXIT
until curl -fs -o /dev/null "http://127.0.0.1:$port/_ready"; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
python3 - "$port" "$admin" "$limit" <<'PY'
import json, sys, time, urllib.request
port, admin, limit = sys.argv[1], sys.argv[2], sys.argv[3]
after, pages, events = 0, 0, 0
started = time.monotonic()
while True:
    url = f"http://127.0.0.1:{port}/api/admin/users/1/events?limit={limit}&after={after}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {admin}"})
    page = json.load(urllib.request.urlopen(request))
    pages += 1
    events += len(page["data"])
    if page["meta"]["next"] is None:
        break
    after = page["meta"]["next"]
print(json.dumps({"pages": pages, "events": events, "secs": round(time.monotonic() - started, 3)}))
PY
