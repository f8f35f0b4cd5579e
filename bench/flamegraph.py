#!/usr/bin/env python3
"""A flamegraph of `perf script` output: stacks folded, drawn as one self-contained SVG.
Stdlib only, written for this repository (bench/flamegraph.sh drives it).

    perf script -i perf.data | bench/flamegraph.py [--title T] [--min-percent 0.1] > out.svg
    perf script -i perf.data | bench/flamegraph.py --folded > stacks.folded
    bench/flamegraph.py --input-folded --top 25 < stacks.folded
    bench/flamegraph.py --self-test

A stack is folded as `thread;outermost;...;innermost count`: the thread's name (perf's `comm`,
15 characters at most) is the root frame, so threads of one pool share one tower. actix names
its HTTP workers and the actor arbiters alike (`actix-rt|system`), so a thread whose samples
show a frame of ROLES carries that role after its name: `actix-rt|system (HTTP worker)`,
`actix-rt|system (actors)`, `tokenledger (appender)` (the main thread, where the appender
task runs). Names are shortened: the `+0x..` offset and Rust's `::h<16 hex>` hash go, generic
parameters stay, a `_ZN...E` name perf left mangled is demangled, a kernel frame ends in
` [k]` and an unresolved one is named after its object (`[libc.so.6]`); a stack perf could not
unwind to its start (more than the copied user stack) starts at `[truncated]`.

Each rectangle is as wide as its share of the samples (every sample weighs one: perf records
at a fixed frequency), children above their caller, siblings in name order; a frame narrower
than --min-percent of the total is not drawn, nor anything above it. Hovering a frame shows
its name, samples and percent (an SVG `<title>`). Colours say the kind of frame: kernel,
ours (a `tokenledger*` crate in the name), SQLite (the C library and sqlx's SQLite driver),
other libraries, and the thread roots.
"""

import argparse
import colorsys
import io
import os
import re
import sys
import unittest
import xml.etree.ElementTree as ET
import zlib
from xml.sax.saxutils import escape

HEADER = re.compile(r"^(?P<comm>\S.*?)\s+(?:\d+/)?(?P<tid>\d+)\s+(?:\[\d+\]\s+)?\d+\.\d+:")
FRAME = re.compile(r"^\s+(?P<addr>[0-9a-f]+)\s+(?P<sym>.*?)\s+\((?P<dso>[^()]*)\)\s*$")
OFFSET = re.compile(r"\+0x[0-9a-f]+$")
RUST_HASH = re.compile(r"::h[0-9a-f]{16}(?![0-9A-Za-z_])")
SQLITE = re.compile(r"^(sqlite3|pager[A-Z]|wal[A-Z]|btree[A-Z]|vdbe[A-Z]|unix[A-Z])|sqlx_sqlite|libsqlite3_sys")
LEGACY_ESCAPES = {
    "$SP$": "@", "$BP$": "*", "$RF$": "&", "$LT$": "<", "$GT$": ">", "$LP$": "(", "$RP$": ")",
    "$C$": ",",
}

ROLES = (  # (role, a frame only its threads run): actix names HTTP workers and arbiters alike
    ("HTTP worker", "actix_http::h1::dispatcher"),
    ("actors", "tokenledger::actors::"),
    ("appender", "tokenledger::store::appender::"),
)
KINDS = {  # kind: (legend, hue range in degrees, saturation, lightness range)
    "kernel": ("kernel", (8, 28), 0.80, (0.58, 0.68)),
    "ours": ("tokenledger crates", (95, 140), 0.50, (0.50, 0.62)),
    "sqlite": ("SQLite and sqlx-sqlite", (195, 220), 0.60, (0.62, 0.72)),
    "library": ("other libraries, std, libc", (42, 58), 0.75, (0.55, 0.66)),
    "thread": ("thread (perf comm)", (0, 0), 0.0, (0.72, 0.72)),
}


# Reading perf script


