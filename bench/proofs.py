#!/usr/bin/env python3
"""Inclusion proofs over a seeded log, checked here with RFC 9162 section 2.1.3.2 written anew.

    bench/proofs.py [--events 1000000] [--users 1000] [--proofs 1000] [--server BIN]

Seeds a fresh SQLite log (`tokenledger seed`), starts the release server on it with the
admin API on, takes the signed checkpoint, then asks for inclusion proofs of random
positions (one keep-alive connection) and checks each against the checkpoint's root. Prints
one JSON line: the tree size, how many proofs verified, their audit path lengths against
ceil(log2 n), and the server's own time per proof (the access log's `micros`) as median,
p99 and max, plus the round trip seen here.
"""

import argparse
import base64
import hashlib
import http.client
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ADMIN = "bench-admin-token-0123456789abcdef0123456789"


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--server", default="target/release/tokenledger")
    parser.add_argument("--port", type=int, default=18283)
    args = parser.parse_args()
    data = tempfile.mkdtemp()
    env = dict(os.environ, DATA_DIR=data, PORT=str(args.port), ADMIN_API_TOKEN=ADMIN,
               RUST_LOG="info", LOG_FORMAT="json")
    try:
        started = time.monotonic()
        subprocess.run([args.server, "seed", "--users", str(args.users), "--events",
                        str(args.events)], env=env, check=True, capture_output=True)
        seeded = time.monotonic() - started
        log = open(os.path.join(data, "server.log"), "w")
        server = subprocess.Popen([args.server], env=env, stdout=log, stderr=log)
        try:
            result = measure(args, data, seeded)
        finally:
            server.terminate()
            server.wait()
        print(json.dumps(result))
    finally:
        shutil.rmtree(data, ignore_errors=True)


def get(conn, path):
    conn.request("GET", path, headers={"authorization": f"Bearer {ADMIN}"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"{path}: {response.status} {body[:300]!r}")
    return body


def measure(args, data, seeded):
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
            conn.request("GET", "/_ready")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
    started = time.monotonic()
    note = get(conn, "/api/admin/ledger/checkpoint").decode()
    first_checkpoint = time.monotonic() - started
    size = int(note.split("\n")[1])
    root = base64.b64decode(note.split("\n")[2])
    rng = random.Random(16)
    lengths, verified, round_trips = [], 0, []
    for _ in range(args.proofs):
        position = rng.randint(1, size)
        t = time.monotonic()
        proof = json.loads(get(conn, f"/api/admin/ledger/proof/inclusion?position={position}&size={size}"))
        round_trips.append((time.monotonic() - t) * 1000)
        leaf = hashlib.sha256(b"\x00" + bytes.fromhex(proof["event"]["hash"])).digest()
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        lengths.append(len(path))
        verified += verify_inclusion(leaf, proof["index"], size, path, root)
    time.sleep(0.5)
    micros = []
    for line in open(os.path.join(data, "server.log")):
        if '"route":"/api/admin/ledger/proof/inclusion"' in line.replace(" ", "") or "proof/inclusion" in line:
            try:
                fields = json.loads(line)
            except ValueError:
                continue
            found = fields.get("fields", fields).get("micros")
            if found is not None:
                micros.append(int(found) / 1000)
    micros.sort()
    return {
        "events": size,
        "seeded_s": round(seeded, 1),
        "first_checkpoint_s": round(first_checkpoint, 2),
        "proofs": args.proofs,
        "verified": verified,
        "ceil_log2_n": math.ceil(math.log2(size)),
        "path_lengths": {str(k): lengths.count(k) for k in sorted(set(lengths))},
        "server_ms": {
            "median": round(statistics.median(micros), 3) if micros else None,
            "p99": round(micros[int(len(micros) * 0.99) - 1], 3) if micros else None,
            "max": round(micros[-1], 3) if micros else None,
            "count": len(micros),
        },
        "round_trip_ms_median": round(statistics.median(round_trips), 3),
    }


if __name__ == "__main__":
    sys.exit(main())
