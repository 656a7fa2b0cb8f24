#!/usr/bin/env python3
"""Benchmark: `grayctl lab up | reset | down` for 16 and 64 nodes, against Mininet as reference.

Not a test: it measures and writes the figures with the machine's description into
docs/benchmarks.md (between the `lab-bench` markers). Run as root:

    python bench/lab_bench.py [--sizes 16 64] [--repeat 3] [--no-write]

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
    lines += ["", "Where the time goes (median seconds of each playbook inside the command):", ""]
    for n, r in results.items():
        split = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in r["grayctl"]["parts"].items())
        lines.append(f"- {n} nodes: {split}")
    lines += [
        "",
        f"Floor: an empty playbook through the same runner takes {med(floor)}; every lab command pays it "
        "once per playbook (`up` runs two: create, then record the golden baselines over SSH; `reset` "
        "runs two: reset, then verify).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
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
        write_section("lab-bench", section)


if __name__ == "__main__":
    main()
