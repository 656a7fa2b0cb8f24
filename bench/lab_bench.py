#!/usr/bin/env python3
"""Benchmark: `grayctl lab up | reset | down` for 16 to 128 nodes, against Mininet as reference.

Not a test: it measures and writes the figures with the machine's description into
docs/benchmarks.md (between the `lab-bench` markers). Run as root:

    python bench/lab_bench.py [--sizes 16 32 64 128] [--repeat 3] [--no-write]

It also draws time against nodes (docs/img/lab-scaling.svg, linked from the section).

Each size uses its own lab name, address range and lab home, so a user's `local` lab is
untouched. Mininet builds a bare network of the same size (hosts on one Linux bridge, no
controller) with Debian's `mininet` package under the system Python. The floor is an empty
playbook through the same runner: the part of every lab command that is Ansible start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, write_section


MININET = r"""
import sys, time
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import SingleSwitchTopo
setLogLevel("error")
n = int(sys.argv[1])
t0 = time.perf_counter()
net = Mininet(topo=SingleSwitchTopo(n), switch=LinuxBridge, controller=None, autoSetMacs=True)
net.start()
t1 = time.perf_counter()
net.stop()
print(t1 - t0, time.perf_counter() - t1)
"""

GOAL_S = 15.0  # issue 18: 64 nodes up, and reset with verify, each within this

NOOP = """- name: Do nothing (runner start-up floor)
  hosts: localhost
  gather_facts: false
  tasks: []
"""


def timed(cmd: list[str], env: dict[str, str], parts: dict[str, list[float]], op: str) -> float:
    """Wall time of one lab command; its own per-playbook split (``--json`` seconds) goes to ``parts``."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark step failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    for part, seconds in json.loads(proc.stdout).get("seconds", {}).items():
        parts.setdefault(f"{op}:{part}", []).append(seconds)
    return elapsed


def lab_definition(path: Path, name: str, nodes: int, index: int) -> None:
    path.write_text(
        f"name: {name}\nprovider: netns\nnodes:\n  count: {nodes}\n"
        f"networks:\n  management: 10.216.{index * 2}.0/24\n  data: 10.216.{index * 2 + 1}.0/24\n"
    )


def bench_grayctl(nodes: int, repeat: int, index: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"up": [], "reset": [], "down": []}
    parts: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="grayctl-bench-") as tmp:
        env = dict(os.environ, GRAYCTL_LAB_HOME=tmp)
        lab = Path(tmp) / "lab.yml"
        lab_definition(lab, f"bench{nodes}", nodes, index)
        grayctl = [sys.executable, "-m", "grayctl", "lab"]
        try:
            for _ in range(repeat):
                for op in ("up", "reset", "down"):
                    times[op].append(timed(grayctl + [op, "--lab", str(lab)], env, parts, op))
        finally:
            subprocess.run(grayctl + ["down", "--lab", str(lab)], env=env, capture_output=True)
    return {**times, "parts": parts}


def bench_mininet(nodes: int, repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"up": [], "down": []}
    for _ in range(repeat):
        out = subprocess.run(["/usr/bin/python3", "-c", MININET, str(nodes)], capture_output=True, text=True)
        if out.returncode != 0:
            subprocess.run(["mn", "-c"], capture_output=True)
            sys.exit(f"mininet failed:\n{out.stderr}")
        up, down = (float(x) for x in out.stdout.split()[-2:])
        times["up"].append(up)
        times["down"].append(down)
    return times


def bench_floor(repeat: int) -> list[float]:
    from grayctl.run.ansible import run_playbook

    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        f.write(NOOP)
        f.flush()
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run_playbook(f.name)
            out.append(time.perf_counter() - t0)
        return out


def machine() -> str:
    """bench/machine.py's line plus ansible-core's version; the load average includes the bench's own SSH load."""
    import ansible

    return describe(ansible_core=getattr(ansible, "__version__", "?"))


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s" if xs else "—"


