"""Deploying a topology onto a lab and driving load at it: the deploy and workload steps as data.

Map:
  minimal_plan(topology_ref, lab, *, workload, schedule) -> Plan   a topology (+ workload) as a
                                                 minimal experiment through the plan machinery
  deploy_services(topology, replicas, *, seed) -> {node: [{name, replica, config}]}
                                                 every replica's runtime config, resolved here
  deploy_extravars(topology, replicas, *, seed) / undeploy_extravars(topology)
                                                 the deploy step's extra vars (roles/topology_deploy)
  workload_targets(topology, replicas)        -> {request type: {method, url, body_size}}
  workload_extravars(topology, replicas, ...) -> the workload step's extra vars (roles/workload)
  run_deploy(plan, state=...) -> DeployRecord    run playbooks/deploy.yml on the lab
  run_load(plan, ...)         -> LoadRecord      run playbooks/workload.yml to completion, read the summary

The controller resolves everything (addresses, downstream URLs, targets); the roles only write
files, supervise processes and check health. ``grayctl plan --json`` shows the same extra vars.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grayctl.errors import StepFailed

if TYPE_CHECKING:
    from grayctl.labdef import LabDefinition
    from grayctl.plan import Plan, Replica
    from grayctl.topology import Topology

__all__ = ["DeployRecord", "LoadRecord", "deploy_extravars", "deploy_services", "minimal_plan", "run_deploy",
           "run_load", "undeploy_extravars", "workload_extravars", "workload_targets"]

# The role puts spans and logs in the replica's directory on the node; these are placeholders.
SPANS_FILE = "spans.jsonl"
LOG_FILE = "runtime.jsonl"
WORKLOAD_METRICS_PORT = 9102


def minimal_plan(topology_ref: str, lab: LabDefinition, *, workload: dict[str, Any] | None = None,
                 schedule: dict[str, Any] | None = None) -> Plan:
    """The plan of an experiment that is only ``topology_ref`` (plus ``workload`` and ``schedule``),
    validated as an experiment file would be (so bad rates or durations are InputErrors)."""
    import yaml

    from grayctl.experiment import validate_experiment
    from grayctl.plan import build_plan
    from grayctl.source import load_yaml_text

    doc: dict[str, Any] = {"topology": topology_ref, "lab": lab.name}
    if workload:
        doc["workload"] = workload
    if schedule:
        doc["schedule"] = schedule
    data, positions = load_yaml_text(yaml.safe_dump(doc, sort_keys=False), "<command line>")
    experiment = validate_experiment(data, positions, "<command line>", Path.cwd())
    return build_plan(experiment, lab)


def deploy_services(topology: Topology, replicas: tuple[Replica, ...] | list[Replica], *,
                    seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Per node, the replicas it runs with their resolved runtime configs (docs/runtime.md)."""
    from grayctl.runtime.config import service_config

    placement: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(replicas, key=lambda r: (r.service, r.index)):
        placement.setdefault(r.service, []).append(
            {"data_ip": r.data_ip, "port": r.port, "mgmt_ip": r.mgmt_ip, "metrics_port": r.metrics_port})
    out: dict[str, list[dict[str, Any]]] = {}
    for r in replicas:
        cfg = service_config(topology, r.service, placement, replica=r.index, spans_path=SPANS_FILE,
                             log_path=LOG_FILE, seed=seed)
        out.setdefault(r.node, []).append({"name": r.service, "replica": r.index, "config": cfg})
    return out


def deploy_extravars(topology: Topology, replicas: tuple[Replica, ...], *, seed: int = 0) -> dict[str, Any]:
    return {"topology_deploy_state": "present", "topology_deploy_topology": topology.name,
            "topology_deploy_services": deploy_services(topology, replicas, seed=seed)}


def undeploy_extravars(topology: Topology) -> dict[str, Any]:
    return {"topology_deploy_state": "absent", "topology_deploy_topology": topology.name}


def workload_targets(topology: Topology, replicas: tuple[Replica, ...]) -> dict[str, dict[str, Any]]:
    """Each request type -> its entry endpoint on replica 0 of the entry service, on the data network.

    GET for every type: the topology models no request bodies and the runtime serves GET and POST alike.
    """
    out = {}
    for name, req in topology.requests.items():
        component, endpoint = req.entry.split(".", 1)
        service = topology.service_of(component)
        entry = next(r for r in replicas if r.service == service and r.index == 0)
        out[name] = {"method": "GET", "url": f"http://{entry.data_ip}:{entry.port}/{component}/{endpoint}",
                     "body_size": 0}
    return out


def workload_extravars(topology: Topology, replicas: tuple[Replica, ...], *, rate: float, duration: float,
                       arrival: str, mix: dict[str, float], seed: int, connections: int,
                       state: str = "present") -> dict[str, Any]:
    return {"workload_state": state, "workload_targets": workload_targets(topology, replicas),
            "workload_mix": mix, "workload_rate": rate, "workload_arrival": arrival, "workload_seed": seed,
            "workload_duration": duration, "workload_connections": connections}


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
    import time

    from grayctl.runner import run_playbook

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
    import time

    from grayctl.runner import run_playbook

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
