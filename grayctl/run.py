"""``grayctl run``: one experiment file in, one dataset out — every step a playbook, every stop clean.

Map:
  run_experiment(path, *, lab_ref, out_dir, overrides, repetitions, keep, on_event) -> [RunRecord]
                          each repetition a separate run from the golden baseline
  run_once(experiment, lab, *, out_dir, ...) -> RunRecord    one run (used by sweeps too)
  new_run_id(experiment) -> "20250101T120000Z-<name>-<hash8>"
  RunRecord               what happened: status, exit code, dataset and report paths, step times

Layout of one run (``out_dir`` = ``runs/`` by default):
  runs/<run-id>/          the dataset (docs/dataset-format.md): only what its manifest lists, so
                          ``grayctl dataset verify|ls|export`` work on it as on any dataset
  runs/<run-id>.run/      the run's own records: events.jsonl, logs/<nn>-<step>/<playbook>.log
                          (Ansible's output of each step), raw/ (files fetched from the nodes,
                          clock offsets, fault records, baseline fingerprints), run.json
  (The dataset format refuses unlisted files in a dataset directory, so logs live next to it.)

The flow is the plan's step list (``grayctl plan``): reimage + baseline verify (drift: exit 5)
-> prepare (one playbook: replicas and exporters, Prometheus, clock offsets, and last the load
generator, detached, whose start is t0) -> the timeline (inject at t0+start_s, revert at t0+end_s,
each a fault.yml run; labels use the host-measured times the nodes record, not these planned ones)
-> collect (one playbook: wait for the load generator and fetch its records, clock offsets, node
files) -> Prometheus over the run window -> assemble dataset + report -> teardown. The teardown
takes one of two paths (``plan.teardown_path``, recorded in the manifest under ``teardown.path``):
``reset`` on the netns provider (the reset kills every process of every node and empties its state,
so it is the undeploy, and it verifies the baseline), ``undeploy`` elsewhere (teardown.yml, then a
baseline verify-clean).

Stopping: SIGINT/SIGTERM anywhere, or a failed step, runs the cleanup: fault_revert_all.yml
(always: a cancelled ansible-runner run SIGKILLs ansible, so an inject may have applied its fault
without reporting it), collect what there is (the load generator is asked to stop and write its
records), then on the ``undeploy`` path teardown.yml, and the lab reset — each step best-effort, logged as a
``cleanup`` event, and run in a worker thread while further signals are only acknowledged, so a
second Ctrl-C cannot leave a fault behind. What was collected is assembled; an interrupted run's
manifest says ``status: incomplete`` (exit 130), a failed one ``failed`` (exit 4, or the error's).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grayctl.errors import ChecksFailed, GrayctlError, Interrupted, LabError
from grayctl.events import Emitter, EventHandler, RunLog
from grayctl.overrides import Override, load_experiment_with

__all__ = ["ChecksFailed", "RunRecord", "new_run_id", "run_experiment", "run_once"]

NS = 1_000_000_000
MONITOR_PORT = 9090
MAX_LEAD_S = 15.0  # never start a fault step more than this early (faultctl waits at most 60 s)
FIRST_LEAD_S = 6.0  # the first fault step starts this early; later ones learn from the arrivals
FRESH_S = 120.0  # a repetition reuses the previous one's verified end reset if it is at most this old
POLL_S = 0.2  # timeline granularity: how often the wait loop looks at the clock
WORKLOAD_SETTLE_S = 1.0  # roles/workload starts the generator, then checks it is still up this long
WORKLOAD_START_TASK = "Start the load generator as a detached process"  # roles/workload/tasks/apply.yml


@dataclass
class RunRecord:
    run_id: str
    run_dir: Path  # the dataset
    records_dir: Path  # events, logs, raw files
    status: str = "running"  # complete | failed | incomplete
    exit_code: int = 0
    error: str | None = None
    hint: str | None = None
    dataset: Path | None = None
    report: Path | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # {name, phase, seconds, ok}
    cleanup: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    verify_clean: dict[str, Any] | None = None
    teardown_path: str | None = None  # reset | undeploy (None: --keep, or no teardown reached)
    clean_at: float | None = None  # epoch s the teardown's reset verified the lab clean (reset path only)
    reimage: str = "reset"  # reset | reused (the previous repetition's verified reset, moments before)
    seconds: float = 0.0
    schedule_s: float = 0.0
    repetition: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("run_dir", "records_dir", "dataset", "report"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d


# -- ids and signals ---------------------------------------------------------------------------

def new_run_id(experiment: Any, *, now: datetime | None = None, salt: str = "") -> str:
    """UTC time + experiment name + a short hash of the resolved experiment (and ``salt``)."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256((json.dumps(experiment.to_dict(), sort_keys=True, default=str) + salt).encode())
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{experiment.name}-{digest.hexdigest()[:8]}"


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT/SIGTERM raise Interrupted in the main flow (the runner owns them during a playbook)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(f"{signal.Signals(signum).name} received")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _shielded(fn: Callable[[], Any], on_signal: Callable[[str], None]) -> Any:
    """Run ``fn`` in a worker thread to its end; signals meanwhile are only acknowledged.

    ansible-runner installs its cancel handlers only on the main thread, so a cleanup playbook run
    from here cannot be cancelled by a second Ctrl-C (which would leave, e.g., a fault applied).
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the caller
            box["error"] = err

    main = threading.current_thread() is threading.main_thread()
    old = {}
    if main:
        def ack(signum: int, _frame: Any) -> None:
            on_signal(signal.Signals(signum).name)
        old = {s: signal.signal(s, ack) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t = threading.Thread(target=work, name="grayctl-cleanup", daemon=True)
        t.start()
        while t.is_alive():
            t.join(0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if "error" in box:
        raise box["error"]
    return box.get("value")


# -- the run -----------------------------------------------------------------------------------

class _Run:
    """One run's state; methods are the steps. Only ``run_once`` uses it."""

    def __init__(self, experiment: Any, lab: Any, *, out_dir: Path, keep: bool, emit: Emitter,
                 verbose: bool, run_id: str, repetition: int) -> None:
        from grayctl.plan import build_plan, teardown_path

        self.exp, self.lab, self.keep, self.emit, self.verbose = experiment, lab, keep, emit, verbose
        self.plan = build_plan(experiment, lab)
        self.steps = {s.name: s for s in self.plan.steps}
        self.teardown_path = teardown_path(lab)
        # absolute: the playbooks write into it (clock_file, fetch dirs) and refuse relative paths,
        # and the default is the relative 'runs'
        out_dir = Path(out_dir).absolute()
        self.rec = RunRecord(run_id, out_dir / run_id, out_dir / f"{run_id}.run",
                             schedule_s=self.plan.duration_s, repetition=repetition)
        self.raw = self.rec.records_dir / "raw"
        self.inventory = lab.inventory_path
        self.n_step = 0
        self.t0_est: float | None = None
        self.t0_source = "estimate"  # load generator | estimate (see prepare)
        self.started = {"reimage": False, "deploy": False, "monitor": False, "workload": False, "inject": False}
        self.requests_path: Path | None = None
        self.summary: dict[str, Any] | None = None
        self.metrics_df: Any = None
        self.run_end_s: float | None = None
        self.clock: dict[str, Any] = {}
        self.fingerprints: dict[str, dict[str, Any]] = {}
        self.phase_hint: str | None = None
        self.task_seconds: dict[str, float] = {}
        self.task_done_at: dict[str, float] = {}  # task name -> wall time its first ok event arrived

    # -- plumbing --------------------------------------------------------------------------
    @property
    def monitor_url(self) -> str:
        node = next(n for n in self.lab.nodes if "monitor" in n.roles)
        return f"http://{node.mgmt_ip}:{MONITOR_PORT}"

    @property
    def client(self) -> str:
        return next(n.name for n in self.lab.nodes if "client" in n.roles)

    def play(self, name: str, playbook: str, extravars: dict[str, Any], *, limit: str | None = None,
             check: bool = True) -> Any:
        from grayctl.runner import run_playbook

        self.n_step += 1
        log_dir = self.rec.records_dir / "logs" / f"{self.n_step:02d}-{name.replace(':', '-')}"
        tasks = self.task_seconds
        done_at = self.task_done_at

        open_task: list[Any] = []  # [name, monotonic start] of the task in progress

        def on_event(ev: dict[str, Any]) -> None:
            # Per task, the wall time from its start to the next task's start: where a step's time goes,
            # skipped tasks' evaluation included (docs/benchmarks.md reads it back).
            data = ev.get("event_data") or {}
            kind = ev.get("event")
            if kind in ("playbook_on_task_start", "playbook_on_stats"):
                now = time.monotonic()
                if open_task:
                    tasks[open_task[0]] = tasks.get(open_task[0], 0.0) + now - open_task[1]
                open_task[:] = [str(data.get("task") or ""), now] if kind == "playbook_on_task_start" else []
            elif kind == "runner_on_ok" and data.get("task"):
                done_at.setdefault(str(data["task"]), time.time())

        return run_playbook(playbook, inventory=self.inventory, extravars=extravars, limit=limit, check=check,
                            verbose=self.verbose, log_dir=log_dir, on_event=on_event)

    def step(self, name: str, phase: str, fn: Callable[[], Any], why: str = "") -> Any:
        self.emit("step_start", step=name, phase=phase, why=why)
        self.task_seconds = {}
        t = time.monotonic()
        try:
            out = fn()
        except GrayctlError as err:
            secs = round(time.monotonic() - t, 2)
            self.rec.steps.append({"name": name, "phase": phase, "seconds": secs, "ok": False})
            if not isinstance(err, Interrupted):
                self.emit("step_failed", step=name, phase=phase, seconds=secs, error=err.message,
                          exit_code=err.exit_code)
            raise
        secs = round(time.monotonic() - t, 2)
        self.rec.steps.append({"name": name, "phase": phase, "seconds": secs, "ok": True})
        slow = sorted(self.task_seconds.items(), key=lambda kv: -kv[1])[:10]
        self.emit("step_end", step=name, phase=phase, seconds=secs,
                  slowest_tasks={k: round(v, 2) for k, v in slow})
        return out

    # -- prepare ---------------------------------------------------------------------------
    def begin_dataset(self) -> None:
        """The dataset directory with an ``incomplete`` manifest, before anything touches the lab."""
        from grayctl.dataset.writer import DatasetWriter

        self.rec.records_dir.mkdir(parents=True, exist_ok=True)
        self.raw.mkdir(parents=True, exist_ok=True)
        # The run's one writer of its dataset: the assembly finishes it, the run amends and seals it.
        self.writer = DatasetWriter(self.rec.run_dir, {
            "run_id": self.rec.run_id, "run_status": "running",
            "experiment": {"name": self.exp.name, "topology": self.exp.topology.name,
                           "source": str(self.exp.source) if self.exp.source else None},
            "times": {"start_utc": None, "duration_s": self.plan.duration_s},
            "records": str(self.rec.records_dir),
        })
        self.writer.begin()
        (self.raw / "plan.json").write_text(json.dumps(self.plan.to_dict(), indent=1, default=str))

    # --accept-drift: run on nodes that differ from their golden baseline; the deviation is kept
    accept_drift: bool = False
    drift_accepted: dict[str, list[dict[str, Any]]] = {}

    # the previous repetition (or sweep run) on this lab, in this process: its end reset may be reused
    fresh_from: RunRecord | None = None

    def reusable_reset(self) -> float | None:
        """Age (s) of the previous run's end reset if this run may start from it: the same reset a
        reimage would do (netns/qemu: recreate; not a physical lab's undeploy), verified clean, by
        this process, moments ago, with nothing in between. None: reset now."""
        prev = self.fresh_from
        if prev is None or prev.teardown_path != "reset" or prev.clean_at is None or self.accept_drift:
            return None
        if not (prev.verify_clean or {}).get("ok") or self.lab.provider == "physical":
            return None
        age = time.time() - prev.clean_at
        return age if 0 <= age <= FRESH_S else None

    def reimage(self) -> None:
        """Reset (netns, qemu) or reimage through each node's backend (a physical lab: reimage.yml),
        then verify: DriftError (exit 5) with the diff, or with --accept-drift the drift recorded.
        A repetition whose predecessor's end reset verified clean moments ago starts from that reset
        (the same reset and verify, back to back, would add nothing but time)."""
        from grayctl.lab import ensure_root, run_lab_reset

        ensure_root("run")
        age = self.reusable_reset()
        if age is not None:
            self.rec.reimage = "reused"
            self.emit("warning", message=f"starting from the previous run's reset, verified clean {age:.1f}s ago "
                      f"({self.fresh_from.run_id if self.fresh_from else '?'})")
            self._keep_baseline_before()
            return
        self.started["reimage"] = True  # a reset cut short leaves a half-reset lab: cleanup resets again
        reset = run_lab_reset(self.lab, verbose=self.verbose, accept_drift=self.accept_drift)
        self.drift_accepted = reset.drift
        if reset.drift:
            self.emit("warning", message=f"--accept-drift: {', '.join(sorted(reset.drift))} differ from their golden "
                      "baseline; running anyway, the deviation goes into manifest.json (baseline.drift_accepted)")
        self._keep_baseline_before()

    def _keep_baseline_before(self) -> None:
        """The verify's fingerprints (lab_dir/baseline/last) into the run's records and manifest."""
        before = self.raw / "baseline-before"
        before.mkdir(parents=True, exist_ok=True)
        nodes = set(self.lab.node_names)
        for p in sorted((self.lab.lab_dir / "baseline" / "last").glob("*.json")):
            if p.stem in nodes:  # a lab directory may hold records of nodes no longer in the lab
                shutil.copy2(p, before / p.name)
                self.fingerprints[p.stem] = json.loads(p.read_text())

    def amend_baseline(self) -> None:
        """Under the manifest's ``baseline``: the drift policy and, per node and check, what was
        accepted (golden vs seen). The per-node fingerprints are already there (assemble)."""
        baseline = self.writer.written.get("baseline") or {}
        baseline.update(drift_policy="accept" if self.accept_drift else "refuse",
                        drift_accepted=self.drift_accepted,
                        # "reused": the previous run's end reset and verify, moments before (FRESH_S)
                        reset=self.rec.reimage,
                        reset_by=self.fresh_from.run_id if self.rec.reimage == "reused" and self.fresh_from else None)
        self.writer.amend(baseline=baseline)

    def prepare(self) -> None:
        """One playbook: replicas + exporters, Prometheus, clock offsets, then the load generator (t0)."""
        s = self.steps["prepare"]
        for what in ("deploy", "monitor", "workload"):
            self.started[what] = True  # a prepare cut short may have started any of them
        clock_file = self.raw / "clock-start.json"
        self.task_done_at = {}
        self.play("prepare", s.playbook, {**s.extravars, "monitor_run_id": self.rec.run_id,
                                          "workload_state": "present", "workload_run_id": self.rec.run_id,
                                          "clock_file": str(clock_file)})
        self._read_clock("start", clock_file)
        # t0 drives the timeline: the generator's own anchor, read from its metrics endpoint (in
        # controller time), is the t0 its summary reports at the end. If it cannot be read, an
        # estimate: when the start task reported (seconds off under load).
        client = next(n for n in self.lab.nodes if n.name == self.client)
        anchor = _read_start_time(f"http://{client.mgmt_ip}:{s.extravars.get('workload_metrics_port', 9102)}/metrics")
        if anchor is not None:  # as is, like the summary's started_at that the dataset's clock uses
            self.t0_est = anchor
            self.t0_source = "load generator"
        else:
            self.t0_est = self.task_done_at.get(WORKLOAD_START_TASK, time.time()) - WORKLOAD_SETTLE_S
            self.t0_source = "estimate"
        self.emit("monitor_ready", url=self.monitor_url)

    def _read_clock(self, which: str, path: Path) -> None:
        from grayctl.clock import load_offsets

        try:
            offsets = load_offsets(path)
        except (OSError, ValueError, KeyError) as err:
            self.emit("warning", message=f"no clock offsets at the {which} ({err}); node times are used as they are")
            return
        self.clock[which] = {n: {"offset_ns": o.offset_ns, "rtt_ns": o.rtt_ns, "at": o.at} for n, o in offsets.items()}

    # -- the timeline ------------------------------------------------------------------------
    def timeline(self) -> None:
        from grayctl.plan import revert_aim_s

        assert self.t0_est is not None
        t0 = self.t0_est
        total = self.plan.duration_s
        phases = list(self.plan.phases)
        self.emit("timeline_start", t0=t0, t0_source=self.t0_source, schedule_s=total, load1=round(os.getloadavg()[0], 2),
                  phases=[{"phase": p, "start_s": a, "end_s": b} for p, a, b in phases])
        pending = [s for s in self.plan.steps if s.phase == "run" and s.name.split(":")[0] in ("inject", "revert")]
        windows = self._fault_windows()
        aims: dict[str, float] = {}  # revert step -> when it is aimed, once its fault's apply is measured
        shown: set[str] = set()

        def wait_until(at_s: float) -> None:
            while True:
                now_s = time.time() - t0
                for p, a, b in phases:
                    if a <= now_s < b and p not in shown:
                        shown.add(p)
                        self.phase_hint = p
                        self.emit("phase", phase=p, start_s=a, end_s=b)
                left = at_s - now_s
                if left <= 0:
                    return
                time.sleep(min(POLL_S, left))

        def target(s: Any) -> tuple[float, int]:
            return aims.get(s.name, float(s.at_s or 0.0)), 0 if s.name.startswith("revert") else 1

        record_dir = self.raw / "faults"
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
                self.started["inject"] = True
            extravars = {**s.extravars, "fault_record_dir": str(record_dir),
                         "fault_not_before_ns": self._node_times_ns(t0 + at_s, s.hosts.split(":"))}
            self.step(s.name, "run", lambda s=s, ev=extravars: self.play(s.name, s.playbook, ev, limit=s.hosts),
                      why=s.why)
            arrived = self._host_time_s(fid, "called_ns" if state == "applied" else "revert_called_ns", t0, last=True)
            if arrived is not None:
                lead = min(max(FIRST_LEAD_S / 2, 1.5 * (arrived - began) + 1.0), MAX_LEAD_S)
            host_s = self._host_time_s(fid, "start_ns" if state == "applied" else "end_ns", t0)
            if host_s is not None:  # the labels use the host-measured times, whatever happened here
                if state == "applied":
                    aims[f"revert:{fid}"] = revert_aim_s(host_s, windows[fid], total)
            self.emit("fault", step=s.name, id=fid, state=state, planned_s=float(s.at_s or 0.0), aim_s=at_s,
                      at_s=host_s if host_s is not None else time.time() - t0)
        wait_until(total)
        self.emit("timeline_end", seconds=round(time.time() - t0, 2))

    def _node_times_ns(self, at: float, nodes: list[str]) -> dict[str, int]:
        """Controller epoch second ``at`` on each node's clock (the start offsets, where they are
        larger than their own error bound: the same rule as the dataset's time mapping)."""
        out = {}
        for n in nodes:
            o = (self.clock.get("start") or {}).get(n) or {}
            off = int(o.get("offset_ns") or 0)
            out[n] = round(at * NS) + (off if abs(off) > int(o.get("rtt_ns") or 0) // 2 + 1 else 0)
        return out

    def _records_of(self, fault_id: str) -> list[dict[str, Any]]:
        """The node records of the experiment's fault ``fault_id`` (one per node it ran on)."""
        from grayctl.injection import load_records

        return [r for r in load_records(self.raw / "faults")
                if r.get("fault_name", r.get("fault_id")) == fault_id or str(r.get("fault_id", "")).endswith(fault_id)]

    def _host_time_s(self, fault_id: str, key: str, t0: float, *, last: bool = False) -> float | None:
        """``key`` of the fault's node records, in s since ``t0``: the first node's, or the last's."""
        values = [int(r[key]) for r in self._records_of(fault_id) if r.get(key) is not None]
        return ((max(values) if last else min(values)) / NS - t0) if values else None

    # -- after the timeline ---------------------------------------------------------------------
    def collect(self) -> None:
        """One playbook: wait for the load generator and fetch its records, clock offsets, node files."""
        s = self.steps["collect"]
        dest = self.raw / "workload"
        clock_file = self.raw / "clock-end.json"
        self.play("collect", s.playbook, {**s.extravars, "workload_state": "wait", "workload_run_id": self.rec.run_id,
                                          "workload_fetch_dir": str(dest), "clock_file": str(clock_file),
                                          "collect_dest": str(self.raw / "nodes")})
        self._read_workload(dest)
        self._read_clock("end", clock_file)

    def _read_workload(self, dest: Path) -> None:
        summaries = sorted(dest.glob("**/workload-summary.json"))
        if summaries:
            self.summary = json.loads(summaries[0].read_text())
        records = sorted(dest.glob("**/requests.parquet"))
        self.requests_path = records[0] if records else None

    def collect_nodes(self, *, stop_workload: bool = False) -> None:
        dest = self.raw / "nodes"
        self.play("collect", "collect.yml", {"collect_dest": str(dest), "collect_stop_workload": stop_workload,
                                             "collect_workload": stop_workload})
        if stop_workload:
            self._read_workload(dest)

    def collect_metrics(self) -> None:
        from grayctl.metrics import collect_run_metrics

        start = self._start_s()
        end = self.run_end_s or time.time()
        self.metrics_df = collect_run_metrics(self.monitor_url, start, end, self.exp.metrics.interval.seconds,
                                              dict(self.exp.metrics.extra))

    def emit_fault_timing(self) -> None:
        """The faults' edges (first apply, last revert) from the exact t0; the live ``fault`` events
        used an estimate."""
        from grayctl.plan import fault_edges

        t0 = self._start_s()
        faults = []
        for fid, window in self._fault_windows().items():
            recs = self._records_of(fid)
            starts = [int(r["start_ns"]) / NS - t0 for r in recs if r.get("start_ns")]
            ends = [int(r["end_ns"]) / NS - t0 for r in recs if r.get("end_ns")]
            faults.append({"id": fid, **fault_edges(window, min(starts, default=None), max(ends, default=None),
                                                    self.plan.duration_s)})
        self.emit("fault_timing", faults=faults)

    def _fault_windows(self) -> dict[str, tuple[float, float]]:
        """Each fault's planned window (s since t0), from its inject step: the plan's, once."""
        return {s.name.split(":", 1)[1]: (float(s.at_s or 0.0), float(s.until_s or self.plan.duration_s))
                for s in self.plan.steps if s.name.startswith("inject:")}

    def _start_s(self) -> float:
        if self.summary and self.summary.get("started_at"):
            return float(self.summary["started_at"])
        return float(self.t0_est or time.time())

    # -- assembly -------------------------------------------------------------------------------
    def assemble(self, status: str) -> None:
        import pandas as pd

        from grayctl.dataset.assemble import assemble_run
        from grayctl.dataset.labels import observer_from_metrics
        from grayctl.injection import load_records, to_injection_json

        start_ns = round(self._start_s() * NS)
        end_ns = round((self.run_end_s or time.time()) * NS)
        end_ns = min(end_ns, start_ns + int(self.plan.duration_s * NS)) if status == "complete" else end_ns
        requests = pd.read_parquet(self.requests_path) if self.requests_path else None
        metrics = self.metrics_df
        observer = observer_from_metrics(metrics) if metrics is not None and len(metrics) else None
        injections = to_injection_json(load_records(self.raw / "faults"), status)["faults"]
        spans, logs = _read_node_files(self.raw / "nodes")
        offsets = self.clock.get("start") or {}
        import ansible_runner

        self.emit("step_start", step="assemble", phase="collect", why="dataset + report")
        t = time.monotonic()
        assemble_run(
            self.rec.run_dir, experiment=self.exp, plan=self.plan, requests_df=requests, metrics_long_df=metrics,
            spans_df=spans, observer_df=observer, logs_df=logs, injections=injections,
            fingerprints=self.fingerprints,
            clock={"start_ns": start_ns, "end_ns": end_ns, "offsets": offsets,
                   "offsets_end": self.clock.get("end") or {}},
            versions={"ansible-runner": getattr(ansible_runner, "__version__", None) or _dist("ansible-runner"),
                      "ansible-core": _dist("ansible-core")},
            status="complete" if status == "complete" else "failed", run_id=self.rec.run_id,
            seeds={"workload": self.exp.workload.seed}, writer=self.writer)
        self.rec.dataset = self.rec.run_dir
        self.rec.report = self.rec.run_dir / "report.html"
        secs = round(time.monotonic() - t, 2)
        self.rec.steps.append({"name": "assemble", "phase": "collect", "seconds": secs, "ok": True})
        self.emit("step_end", step="assemble", phase="collect", seconds=secs)

    def evaluate_checks(self) -> None:
        if not self.exp.checks or self.rec.dataset is None:
            return
        from grayctl.dataset import load
        from grayctl.report.checks import evaluate_checks

        ds = load(self.rec.dataset)
        self.rec.checks = evaluate_checks([c.to_dict() for c in self.exp.checks], ds.labels, ds.metrics)

    # -- teardown ---------------------------------------------------------------------------------
    def teardown(self) -> None:
        """The ``undeploy`` path: load generator, replicas, exporters, Prometheus in one playbook."""
        self.play("teardown", "teardown.yml", {"monitor_run_id": self.rec.run_id})

    def revert_all(self) -> None:
        self.play("revert-all", "fault_revert_all.yml", {"fault_record_dir": str(self.raw / "faults")})

    def verify_clean(self) -> None:
        res = self.play("verify-clean", "baseline.yml", {"baseline_mode": "verify"}, check=False)
        self.rec.verify_clean = {"ok": res.ok, "problems": [f.render() for f in res.failures]}
        if not res.ok:
            self.emit("warning", message="the lab did not verify clean after the run: "
                      + "; ".join(self.rec.verify_clean["problems"][:4]))

    def lab_reset(self) -> None:
        from grayctl.lab import run_lab_reset

        run_lab_reset(self.lab, verbose=self.verbose)

    def reset_teardown(self) -> None:
        """The ``reset`` path: the reset is the undeploy; its baseline verify is the verify-clean."""
        from grayctl.errors import DriftError

        try:
            self.lab_reset()
        except DriftError as err:
            self.rec.verify_clean = {"ok": False, "problems": err.message.splitlines()[1:] or [err.message],
                                     "via": "lab reset"}
            self.emit("warning", message="the lab did not verify clean after the reset: " + err.message)
            return
        self.rec.verify_clean = {"ok": True, "problems": [], "via": "lab reset"}
        self.rec.clean_at = time.time()


def _read_start_time(url: str, within_s: float = 10.0) -> float | None:
    """``grayctl_workload_start_time_seconds`` from the load generator's metrics (its t=0, on its
    clock); None when it has not anchored within ``within_s``."""
    import urllib.request

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


def _step_names(plan: Any, keep: bool) -> list[str]:
    """What run_once executes, in order: the plan's steps (reimage includes verify-baseline; inject
    and revert steps run inside the timeline) plus the controller's own metrics and assemble."""
    by_phase: dict[str, list[str]] = {}
    for s in plan.steps:
        if s.name != "verify-baseline" and s.phase != "run":
            by_phase.setdefault(s.phase, []).append(s.name)
    return (by_phase.get("prepare", []) + ["timeline"] + by_phase.get("collect", []) + ["metrics", "assemble"]
            + ([] if keep else by_phase.get("teardown", [])))


def _dist(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _read_node_files(root: Path) -> tuple[Any, Any]:
    """Spans and structured logs fetched from the nodes: ``<root>/<node>/<service>-<replica>/*.jsonl``."""
    import pandas as pd

    spans: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    for p in sorted(root.glob("*/*/spans.jsonl")):
        for line in p.read_text(errors="replace").splitlines():
            try:
                spans.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill: the rest of the file is whole
    for p in sorted(root.glob("*/*/runtime.jsonl")):
        node = p.parent.parent.name
        for line in p.read_text(errors="replace").splitlines():
            try:
                d = json.loads(line)
                ts = pd.Timestamp(d["ts"]).tz_convert("UTC").value
            except (ValueError, KeyError, TypeError):
                continue
            logs.append({"ts": ts, "node": node, "service": str(d.get("service", p.parent.name)),
                         "level": str(d.get("level", "info")), "event": str(d.get("event", "")), "message": line})
    spans_df = pd.DataFrame(spans) if spans else None
    if spans_df is not None:
        for c in ("start_ns", "end_ns"):
            if c in spans_df:
                spans_df[c] = pd.to_numeric(spans_df[c], errors="coerce").astype("Int64")
        spans_df = spans_df.dropna(subset=["start_ns", "end_ns"]).astype({"start_ns": "int64", "end_ns": "int64"})
    logs_df = pd.DataFrame(logs) if logs else None
    return spans_df, logs_df


def run_once(experiment: Any, lab: Any, *, out_dir: Path = Path("runs"), keep: bool = False,
             on_event: EventHandler | Sequence[EventHandler] | None = None, verbose: bool = False,
             run_id: str | None = None, repetition: int = 1, accept_drift: bool = False,
             fresh_from: RunRecord | None = None) -> RunRecord:
    """One run of a validated ``experiment`` on ``lab``; never raises for a run that started (the
    record says how it ended); InputError/LabError before anything touched the lab do raise.
    ``accept_drift``: run on drifted nodes, the deviation recorded in the manifest (baseline).
    ``fresh_from``: the run that used this lab just before, in this process; its verified end reset
    stands in for this run's reimage when it is recent (``FRESH_S``)."""
    handlers = list(on_event) if isinstance(on_event, Sequence) else ([on_event] if on_event else [])
    emit = Emitter(handlers)
    run_id = run_id or new_run_id(experiment, salt=f"rep{repetition}")
    r = _Run(experiment, lab, out_dir=out_dir, keep=keep, emit=emit, verbose=verbose, run_id=run_id,
             repetition=repetition)
    r.accept_drift = accept_drift
    r.fresh_from = fresh_from
    rec = r.rec
    r.begin_dataset()
    emit.add(RunLog(rec.records_dir / "events.jsonl"))
    t_run = time.monotonic()
    emit("run_start", run_id=rec.run_id, run_dir=str(rec.run_dir), records_dir=str(rec.records_dir),
         experiment=experiment.name, topology=experiment.topology.name, lab=lab.name,
         schedule_s=r.plan.duration_s, repetition=repetition,
         steps=_step_names(r.plan, keep), teardown=None if keep else r.teardown_path)
    error: GrayctlError | None = None
    crash: BaseException | None = None
    try:
        with _interruptible():
            r.step("reimage", "prepare", r.reimage, "every node back to the golden baseline, verified")
            r.step("prepare", "prepare", r.prepare, r.steps["prepare"].why)
            r.timeline()
            r.step("collect", "collect", r.collect, r.steps["collect"].why)
            r.run_end_s = r._start_s() + r.plan.duration_s
            r.step("metrics", "collect", r.collect_metrics, "query Prometheus over the run window")
            r.emit_fault_timing()
    except KeyboardInterrupt:
        error = Interrupted("interrupted")
    except GrayctlError as err:
        error = err
    except Exception as err:  # noqa: BLE001 - a bug: clean the lab up first, then report it
        crash = err
        error = GrayctlError(f"internal error: {err!r}")

    status = "complete" if error is None else ("incomplete" if isinstance(error, Interrupted) else "failed")
    if error is None:
        # Everything the dataset needs is on the controller now: assemble it (CPU, local files) while
        # the lab is torn down (Ansible, mostly waiting on the nodes). The main thread keeps the
        # teardown, and with it the signals; an interrupted teardown still cleans the lab up.
        assembly_errors: list[BaseException] = []

        def assemble() -> None:
            try:
                r.assemble("complete")
                r.evaluate_checks()
            except BaseException as err:  # noqa: BLE001 - reported by the main thread below
                assembly_errors.append(err)

        worker = threading.Thread(target=assemble, name="grayctl-assemble")
        worker.start()
        try:
            _teardown(r)
        finally:
            worker.join()
        if assembly_errors:  # the lab is down already; the manifest below says failed, with the error
            err = assembly_errors[0]
            error = err if isinstance(err, GrayctlError) else GrayctlError(f"assembly: {err!r}")
            status = "failed"
    else:
        _cleanup(r, status)

    rec.status = status
    if error is not None:
        rec.error, rec.hint, rec.exit_code = error.message, error.hint, error.exit_code
    else:
        failed = [c for c in rec.checks if c.get("verdict") == "fail" and c.get("fail_run")]
        if failed:
            err = ChecksFailed(", ".join(f"{c['name']} ({c['phase']}: {c['value']:.4g})" for c in failed))
            rec.error, rec.exit_code = err.message, err.exit_code
    rec.seconds = round(time.monotonic() - t_run, 2)
    r.writer.amend(teardown={"keep": keep, "path": rec.teardown_path, "verify_clean": rec.verify_clean,
                                           "steps": rec.steps, "cleanup": rec.cleanup},
                    checks=rec.checks,
                    run_status=status,
                    **({"status": "incomplete"} if status == "incomplete" else {}),
                    **({"error": rec.error} if rec.error else {}))
    r.amend_baseline()
    r.writer.seal()  # the dataset is done; run.json below is the run's own record, outside it
    (rec.records_dir / "run.json").write_text(json.dumps(rec.to_dict(), indent=1, default=str))
    emit("run_end", status=status, exit_code=rec.exit_code, dataset=str(rec.dataset) if rec.dataset else None,
         report=str(rec.report) if rec.report else None, error=rec.error, seconds=rec.seconds,
         checks_failed=[c["name"] for c in rec.checks if c.get("verdict") == "fail"])
    emit.close()
    if crash is not None:
        raise crash
    return rec


def _teardown(r: _Run) -> None:
    """The normal end, by the plan's teardown path — or nothing with --keep."""
    if r.keep:
        r.emit("warning", message="--keep: the topology and Prometheus stay up; "
               "'grayctl undeploy' and 'grayctl lab reset' clean up")
        return
    r.rec.teardown_path = r.teardown_path
    try:
        with _interruptible():
            if r.teardown_path == "reset":
                r.step("reset", "teardown", r.reset_teardown, r.steps["reset"].why)
            else:
                r.step("teardown", "teardown", r.teardown, r.steps["teardown"].why)
                r.step("verify-clean", "teardown", r.verify_clean, r.steps["verify-clean"].why)
    except (GrayctlError, KeyboardInterrupt) as err:
        # The dataset is complete; only the lab needs care now.
        r.emit("warning", message=f"teardown stopped ({getattr(err, 'message', err)}): resetting the lab")
        _cleanup(r, "complete")


def _cleanup(r: _Run, status: str) -> None:
    """After Ctrl-C, SIGTERM or a failure: every step best-effort, in reverse dependency order."""
    acks: list[str] = []

    def on_signal(name: str) -> None:
        acks.append(name)
        r.emit("warning", message=f"{name}: cleaning up first (faults, services, lab); please wait")

    def attempt(name: str, fn: Callable[[], Any], when: bool = True) -> bool:
        if not when:
            return False
        t = time.monotonic()
        try:
            _shielded(fn, on_signal)
            ok, err = True, None
        except (GrayctlError, Exception) as e:  # noqa: BLE001 - best effort, logged
            ok, err = False, getattr(e, "message", None) or repr(e)
        secs = round(time.monotonic() - t, 2)
        r.rec.cleanup.append({"step": name, "ok": ok, "error": err, "seconds": secs})
        r.emit("cleanup", step=name, phase="cleanup", ok=ok, error=err, seconds=secs)
        return ok

    started_lab = r.started["deploy"]
    # Always: a cancelled inject may have applied its fault without telling us.
    attempt("revert-faults", r.revert_all, when=started_lab)
    if status != "complete" and r.t0_est is not None:
        attempt("collect", lambda: r.collect_nodes(stop_workload=True), when=started_lab)
        r.run_end_s = time.time()
        attempt("metrics", r.collect_metrics, when=r.started["monitor"])
    # On the reset path the lab reset below stops every process; elsewhere teardown.yml does.
    attempt("teardown", r.teardown, when=started_lab and r.teardown_path != "reset")
    if attempt("lab-reset", r.lab_reset, when=started_lab or r.started["reimage"]) and r.rec.teardown_path is None:
        r.rec.teardown_path = "reset"
    if status != "complete":
        if r.t0_est is not None and r.rec.dataset is None:
            attempt("assemble", lambda: r.assemble(status))
        else:
            r.writer.amend(run_status=status)


# -- several repetitions -------------------------------------------------------------------------

def run_experiment(experiment_path: str | Path, *, lab_ref: str | None = None, out_dir: Path = Path("runs"),
                   overrides: Sequence[Override] = (), repetitions: int | None = None, keep: bool = False,
                   on_event: EventHandler | Sequence[EventHandler] | None = None,
                   verbose: bool = False, accept_drift: bool = False) -> list[RunRecord]:
    """Load (with ``--set`` overrides), plan, and run every repetition, each from the golden baseline.

    Stops after the first repetition that did not complete (an interrupt or a failure). InputError
    for a bad file or override, LabError for a lab that is not there — before anything runs.
    """
    from grayctl.lab import ensure_root
    from grayctl.labdef import load_lab
    from grayctl.plan import build_plan

    experiment = load_experiment_with(experiment_path, overrides)
    lab = load_lab(lab_ref or experiment.lab)
    build_plan(experiment, lab)  # refuse a misfit (InputError) before anything runs
    if not lab.inventory_path.is_file():
        raise LabError(f"lab {lab.name!r} is not up (no {lab.inventory_path})",
                       hint=f"grayctl lab up --lab {lab_ref or experiment.lab}")
    ensure_root("run")  # before a run directory exists: nothing to clean up after a refusal
    n = repetitions or experiment.repetitions
    if keep and n > 1:
        raise LabError("--keep leaves the topology deployed, so it cannot be combined with repetitions",
                       hint="--repetitions 1")
    records = []
    for i in range(1, n + 1):
        rec = run_once(experiment, lab, out_dir=out_dir, keep=keep, on_event=on_event, verbose=verbose,
                       repetition=i, accept_drift=accept_drift, fresh_from=records[-1] if records else None)
        records.append(rec)
        if rec.status != "complete":
            break
    return records