def demangle_legacy(symbol):
    """`_ZN11tokenledger4http7refresh17h0123456789abcdefE` -> `tokenledger::http::refresh`."""
    start = 4 if symbol.startswith("__ZN") else 3
    parts, i = [], start
    while i < len(symbol) and symbol[i].isdigit():
        digits = re.match(r"\d+", symbol[i:]).group()
        i += len(digits)
        parts.append(symbol[i : i + int(digits)])
        i += int(digits)
    if not parts or symbol[i:i + 1] != "E":
        return symbol
    if re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    return "::".join(unescape_legacy(part) for part in parts)


def unescape_legacy(part):
    if part.startswith("_$"):
        part = part[1:]
    part = part.replace("..", "::")
    for code, text in LEGACY_ESCAPES.items():
        part = part.replace(code, text)
    return re.sub(r"\$u([0-9a-f]{2,})\$", lambda m: chr(int(m.group(1), 16)), part)


def frame_name(addr, symbol, dso):
    """One perf frame's name as folded: shortened, ` [k]` for the kernel."""
    symbol = OFFSET.sub("", symbol)
    if addr == "ffffffffffffffff" and symbol == "[unknown]":
        return "[truncated]"  # where perf's unwinder stopped, the copied stack used up
    kernel = dso.startswith("[kernel") or (len(addr) == 16 and addr.startswith("ffff"))
    if symbol == "[unknown]":
        where = os.path.basename(dso.strip("[]"))
        name = f"[{where}]" if where and where != "unknown" else "[unknown]"
    else:
        if symbol.startswith(("_ZN", "__ZN")):
            symbol = demangle_legacy(symbol)
        name = RUST_HASH.sub("", symbol)
    return name + " [k]" if kernel else name


def fold_perf_script(lines):
    """{(thread, outermost, ..., innermost): samples} of `perf script` text."""
    threads = {}  # (comm, tid): {(outermost, ..., innermost): samples}
    thread, frames = None, []

    def finish():
        if thread is not None:
            stacks = threads.setdefault(thread, {})
            stack = tuple(reversed(frames))
            stacks[stack] = stacks.get(stack, 0) + 1

    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line[0].isspace():
            header = HEADER.match(line)
            if header:
                finish()
                thread, frames = (header["comm"].strip(), header["tid"]), []
            continue
        frame = FRAME.match(line)
        if frame and thread is not None:
            frames.append(frame_name(frame["addr"], frame["sym"], frame["dso"]))
    finish()
    folded = {}
    for (comm, _), stacks in threads.items():
        role = role_of(stacks)
        root = f"{comm} ({role})" if role else comm
        for stack, count in stacks.items():
            folded[(root, *stack)] = folded.get((root, *stack), 0) + count
    return folded


def role_of(stacks):
    """The role of ROLES whose frame most of one thread's samples show, if any: a thread's
    samples in the kernel or with a cut stack then count under its role too."""
    seen = {role: 0 for role, _ in ROLES}
    for stack, count in stacks.items():
        for role, marker in ROLES:
            if any(marker in name for name in stack):
                seen[role] += count
    best = max(seen, key=seen.get)
    return best if seen[best] else None


def read_folded(lines):
    folded = {}
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack:
            key = tuple(stack.split(";"))
            folded[key] = folded.get(key, 0) + int(count)
    return folded


def write_folded(folded, out):
    for stack in sorted(folded):
        out.write(f"{';'.join(stack)} {folded[stack]}\n")


# Kinds and shares


def kind_of(name, depth):
    if depth == 0:
        return "thread"
    if name.endswith(" [k]"):
        return "kernel"
    if "tokenledger" in name:
        return "ours"
    if SQLITE.search(name):
        return "sqlite"
    return "library"


def colour(name, depth):
    _, (hue_a, hue_b), saturation, (light_a, light_b) = KINDS[kind_of(name, depth)]
    # Stable per name, so one function has one colour in every graph.
    spread = zlib.crc32(name.encode()) / 0xFFFFFFFF
    hue = (hue_a + (hue_b - hue_a) * spread) / 360
    light = light_a + (light_b - light_a) * (1 - spread)
    r, g, b = colorsys.hls_to_rgb(hue, light, saturation)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def inclusive(folded):
    """{frame name: samples whose stack holds it}, each sample counted once per name."""
    shares = {}
    for stack, count in folded.items():
        for name in set(stack):
            shares[name] = shares.get(name, 0) + count
    return shares


