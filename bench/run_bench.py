#!/usr/bin/env python3
"""Benchmarks of ``grayctl run`` (issue 6): overhead per run, and repeatability of baseline latency.

  overhead       wall time of ``grayctl run`` minus the experiment's own schedule, for gen1 and gen3
                 (goal <= 10 s, issue 18), broken down per step from the run's events.jsonl (with the slowest
                 Ansible task of each step)
  repeatability  N repetitions (default 5) of a baseline-only gen3 experiment: CV of the baseline
                 p50 and p99 across repetitions (goal p50 <= 2 %, p99 <= 5 %)

By default the script brings up a private 14-node netns lab of its own (lab ``bench14``,
10.245.0.0/24 + 10.245.64.0/24, lab home in a temporary directory) and takes it down at the end;
``--lab NAME_OR_PATH`` uses a lab that is already up instead. Needs root. Writes the ``run-bench``
section of docs/benchmarks.md (bench/machine.py). Long: about (overhead + schedule) x (2 + N).

  sudo .venv/bin/python bench/run_bench.py [--lab local] [--repetitions 5] [--baseline 60s] [--rate 25/s]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import yaml
from benchlab import grayctl, private_lab
from machine import describe, write_section

ROOT = Path(__file__).resolve().parent.parent
SECTION = "run-bench"
FAILED: list[str] = []  # experiments whose run did not exit 0
LAB = {"name": "bench14", "nodes": {"count": 14},
       "networks": {"management": "10.245.0.0/24", "data": "10.245.64.0/24"}}


def run(experiment: dict, out: Path, lab: str, env: dict[str, str], *extra: str) -> tuple[float, list[Path], int]:
    """``grayctl run`` as a user runs it; (wall seconds, dataset dirs, exit code)."""
    f = out / f"{experiment['name']}.yaml"
    f.write_text(yaml.safe_dump(experiment, sort_keys=False))
    t = time.monotonic()
    proc = grayctl("run", str(f), "--lab", lab, "--out", str(out), "--quiet", *extra, env=env)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        FAILED.append(f.name)
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
    datasets = [Path(x.split("dataset:", 1)[1].strip()) for x in proc.stdout.splitlines() if "dataset:" in x]
    return wall, datasets, proc.returncode


def events_of(dataset: Path) -> list[dict]:
    return [json.loads(x) for x in (dataset.parent / f"{dataset.name}.run" / "events.jsonl").read_text().splitlines()]


def steps_of(dataset: Path) -> list[dict]:
    """step_end events (name, seconds, slowest tasks) plus the timeline, in the order they ran."""
    out = []
    for e in events_of(dataset):
        if e["kind"] == "step_end" and e["phase"] != "run":
            out.append({"step": e["step"], "seconds": e["data"].get("seconds", 0.0),
                        "slowest": e["data"].get("slowest_tasks") or {}})
        elif e["kind"] == "timeline_end":
            out.append({"step": "timeline (the schedule; fault steps inside)", "seconds": e["data"]["seconds"],
                        "slowest": {}})
    return out


def schedule_s(exp: dict) -> float:
    from grayctl.units import parse_duration

    return sum(parse_duration(v).seconds for v in exp["schedule"].values())


def resolved_schedule_s(path: Path) -> float:
    from grayctl.experiment import load_experiment

    sch = load_experiment(path).schedule
    return sum(p.seconds for p in (sch.warmup, sch.baseline, sch.fault, sch.recovery))


def load1() -> float:
    return os.getloadavg()[0]


def overhead(lab: str, out: Path, env: dict[str, str], rate: str) -> list[str]:
    rows = ["| experiment | schedule | wall | overhead | overhead / schedule | load avg before / after | exit |",
            "|---|---|---|---|---|---|---|"]
    steps_by_topo: dict[str, list[dict]] = {}
    # The headline: the seed experiment as shipped (gen3, 130 s of schedule), one run from the CLI.
    seed = yaml.safe_load((ROOT / "experiments" / "seed.yaml").read_text())
    before = load1()
    wall, datasets, rc = run({**seed, "name": "bench-seed"}, out, lab, env)
    sched = resolved_schedule_s(ROOT / "experiments" / "seed.yaml")  # the defaults fill in its schedule
    rows.append(f"| experiments/seed.yaml (gen3) | {sched:.0f} s | {wall:.1f} s | **{wall - sched:.1f} s** | "
                f"{(wall - sched) / sched:.2f} | {before:.1f} / {load1():.1f} | {rc} |")
    if datasets:
        steps_by_topo["seed"] = steps_of(datasets[0])
    for topo, target in (("gen1-monolith", "monolith"), ("gen3-disaggregated", "social-graph-service")):
        exp = {"name": f"bench-{topo.split('-')[0]}", "topology": topo,
               "workload": {"rate": rate, "arrival": "constant", "seed": 1},
               "schedule": {"warmup": "5s", "baseline": "10s", "fault": "10s", "recovery": "10s"},
               "chaos_injections": [{"id": "lat", "type": "network-latency", "target_service": target,
                                     "parameters": {"delay": "50ms"}}]}
        before = load1()
        wall, datasets, rc = run(exp, out, lab, env)
        sched = schedule_s(exp)
        rows.append(f"| {topo}, one 50 ms fault | {sched:.0f} s | {wall:.1f} s | **{wall - sched:.1f} s** | "
                    f"{(wall - sched) / sched:.2f} | {before:.1f} / {load1():.1f} | {rc} |")
        if datasets:
            steps_by_topo[topo] = steps_of(datasets[0])
        # A second repetition starts from the first one's verified end reset (no reimage of its own):
        # its in-process time (run.json) is what each further repetition or sweep run costs.
        before = load1()
        _, reps, rc = run({**exp, "name": f"{exp['name']}-reps"}, out, lab, env, "--repetitions", "2")
        if len(reps) == 2:
            secs = json.loads((reps[1].parent / f"{reps[1].name}.run" / "run.json").read_text())["seconds"]
            rows.append(f"| {topo}, repetition 2 of 2 (run.json, in process) | {sched:.0f} s | {secs:.1f} s | "
                        f"**{secs - sched:.1f} s** | {(secs - sched) / sched:.2f} | {before:.1f} / {load1():.1f} | "
                        f"{rc} |")
    detail = ["", "Per step (seconds; the slowest Ansible task of the step in brackets):", "",
              "| step | " + " | ".join(steps_by_topo) + " |", "|---|" + "---|" * len(steps_by_topo)]
    names = list(dict.fromkeys(s["step"] for v in steps_by_topo.values() for s in v))
    for name in names:
        cells = []
        for v in steps_by_topo.values():
            s = next((x for x in v if x["step"] == name), None)
            slow = next(iter(s["slowest"].items()), None) if s else None
            cells.append("-" if s is None else f"{s['seconds']:.1f}" + (f" [{slow[0]}: {slow[1]:.1f}]" if slow else ""))
        detail.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows + detail


def repeatability(lab: str, out: Path, env: dict[str, str], reps: int, baseline: str, rate: str) -> list[str]:
    from grayctl.sweep import run_figures

    exp = {"name": "bench-repeat", "topology": "gen3-disaggregated",
           "workload": {"rate": rate, "arrival": "constant", "seed": 1},
           "schedule": {"warmup": "10s", "baseline": baseline, "fault": "1s", "recovery": "1s"}}
    before = load1()
    wall, datasets, rc = run(exp, out, lab, env, "--repetitions", str(reps))
    figs = [run_figures(d) for d in datasets]
    loads = []
    for d in datasets:  # the 1-minute load average when each repetition's timeline started
        start = next((e for e in events_of(d) if e["kind"] == "timeline_start"), None)
        loads.append(start["data"].get("load1") if start else None)
    p50 = [f["baseline_p50_ms"] for f in figs if f.get("baseline_p50_ms") is not None]
    p99 = [f["baseline_p99_ms"] for f in figs if f.get("baseline_p99_ms") is not None]

    def cv(v: list[float]) -> str:
        return f"{statistics.stdev(v) / statistics.mean(v) * 100:.1f} %" if len(v) >= 2 else "-"

    lines = ["| figure | per repetition (ms) | CV | goal |", "|---|---|---|---|",
             f"| baseline p50 | {', '.join(f'{x:.2f}' for x in p50)} | **{cv(p50)}** | <= 2 % |",
             f"| baseline p99 | {', '.join(f'{x:.2f}' for x in p99)} | **{cv(p99)}** | <= 5 % |",
             "", f"{len(datasets)} repetition(s) in {wall:.0f} s, exit {rc}; load average before: {before:.1f}"]
    if any(x is not None for x in loads):
        lines[-1] += "; at each baseline's start: " + ", ".join("-" if x is None else f"{x:.1f}" for x in loads)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default=None, help="a lab that is up (default: a private 14-node lab, up and down)")
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--baseline", default="60s")
    ap.add_argument("--rate", default="25/s")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-repeatability", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="grayctl-run-bench-"))
    env = dict(os.environ)
    machine = describe(load_average_is="at the start; other jobs share the machine")
    try:
        with private_lab(tmp, LAB, env) if args.lab is None else nullcontext(args.lab) as lab:
            measure(args, lab, tmp, env, machine)
    finally:
        if FAILED:
            # the failed runs' Ansible logs and events are the only evidence of why
            print(f"a run failed: its records are kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def measure(args: argparse.Namespace, lab: str, tmp: Path, env: dict[str, str], machine: str) -> None:
    """The overhead and repeatability parts on ``lab``, each written as it lands."""
    lines: list[str] = []

    def publish(pending: str = "") -> None:
        """Write what is measured so far (a long run may be cut short; each part lands when done)."""
        text = "\n".join(["## `grayctl run`: overhead and repeatability", "",
                          (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
                          f"`{' '.join(['bench/run_bench.py', *sys.argv[1:]])}` on: {machine}."), "",
                          *lines, *([pending, ""] if pending else []), NOTES])
        print(text, flush=True)
        if not args.no_write:
            write_section(SECTION, text)

    if not args.skip_overhead:
        lines += ["### Overhead: wall time of `grayctl run` minus the schedule", "",
                  (f"14-node netns lab (gen3 uses 12 app nodes), {args.rate} constant arrivals, one 50 ms "
                  "latency fault:"), "", *overhead(lab, tmp, env, args.rate), ""]
        publish("" if args.skip_repeatability else "Repeatability: being measured.")
    if not args.skip_repeatability:
        lines += [(f"### Repeatability: {args.repetitions} x baseline-only gen3 ({args.baseline} baseline, "
                  f"{args.rate} constant, seed 1)"), "", *repeatability(lab, tmp, env, args.repetitions,
                                                                     args.baseline, args.rate), ""]
        publish()


NOTES = """
What a run is made of (`grayctl plan` prints the same list): reimage (on netns and qemu a baseline
verify, and a lab reset only on drift: `baseline.reset` in the manifest says `verified`, `reset` or
`reused`) → prepare (one playbook: Prometheus and the observer first, then replicas and exporters
on every node, the target check, clock offsets, and last the load generator, whose start is t=0) →
the timeline (each inject/revert a fault.yml run, started early and scheduled on the node's clock
with `faultctl --not-before`) → collect (one playbook: the load generator's records, clock offsets,
spans and logs, each node's files in one module call) → Prometheus range queries → dataset +
report, assembled while the teardown runs → teardown. On the netns provider the teardown is one lab
reset, its verify in the same ansible-playbook run (lab_reset.yml's second play): it kills every
process of every node, empties its state and verifies the baseline (`teardown.path: reset`); other
labs run teardown.yml and a baseline verify (`teardown.path: undeploy`). A further repetition (or
sweep run) starts from that verified reset without a verify of its own.

What bounds it: an Ansible task costs about (number of hosts) x (one module start on the node + one
worker on the controller), and on the netns lab the nodes' Python and the controller's workers share
the same 2 cores; so the per-step figures above are mostly module starts per node (the fingerprint
in the verify, the replicas' and exporters' start in prepare, the file fetch in collect) and one
ansible-playbook start-up per step.
""".rstrip()


if __name__ == "__main__":
    raise SystemExit(main())