def render(results: dict[int, dict], floor: list[float], repeat: int) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python bench/lab_bench.py` "
        f"(median of {repeat}).",
        "",
        f"Machine: {machine()}",
        "",
        "| nodes | `lab up` | `lab reset` (incl. verify) | `lab down` | Mininet build+start | Mininet stop | up ratio grayctl/Mininet |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        g, m = r["grayctl"], r["mininet"]
        ratio = statistics.median(g["up"]) / statistics.median(m["up"]) if m["up"] else float("nan")
        lines.append(
            f"| {n} | {med(g['up'])} | {med(g['reset'])} | {med(g['down'])} | {med(m['up'])} | {med(m['down'])} | {ratio:.1f}× |"
        )
    lines += ["", "![time against nodes](img/lab-scaling.svg)", "",
              "Where the time goes (median seconds of each playbook inside the command; the largest part "
              "bounds the point):", ""]
    for n, r in results.items():
        parts = {k: statistics.median(v) for k, v in r["grayctl"]["parts"].items()}
        split = ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
        per_node = {k: v / n for k, v in parts.items() if k.endswith(("baseline", "verify", "reset+verify"))}
        lines.append(f"- {n} nodes: {split}" + ("; per node: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in
                                                                            per_node.items()) if per_node else ""))
    lines += [
        "",
        f"Floor: an empty playbook through the same runner takes {med(floor)}; every lab command pays it "
        "once per playbook (`up` runs two: create, then record the golden baselines over SSH; `reset` "
        "runs one: the reset and the verify are two plays of lab_reset.yml).",
    ]
    return "\n".join(lines)


def plot(results: dict[int, dict], path: Path) -> None:
    """Median seconds against nodes for each command, as a small SVG line chart (no plotting library)."""
    series = {"lab up": [(n, statistics.median(r["grayctl"]["up"])) for n, r in results.items()],
              "lab reset (incl. verify)": [(n, statistics.median(r["grayctl"]["reset"])) for n, r in results.items()],
              "lab down": [(n, statistics.median(r["grayctl"]["down"])) for n, r in results.items()],
              "Mininet build+start": [(n, statistics.median(r["mininet"]["up"])) for n, r in results.items()
                                      if r["mininet"]["up"]]}
    w, h, left, bottom, top, right = 640, 360, 60, 40, 20, 190
    xmax = max(results) * 1.05
    ymax = max(v for pts in series.values() for _, v in pts) * 1.1 or 1.0

    def xy(n: float, v: float) -> tuple[float, float]:
        return left + n / xmax * (w - left - right), h - bottom - v / ymax * (h - top - bottom)

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#7f7f7f"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 8}" text-anchor="middle">nodes</text>',
           f'<text x="14" y="{(top + h - bottom) / 2}" transform="rotate(-90 14 {(top + h - bottom) / 2})" '
           'text-anchor="middle">seconds (median)</text>']
    for n in results:
        x, _ = xy(n, 0)
        out.append(f'<text x="{x:.0f}" y="{h - bottom + 14}" text-anchor="middle">{n}</text>')
    for k in range(6):
        v = ymax / 5 * k
        _, y = xy(0, v)
        out.append(f'<text x="{left - 6}" y="{y + 4:.0f}" text-anchor="end">{v:.0f}</text>'
                   f'<line x1="{left}" y1="{y:.0f}" x2="{w - right}" y2="{y:.0f}" stroke="#ddd"/>')
    if ymax > GOAL_S:  # the goal for up and reset at 64 nodes
        _, y = xy(0, GOAL_S)
        out.append(f'<line x1="{left}" y1="{y:.0f}" x2="{w - right}" y2="{y:.0f}" stroke="black" stroke-dasharray="4 3"/>'
                   f'<text x="{w - right + 10}" y="{y + 4:.0f}">goal {GOAL_S:.0f} s (64 nodes)</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = colors[i % len(colors)]
        coords = " ".join(f"{xy(n, v)[0]:.1f},{xy(n, v)[1]:.1f}" for n, v in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{c}" stroke-width="2"/>')
        out += [f'<circle cx="{xy(n, v)[0]:.1f}" cy="{xy(n, v)[1]:.1f}" r="3" fill="{c}"/>' for n, v in pts]
        out.append(f'<text x="{w - right + 10}" y="{top + 16 + 16 * i}" fill="{c}">{name}</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("lab_bench needs root")
    floor = bench_floor(args.repeat)
    results = {}
    for i, n in enumerate(args.sizes):
        results[n] = {"grayctl": bench_grayctl(n, args.repeat, i), "mininet": bench_mininet(n, args.repeat)}
        print(n, results[n], flush=True)
    section = render(results, floor, args.repeat)
    print(section)
    if not args.no_write:
        plot(results, Path(__file__).resolve().parent.parent / "docs" / "img" / "lab-scaling.svg")
        write_section("lab-bench", section)


if __name__ == "__main__":
    main()
