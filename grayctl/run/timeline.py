"""The timeline: the executor that schedules the run's fault steps in time, from t0.

Map:
  run_timeline(r)        inject at t0+start_s, revert at the host-measured apply + the planned length
                         (plan.revert_aim_s), each a fault.yml run started early by a learnt lead;
                         each apply's on-host expiry bounded by the schedule's end + the margin;
                         phase events as the schedule passes; returns at the end of the schedule
  emit_fault_timing(r)   the faults' edges (first apply, last revert) from the exact t0
  NS, POLL_S, FIRST_LEAD_S, MAX_LEAD_S   its clock and how early a fault step may start

Labels use the times the nodes record (fault records in raw/faults), never the planned ones.
"""

from __future__ import annotations

import os
import time
from typing import Any

from grayctl.faults.spec import EXPIRY_MARGIN_S
from grayctl.plan import fault_edges, revert_aim_s
from grayctl.run.context import Run

__all__ = ["emit_fault_timing", "run_timeline"]

NS = 1_000_000_000
MAX_LEAD_S = 15.0  # never start a fault step more than this early (faultctl waits at most 60 s)
FIRST_LEAD_S = 6.0  # the first fault step starts this early; later ones learn from the arrivals
POLL_S = 0.2  # timeline granularity: how often the wait loop looks at the clock


def run_timeline(r: Run) -> None:
    assert r.t0_est is not None
    t0 = r.t0_est
    total = r.plan.duration_s
    phases = list(r.plan.phases)
    r.emit("timeline_start", t0=t0, t0_source=r.t0_source, schedule_s=total, load1=round(os.getloadavg()[0], 2),
           phases=[{"phase": p, "start_s": a, "end_s": b} for p, a, b in phases])
    pending = [s for s in r.plan.steps if s.phase == "run" and s.name.split(":")[0] in ("inject", "revert")]
    windows = r.fault_windows()
    aims: dict[str, float] = {}  # revert step -> when it is aimed, once its fault's apply is measured
    shown: set[str] = set()

    def wait_until(at_s: float) -> None:
        while True:
            now_s = time.time() - t0
            for p, a, b in phases:
                if a <= now_s < b and p not in shown:
                    shown.add(p)
                    r.phase_hint = p
                    r.emit("phase", phase=p, start_s=a, end_s=b)
            left = at_s - now_s
            if left <= 0:
                return
            time.sleep(min(POLL_S, left))

    def target(s: Any) -> tuple[float, int]:
        return aims.get(s.name, float(s.at_s or 0.0)), 0 if s.name.startswith("revert") else 1

    record_dir = r.raw / "faults"
    # How early a fault step's play starts. The nodes wait for the aimed time themselves
    # (faultctl --not-before), so starting early costs nothing and starting late is the lag:
    # the lead is learnt from how long the last play took to reach faultctl, with a margin.
    lead = FIRST_LEAD_S
    while pending:
        # the next step by its aim (a revert's aim moves with its fault's measured apply)
        s = min(pending, key=target)
        pending.remove(s)
        at_s = target(s)[0]
        wait_until(max(0.0, at_s - lead))
        began = time.time() - t0
        fid = s.name.split(":", 1)[1]
        state = "applied" if s.name.startswith("inject") else "reverted"
        if state == "applied":
            r.started["inject"] = True
        extravars = {**s.extravars, "fault_record_dir": str(record_dir),
                     "fault_not_before_ns": _node_times_ns(r, t0 + at_s, s.hosts.split(":"))}
        if state == "applied":  # however late the apply, its on-host expiry is the schedule's end + the margin at most
            extravars["fault_expire_by_ns"] = _node_times_ns(r, t0 + total + EXPIRY_MARGIN_S, s.hosts.split(":"))
        r.journal.step(s.name, "run", lambda s=s, ev=extravars: r.journal.play(s.name, s.playbook, ev, limit=s.hosts),
                       why=s.why)
        arrived = _host_time_s(r, fid, "called_ns" if state == "applied" else "revert_called_ns", t0, last=True)
        if arrived is not None:
            lead = min(max(FIRST_LEAD_S / 2, 1.5 * (arrived - began) + 1.0), MAX_LEAD_S)
        host_s = _host_time_s(r, fid, "start_ns" if state == "applied" else "end_ns", t0)
        if host_s is not None:  # the labels use the host-measured times, whatever happened here
            if state == "applied":
                aims[f"revert:{fid}"] = revert_aim_s(host_s, windows[fid], total)
        r.emit("fault", step=s.name, id=fid, state=state, planned_s=float(s.at_s or 0.0), aim_s=at_s,
               at_s=host_s if host_s is not None else time.time() - t0)
    wait_until(total)
    r.emit("timeline_end", seconds=round(time.time() - t0, 2))


def _node_times_ns(r: Run, at: float, nodes: list[str]) -> dict[str, int]:
    """Controller epoch second ``at`` on each node's clock (the start offsets, where they are
    larger than their own error bound: the same rule as the dataset's time mapping)."""
    out = {}
    for n in nodes:
        o = (r.clock.get("start") or {}).get(n) or {}
        off = int(o.get("offset_ns") or 0)
        out[n] = round(at * NS) + (off if abs(off) > int(o.get("rtt_ns") or 0) // 2 + 1 else 0)
    return out


def _host_time_s(r: Run, fault_id: str, key: str, t0: float, *, last: bool = False) -> float | None:
    """``key`` of the fault's node records, in s since ``t0``: the first node's, or the last's."""
    values = [int(rec[key]) for rec in r.records_of(fault_id) if rec.get(key) is not None]
    return ((max(values) if last else min(values)) / NS - t0) if values else None


def emit_fault_timing(r: Run) -> None:
    """The faults' edges (first apply, last revert) from the exact t0; the live ``fault`` events
    used an estimate."""
    t0 = r.start_s()
    faults = []
    for fid, window in r.fault_windows().items():
        recs = r.records_of(fid)
        starts = [int(rec["start_ns"]) / NS - t0 for rec in recs if rec.get("start_ns")]
        ends = [int(rec["end_ns"]) / NS - t0 for rec in recs if rec.get("end_ns")]
        faults.append({"id": fid, **fault_edges(window, min(starts, default=None), max(ends, default=None),
                                                r.plan.duration_s)})
    r.emit("fault_timing", faults=faults)
