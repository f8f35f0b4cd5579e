#!/usr/bin/env bash
# The cost of each access-token algorithm (BENCHMARKS.md, issue 21): `refresh` signs an access
# token per request, `me` verifies one; HS256, EdDSA and ES256 alternate, three rounds, each
# scenario on a fresh server as bench/run.sh starts it. One JSON line per run on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tokenledger -p loadgen
for round in 1 2 3; do
  for alg in HS256 EdDSA ES256; do
    ACCESS_TOKEN_ALG=$alg BENCH_SCENARIOS="refresh me" bench/run.sh 1 2>/dev/null \
      | sed "s/^{/{\"alg\":\"$alg\",\"round\":$round,/"
  done
done
