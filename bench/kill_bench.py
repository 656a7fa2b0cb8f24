#!/usr/bin/env python3
"""Nothing left behind, timed (issue 19): per fault class, how long a node takes to be clean by itself.

  kill   per fault class (tests/lab/test_kill.py's MATRIX: delay, loss, partition, bandwidth, cpu,
         memory, disk, pause, stutter), one ``grayctl run`` whose whole process group is SIGKILLed
         once the fault is applied; then the node is polled (every 0.25 s, from the host) until it is
         back at its pre-run state (no qdisc, nft rule, delayer, stress or stopped process, limits as
         made): the time from the kill to that clean node, and from the expiry the node recorded to it
  cut    one run whose node's management link is set down (the host end of its veth) once the
         fault is applied (tests/lab/test_cut.py): the expiry to the clean node, and the time from
         the link coming back (once the run says it waits for the node) to the run's end (exit 4)

The lab is a private 5-node one (10.230.0.0/24 + 10.230.64.0/24, its lab home in a temporary
directory), reset between cases and taken down at the end. Needs root; run it under the lab lock.
Writes the ``kill-bench`` section of docs/benchmarks.md (bench/machine.py).

  sudo flock /tmp/grayctl-lab.lock .venv/bin/python bench/kill_bench.py [--cases delay,cpu,...] [--no-cut]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "lab"))  # the lab tests' readers of a node (midfault.py)

from machine import describe, write_section  # noqa: E402
from midfault import Drain, fault_state, node_records, start_run, until_applied  # noqa: E402
from runlab import RunLab  # noqa: E402
from test_cut import DOC as CUT_DOC  # noqa: E402
from test_cut import link_down  # noqa: E402
from test_kill import KILLED, MATRIX  # noqa: E402

SECTION = "kill-bench"
TOPOLOGY = "three-tier"
GUARD_S = 900.0  # hang guard per wait, for a loaded machine


def _wait_clean(lab: RunLab, node: str, before: dict, until: float) -> float | None:
    while time.time() < until:
        if fault_state(lab, node) == before:
            return time.time()
        time.sleep(0.25)
    return None


def _record(lab: RunLab, fid: str) -> dict:
    (rec,) = [r for r in node_records(lab).values() if r["spec"].get("name") == fid]
    return rec


def kill_case(lab: RunLab, case: str) -> dict:
    cls, entry = MATRIX[case]
    doc = {**KILLED, "name": f"bench-kill-{case}", "schedule": {**KILLED["schedule"], "fault": "15s"},
           "chaos_injections": [{"id": case, **entry}]}
    proc = start_run(lab, lab.experiment(doc, f"bench-kill-{case}"), lab.tmp / f"runs-{case}", f"{case}.stderr")
    try:
        until_applied(proc, {case})
        os.killpg(proc.pid, signal.SIGKILL)
        killed = time.time()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rec = _record(lab, case)
    node = rec["node"]
    expire_at = float(rec["expire_at"])
    clean = _wait_clean(lab, node, BEFORE[node], expire_at + GUARD_S)
    return {"case": case, "class": cls, "node": node, "expiry_after_kill": expire_at - killed,
            "clean_after_kill": None if clean is None else clean - killed,
            "clean_after_expiry": None if clean is None else clean - expire_at}


def cut_case(lab: RunLab) -> dict:
    fid = CUT_DOC["chaos_injections"][0]["id"]
    proc = start_run(lab, lab.experiment(CUT_DOC, "bench-cut"), lab.tmp / "runs-cut", "cut.stderr")
    try:
        until_applied(proc, {fid})
        events = Drain(proc)
        rec = _record(lab, fid)
        node, expire_at = rec["node"], float(rec["expire_at"])
        with link_down(lab, node):
            cut = time.time()
            clean = _wait_clean(lab, node, BEFORE[node], expire_at + GUARD_S)
            guard = time.monotonic() + GUARD_S
            while proc.poll() is None and time.monotonic() < guard and not any(
                    e["kind"] == "warning" and "unreachable" in e["data"]["message"] for e in events.events):
                time.sleep(0.25)
        restored = time.time()
        rc = proc.wait(timeout=GUARD_S)
        ended = time.time()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=GUARD_S)
    events.join()
    return {"case": "cut (mgmt link down)", "node": node, "exit": rc, "expiry_after_cut": expire_at - cut,
            "clean_after_expiry": None if clean is None else clean - expire_at,
            "end_after_restore": ended - restored}


BEFORE: dict[str, dict] = {}


def fmt(x: float | None) -> str:
    return "not clean" if x is None else f"{x:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(MATRIX), help="fault classes to kill (default: all)")
    ap.add_argument("--no-cut", action="store_true", help="skip the cut case")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(MATRIX))
    if unknown:
        print(f"error: --cases: unknown {', '.join(unknown)} (known: {', '.join(MATRIX)})", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("error: needs root (the netns lab)", file=sys.stderr)
        return 3
    machine = describe(load_average_is="at the start; other jobs share the machine")
    rows, cut = [], None
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill-bench-") as tmp:
        lab = RunLab(Path(tmp), prefix="kb", count=5, network="10.230")
        try:
            lab.grayctl("lab", "up", "--lab", str(lab.file))
            for n in lab.defn.node_names:
                BEFORE[n] = fault_state(lab, n)
            for case in cases:
                rows.append(kill_case(lab, case))
                print(rows[-1], flush=True)
                lab.grayctl("lab", "reset", "--lab", str(lab.file))  # the killed run's topology
            if not args.no_cut:
                cut = cut_case(lab)
                print(cut, flush=True)
        finally:
            lab.down(TOPOLOGY)
    lines = ["## Kill and cut: time to a clean node (bench/kill_bench.py)", "",
             f"Machine: {machine}.", "",
             f"`sudo flock /tmp/grayctl-lab.lock .venv/bin/python bench/kill_bench.py` ({(time.monotonic() - t_all) / 60:.0f} min"
             " in all). One `grayctl run` per fault class (fault window 15 s), its whole process group SIGKILLed once the "
             "fault is applied; the node polled every 0.25 s from the host until it is back at its pre-run state "
             "(qdiscs, nft, cgroup limits, fault and stopped processes). The expiry is the one the node recorded "
             "(the apply + the window + 30 s, at most the schedule's end + 30 s). Figures in seconds, one run each.", "",
             "| fault class | case | node | kill → expiry due | kill → clean | expiry → clean |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['class']} | {r['case']} | {r['node']} | {r['expiry_after_kill']:.1f} | {fmt(r['clean_after_kill'])} "
              f"| {fmt(r['clean_after_expiry'])} |" for r in rows]
    if cut:
        lines += ["", "Cut: the node's management link down (host end of its veth) once a netem delay (window 20 s) is "
                  "applied, up again once the run says it waits for the node (tests/lab/test_cut.py).", "",
                  "| case | node | cut → expiry due | expiry → clean | link back → run ended | exit |", "|---|---|---|---|---|---|",
                  f"| {cut['case']} | {cut['node']} | {cut['expiry_after_cut']:.1f} | {fmt(cut['clean_after_expiry'])} "
                  f"| {cut['end_after_restore']:.1f} | {cut['exit']} |"]
    write_section(SECTION, "\n".join(lines) + "\n")
    return 0 if all(r["clean_after_kill"] is not None for r in rows) and (cut is None or cut["exit"] == 4) else 1


if __name__ == "__main__":
    raise SystemExit(main())
