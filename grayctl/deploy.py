"""Deploying a topology onto a lab and driving load at it, outside a run: ``grayctl deploy|undeploy|load``.

Map:
  minimal_plan(topology_ref, lab, *, workload, schedule) -> Plan   a topology (+ workload) as a
                                                 minimal experiment through the plan machinery
  run_deploy(plan, state=...) -> DeployRecord    run the plan's deploy part (playbooks/deploy.yml)
  run_load(plan, ...)         -> LoadRecord      run playbooks/workload.yml to completion, read the summary

The steps are the plan's (``Plan.parts``, built by ``grayctl.plan.services``); this module only
executes them, so it imports the plan and never the reverse.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grayctl.errors import StepFailed
from grayctl.experiment import validate_experiment
from grayctl.lab.definition import LabDefinition
from grayctl.plan import Plan, build_plan
from grayctl.run.ansible import run_playbook
from grayctl.source import load_yaml_text

__all__ = ["DeployRecord", "LoadRecord", "minimal_plan", "run_deploy", "run_load"]


def minimal_plan(topology_ref: str, lab: LabDefinition, *, workload: dict[str, Any] | None = None,
                 schedule: dict[str, Any] | None = None) -> Plan:
    """The plan of an experiment that is only ``topology_ref`` (plus ``workload`` and ``schedule``),
    validated as an experiment file would be (so bad rates or durations are InputErrors)."""
    doc: dict[str, Any] = {"topology": topology_ref, "lab": lab.name}
    if workload:
        doc["workload"] = workload
    if schedule:
        doc["schedule"] = schedule
    data, positions = load_yaml_text(yaml.safe_dump(doc, sort_keys=False), "<command line>")
    experiment = validate_experiment(data, positions, "<command line>", Path.cwd())
    return build_plan(experiment, lab)


# -- running ---------------------------------------------------------------------------

@dataclass
class DeployRecord:
    topology: str
    state: str
    nodes: list[str]
    replicas: int
    changed: int  # tasks that changed something, over all hosts
    seconds: float
    changed_tasks: list[str] = field(default_factory=list)


@dataclass
class LoadRecord:
    summary: dict[str, Any]
    fetch_dir: Path
    seconds: float

    @property
    def valid(self) -> bool:
        return bool(self.summary.get("valid"))


def _changes() -> tuple[list[str], Any]:
    changed: list[str] = []

    def on_event(ev: dict[str, Any]) -> None:
        data = ev.get("event_data") or {}
        if ev.get("event") == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            changed.append(f"{data.get('host')}: {data.get('task')}")
    return changed, on_event


def run_deploy(plan: Plan, *, state: str = "present", verbose: bool = False) -> DeployRecord:
    """Deploy (``present``) or remove (``absent``) the plan's topology on its lab."""
    topo = plan.experiment.topology
    step = plan.part("deploy" if state == "present" else "undeploy")
    changed, on_event = _changes()
    t0 = time.monotonic()
    # Undeploy acts on every node: the role removes whatever it finds in the state dirs.
    run_playbook(step.playbook, inventory=plan.lab.inventory_path, extravars=step.extravars,
                 limit=step.hosts if state == "present" else None, verbose=verbose, on_event=on_event)
    return DeployRecord(topo.name, state, sorted({r.node for r in plan.replicas}), len(plan.replicas),
                        len(changed), time.monotonic() - t0, changed)


def run_load(plan: Plan, *, duration: float | None = None, fetch_dir: Path | None = None,
             keep_up_bound: dict[str, float] | None = None, verbose: bool = False) -> LoadRecord:
    """Run the plan's workload step to completion on the client node; fetch records and summary.

    ``duration`` (seconds) replaces the schedule's length (the whole experiment) when given;
    ``keep_up_bound`` ({rate_pct, send_error_p99_ms}) replaces the generator's validity bounds.
    """
    step = plan.part("workload")
    fetch = Path(fetch_dir) if fetch_dir else Path(tempfile.mkdtemp(prefix="grayctl-load-"))
    fetch.mkdir(parents=True, exist_ok=True)
    extravars = {**step.extravars, "workload_state": "completed", "workload_fetch_dir": str(fetch),
                 "workload_run_id": uuid.uuid4().hex}
    if duration is not None:
        extravars["workload_duration"] = float(duration)
    if keep_up_bound is not None:
        extravars["workload_keep_up_bound"] = keep_up_bound
    t0 = time.monotonic()
    run_playbook(step.playbook, inventory=plan.lab.inventory_path, extravars=extravars, limit=step.hosts,
                 verbose=verbose)
    summaries = sorted(fetch.glob("*/workload-summary.json"))
    if not summaries:
        raise StepFailed(f"the workload finished but no summary was fetched into {fetch}")
    return LoadRecord(json.loads(summaries[0].read_text()), summaries[0].parent, time.monotonic() - t0)