def top_text(folded, n, title):
    total = sum(folded.values()) or 1
    threads, in_kernel, leaves = {}, {}, {}
    for stack, count in folded.items():
        kind = kind_of(stack[-1], len(stack) - 1)
        threads[stack[0]] = threads.get(stack[0], 0) + count
        in_kernel[stack[0]] = in_kernel.get(stack[0], 0) + (count if kind == "kernel" else 0)
        leaf = KINDS[kind][0] if len(stack) > 1 else "no stack"
        leaves[leaf] = leaves.get(leaf, 0) + count

    def rows(shares, limit=None, note=lambda name, c: ""):
        ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return [f"{100 * c / total:6.2f}% {c:7}  {name}{note(name, c)}" for name, c in ranked]

    lines = [f"# {title}" if title else "# flamegraph", f"# {total} samples"]
    lines += ["## by thread (and how much of its own time is in the kernel)"]
    lines += rows(threads, note=lambda name, c: f"  ({100 * in_kernel[name] / c:.0f}% in the kernel)")
    lines += ["## by kind of the innermost frame (self samples)", *rows(leaves)]
    lines += [f"## top {n} frames by inclusive share (counted once a sample)"]
    lines += rows(inclusive(folded), n)
    return "\n".join(lines) + "\n"


# The tree and its SVG


class Node:
    __slots__ = ("name", "total", "children")

    def __init__(self, name):
        self.name, self.total, self.children = name, 0, {}


def tree(folded):
    root = Node("all")
    for stack, count in folded.items():
        node = root
        node.total += count
        for name in stack:
            node = node.children.setdefault(name, Node(name))
            node.total += count
    return root


def depth_of(node, keep):
    shown = [child for child in node.children.values() if child.total >= keep]
    return 1 + max((depth_of(child, keep) for child in shown), default=0)


class Svg:
    WIDTH, PAD, ROW, TOP, FONT = 1200, 10, 17, 70, 11
    CHAR = 0.61 * FONT  # the monospace advance, for clipping labels

    def __init__(self, root, title, subtitle, min_percent):
        self.total = root.total or 1
        self.keep = self.total * min_percent / 100
        self.scale = (self.WIDTH - 2 * self.PAD) / self.total
        self.height = self.TOP + depth_of(root, self.keep) * self.ROW + self.PAD
        self.parts = [self.head(title, subtitle)]
        self.frame(root, self.PAD, 0)
        self.parts.append("</svg>\n")

    def head(self, title, subtitle):
        w, h = self.WIDTH, self.height
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" font-family="monospace" font-size="{self.FONT}">',
            f'<rect width="{w}" height="{h}" fill="#f7f7f2"/>',
            f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="16">{escape(title)}</text>',
            f'<text x="{w / 2}" y="40" text-anchor="middle" fill="#555">{escape(subtitle)}</text>',
        ]
        x = self.PAD
        for kind, (legend, *_) in KINDS.items():
            sample = {"kernel": "k [k]", "ours": "tokenledger", "sqlite": "sqlite3",
                      "library": "std", "thread": ""}[kind]
            fill = colour(sample, 0 if kind == "thread" else 1)
            out.append(f'<rect x="{x}" y="50" width="12" height="12" fill="{fill}"/>')
            out.append(f'<text x="{x + 16}" y="60">{escape(legend)}</text>')
            x += 30 + len(legend) * self.CHAR
        return "\n".join(out) + "\n"

    def frame(self, node, x, depth):
        width = node.total * self.scale
        y = self.height - self.PAD - (depth + 1) * self.ROW
        percent = 100 * node.total / self.total
        fill = "#d8d8d8" if depth == 0 else colour(node.name, depth - 1)
        label = self.label(node.name, width)
        tip = f"{node.name} ({node.total} samples, {percent:.2f}%)"
        self.parts.append(
            f'<g><title>{escape(tip)}</title><rect x="{x:.2f}" y="{y}" width="{width:.2f}" '
            f'height="{self.ROW - 1}" fill="{fill}" rx="2"/>'
            + (f'<text x="{x + 3:.2f}" y="{y + 12}">{escape(label)}</text>' if label else "")
            + "</g>\n"
        )
        for name in sorted(node.children):
            child = node.children[name]
            if child.total >= self.keep:
                self.frame(child, x, depth + 1)
            x += child.total * self.scale

    def label(self, name, width):
        fits = int((width - 6) / self.CHAR)
        if fits < 4:
            return ""
        return name if len(name) <= fits else name[: fits - 2] + ".."

    def text(self):
        return "".join(self.parts)


