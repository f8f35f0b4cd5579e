#!/usr/bin/env python3
"""Instructions a request costs the server, counted by callgrind: repeatable whatever else the
machine does, where requests a second on a shared machine spread by 30 % between runs of the
same binary (BENCHMARKS.md). Stdlib only; needs valgrind.

    bench/instructions.py --server PATH [--requests 200,1200] [--scenario health|refresh|refresh-rotate]

With CALLGRIND_KEEP=DIR, each run's callgrind output is kept there as <scenario>-<N>.callgrind.

The server runs under `valgrind --tool=callgrind` on a new data folder with the bench secrets
and every limit off (as bench/run.sh). For each count N, one fresh server answers N requests
of the scenario on one keep-alive connection (after its setup: one registration and one login
for the refresh scenarios), then stops; the instructions of a request are the difference of
two counts' totals over the difference of N, so start-up, setup and stop cancel out. Prints
one JSON object.
"""

import argparse
import glob
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

PASSWORD = "password123"


def call(connection, method, path, body=None):
    payload = json.dumps(body) if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    connection.request(method, path, payload, headers)
    response = connection.getresponse()
    return response.status, response.read()


def total_instructions(server, scenario, n, port):
    data = tempfile.mkdtemp()
    out = os.path.join(data, "callgrind.out")
    env = dict(os.environ)
    env.update(
        DATA_DIR=data,
        PORT=str(port),
        RUST_LOG="warn",
        REFRESH_TOKEN_ROTATION="true" if scenario == "refresh-rotate" else "false",
        LOGIN_RATE_LIMIT="off",
        LOGIN_IP_RATE_LIMIT="off",
        LOGIN_ACCOUNT_FAILURE_LIMIT="off",
        REFRESH_RATE_LIMIT="off",
        JWT_SECRET="bench-access-secret-0123456789abcdef0123456789",
        REFRESH_JWT_SECRET="bench-refresh-secret-0123456789abcdef012345678",
    )
    log = open(os.path.join(data, "server.log"), "w")
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", server],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        connection = None
        for _ in range(600):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                if call(connection, "GET", "/_ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        token = None
        if scenario != "health":
            user = {"username": "bench", "email": "bench@example.com", "password": PASSWORD}
            status, body = call(connection, "POST", "/api/auth/local/register", user)
            assert status == 200, body
            login = {"identifier": "bench", "password": PASSWORD, "requestRefresh": True}
            status, body = call(connection, "POST", "/api/auth/local", login)
            assert status == 200, body
            token = json.loads(body)["refreshToken"]
        for _ in range(n):
            if scenario == "health":
                status, body = call(connection, "GET", "/_health")
                assert status == 204, body
            else:
                status, body = call(connection, "POST", "/api/auth/local/refresh", {"refreshToken": token})
                assert status == 200, body
                token = json.loads(body).get("refreshToken", token)
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()
    keep = os.environ.get("CALLGRIND_KEEP")
    if keep:
        # The raw counts of this run, for callgrind_annotate: where a request's instructions go.
        os.makedirs(keep, exist_ok=True)
        for path in glob.glob(out + ".*"):
            shutil.copy(path, os.path.join(keep, f"{scenario}-{n}.callgrind"))
    totals = 0
    for path in glob.glob(out + ".*"):
        for line in open(path):
            found = re.match(r"(?:summary|totals): (\d+)", line)
            if found:
                totals = max(totals, int(found.group(1)))
                break
    shutil.rmtree(data, ignore_errors=True)
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--scenario", default="refresh", choices=["health", "refresh", "refresh-rotate"])
    parser.add_argument("--requests", default="200,1200")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "18183")))
    args = parser.parse_args()
    low, high = (int(n) for n in args.requests.split(","))
    small = total_instructions(args.server, args.scenario, low, args.port)
    large = total_instructions(args.server, args.scenario, high, args.port)
    print(
        json.dumps(
            {
                "server": args.server,
                "scenario": args.scenario,
                "requests": [low, high],
                "totals": [small, large],
                "instructions_per_request": round((large - small) / (high - low)),
            }
        )
    )


if __name__ == "__main__":
    main()
