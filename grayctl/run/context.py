"""One run's state: what the step modules share while the run goes on.

Map:
  Run(experiment, lab, *, out_dir, keep, emit, verbose, run_id, repetition)
    .plan, .steps (by name), .teardown_path     the resolved plan (built here, pure data)
    .rec, .journal, .emit, .raw                 the record, the step log, the events, raw/ files
    .writer                                     the dataset's one writer (grayctl.run.dataset)
    .started                                    what may need cleaning up (reimage, deploy, ...)
    t0 and what was collected                   t0_est, summary, requests_path, metrics_df, clock, ...
    .monitor_url, .client, .start_s(), .fault_windows(), .records_of(fault_id)

Only state and small look-ups live here; the steps that change it are in ``steps``, ``timeline``,
``dataset`` and ``cleanup``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grayctl.injection import load_records
from grayctl.plan import build_plan, teardown_path
from grayctl.run.events import Emitter
from grayctl.run.journal import Journal, RunRecord

if TYPE_CHECKING:
    from grayctl.dataset.writer import DatasetWriter  # pyarrow: loaded when the dataset is begun

__all__ = ["MONITOR_PORT", "Run"]

MONITOR_PORT = 9090


class Run:
    """One run's state; ``run_once`` (grayctl.run.flow) makes it and hands it to each step."""

    # --accept-drift: run on nodes that differ from their golden baseline; the deviation is kept
    accept_drift: bool = False
    # --allow-invalid-load: a run whose load generator fell behind is still complete (marked so)
    allow_invalid_load: bool = False
    drift_accepted: dict[str, list[dict[str, Any]]] = {}
    # the previous repetition (or sweep run) on this lab, in this process: its end reset may be reused
    fresh_from: RunRecord | None = None

    def __init__(self, experiment: Any, lab: Any, *, out_dir: Path, keep: bool, emit: Emitter,
                 verbose: bool, run_id: str, repetition: int) -> None:
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
        self.journal = Journal(self.rec, emit, inventory=lab.inventory_path, verbose=verbose)
        self.writer: DatasetWriter | None = None  # begun by grayctl.run.dataset.begin_dataset
        self.t0_est: float | None = None
        self.t0_source = "estimate"  # load generator | estimate (see steps.prepare)
        self.started = {"reimage": False, "deploy": False, "monitor": False, "workload": False, "inject": False}
        # nodes a step could not reach (NodeUnreachable): what was collected lacks them, the dataset is incomplete
        self.lost_nodes: set[str] = set()
        self.requests_path: Path | None = None
        self.summary: dict[str, Any] | None = None
        self.metrics_df: Any = None
        self.run_end_s: float | None = None
        self.clock: dict[str, Any] = {}
        self.fingerprints: dict[str, dict[str, Any]] = {}
        self.phase_hint: str | None = None
        self.accept_drift = False
        self.fresh_from: Any = None  # the RunRecord of the run just before on this lab, in this process
        self.verify_in_prepare = False  # the baseline verify is prepare.yml's first play (steps.reimage)

    @property
    def monitor_url(self) -> str:
        node = next(n for n in self.lab.nodes if "monitor" in n.roles)
        return f"http://{node.mgmt_ip}:{MONITOR_PORT}"

    @property
    def client(self) -> str:
        return next(n.name for n in self.lab.nodes if "client" in n.roles)

    def start_s(self) -> float:
        """t0 (epoch s): the load generator's own, once its summary is in; the estimate before."""
        if self.summary and self.summary.get("started_at"):
            return float(self.summary["started_at"])
        return float(self.t0_est or time.time())

    def fault_windows(self) -> dict[str, tuple[float, float]]:
        """Each fault's planned window (s since t0), from its inject step: the plan's, once."""
        return {s.name.split(":", 1)[1]: (float(s.at_s or 0.0), float(s.until_s or self.plan.duration_s))
                for s in self.plan.steps if s.name.startswith("inject:")}

    def records_of(self, fault_id: str) -> list[dict[str, Any]]:
        """The node records of the experiment's fault ``fault_id`` (one per node it ran on)."""
        return [r for r in load_records(self.raw / "faults")
                if r.get("fault_name", r.get("fault_id")) == fault_id or str(r.get("fault_id", "")).endswith(fault_id)]