# The command


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--title", default="")
    parser.add_argument("--subtitle", default="")
    parser.add_argument("--min-percent", type=float, default=0.1,
                        help="frames narrower than this share are not drawn (default 0.1)")
    parser.add_argument("--input-folded", action="store_true",
                        help="stdin holds folded stacks, not perf script text")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--folded", action="store_true", help="print the folded stacks")
    mode.add_argument("--top", type=int, metavar="N", help="print the N widest frames as text")
    mode.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(SelfTest)
        sys.exit(0 if unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful() else 1)
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    folded = read_folded(stdin) if args.input_folded else fold_perf_script(stdin)
    if args.folded:
        write_folded(folded, sys.stdout)
    elif args.top:
        sys.stdout.write(top_text(folded, args.top, args.title))
    else:
        total = sum(folded.values())
        sampled = f"{total} samples, frames under {args.min_percent}% not drawn"
        subtitle = f"{args.subtitle}; {sampled}" if args.subtitle else sampled
        sys.stdout.write(Svg(tree(folded), args.title, subtitle, args.min_percent).text())


# Tests: a small perf script fixture through folding, shares and the SVG

FIXTURE = """\
actix-server wo 4242/4250  8123.000001:    2004008 cpu-clock:
\tffffffff81a00001 finish_task_switch.isra.0+0x9a ([kernel.kallsyms])
\tffffffff81a00002 schedule+0x21 ([kernel.kallsyms])
\t    55d0000a0001 tokenledger::http::refresh::h0123456789abcdef+0x20 (/opt/tokenledger)
\t    55d0000a0002 std::rt::lang_start::h00112233445566ff+0x5 (/opt/tokenledger)

actix-server wo 4242/4251  8123.002004:    2004008 cpu-clock:
\t    55d0000a0003 _ZN11tokenledger4http7refresh17h0123456789abcdefE+0x31 (/opt/tokenledger)
\t    55d0000a0002 std::rt::lang_start::h00112233445566ff+0x5 (/opt/tokenledger)

actix-server wo 4242/4250  8123.004008:    2004008 cpu-clock:
\t    55d0000a0009 sha2::sha256::compress+0x10 (inlined)
\t    55d0000a0009 <sha2::Sha256 as digest::Update>::update::hffeeddccbbaa9988+0x10 (/opt/tokenledger)
\t    55d0000a0001 tokenledger::http::refresh::h0123456789abcdef+0x44 (/opt/tokenledger)
\t    55d0000a0002 std::rt::lang_start::h00112233445566ff+0x5 (/opt/tokenledger)

actix-server wo 4242/4251  8123.006012:    2004008 cpu-clock:
\t    55d0000a0009 sha2::sha256::compress+0x10 (inlined)
\t    55d0000a0009 <sha2::Sha256 as digest::Update>::update::hffeeddccbbaa9988+0x10 (/opt/tokenledger)
\t    55d0000a0001 tokenledger::http::refresh::h0123456789abcdef+0x44 (/opt/tokenledger)
\t    55d0000a0002 std::rt::lang_start::h00112233445566ff+0x5 (/opt/tokenledger)

sqlx-sqlite-wor 4242/4260 [001]  8123.008016:    2004008 cpu-clock:
\t    7f0000000001 [unknown] (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t    55d0000b0001 sqlite3VdbeExec+0x7 (/opt/tokenledger)
\t    55d0000b0002 sqlx_sqlite::connection::worker::ConnectionWorker::establish::{{closure}}+0x1 (/opt/tokenledger)
\tffffffffffffffff [unknown] ([unknown])

tokenledger 4242/4242  8123.010020:    2004008 cpu-clock:

actix-rt|system 4242/4270  8123.012024:    2004008 cpu-clock:
\t    55d0000c0001 tokenledger::actors::session::SessionActor::execute::h0123456789abcdef+0x1 (/opt/tokenledger)
\t    55d0000c0002 tokio::runtime::task::harness::Harness<T,S>::poll+0x2 (/opt/tokenledger)

actix-rt|system 4242/4270  8123.014028:    2004008 cpu-clock:
\tffffffff81a00001 finish_task_switch.isra.0+0x9a ([kernel.kallsyms])
\t    55d0000c0002 tokio::runtime::task::harness::Harness<T,S>::poll+0x2 (/opt/tokenledger)

actix-rt|system 4242/4271  8123.016032:    2004008 cpu-clock:
\t    55d0000d0001 <actix_http::h1::dispatcher::Dispatcher<T,S,B,X,U> as core::future::future::Future>::poll+0x3 (/opt/tokenledger)
\t    55d0000c0002 tokio::runtime::task::harness::Harness<T,S>::poll+0x2 (/opt/tokenledger)
"""

