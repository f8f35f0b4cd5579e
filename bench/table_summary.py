#!/usr/bin/env python3
"""Summarises bench/table.sh's JSON lines: for each build, the medians of its runs, and the
after/before ratios (HTTP ratios within each run, then their median).

    python3 bench/table_summary.py bench/results/<file>.jsonl
"""
import json
import re
import statistics
import sys


def done(report):
    return report["success"] / report["duration_secs"]


rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
http, startup, idle, first, rebuild = {}, {}, {}, {}, {}
for row in rows:
    build = row["build"]
    if "scenario" in row:
        http.setdefault((build, row["scenario"]), []).append(row["report"])
    elif row.get("idle"):
        idle[build] = row
    elif row.get("first_start"):
        first[build] = row
    elif "ready_secs" in row:
        startup.setdefault(build, []).append(row)
    elif "rebuild_secs" in row:
        rebuild.setdefault(build, []).append(row)

print("HTTP (SQLite), answered a second, runs and median; p99 of the median run")
for scenario in ["health", "refresh", "refresh-rotate", "one-user"]:
    for build in ["before", "after"]:
        reports = http.get((build, scenario), [])
        if not reports:
            continue
        rates = [done(r) for r in reports]
        p99 = statistics.median(r["latency_ms"]["p99"] for r in reports)
        errors = sum(r["errors"] for r in reports)
        runs = " · ".join(f"{x:,.0f}" for x in rates)
        print(f"  {scenario:15} {build:6} {runs:32} median {statistics.median(rates):9,.0f}  p99 {p99:6.1f} ms  errors {errors}")
for scenario in ["refresh", "refresh-rotate", "one-user"]:
    for build in ["before", "after"]:
        pairs = list(zip(http.get((build, scenario), []), http.get((build, "health"), [])))
        if pairs:
            ratio = statistics.median(done(a) / done(h) for a, h in pairs)
            print(f"  {scenario} / health ({build}): {ratio:.3f}")
    pairs = list(zip(http.get(("before", scenario), []), http.get(("after", scenario), [])))
    if pairs:
        print(f"  {scenario} after / before: {statistics.median(done(a) / done(b) for b, a in pairs):.2f}")

print("Start-up on the big log (bench/startup.sh)")
for build in ["before", "after"]:
    if build in first:
        f = first[build]
        print(f"  {build} first start (full fold): {f['ready_secs']} s, {f['events']} events, {f['sessions']} sessions, RSS {f['rss_kib_at_ready']} KiB")
    runs = startup.get(build, [])
    if not runs:
        continue
    ready = [r["ready_secs"] for r in runs]
    rss = statistics.median(r["rss_kib_at_ready"] for r in runs)
    later = statistics.median(r["rss_kib_10s_later"] for r in runs)
    sessions = statistics.median(r["sessions"] for r in runs)
    events = [r["events"] for r in runs]
    line = f"  {build}: ready {' · '.join(map(str, ready))} s (median {statistics.median(ready)}), events folded {events}, sessions {sessions:,.0f}, RSS at ready {rss:,.0f} KiB, 10 s later {later:,.0f} KiB"
    if build in idle:
        base = idle[build]["rss_kib_at_ready"]
        line += f"; idle {base:,} KiB; per session {(later - base) * 1024 / sessions:.0f} B (10 s later), {(rss - base) * 1024 / sessions:.0f} B (at ready)"
    print(line)

print("Replay (tokenledger rebuild)")
for build in ["before", "after"]:
    runs = rebuild.get(build, [])
    if runs:
        secs = [r["rebuild_secs"] for r in runs]
        # The count `rebuilt:` reports (a progress line may come first in `events`).
        told = re.search(r"rebuilt: (\d+) events", runs[0]["output"])
        events = int(told.group(1)) if told else runs[0]["events"]
        rates = [events / s for s in secs]
        print(f"  {build}: {' · '.join(f'{s:.1f}' for s in secs)} s, {events:,} events, median {statistics.median(rates):,.0f} events/s")
