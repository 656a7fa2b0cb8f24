#!/usr/bin/env python3
"""Benchmarks of ``grayctl run`` (issue 6): overhead per run, and repeatability of baseline latency.

  overhead       wall time of ``grayctl run`` minus the experiment's own schedule, for gen1 and gen3
                 on the local lab (goal < 20 s), broken down per step from the run's events.jsonl
                 (and the slowest Ansible tasks of each step)
  repeatability  N repetitions (default 5) of a baseline-only gen3 experiment: CV of the baseline
                 p50 and p99 across repetitions (goal p50 <= 2 %, p99 <= 5 %)

Writes the results into docs/benchmarks.md between ``<!-- run-bench:begin -->`` and
``<!-- run-bench:end -->`` (appended when the markers are absent). Needs root and a lab that is up
(``grayctl lab up``; gen3 needs the default 14 nodes). Long: about (overhead + schedule) x (2 + N).

  sudo python bench/run_bench.py [--lab local] [--repetitions 5] [--baseline 30s] [--skip-overhead]
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- run-bench:begin -->", "<!-- run-bench:end -->"


def run(experiment: dict, out: Path, lab: str, *extra: str) -> tuple[float, list[Path], int]:
    """``grayctl run`` as a user runs it; (wall seconds, dataset dirs, exit code)."""
    f = out / f"{experiment['name']}.yaml"
    f.write_text(yaml.safe_dump(experiment, sort_keys=False))
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grayctl", "run", str(f), "--lab", lab, "--out", str(out),
                           "--quiet", *extra], cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
    datasets = [Path(x.split("dataset:", 1)[1].strip()) for x in proc.stdout.splitlines() if "dataset:" in x]
    return wall, datasets, proc.returncode


def steps_of(dataset: Path) -> tuple[list[dict], dict[str, float]]:
    """step_end events (name, seconds, slowest tasks) and the timeline length of one run."""
    events = [json.loads(x) for x in (dataset.parent / f"{dataset.name}.run" / "events.jsonl").read_text().splitlines()]
    steps = [{"step": e["step"], "seconds": e["data"].get("seconds", 0.0),
              "slowest": e["data"].get("slowest_tasks") or {}} for e in events if e["kind"] == "step_end"]
    timeline = next((e["data"]["seconds"] for e in events if e["kind"] == "timeline_end"), 0.0)
    return steps, {"timeline": timeline}


def schedule_s(exp: dict) -> float:
    from grayctl.units import parse_duration

    return sum(parse_duration(v).seconds for v in exp["schedule"].values())


def overhead(lab: str, out: Path) -> list[str]:
    lines = ["### Overhead of `grayctl run` (wall time minus the schedule)", "",
             "| topology | schedule | wall | overhead | status |", "|---|---|---|---|---|"]
    detail: list[str] = []
    for topo, target in (("gen1-monolith", "monolith"), ("gen3-disaggregated", "social-graph-service")):
        exp = {"name": f"bench-{topo.split('-')[0]}", "topology": topo,
               "workload": {"rate": "20/s", "arrival": "constant", "seed": 1},
               "schedule": {"warmup": "5s", "baseline": "10s", "fault": "10s", "recovery": "5s"},
               "chaos_injections": [{"id": "lat", "type": "network-latency", "target_service": target,
                                     "parameters": {"delay": "50ms"}}]}
        wall, datasets, rc = run(exp, out, lab)
        sched = schedule_s(exp)
        lines.append(f"| {topo} | {sched:.0f} s | {wall:.1f} s | **{wall - sched:.1f} s** | exit {rc} |")
        if datasets:
            steps, _ = steps_of(datasets[0])
            detail += ["", f"{topo}, per step (s; the slowest Ansible task of each in brackets):", ""]
            for s in steps:
                slow = next(iter(s["slowest"].items()), None)
                detail.append(f"- {s['step']}: {s['seconds']:.1f}" + (f"  [{slow[0]}: {slow[1]:.1f}]" if slow else ""))
    return lines + detail


def repeatability(lab: str, out: Path, reps: int, baseline: str) -> list[str]:
    from grayctl.sweep import run_figures

    exp = {"name": "bench-repeat", "topology": "gen3-disaggregated",
           "workload": {"rate": "20/s", "arrival": "constant", "seed": 1},
           "schedule": {"warmup": "10s", "baseline": baseline, "fault": "1s", "recovery": "1s"}}
    _, datasets, rc = run(exp, out, lab, "--repetitions", str(reps))
    figs = [run_figures(d) for d in datasets]
    p50 = [f["baseline_p50_ms"] for f in figs if f.get("baseline_p50_ms") is not None]
    p99 = [f["baseline_p99_ms"] for f in figs if f.get("baseline_p99_ms") is not None]

    def cv(v: list[float]) -> str:
        return f"{statistics.stdev(v) / statistics.mean(v) * 100:.1f} %" if len(v) >= 2 else "-"

    return ["", f"### Repeatability: {len(datasets)} x baseline-only gen3 ({baseline} baseline, 20/s constant)", "",
            "| figure | per repetition (ms) | CV | goal |", "|---|---|---|---|",
            f"| baseline p50 | {', '.join(f'{x:.2f}' for x in p50)} | **{cv(p50)}** | <= 2 % |",
            f"| baseline p99 | {', '.join(f'{x:.2f}' for x in p99)} | **{cv(p99)}** | <= 5 % |",
            "", f"exit {rc}; load average before: {os.getloadavg()[0]:.2f}"]


def write(lines: list[str]) -> None:
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    intro = f"Measured {when} with bench/run_bench.py on this machine ({os.cpu_count()} cores, shared)."
    block = "\n".join([BEGIN, "## `grayctl run`: overhead and repeatability", "", intro, "", *lines, END])
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default="local")
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--baseline", default="30s")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-repeatability", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="grayctl-run-bench-"))
    lines: list[str] = []
    if not args.skip_overhead:
        lines += overhead(args.lab, out)
    if not args.skip_repeatability:
        lines += repeatability(args.lab, out, args.repetitions, args.baseline)
    print("\n".join(lines))
    if not args.no_write:
        write(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
