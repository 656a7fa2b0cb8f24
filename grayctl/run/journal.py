"""The run's journal: its record, its id, and how every step is logged as it runs.

Map:
  RunRecord               what happened: status, exit code, dataset and report paths, step times
  new_run_id(experiment) -> "20250101T120000Z-<name>-<hash8>"
  Journal(rec, emit, inventory, verbose)
    .play(name, playbook, extravars, ...) -> PlaybookResult   one playbook, its Ansible output in
                                            logs/<nn>-<step>/<playbook>.log, per-task wall times
    .step(name, phase, fn, why) -> fn()     step_start / step_end | step_failed events, rec.steps
    .write_record()                         run.json (the record, outside the dataset)

The journal only records; what a step does lives in ``steps``, ``timeline``, ``cleanup``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grayctl.errors import GrayctlError, Interrupted
from grayctl.run.ansible import PlaybookResult, run_playbook
from grayctl.run.events import Emitter

__all__ = ["Journal", "RunRecord", "new_run_id"]


@dataclass
class RunRecord:
    run_id: str
    run_dir: Path  # the dataset
    records_dir: Path  # events, logs, raw files
    status: str = "running"  # complete | failed | incomplete | invalid-load
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
    # reset | reused (the previous repetition's verified reset, moments before) | verified (found at
    # its golden baseline by a verify: no reset needed)
    reimage: str = "reset"
    seconds: float = 0.0
    schedule_s: float = 0.0
    repetition: int = 1
    load: dict[str, Any] | None = None  # the load generator's verdict (grayctl.dataset.load_validity.load_block)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("run_dir", "records_dir", "dataset", "report"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d


def new_run_id(experiment: Any, *, now: datetime | None = None, salt: str = "") -> str:
    """UTC time + experiment name + a short hash of the resolved experiment (and ``salt``)."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256((json.dumps(experiment.to_dict(), sort_keys=True, default=str) + salt).encode())
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{experiment.name}-{digest.hexdigest()[:8]}"


class Journal:
    """Runs and logs the steps of one run; ``emit`` is the run's event emitter."""

    def __init__(self, rec: RunRecord, emit: Emitter, *, inventory: Path, verbose: bool) -> None:
        self.rec, self.emit, self.inventory, self.verbose = rec, emit, inventory, verbose
        self.n_step = 0
        self.task_seconds: dict[str, float] = {}
        self.task_done_at: dict[str, float] = {}  # task name -> wall time its first ok event arrived

    def play(self, name: str, playbook: str, extravars: dict[str, Any], *, limit: str | None = None,
             check: bool = True) -> PlaybookResult:
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

    def write_record(self) -> None:
        (self.rec.records_dir / "run.json").write_text(json.dumps(self.rec.to_dict(), indent=1, default=str))
