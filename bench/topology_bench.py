#!/usr/bin/env python3
"""Topology benchmarks on a private local lab: deploy time, memory, capacity and CPU cost per request.

    sudo python bench/topology_bench.py [--trial 5] [--write]      # --write updates docs/benchmarks.md

Creates its own netns lab (name ``tbench``, 10.218.x, lab home in a temp dir), removes it at the end
(also on error or Ctrl-C). What it measures, per issue 3:

- deploy time of gen3-disaggregated (fresh, then a no-op converge);
- resident memory of every runtime process and of the whole gen3 deployment (/proc/<pid>/status VmRSS);
- capacity of gen1, gen2, gen3: the highest rate of a step-up series whose short open-loop trial
  (the real load generator on the client node) has p99 (corrected) < 100 ms, no errors and a valid
  schedule;
- CPU cost per request: the runtime processes' CPU seconds (utime+stime from /proc/<pid>/stat) over a
  fixed-rate trial, divided by the requests sent; gen3 relative to gen1.
Results go between the ``topology-bench`` markers of docs/benchmarks.md (only with --write).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe, write_section

from grayctl.deploy import minimal_plan, run_deploy, run_load
from grayctl.errors import GrayctlError
from grayctl.lab.definition import load_lab

TOPOLOGIES = ("gen1-monolith", "gen2-coarse", "gen3-disaggregated")
RATES = (10, 25, 50, 75, 100, 150, 200, 300, 400, 600)
COST_RATE = 30  # req/s: below every topology's capacity, so cost is not inflated by queueing
P99_BOUND_MS = 100.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def runtime_pids(lab_dir: Path) -> dict[str, int]:
    out = {}
    for pidfile in (lab_dir / "nodes").glob("*/state/services/*/pid"):
        out[pidfile.parent.name] = int(pidfile.read_text())
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pids: dict[str, int]) -> float:
    total = 0
    for pid in pids.values():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def trial(plan, rate: float, seconds: float, fetch: Path) -> dict:
    return run_load(plan, duration=seconds, fetch_dir=fetch).summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trial", type=float, default=5.0, help="seconds per capacity trial")
    ap.add_argument("--cost-seconds", type=float, default=10.0)
    ap.add_argument("--write", action="store_true", help="write the results into docs/benchmarks.md")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="topology-bench-"))
    os.environ["GRAYCTL_LAB_HOME"] = str(tmp / "labs")
    lab_file = tmp / "tbench.yml"
    lab_file.write_text(yaml.safe_dump({
        "name": "tbench", "nodes": {"count": 14},
        "networks": {"management": "10.218.0.0/24", "data": "10.218.64.0/24"},
        "limits": {"cpu": "100%", "memory": "256MiB"}}))
    lab = load_lab(str(lab_file))
    from grayctl.lab.lifecycle import run_lab_down, run_lab_up

    results: dict = {"machine": describe(), "capacity": {}, "cost": {}, "trial_s": args.trial}
    started = time.monotonic()
    deployed = None
    try:
        run_lab_up(lab)
        for topo in TOPOLOGIES:
            if deployed:
                run_deploy(minimal_plan(deployed, lab), state="absent")
            plan0 = minimal_plan(topo, lab)
            rec = run_deploy(plan0, state="present")
            deployed = topo
            print(f"{topo}: deployed in {rec.seconds:.1f}s", flush=True)
            if topo == "gen3-disaggregated":
                results["deploy_s"] = rec.seconds
                results["redeploy_noop_s"] = run_deploy(plan0, state="present").seconds
            pids = runtime_pids(lab.lab_dir)
            # CPU cost per request at a fixed, comfortable rate (after a short warm-up trial)
            plan = minimal_plan(topo, lab, workload={"rate": f"{COST_RATE}/s", "arrival": "constant"})
            trial(plan, COST_RATE, 2.0, tmp / "warm")
            c0 = cpu_s(pids)
            s = trial(plan, COST_RATE, args.cost_seconds, tmp / f"cost-{topo}")
            c1 = cpu_s(pids)
            served = s["sent"]
            results["cost"][topo] = {"cpu_ms_per_request": (c1 - c0) * 1000 / served, "requests": served,
                                     "processes": len(pids)}
            rss = {k: rss_mib(p) for k, p in pids.items()}
            results.setdefault("rss", {})[topo] = rss
            print(f"  cost {results['cost'][topo]['cpu_ms_per_request']:.2f} ms CPU/request, "
                  f"RSS {sum(rss.values()):.0f} MiB in {len(rss)} processes", flush=True)
            # capacity: step the rate up until a trial misses the bound
            best, steps = 0, []
            for rate in RATES:
                plan = minimal_plan(topo, lab, workload={"rate": f"{rate}/s", "arrival": "poisson"})
                for attempt in (1, 2):  # one retry: the machine is shared, one noisy trial is not a verdict
                    s = trial(plan, rate, args.trial, tmp / f"cap-{topo}-{rate}-{attempt}")
                    p99 = s["latency_ms"]["corrected"]["p99"]
                    errors = sum(s["errors"].values()) if isinstance(s["errors"], dict) else s["errors"]
                    ok = errors == 0 and p99 < P99_BOUND_MS
                    if ok:
                        break
                steps.append({"rate": rate, "p99_ms": p99, "errors": errors, "valid": s["valid"],
                              "achieved": s["achieved_rate"]})
                print(f"  {rate}/s: p99 {p99:.1f} ms errors {errors} valid {s['valid']}", flush=True)
                if not ok:
                    break
                best = rate
            results["capacity"][topo] = {"rate": best, "steps": steps}
    finally:
        if deployed:
            try:
                run_deploy(minimal_plan(deployed, lab), state="absent")
            except GrayctlError as err:
                print(f"undeploy failed: {err}", file=sys.stderr)
        run_lab_down(lab)
        shutil.rmtree(tmp, ignore_errors=True)
    results["elapsed_s"] = time.monotonic() - started
    print(json.dumps(results, indent=1, default=str)[:3000])
    if args.write:
        write_doc(results)
    return 0


def write_doc(r: dict) -> None:
    g1, g3 = r["cost"]["gen1-monolith"]["cpu_ms_per_request"], r["cost"]["gen3-disaggregated"]["cpu_ms_per_request"]
    rss3 = r["rss"]["gen3-disaggregated"]
    lines = [
        "## Topologies on the local lab (`bench/topology_bench.py`)",
        "",
        (f"Machine: {r['machine']}. Lab: 14 netns nodes, 100% of a core and 256 MiB each. "
        f"Run: `sudo python bench/topology_bench.py --write` ({r['elapsed_s'] / 60:.1f} min)."),
        "",
        (f"- **Deploy time of gen3-disaggregated** (12 replicas on 12 nodes, fresh, until every replica is "
        f"ready and answers /health): {r['deploy_s']:.1f} s; a no-op converge: {r['redeploy_noop_s']:.1f} s."),
        (f"- **Resident memory** (VmRSS after the cost and capacity trials): per service process "
        f"{min(rss3.values()):.0f}–{max(rss3.values()):.0f} MiB (goal ≤ 60 MiB); whole gen3 deployment "
        f"{sum(rss3.values()):.0f} MiB in {len(rss3)} processes; gen1 "
        f"{sum(r['rss']['gen1-monolith'].values()):.0f} MiB; gen2 {sum(r['rss']['gen2-coarse'].values()):.0f} MiB."),
        "",
        (f"| topology | processes | CPU per request ({COST_RATE}/s, ms) | capacity (p99 < {P99_BOUND_MS:g} ms, "
        "no errors) | steps (rate: p99 ms) |"),
        "|---|---|---|---|---|",
    ]
    for topo in TOPOLOGIES:
        c, cap = r["cost"][topo], r["capacity"][topo]
        steps = ", ".join(f"{s['rate']}: {s['p99_ms']:.0f}" + ("" if s["valid"] else " (gen. invalid)")
                          + (f" ({s['errors']} err)" if s["errors"] else "") for s in cap["steps"])
        top = "≥ " if cap["steps"] and cap["rate"] == cap["steps"][-1]["rate"] else ""
        lines.append(f"| {topo} | {c['processes']} | {c['cpu_ms_per_request']:.2f} | {top}{cap['rate']} req/s | {steps} |")
    lines += [
        "",
        (f"gen3 costs **{g3 / g1:.1f}×** gen1's CPU per request ({g3:.2f} vs {g1:.2f} ms): the modelled work "
        "is identical, the difference is the runtime's per-hop RPC overhead (HTTP client and server, "
        "not free) over 11 network calls per compose-post and 2 per read."),
        (f"Capacity trials are {r['trial_s']:g} s open-loop Poisson runs stepping up "
        f"{', '.join(map(str, RATES))} req/s and stopping at the first rate that misses twice (≥ means the "
        "series ended without a miss). \"gen. invalid\" marks trials where the load generator itself fell "
        "behind its schedule (send lateness p99 > 1 ms: the client node was starved of CPU by the 14 nodes and "
        "other sessions' jobs on 2 cores), so those latencies include some generator lateness and the "
        "capacities are lower bounds. Expect large run-to-run variation on a shared machine."),
    ]
    write_section("topology-bench", "\n".join(lines))
    print("wrote docs/benchmarks.md (topology-bench)")


if __name__ == "__main__":
    sys.exit(main())
