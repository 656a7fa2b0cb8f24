#!/usr/bin/env python3
"""Are the host and the runtime realisations of a fault the same fault? (issue 14, item 3)

On gen3 (every component a service of its own, so both realisations apply), one run per fault type
holds the same fault in ``--pairs`` pairs of windows, realised on the host (netem or the fallback
delayer on the target's nodes) and by the service runtime (``scope.realise: runtime``) in turn,
with a gap to recover between (H R H R: a drift over the run falls on both alike). The users' p50
and p99 shift over each realisation's windows against the run's baseline are compared: the goal is
agreement within 10 %. Windows are the host-measured ones of injection.json, where the fault acted
on every node (the first ``SETTLE_S`` of each left out); the users are every request of the mix.
Beside them, the callers' view of one call into the target (its client spans, per attempt).

The target is ``post-storage-service``: every request type calls it (reads through the timelines,
compose-post to store), so the users' percentiles see the fault without a filter.

By default the script brings up a private 14-node netns lab of its own (lab ``rbench14``,
10.232.0.0/24 + 10.232.64.0/24, lab home in a temporary directory) and takes it down at the end;
``--lab NAME_OR_PATH`` uses a lab that is already up. Needs root (run it under the shared lab lock).
Writes the ``realisation-bench`` section of docs/benchmarks.md (bench/machine.py).

  sudo .venv/bin/python bench/realisation_bench.py [--lab L] [--window 30s] [--gap 15s] [--pairs 2] [--rate 40/s] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from benchlab import grayctl, private_lab
from machine import describe, write_section

SECTION = "realisation-bench"
LAB = {"name": "rbench14", "nodes": {"count": 14},
       "networks": {"management": "10.232.0.0/24", "data": "10.232.64.0/24"}}
TARGET = "post-storage-service"
FAULTS = {"latency": ("network-latency", {"delay": "50ms"}), "loss": ("network-loss", {"percent": "2%"})}
SETTLE_S = 2.0  # the first seconds of a window are left out (the apply's own second, callers' pools)
GOAL = 0.10


def experiment(kind: str, window_s: float, gap_s: float, pairs: int, rate: str) -> dict:
    """Baseline, then host and runtime windows in turn (H R H R ...), ``gap_s`` of recovery between: a
    drift of the machine over the run falls on both realisations alike."""
    ftype, params = FAULTS[kind]
    w = f"{window_s:g}s"
    injections, at = [], 0.0
    for i in range(1, pairs + 1):
        for name in ("host", "runtime"):
            inj = {"id": f"{name}{i}", "type": ftype, "target_service": TARGET, "parameters": params,
                   "offset": f"{at:g}s", "duration": w}
            if name == "runtime":
                inj["scope"] = {"realise": "runtime"}
            injections.append(inj)
            at += window_s + gap_s
    return {"name": f"realisation-{kind}", "topology": "gen3-disaggregated",
            "workload": {"rate": rate, "arrival": "constant", "seed": 11},
            "schedule": {"warmup": "5s", "baseline": w, "fault": f"{at - gap_s:g}s", "recovery": "5s"},
            "chaos_injections": injections}


def percentiles(lat_s: np.ndarray) -> tuple[float, float]:
    if len(lat_s) == 0:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(lat_s, [50, 99])
    return float(p50), float(p99)


def windows(injection: list[dict]) -> dict[str, tuple[int, int, dict]]:
    """fault id -> (start, end, a record): the span in which the fault acted on every one of its nodes
    (the latest start, the earliest end of its per-node records)."""
    out: dict[str, tuple[int, int, dict]] = {}
    for r in injection:
        fid = r["fault_id"]
        s0, e0 = int(r["start_ns"]), int(r["end_ns"])
        if fid in out:
            s1, e1, first = out[fid]
            out[fid] = (max(s0, s1), min(e0, e1), first)
        else:
            out[fid] = (s0, e0, r)
    return out


def measure(kind: str, lab: str, tmp: Path, env: dict[str, str], window_s: float, gap_s: float, pairs: int,
            rate: str) -> dict:
    doc = experiment(kind, window_s, gap_s, pairs, rate)
    f = tmp / f"{doc['name']}.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    t = time.monotonic()
    proc = grayctl("run", str(f), "--lab", lab, "--out", str(tmp / "runs"), "--quiet", env=env)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"the {kind} run failed (exit {proc.returncode}); its records are in {tmp}")
    ds = Path(next(x for x in proc.stdout.splitlines() if "dataset:" in x).split("dataset:", 1)[1].strip())
    from grayctl.dataset.labels import user_latency_ns

    manifest = json.loads((ds / "manifest.json").read_text())
    acted = windows(json.loads((ds / "injection.json").read_text()))
    requests = pd.read_parquet(ds / "requests.parquet")
    intended = requests["intended_ns"].astype("int64").to_numpy()
    lat = user_latency_ns(requests) / 1e9
    failed = requests["error_kind"].notna().to_numpy()
    # the callers' view of each attempt into the target (client spans): what the fault adds to one call
    spans = pd.read_parquet(ds / "spans.parquet", columns=["kind", "component", "start_ns", "duration_ns", "error"])
    calls = spans[(spans["kind"] == "client") & (spans["component"] == TARGET)]
    c_start = calls["start_ns"].astype("int64").to_numpy()
    c_dur = calls["duration_ns"].to_numpy() / 1e9
    c_err = calls["error"].notna().to_numpy()
    start = manifest["times"]["start_ns"]
    phases = {p["phase"]: (p["start_s"], p["end_s"]) for p in manifest["times"]["phases"]}
    b0, b1 = phases["baseline"]
    base = (intended >= start + b0 * 1e9) & (intended < start + b1 * 1e9)
    cbase = (c_start >= start + b0 * 1e9) & (c_start < start + b1 * 1e9)
    out = {"kind": kind, "wall_s": wall, "baseline": percentiles(lat[base]), "n_baseline": int(base.sum()),
           "calls_baseline": percentiles(c_dur[cbase])}
    for name in ("host", "runtime"):
        sel = np.zeros(len(intended), bool)
        csel = np.zeros(len(c_start), bool)
        effects, realisation = [], None
        for i in range(1, pairs + 1):
            s0, e0, rec = acted[f"{name}{i}"]
            sel |= (intended >= s0 + SETTLE_S * 1e9) & (intended < e0)
            csel |= (c_start >= s0 + SETTLE_S * 1e9) & (c_start < e0)
            effects.append(bool((rec.get("effect") or {}).get("verified")))
            realisation = rec.get("realisation")
        p50, p99 = percentiles(lat[sel])
        out[name] = {"p50": p50, "p99": p99, "n": int(sel.sum()), "realisation": realisation,
                     "effect": all(effects), "errors": float(failed[sel].mean()) if sel.any() else 0.0,
                     "calls": percentiles(c_dur[csel]), "n_calls": int(csel.sum()),
                     "call_errors": int(c_err[csel].sum())}
    return out


def table(results: list[dict]) -> list[str]:
    lines = ["| fault | realisation | users' p50 shift | users' p99 shift | errors | requests | "
             "calls into the target: p50 / p99 shift | failed attempts | effect |",
             "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for r in results:
        b50, b99 = r["baseline"]
        c50, c99 = r["calls_baseline"]
        shifts = {}
        for name in ("host", "runtime"):
            w = r[name]
            shifts[name] = (w["p50"] - b50, w["p99"] - b99)
            lines.append(f"| {FAULTS[r['kind']][0]} {FAULTS[r['kind']][1]} | {w['realisation']} | "
                         f"{shifts[name][0] * 1e3:+.1f} ms | {shifts[name][1] * 1e3:+.1f} ms | {w['errors']:.1%} | "
                         f"{w['n']} | {(w['calls'][0] - c50) * 1e3:+.1f} / {(w['calls'][1] - c99) * 1e3:+.1f} ms "
                         f"({w['n_calls']}) | {w['call_errors']} | {'verified' if w['effect'] else 'NOT verified'} |")
        for i, q in enumerate(("p50", "p99")):
            h, rt = shifts["host"][i], shifts["runtime"][i]
            rel = abs(rt - h) / abs(h) if abs(h) > 1e-4 else float("inf")
            verdicts.append(f"{r['kind']} {q}: host {h * 1e3:+.1f} ms, runtime {rt * 1e3:+.1f} ms, differ by "
                            f"{rel:.0%} ({'within' if rel <= GOAL else 'NOT within'} {GOAL:.0%})")
    return lines + ["", *[f"- {v}" for v in verdicts]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default=None, help="a lab that is up (default: a private 14-node lab, up and down)")
    ap.add_argument("--window", default="30s", help="each fault window and the baseline")
    ap.add_argument("--gap", default="15s", help="recovery between two windows")
    ap.add_argument("--pairs", type=int, default=2, help="host and runtime windows, in turn, per fault kind")
    ap.add_argument("--rate", default="40/s")
    ap.add_argument("--only", choices=sorted(FAULTS), action="append", help="one fault kind (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = ap.parse_args()
    from grayctl.units import parse_duration

    window_s = parse_duration(args.window).seconds
    gap_s = parse_duration(args.gap).seconds
    tmp = Path(tempfile.mkdtemp(prefix="grayctl-realisation-bench-"))
    env = dict(os.environ)
    machine = describe(load_average_is="at the start; other jobs share the machine")
    results = []
    with private_lab(tmp, LAB, env) if args.lab is None else nullcontext(args.lab) as lab:
        for kind in args.only or list(FAULTS):
            results.append(measure(kind, lab, tmp, env, window_s, gap_s, args.pairs, args.rate))
    text = "\n".join([
        "## Host vs runtime realisation of the same fault (gen3)", "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
        f"`{' '.join(['bench/realisation_bench.py', *sys.argv[1:]])}` on: {machine}.", "",
        f"One run per fault on gen3-disaggregated, {args.rate} constant arrivals, the default mix; the fault on "
        f"`{TARGET}` (every request type calls it; on each of its replicas) in {args.pairs} pairs of {args.window} "
        f"windows, realised on the host and by the service runtime (`scope.realise: runtime`) in turn, "
        f"{args.gap} of recovery between. Shifts are the users' percentile over a realisation's windows minus the "
        f"run's baseline ({args.window}); the first {SETTLE_S:g} s of each window are left out. The callers' "
        f"view of one call into the target (client spans, per attempt) is beside them. Goal: the two "
        f"realisations' shifts agree within {GOAL:.0%}.", "",
        *table(results), "",
        "On the host a lost packet costs TCP a repair (the tail-loss probe, fast retransmit or the retransmission "
        "timer); the runtime loses the answer's packets with the same model and makes the call wait the repair "
        "Linux would (docs/runtime.md, *Runtime-realised faults*)."])
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
