#!/usr/bin/env python3
"""Login attacks of issue 14, measured against a release server on SQLite (stdlib only).

    bench/logins.py timing [--server PATH] [--pairs 800]
        Item 8: does a failed login tell a known account from an unknown one by its timing?
        Pairs of (wrong password for a real user, unknown user), in random order within each
        pair, on one keep-alive connection; medians and a rank-sum z (|z| > 3: tells apart).

    bench/logins.py forgot [--server PATH] [--pairs 500]
        Issue 19: does forgot-password tell an existing email from an unknown one by its
        timing? Pairs of (a user's email, an unknown email), in random order within each pair,
        on one keep-alive connection; medians and a rank-sum z, as `timing`.

    bench/logins.py flood [--server PATH] [--seconds 20] [--flooders 16] [--env K=V ...]
                          [--wrk CONNECTIONS] [--flood-nice N] [--flood-cpus LIST]
        Item 6: a flood of logins with random identifiers from 127.0.0.1 while real users log
        in from other loopback addresses (127.0.0.2 and up), five a second; the real logins'
        latency percentiles and every status the flood got.
        With --wrk the flood is `wrk -t1 -c CONNECTIONS` posting one failed login (C, far
        faster than Python threads), run under `nice -n N` and `taskset -c LIST` when given:
        on a machine that also runs the server, that is how the flooder is kept off the CPU
        the server wants, as a flood from another machine would be.

The server is started on a new temporary data folder with the bench secrets (as bench/run.sh
does), `BENCH_PORT` (default 18182), and `--env` settings on top. `--server` defaults to
target/release/tokenledger. Prints one JSON object.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PASSWORD = "password123"


def start(server, env):
    data = tempfile.mkdtemp()
    port = int(os.environ.get("BENCH_PORT", "18182"))
    full = dict(os.environ)
    full.update(
        DATA_DIR=data,
        PORT=str(port),
        RUST_LOG="warn",
        JWT_SECRET="bench-access-secret-0123456789abcdef0123456789",
        REFRESH_JWT_SECRET="bench-refresh-secret-0123456789abcdef012345678",
    )
    full.update(env)
    log = open(os.path.join(data, "server.log"), "w")
    process = subprocess.Popen([server], env=full, stdout=log, stderr=log)
    for _ in range(300):
        try:
            status, _ = request(port, "GET", "/_ready")
            if status == 200:
                return process, port, data
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    sys.exit("the server did not start: " + open(os.path.join(data, "server.log")).read())


def stop(process, data):
    process.terminate()
    process.wait()
    shutil.rmtree(data, ignore_errors=True)


def request(port, method, path, body=None, source="127.0.0.1", connection=None):
    own = connection is None
    if own:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    payload = json.dumps(body) if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    connection.request(method, path, payload, headers)
    response = connection.getresponse()
    data = response.read()
    if own:
        connection.close()
    return response.status, data


def register(port, name):
    status, body = request(
        port,
        "POST",
        "/api/auth/local/register",
        {"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        source=f"127.1.{random.randrange(256)}.{random.randrange(1, 255)}",
    )
    assert status == 200, body


def rank_sum_z(a, b):
    """Mann-Whitney U as a z-score (normal approximation; ties get their mean rank)."""
    values = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1][0] == values[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_, group) in zip(ranks, values) if group == 0)
    u = r1 - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    sd = (n1 * n2 * (n1 + n2 + 1) / 12) ** 0.5
    return (u - mean) / sd


def start_wrk(args, port, data):
    script = os.path.join(data, "post.lua")
    with open(script, "w") as f:
        f.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            'wrk.body = \'{"identifier":"nobody","password":"guess"}\'\n'
        )
    command = ["nice", "-n", str(args.flood_nice)]
    if args.flood_cpus:
        command += ["taskset", "-c", args.flood_cpus]
    command += ["wrk", "-t1", f"-c{args.wrk}", f"-d{args.seconds}s", "-s", script]
    command.append(f"http://127.0.0.1:{port}/api/auth/local")
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def wrk_statuses(report):
    """wrk tells requests and non-2xx answers apart; every answer to this flood is a refusal."""
    requests = int(re.search(r"(\d+) requests in", report).group(1))
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", report).group(1)
    return {"requests": requests, "refused": int(refused.group(1)) if refused else 0, "per_second": float(rate)}


def interleaved(pairs, attempts, send):
    """`pairs` rounds (after 20 warm-up rounds) of each of `attempts` (a label and the list its
    times go to), in random order within each round; `send(label, n)` makes one request."""
    for n in range(pairs + 20):
        random.shuffle(attempts)
        for label, into in attempts:
            started = time.perf_counter()
            send(label, n)
            elapsed = (time.perf_counter() - started) * 1000
            if n >= 20:  # the first rounds warm up
                into.append(elapsed)


def compared(pairs, names, a, b):
    """Medians of two timings, their difference and the rank-sum z, as one JSON line."""
    print(
        json.dumps(
            {
                "pairs": pairs,
                f"{names[0]}_median_ms": round(statistics.median(a), 3),
                f"{names[1]}_median_ms": round(statistics.median(b), 3),
                "difference_ms": round(statistics.median(a) - statistics.median(b), 3),
                "rank_sum_z": round(rank_sum_z(a, b), 2),
            }
        )
    )


def timing(args):
    env = {"LOGIN_RATE_LIMIT": "off", "LOGIN_IP_RATE_LIMIT": "off", "LOGIN_ACCOUNT_FAILURE_LIMIT": "off"}
    env.update(args.env)
    process, port, data = start(args.server, env)
    try:
        register(port, "known")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        known, unknown = [], []

        def send(identifier, n):
            body = {"identifier": identifier, "password": f"wrong-{n}"}
            status, answer = request(port, "POST", "/api/auth/local", body, connection=connection)
            assert status == 400, answer

        interleaved(args.pairs, [("known", known), ("nobody", unknown)], send)
        compared(args.pairs, ("wrong_password", "unknown_user"), known, unknown)
    finally:
        stop(process, data)


def forgot(args):
    env = {"LOGIN_RATE_LIMIT": "off", "LOGIN_IP_RATE_LIMIT": "off", "EMAIL_RATE_LIMIT": "off"}
    env.update(args.env)
    process, port, data = start(args.server, env)
    try:
        register(port, "known")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        known, unknown = [], []

        def send(email, _n):
            body = {"email": email}
            status, answer = request(port, "POST", "/api/auth/forgot-password", body, connection=connection)
            assert status == 200 and json.loads(answer) == {"ok": True}, answer

        interleaved(args.pairs, [("known@example.com", known), ("nobody@example.com", unknown)], send)
        compared(args.pairs, ("existing_email", "unknown_email"), known, unknown)
    finally:
        stop(process, data)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def flood(args):
    process, port, data = start(args.server, dict(args.env))
    try:
        users = [f"real{n}" for n in range(200)]
        for name in users:
            register(port, name)
        stop_at = time.monotonic() + args.seconds
        flood_statuses = {}
        lock = threading.Lock()

        def flooder():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while time.monotonic() < stop_at:
                identifier = f"nobody-{random.getrandbits(64):x}"
                try:
                    status, _ = request(
                        port,
                        "POST",
                        "/api/auth/local",
                        {"identifier": identifier, "password": "guess"},
                        connection=connection,
                    )
                except (OSError, http.client.HTTPException):
                    status = "transport"
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    flood_statuses[status] = flood_statuses.get(status, 0) + 1

        threads = [] if args.wrk else [threading.Thread(target=flooder) for _ in range(args.flooders)]
        for thread in threads:
            thread.start()
        wrk = start_wrk(args, port, data) if args.wrk else None
        time.sleep(2)  # the flood under way
        latencies, real_statuses = [], {}
        n = 0
        while time.monotonic() < stop_at:
            # Each real login from its own address, as different people would come.
            source = f"127.0.{1 + n // 250 % 250}.{2 + n % 250}"
            name = users[n % len(users)]
            started = time.perf_counter()
            status, _ = request(
                port, "POST", "/api/auth/local", {"identifier": name, "password": PASSWORD}, source=source
            )
            latencies.append((time.perf_counter() - started) * 1000)
            real_statuses[status] = real_statuses.get(status, 0) + 1
            n += 1
            time.sleep(0.2)
        for thread in threads:
            thread.join()
        if wrk is not None:
            flood_statuses = wrk_statuses(wrk.communicate()[0])
        print(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "flooders": f"wrk -t1 -c{args.wrk}, nice {args.flood_nice}, cpus {args.flood_cpus or 'any'}"
                    if args.wrk
                    else args.flooders,
                    "env": args.env,
                    "real_logins": len(latencies),
                    "real_statuses": {str(k): v for k, v in sorted(real_statuses.items(), key=str)},
                    "real_p50_ms": round(percentile(latencies, 50), 1),
                    "real_p99_ms": round(percentile(latencies, 99), 1),
                    "real_max_ms": round(max(latencies), 1),
                    "flood_statuses": {str(k): v for k, v in sorted(flood_statuses.items(), key=str)},
                }
            )
        )
    finally:
        stop(process, data)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["timing", "forgot", "flood"])
    parser.add_argument("--server", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "tokenledger"))
    parser.add_argument("--pairs", type=int, default=800)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--flooders", type=int, default=16)
    parser.add_argument("--wrk", type=int, default=0, help="flood with wrk on this many connections")
    parser.add_argument("--flood-nice", type=int, default=0)
    parser.add_argument("--flood-cpus", default="")
    parser.add_argument("--env", action="append", default=[], type=lambda kv: tuple(kv.split("=", 1)))
    args = parser.parse_args()
    args.env = dict(args.env)
    {"timing": timing, "forgot": forgot, "flood": flood}[args.mode](args)


if __name__ == "__main__":
    main()
