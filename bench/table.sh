#!/usr/bin/env bash
# The figures of issue 20's table for two builds, alternating, in one session:
#
#   bench/table.sh <before binary> <after binary> <big data folder> [runs] [before's folder]
#
# The before build reads a copy of `before's folder` when given (the same log, as a build that
# knows only its own migrations can open it), of the big folder otherwise.
# TABLE_PARTS picks what runs (default "http startup rebuild").
#
# - HTTP (bench/run.sh, SQLite): health, refresh and refresh-rotate with 64 connections over
#   80 users, and one-user (72 sessions of one user rotating), `runs` times each build,
#   alternating (default 3).
# - Start-up and memory (bench/startup.sh) on a copy of the big data folder per build (a log
#   `tokenledger seed --users 750000 --events 5000000` made), `runs` times each; the after
#   build's first start folds the whole log and leaves its snapshot at the graceful stop.
# - Replay: `tokenledger rebuild` on the same copies, `runs` times each.
# One JSON line per measurement on stdout, tagged with the build.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?before binary}
after=${2:?after binary}
big=${3:?big data folder}
runs=${4:-3}
big_before=${5:-$big}
parts=${TABLE_PARTS:-http startup rebuild}
work=$(mktemp -d "${TMPDIR:-/tmp}/table.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p loadgen
cp -a "$big_before" "$work/before"
cp -a "$big" "$work/after"
binary() { if [ "$1" = before ]; then echo "$before"; else echo "$after"; fi; }
tag() { sed "s/^{/{\"build\":\"$1\",/"; }

has() { [[ " $parts " == *" $1 "* ]]; }

has http && for r in $(seq "$runs"); do
    for build in before after; do
        BENCH_SERVER=$(binary $build) BENCH_USERS=80 \
            BENCH_SCENARIOS="health refresh refresh-rotate one-user" \
            bench/run.sh 1 2>/dev/null | tag $build
    done
done

# The after build's first start on the big log: no snapshot yet, a full fold; its graceful
# stop writes one.
has startup && bench/startup.sh "$work/after" "$after" | sed 's/^{/{"first_start":true,/' | tag after
has startup && for r in $(seq "$runs"); do
    for build in before after; do
        bench/startup.sh "$work/$build" "$(binary $build)" | tag $build
    done
done
idle=$(mktemp -d)
has startup && for build in before after; do
    bench/startup.sh "$idle" "$(binary $build)" | sed 's/^{/{"idle":true,/' | tag $build
    rm -rf "${idle:?}"/*
done
rm -rf "$idle"

has rebuild && for r in $(seq "$runs"); do
    for build in before after; do
        started=$(date +%s.%N)
        DATA_DIR=$work/$build JWT_SECRET=bench-access-secret-0123456789abcdef0123456789 \
            REFRESH_JWT_SECRET=bench-refresh-secret-0123456789abcdef012345678 RUST_LOG=warn \
            "$(binary $build)" rebuild >"$work/rebuild.out" 2>&1
        secs=$(echo "$(date +%s.%N) - $started" | bc)
        events=$(grep -o 'rebuilt: [0-9]* events' "$work/rebuild.out" | head -1 | cut -d' ' -f2)
        echo "{\"rebuild_secs\":$secs,\"events\":${events:-0},\"output\":$(tail -3 "$work/rebuild.out" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" | tag $build
    done
done
exit 0
