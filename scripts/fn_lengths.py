#!/usr/bin/env python3
"""Functions longer than a limit, in lines from the `fn` line to its closing brace.

    scripts/fn_lengths.py [--limit 80] [paths ...]        (default: src)

Counts braces outside strings, chars and comments; good enough for rustfmt-formatted code.
Prints `lines path:line name` for each function over the limit, longest first.
"""

import argparse
import os
import re

FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def code_only(line, state):
    """The line without strings, chars and comments; `state` carries a block comment."""
    out, i = [], 0
    while i < len(line):
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"], i = False, end + 2
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"], i = True, i + 2
            continue
        if c == '"':
            i += 1
            while i < len(line) and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    lines = open(path).read().split("\n")
    state = {"block": False}
    clean = [code_only(line, state) for line in lines]
    for start, line in enumerate(lines):
        found = FN.match(line)
        if not found:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            text = clean[end]
            if not opened and ";" in text and "{" not in text:
                break  # a declaration without a body
            depth += text.count("{") - text.count("}")
            opened = opened or "{" in text
            if opened and depth == 0:
                yield found.group(1), start + 1, end - start + 1
                break


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=80)
    parser.add_argument("paths", nargs="*", default=["src"])
    args = parser.parse_args()
    long = []
    for root in args.paths:
        walk = [(root, [], [root])] if root.endswith(".rs") else os.walk(root)
        for folder, _, files in walk:
            for name in files:
                path = name if root.endswith(".rs") else os.path.join(folder, name)
                if path.endswith(".rs"):
                    long += [(n, f"{path}:{line}", fn) for fn, line, n in functions(path) if n > args.limit]
    for n, where, name in sorted(long, reverse=True):
        print(f"{n:4d} {where} {name}")


if __name__ == "__main__":
    main()
