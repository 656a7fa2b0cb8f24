"""The run's steps that are not the timeline: each one playbook (or a lab reset), state into ``Run``.

Map:
  reimage(r)          every node back to the golden baseline, verified: the previous run's verified
                      end reset when it is moments old (FRESH_S); on netns and qemu a verify as
                      prepare's first play, and a reset only on drift; else a reset or reimage
                      and its verify
  prepare(r)          one playbook: (the baseline verify,) replicas + exporters, Prometheus, clock
                      offsets, then the load generator, whose own anchor is t0
  collect(r)          one playbook: wait for the load generator, fetch its records, clock offsets, node files
  collect_nodes(r)    what there is on the nodes (cleanup: the load generator asked to stop first)
  collect_metrics(r)  Prometheus over the run window
  evaluate_checks(r)  the experiment's checks against that Prometheus, per phase, before the teardown
                      removes it (their queries were parsed by it in prepare, before any fault)
  teardown(r), verify_clean(r)    the ``undeploy`` path: teardown.yml, then a baseline verify
  reset_teardown(r)   the ``reset`` path: the lab reset is the undeploy, its verify the verify-clean
  revert_all(r), lab_reset(r)     the cleanup's own steps
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from grayctl.checks import ensure_checks_parse
from grayctl.checks import evaluate_checks as evaluate_on_prometheus
from grayctl.clock import load_offsets
from grayctl.errors import DriftError
from grayctl.faults.spec import EXPIRY_MARGIN_S
from grayctl.lab.baseline import judge
from grayctl.lab.lifecycle import ensure_root, run_lab_reset
from grayctl.lab.provider import provider_for
from grayctl.metrics import collect_run_metrics
from grayctl.plan.services import WORKLOAD_METRICS_PORT
from grayctl.run.ansible import raise_for
from grayctl.run.context import Run

__all__ = ["FRESH_S", "collect", "collect_metrics", "collect_nodes", "evaluate_checks", "lab_reset", "prepare",
           "reimage", "reset_teardown", "revert_all", "teardown", "verify_clean"]

REACH_GRACE_S = 60.0  # the cleanup waits for an unreachable node until its faults' expiry + this
REACH_RETRY_S = 3.0  # between the cleanup's attempts to reach it
FRESH_S = 120.0  # a repetition reuses the previous one's verified end reset if it is at most this old
WORKLOAD_SETTLE_S = 1.0  # roles/workload starts the generator, then checks it is still up this long
WORKLOAD_START_TASK = "Start the load generator as a detached process"  # roles/workload/tasks/apply.yml
VERIFY_PLAY = "Verify every lab node against its golden baseline"  # playbooks/prepare.yml, the gate


# -- reimage -------------------------------------------------------------------------------------

def reusable_reset(r: Run) -> float | None:
    """Age (s) of the previous run's end reset if this run may start from it: the same reset a
    reimage would do (netns/qemu: recreate; not a physical lab's undeploy), verified clean, by
    this process, moments ago, with nothing in between. None: reset now."""
    prev = r.fresh_from
    if prev is None or prev.teardown_path != "reset" or prev.clean_at is None or r.accept_drift:
        return None
    if not (prev.verify_clean or {}).get("ok") or not provider_for(r.lab).capabilities.reset_reusable:
        return None
    age = time.time() - prev.clean_at
    return age if 0 <= age <= FRESH_S else None


def reimage(r: Run) -> None:
    """Reset (netns, qemu) or reimage through each node's backend (a physical lab: reimage.yml),
    then verify: DriftError (exit 5) with the diff, or with --accept-drift the drift recorded.
    A repetition whose predecessor's end reset verified clean moments ago starts from that reset
    (the same reset and verify, back to back, would add nothing but time)."""
    ensure_root("run")
    age = reusable_reset(r)
    if age is not None:
        r.rec.reimage = "reused"
        r.emit("warning", message=f"starting from the previous run's reset, verified clean {age:.1f}s ago "
               f"({r.fresh_from.run_id if r.fresh_from else '?'})")
        _keep_baseline_before(r)
        return
    if verify_first(r):
        r.verify_in_prepare = True  # prepare.yml's first play; a drifted lab is reset there (prepare)
        return
    reset_lab(r)


def reset_lab(r: Run) -> None:
    """The provider's reset (or reimage) and its verify; --accept-drift records what still differs."""
    r.started["reimage"] = True  # a reset cut short leaves a half-reset lab: cleanup resets again
    reset = run_lab_reset(r.lab, verbose=r.verbose, accept_drift=r.accept_drift)
    r.drift_accepted = reset.drift
    if reset.drift:
        r.emit("warning", message=f"--accept-drift: {', '.join(sorted(reset.drift))} differ from their golden "
               "baseline; running anyway, the deviation goes into manifest.json (baseline.drift_accepted)")
    _keep_baseline_before(r)


def verify_first(r: Run) -> bool:
    """Verify first, reset only on drift, where the reset restores nothing the verify does not see
    (netns, qemu: ``reset_reusable``): a lab that an end reset left verified clean is at its golden
    baseline by the fingerprint's own test, and a second reset would add ~5 s and nothing else.
    The verify is prepare.yml's first play (one ansible-playbook start-up less). False: reset now
    (--accept-drift, or a physical lab, which reimages)."""
    return not r.accept_drift and provider_for(r.lab).capabilities.reset_reusable


def _keep_baseline_before(r: Run) -> None:
    """The verify's fingerprints (lab_dir/baseline/last) into the run's records and manifest."""
    before = r.raw / "baseline-before"
    before.mkdir(parents=True, exist_ok=True)
    nodes = set(r.lab.node_names)
    for p in sorted((r.lab.lab_dir / "baseline" / "last").glob("*.json")):
        if p.stem in nodes:  # a lab directory may hold records of nodes no longer in the lab
            shutil.copy2(p, before / p.name)
            r.fingerprints[p.stem] = json.loads(p.read_text())


# -- prepare ------------------------------------------------------------------------------------

def prepare(r: Run) -> None:
    """One playbook: replicas + exporters, Prometheus, clock offsets, then the load generator (t0).
    Then the run's Prometheus parses every check's query: a refused one stops the run here (exit 2),
    before the timeline applies any fault."""
    s = r.steps["prepare"]
    for what in ("deploy", "monitor", "workload"):
        r.started[what] = True  # a prepare cut short may have started any of them
    clock_file = r.raw / "clock-start.json"
    extravars = {**s.extravars, "monitor_run_id": r.rec.run_id, "workload_state": "present",
                 "workload_run_id": r.rec.run_id, "clock_file": str(clock_file)}
    if r.keep:  # kept up for inspection: no lease ends it (grayctl lab reset or undeploy does)
        extravars["grayctl_lease_s"] = 0
    r.journal.task_done_at = {}
    if r.verify_in_prepare:
        res = r.journal.play("prepare", s.playbook, {**extravars, "prepare_verify": True}, check=False)
        gate = [f for f in res.failures if f.play == VERIFY_PLAY]
        if gate:  # stopped at the gate, before anything started: reset, then prepare again
            try:
                judge(r.lab, replace(res, failures=gate), False, "before the run")
            except DriftError as err:
                head = err.message.splitlines()[0].split(" (check:")[0]
                r.emit("warning", message=f"{head} ({', '.join(sorted({f.host for f in gate}))}): resetting the lab")
            reset_lab(r)
            r.journal.task_done_at = {}
            r.journal.play("prepare", s.playbook, extravars)
        else:
            raise_for(res)
            r.rec.reimage = "verified"
            _keep_baseline_before(r)
    else:
        r.journal.play("prepare", s.playbook, extravars)
    ensure_checks_parse(r.monitor_url, r.exp)
    _read_clock(r, "start", clock_file)
    # t0 drives the timeline: the generator's own anchor, read from its metrics endpoint (in
    # controller time), is the t0 its summary reports at the end. If it cannot be read, an
    # estimate: when the start task reported (seconds off under load).
    client = next(n for n in r.lab.nodes if n.name == r.client)
    port = s.extravars.get("workload_metrics_port", WORKLOAD_METRICS_PORT)
    anchor = _read_start_time(f"http://{client.mgmt_ip}:{port}/metrics")
    if anchor is not None:  # as is, like the summary's started_at that the dataset's clock uses
        r.t0_est = anchor
        r.t0_source = "load generator"
    else:
        r.t0_est = r.journal.task_done_at.get(WORKLOAD_START_TASK, time.time()) - WORKLOAD_SETTLE_S
        r.t0_source = "estimate"
    r.emit("monitor_ready", url=r.monitor_url, workload_url=f"http://{client.mgmt_ip}:{port}")


def _read_clock(r: Run, which: str, path: Path) -> None:
    try:
        offsets = load_offsets(path)
    except (OSError, ValueError, KeyError) as err:
        r.emit("warning", message=f"no clock offsets at the {which} ({err}); node times are used as they are")
        return
    r.clock[which] = {n: {"offset_ns": o.offset_ns, "rtt_ns": o.rtt_ns, "at": o.at} for n, o in offsets.items()}


def _read_start_time(url: str, within_s: float = 10.0) -> float | None:
    """``grayctl_workload_start_time_seconds`` from the load generator's metrics (its t=0, on its
    clock); None when it has not anchored within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 - the lab's own address
                for line in resp.read().decode(errors="replace").splitlines():
                    if line.startswith("grayctl_workload_start_time_seconds "):
                        return float(line.split()[1])
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return None


# -- after the timeline ---------------------------------------------------------------------------

def collect(r: Run) -> None:
    """One playbook: wait for the load generator and fetch its records, clock offsets, node files."""
    s = r.steps["collect"]
    dest = r.raw / "workload"
    clock_file = r.raw / "clock-end.json"
    r.journal.play("collect", s.playbook, {**s.extravars, "workload_state": "wait", "workload_run_id": r.rec.run_id,
                                           "workload_fetch_dir": str(dest), "clock_file": str(clock_file),
                                           "collect_dest": str(r.raw / "nodes")})
    _read_workload(r, dest)
    _read_clock(r, "end", clock_file)


def _read_workload(r: Run, dest: Path) -> None:
    summaries = sorted(dest.glob("**/workload-summary.json"))
    if summaries:
        r.summary = json.loads(summaries[0].read_text())
    records = sorted(dest.glob("**/requests.parquet"))
    r.requests_path = records[0] if records else None


def collect_nodes(r: Run, *, stop_workload: bool = False) -> None:
    dest = r.raw / "nodes"
    r.journal.play("collect", "collect.yml", {"collect_dest": str(dest), "collect_stop_workload": stop_workload,
                                              "collect_workload": stop_workload})
    if stop_workload:
        _read_workload(r, dest)


def collect_metrics(r: Run) -> None:
    start = r.start_s()
    end = r.run_end_s or time.time()
    r.metrics_df = collect_run_metrics(r.monitor_url, start, end, r.exp.metrics.interval.seconds,
                                       dict(r.exp.metrics.extra))


def evaluate_checks(r: Run) -> None:
    """Each check over the run window against the live Prometheus; a check with no data or not
    evaluated is a warning on the console (and fails the run when it is ``fail_run``: flow)."""
    r.rec.checks = evaluate_on_prometheus(r.monitor_url, r.exp.checks, t0=r.start_s(),
                                          end=r.run_end_s or time.time(), phases=r.plan.phases,
                                          step=r.exp.metrics.interval.seconds)
    for c in r.rec.checks:
        if c["verdict"] in ("no data", "not evaluated"):
            r.emit("warning", message=f"check {c['name']} ({c['phase']}): {c['verdict'].upper()}"
                   + (" (fail_run: the run fails)" if c["fail_run"] else "") + f": {c['why']}")


# -- teardown ---------------------------------------------------------------------------------------

def teardown(r: Run) -> None:
    """The ``undeploy`` path: load generator, replicas, exporters, Prometheus in one playbook."""
    r.journal.play("teardown", "teardown.yml", {"monitor_run_id": r.rec.run_id})


def revert_all(r: Run, *, stop: Callable[[], bool] = lambda: False) -> None:
    """fault_revert_all.yml on every node. A node it cannot reach (its management path lost: link
    down, SSH blocked) is tried again every REACH_RETRY_S until it answers, until its faults' on-host
    expiry (the schedule's end + the margin at most, however late the apply) has passed by
    REACH_GRACE_S, or until ``stop()`` (a further signal). Meanwhile nothing else of the cleanup runs:
    a node is reset or declared lost only after its own expiry has ended its faults. A node still
    unreachable then raises NodeUnreachable; every node that was unreachable is in ``r.lost_nodes``."""
    extravars = {"fault_record_dir": str(r.raw / "faults")}
    first = r.journal.play("revert-all", "fault_revert_all.yml", extravars, check=False)
    failures = [f for f in first.failures if not f.unreachable]  # reached, and failed: no waiting helps
    unreachable = [f for f in first.failures if f.unreachable]
    lost = sorted({f.host for f in unreachable})
    r.lost_nodes.update(lost)
    if lost and r.started["inject"] and r.t0_est is not None:
        until = r.t0_est + r.plan.duration_s + EXPIRY_MARGIN_S + REACH_GRACE_S
        r.emit("warning", message=f"{', '.join(lost)} unreachable (management path lost): their faults end at "
               f"their on-host expiry; waiting up to {max(0.0, until - time.time()):.0f} s for "
               f"{'it' if len(lost) == 1 else 'them'} to answer before the rest of the cleanup")
        while unreachable and time.time() < until and not stop():
            time.sleep(REACH_RETRY_S)
            res = r.journal.play("revert-all", "fault_revert_all.yml", extravars,
                                 limit=":".join(sorted({f.host for f in unreachable})), check=False)
            unreachable = [f for f in res.failures if f.unreachable]
            if not unreachable:
                failures += res.failures
        if not unreachable:
            r.emit("warning", message=f"{', '.join(lost)} answering again: every fault reverted or found ended")
    if failures or unreachable:
        raise_for(replace(first, status="failed", failures=failures + unreachable))
    if not lost:
        raise_for(first)  # a playbook that failed with no host failure named (rc, status)


def verify_clean(r: Run) -> None:
    res = r.journal.play("verify-clean", "baseline.yml", {"baseline_mode": "verify"}, check=False)
    r.rec.verify_clean = {"ok": res.ok, "problems": [f.render() for f in res.failures]}
    if not res.ok:
        r.emit("warning", message="the lab did not verify clean after the run: "
               + "; ".join(r.rec.verify_clean["problems"][:4]))


def lab_reset(r: Run) -> None:
    run_lab_reset(r.lab, verbose=r.verbose)


def reset_teardown(r: Run) -> None:
    """The ``reset`` path: the reset is the undeploy; its baseline verify is the verify-clean."""
    try:
        lab_reset(r)
    except DriftError as err:
        r.rec.verify_clean = {"ok": False, "problems": err.message.splitlines()[1:] or [err.message],
                              "via": "lab reset"}
        r.emit("warning", message="the lab did not verify clean after the reset: " + err.message)
        return
    r.rec.verify_clean = {"ok": True, "problems": [], "via": "lab reset"}
    r.rec.clean_at = time.time()