MAIN = ("actix-server wo", "std::rt::lang_start", "tokenledger::http::refresh")
UPDATE = "<sha2::Sha256 as digest::Update>::update"
HARNESS = "tokio::runtime::task::harness::Harness<T,S>::poll"
DISPATCHER = "<actix_http::h1::dispatcher::Dispatcher<T,S,B,X,U> as core::future::future::Future>::poll"
EXPECTED = {
    (*MAIN, "schedule [k]", "finish_task_switch.isra.0 [k]"): 1,
    MAIN: 1,
    (*MAIN, UPDATE, "sha2::sha256::compress"): 2,
    ("sqlx-sqlite-wor", "[truncated]", "sqlx_sqlite::connection::worker::ConnectionWorker::establish::{{closure}}",
     "sqlite3VdbeExec", "[libc.so.6]"): 1,
    ("tokenledger",): 1,
    ("actix-rt|system (actors)", HARNESS, "tokenledger::actors::session::SessionActor::execute"): 1,
    ("actix-rt|system (actors)", HARNESS, "finish_task_switch.isra.0 [k]"): 1,
    ("actix-rt|system (HTTP worker)", HARNESS, DISPATCHER): 1,
}


class SelfTest(unittest.TestCase):
    def folded(self):
        return fold_perf_script(io.StringIO(FIXTURE))

    def test_fold_counts_and_names(self):
        # given the fixture's 9 samples, when folded, then identical stacks add up, the
        # legacy-mangled and hashed spellings of one function are one frame, and the two
        # threads named actix-rt|system are told apart by what they run
        self.assertEqual(self.folded(), EXPECTED)
        self.assertEqual(sum(self.folded().values()), 9)

    def test_folded_text_round_trips(self):
        out = io.StringIO()
        write_folded(self.folded(), out)
        self.assertIn(";".join(MAIN) + " 1\n", out.getvalue())
        self.assertEqual(read_folded(io.StringIO(out.getvalue())), EXPECTED)

    def test_demangle_legacy(self):
        self.assertEqual(
            demangle_legacy("_ZN4core3ptr48drop_in_place$LT$tokenledger..A$u20$as$u20$B$GT$17h0123456789abcdefE"),
            "core::ptr::drop_in_place<tokenledger::A as B>",
        )
        self.assertEqual(demangle_legacy("_ZNnot_rust"), "_ZNnot_rust")

    def test_frame_names(self):
        self.assertEqual(frame_name("ffffffffffffffff", "[unknown]", "[unknown]"), "[truncated]")
        self.assertEqual(frame_name("ffffffff81a00009", "[unknown]", "[kernel.kallsyms]"),
                         "[kernel.kallsyms] [k]")
        self.assertEqual(frame_name("7f01", "[unknown]", "[unknown]"), "[unknown]")
        self.assertEqual(frame_name("55d1", "<a::B<T> as c::D>::e::h0123456789abcdef+0x1f", "/x"),
                         "<a::B<T> as c::D>::e")

    def test_kinds(self):
        self.assertEqual(kind_of("actix-server wo", 0), "thread")
        self.assertEqual(kind_of("schedule [k]", 3), "kernel")
        self.assertEqual(kind_of("<tokenledger_domain::X as Y>::f", 2), "ours")
        self.assertEqual(kind_of("sqlite3VdbeExec", 2), "sqlite")
        self.assertEqual(kind_of("pagerWalFrames", 2), "sqlite")
        self.assertEqual(kind_of("sha2::sha256::compress", 2), "library")

    def test_inclusive_and_top(self):
        shares = inclusive(self.folded())
        self.assertEqual(shares["tokenledger::http::refresh"], 4)
        self.assertEqual(shares["actix-server wo"], 4)
        self.assertEqual(shares[UPDATE], 2)
        text = top_text(self.folded(), 3, "t")
        self.assertIn(" 44.44%       4  actix-server wo", text)
        self.assertIn(" 22.22%       2  actix-rt|system (actors)  (50% in the kernel)", text)
        self.assertIn(" 44.44%       4  other libraries, std, libc", text)
        self.assertIn(" 22.22%       2  kernel", text)
        self.assertEqual(len(text.split("counted once a sample)\n")[1].splitlines()), 3)

    def rects(self, min_percent=0.0):
        svg = Svg(tree(self.folded()), "fixture", "sub", min_percent).text()
        root = ET.fromstring(svg)  # raises if the SVG is not well-formed XML
        ns = "{http://www.w3.org/2000/svg}"
        found = {}
        for g in root.iter(ns + "g"):
            name = g.find(ns + "title").text.rsplit(" (", 1)[0]
            rect = g.find(ns + "rect")
            found.setdefault(name, []).append({k: float(rect.get(k)) for k in ("x", "y", "width")})
        return found

    def test_svg_widths_follow_samples_and_nest(self):
        rects = self.rects()
        full = Svg.WIDTH - 2 * Svg.PAD
        self.assertAlmostEqual(rects["all"][0]["width"], full, places=1)
        refresh = rects["tokenledger::http::refresh"][0]
        self.assertAlmostEqual(refresh["width"], full * 4 / 9, places=1)
        update = rects[UPDATE][0]
        kernel = rects["schedule [k]"][0]
        self.assertLess(update["y"], refresh["y"])  # a callee sits above its caller
        self.assertGreaterEqual(update["x"], refresh["x"])
        self.assertLessEqual(update["x"] + update["width"] + kernel["width"],
                             refresh["x"] + refresh["width"] + 0.02)
        self.assertAlmostEqual(rects["sqlite3VdbeExec"][0]["width"], full / 9, places=1)
        self.assertEqual(len(rects["finish_task_switch.isra.0 [k]"]), 2)  # under two callers

    def test_svg_prunes_narrow_frames_and_tooltips(self):
        rects = self.rects(min_percent=20)
        self.assertNotIn("sqlite3VdbeExec", rects)  # 1 of 9 samples: 11 % < 20 %
        self.assertNotIn("[libc.so.6]", rects)  # nor anything above it
        self.assertIn("sha2::sha256::compress", rects)  # 2 of 9: 22 %
        svg = Svg(tree(self.folded()), "t", "s", 0).text()
        self.assertIn("<title>tokenledger::http::refresh (4 samples, 44.44%)</title>", svg)
        self.assertIn("&lt;sha2::Sha256 as digest::Update&gt;::update (2 samples", svg)

    def test_labels_clip_to_width(self):
        svg = Svg(tree({("t", "x" * 400): 1, ("t", "y"): 999}), "t", "s", 0)
        self.assertEqual(svg.label("x" * 400, 1.2), "")
        label = svg.label("x" * 400, 200)
        self.assertTrue(label.endswith("..") and len(label) * Svg.CHAR <= 200)


if __name__ == "__main__":
    main()
