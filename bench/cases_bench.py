#!/usr/bin/env python3
"""Benchmark (issue 18): cases per hour on a 10-case mini corpus, gen1 to gen3, mixed fault types.

A case is one fault window on a 60 s schedule (warmup 10 s, baseline 20 s, fault 15 s, recovery
15 s). The corpus is three sweeps as a user runs one (one per decomposition: a target must be a
service in every cell of a sweep), each an axis of whole fault lists in a seeded random order, one
``grayctl sweep`` after the other on the same lab:

  gen1-monolith       latency, cpu-stress, process stutter      on the monolith
  gen2-coarse         loss on read-path, memory-stress on user-graph, bandwidth on frontend
  gen3-disaggregated  latency on social-graph-service, loss on post-storage-service,
                      cpu-stress on user-timeline-service, process pause on text-service

Cases per hour = complete cases / wall hours of the three sweeps (goal >= 40 on the 2-core
machine); the overhead per case = (wall - cases x 60 s) / cases. Each manifest says how its run
started (``baseline.reset``: reset, verified, or reused: a sweep run after a verified end reset).

By default a private 14-node netns lab (lab ``cases14``, 10.244.0.0/24 + 10.244.64.0/24, lab home
in a temporary directory), taken down at the end; ``--lab`` uses one that is up. Needs root.
Writes the ``cases-bench`` section of docs/benchmarks.md (bench/machine.py). About 15 minutes.

  sudo .venv/bin/python bench/cases_bench.py [--lab NAME_OR_PATH] [--no-write]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import yaml
from benchlab import grayctl, private_lab
from machine import describe, write_section

SECTION = "cases-bench"
LAB = {"name": "cases14", "nodes": {"count": 14},
       "networks": {"management": "10.244.0.0/24", "data": "10.244.64.0/24"}}
SCHEDULE = {"warmup": "10s", "baseline": "20s", "fault": "15s", "recovery": "15s"}
SCHEDULE_S = 60.0


def inj(kind: str, target: str, **parameters: object) -> list[dict]:
    return [{"id": "f", "type": kind, "target_service": target, "parameters": parameters}]


CORPUS = {
    "gen1-monolith": [inj("network-latency", "monolith", delay="100ms"),
                      inj("cpu-stress", "monolith", workers=1, load="80%"),
                      inj("process-pause", "monolith", stutter={"pause": "50ms", "every": "500ms"})],
    "gen2-coarse": [inj("network-loss", "read-path", percent="5%"),
                    inj("memory-stress", "user-graph", bytes="256MiB"),
                    inj("network-bandwidth", "frontend", rate="2mbit")],
    "gen3-disaggregated": [inj("network-latency", "social-graph-service", delay="100ms", jitter="20ms"),
                           inj("network-loss", "post-storage-service", percent="5%"),
                           inj("cpu-stress", "user-timeline-service", workers=1, load="80%"),
                           inj("process-pause", "text-service", duration="5s")],
}


def write_sweeps(tmp: Path) -> list[tuple[str, Path]]:
    """One sweep file per decomposition: its cases are the values of one ``chaos_injections`` axis."""
    files = []
    for topo, injections in CORPUS.items():
        short = topo.split("-")[0]
        base = tmp / f"base-{short}.yaml"
        base.write_text(yaml.safe_dump({"name": f"cases-{short}", "topology": topo,
                                        "workload": {"rate": "20/s", "arrival": "poisson", "seed": 1},
                                        "schedule": SCHEDULE, "chaos_injections": injections[0]}, sort_keys=False))
        sweep = tmp / f"cases-{short}.yaml"
        sweep.write_text(yaml.safe_dump({"name": f"cases-{short}", "base": base.name,
                                         "axes": {"chaos_injections": injections}, "repetitions": 1,
                                         "order": "random", "seed": 1}, sort_keys=False))
        files.append((topo, sweep))
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default=None, help="a lab that is up (default: a private 14-node lab, up and down)")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="grayctl-cases-bench-"))
    env = dict(os.environ)
    machine = describe(load_average_is="at the start; other jobs share the machine")
    try:
        with private_lab(tmp, LAB, env) if args.lab is None else nullcontext(args.lab) as lab:
            return measure(lab, tmp, env, machine, args.no_write)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(lab: str, tmp: Path, env: dict[str, str], machine: str, no_write: bool) -> int:
    """The three sweeps on ``lab``; the section written; 0 when every case completed."""
    rows, total_wall = [], 0.0
    for topo, sweep in write_sweeps(tmp):
        t = time.monotonic()
        proc = grayctl("sweep", str(sweep), "--lab", lab, "--out", str(tmp / "out"), "--quiet", env=env)
        total_wall += time.monotonic() - t
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        index = next((tmp / "out").glob(f"{sweep.stem}-*/index.csv"), None)
        for row in (csv.DictReader(index.open()) if index else []):
            manifest = {}
            try:
                manifest = json.loads((Path(row["dataset"]) / "manifest.json").read_text())
            except (OSError, ValueError):
                pass
            fault = json.loads(row["axis:chaos_injections"])[0]
            rows.append((topo, fault, float(row["seconds"] or 0), row["exit_code"], manifest))
    complete = sum(1 for r in rows if r[4].get("status") == "complete")
    per_hour = complete / (total_wall / 3600) if total_wall else 0.0
    cases_n = sum(len(v) for v in CORPUS.values())
    lines = ["## Cases per hour: a 10-case mini corpus (`bench/cases_bench.py`)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
             f"`{' '.join(['bench/cases_bench.py', *sys.argv[1:]])}` on: {machine}.", "",
             "14-node netns lab; each case one fault window on a 60 s schedule (10 s warmup, 20 s baseline, "
             "15 s fault, 15 s recovery), 20/s Poisson arrivals; three `grayctl sweep` runs, one per "
             "decomposition, each in a seeded random order. Per case: the run's own seconds (run.json).", "",
             "| # | topology | fault | target | wall | overhead | start (baseline.reset) | status | exit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, (topo, fault, wall, rc, manifest) in enumerate(rows, 1):
        lines.append(f"| {k} | {topo} | {fault['type']} | {fault['target_service']} | {wall:.0f} s | "
                     f"{wall - SCHEDULE_S:.1f} s | {(manifest.get('baseline') or {}).get('reset', '-')} | "
                     f"{manifest.get('status', '-')} | {rc} |")
    over_all = (total_wall - cases_n * SCHEDULE_S) / cases_n
    lines += ["", f"**{per_hour:.1f} cases per hour** ({complete} of {cases_n} cases complete in "
              f"{total_wall:.0f} s; goal >= 40); overhead {over_all:.1f} s per case on a {SCHEDULE_S:.0f} s "
              f"schedule ({over_all / SCHEDULE_S * 100:.0f} % of it). At zero overhead the ceiling is "
              f"{3600 / SCHEDULE_S:.0f} per hour."]
    text = "\n".join(lines)
    print(text)
    if not no_write:
        write_section(SECTION, text)
    return 0 if complete == cases_n else 1


if __name__ == "__main__":
    sys.exit(main())
