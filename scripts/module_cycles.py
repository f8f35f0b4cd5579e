#!/usr/bin/env python3
"""Import cycles between the modules of each crate in the workspace (issue 15).

    scripts/module_cycles.py [crate_src_dir ...]     (default: src domain/src projections/src)

A module's file (and its inline `mod tests`) refers to another module by `crate::a::b`,
`super::…` or a `use` of them. Each reference A → B is lifted to the two siblings under the
modules' lowest common ancestor (`http::auth` → `metrics` is `http` → `metrics`), since a parent
and its own children always refer to each other in Rust's layout. A cycle is a set of siblings
that reach each other. Prints each cycle and exits 1 if there is one.
"""

import os
import re
import sys


def modules(root):
    """Module path (tuple) -> file, for every .rs file under root."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
            if rel[-1] == "mod" or rel in (["lib"], ["main"]):
                rel = rel[:-1]
            found[tuple(rel)] = os.path.join(folder, name)
    return found


REFERENCE = re.compile(r"\b((?:crate|super|self)(?:::(?:\w+|\{[^}]*\}))+)")


def strip(text):
    pattern = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*', re.S)
    return pattern.sub(lambda m: '""' if m.group(0).startswith('"') else "", text)


def targets(path, module, known):
    """The modules `module` refers to, each the longest known prefix of a referenced path."""
    text = strip(open(path).read())
    out = set()
    for match in REFERENCE.finditer(text):
        parts = re.split(r"::", match.group(1))
        if parts[0] == "crate":
            base, rest = (), parts[1:]
        else:
            base = module
            rest = parts
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
        names = []
        for part in rest:
            if part.startswith("{"):
                break
            names.append(part)
        candidate = base + tuple(names)
        while candidate and candidate not in known:
            candidate = candidate[:-1]
        if candidate and candidate != module:
            out.add(candidate)
    return out


def lift(a, b):
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if i == len(a) or i == len(b):
        return None  # one is the other's ancestor
    return a[: i + 1], b[: i + 1]


def cycles(graph):
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return result


def main():
    roots = sys.argv[1:] or ["src", "domain/src", "projections/src"]
    found_any = False
    for root in roots:
        known = modules(root)
        graph = {}
        for module, path in known.items():
            for target in targets(path, module, known):
                pair = lift(module, target)
                if pair:
                    graph.setdefault(pair[0], set()).add(pair[1])
        for component in cycles(graph):
            found_any = True
            names = ["::".join(m) for m in component]
            print(f"{root}: cycle between {', '.join(names)}")
            for a in component:
                for b in sorted(graph.get(a, ())):
                    if b in component:
                        print(f"    {'::'.join(a)} -> {'::'.join(b)}")
    if not found_any:
        print("no import cycles")
    sys.exit(1 if found_any else 0)


if __name__ == "__main__":
    main()
