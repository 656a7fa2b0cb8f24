"""What a plan is made of: pure data, printable before anything runs (``grayctl plan``).

Map:
  Plan          the experiment resolved against a lab: binding, replicas, faults, phases, steps
  Step          one playbook + hosts + extra vars + time window
  Replica       one replica of a service, on its node, with its addresses and ports
  FaultTarget   where one fault lands: the nodes, the data interface, ports and peers
  teardown_path(lab) -> "reset" | "undeploy"   how a run ends on that lab
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grayctl.experiment import Experiment, Fault
from grayctl.lab.definition import LabDefinition
from grayctl.lab.provider import provider_for
from grayctl.paths import PLAYBOOKS_DIR

__all__ = ["FaultTarget", "Plan", "Replica", "Step", "teardown_path"]


@dataclass(frozen=True)
class Step:
    name: str
    phase: str  # prepare | run | collect | teardown
    playbook: str  # under playbooks/
    hosts: str  # an inventory pattern
    extravars: dict[str, Any]
    at_s: float | None = None  # from the start of the run (workload start); None = as soon as possible
    until_s: float | None = None
    why: str = ""

    @property
    def available(self) -> bool:
        """Whether the playbook exists in this version (later issues add deploy, faults, collection)."""
        return (PLAYBOOKS_DIR / self.playbook).is_file()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "phase": self.phase, "playbook": self.playbook, "hosts": self.hosts,
                "extravars": self.extravars, "at_s": self.at_s, "until_s": self.until_s,
                "available": self.available, "why": self.why}


@dataclass(frozen=True)
class Replica:
    service: str
    index: int
    slot: str
    node: str
    data_ip: str
    mgmt_ip: str
    port: int
    metrics_port: int

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "replica": self.index, "slot": self.slot, "node": self.node,
                "data_ip": self.data_ip, "mgmt_ip": self.mgmt_ip, "port": self.port,
                "metrics_port": self.metrics_port}


@dataclass(frozen=True)
class FaultTarget:
    """Where one fault lands: the logical target resolved for this topology and lab."""

    fault: Fault
    service: str
    nodes: tuple[str, ...]
    interface: str | None  # network faults only
    ports: tuple[int, ...]
    peers: tuple[str, ...]  # resolved peer services, empty = all
    peer_addresses: tuple[str, ...] = ()  # data IPs of the peer services' replicas
    realisation: str = ""  # how it is realised (grayctl.faults.realise.describe); the node refines the backend
    widened: bool = False  # scope.widen: process took a component's fault to its whole service
    # realised by the service runtime: {component (None = the whole service), peers, peer_addresses}
    runtime: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.fault.id, "type": self.fault.type, "target_service": self.fault.target_service,
                "service": self.service, "nodes": list(self.nodes), "interface": self.interface,
                "ports": list(self.ports), "peers": list(self.peers) or "all",
                "peer_addresses": list(self.peer_addresses),
                "window_s": [self.fault.start_s, self.fault.end_s], "backend": self.fault.backend,
                "realisation": self.realisation, "widened": self.widened,
                "realised_by": "runtime" if self.runtime is not None else "host"}


@dataclass(frozen=True)
class Plan:
    experiment: Experiment
    lab: LabDefinition
    binding: dict[str, str]  # slot -> node
    replicas: tuple[Replica, ...]
    faults: tuple[FaultTarget, ...]
    steps: tuple[Step, ...]
    phases: tuple[tuple[str, float, float], ...] = field(default=())
    # The single-concern playbook runs the combined steps are made of (deploy, monitor, workload,
    # undeploy): what ``grayctl deploy|undeploy|load`` run on their own. ``grayctl run`` runs ``steps``.
    parts: tuple[Step, ...] = field(default=())

    def part(self, name: str) -> Step:
        return next(s for s in self.parts if s.name == name)

    @property
    def duration_s(self) -> float:
        return self.experiment.schedule.total_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment.to_dict(),
            "lab": {"name": self.lab.name, "provider": self.lab.provider,
                    "inventory": str(self.lab.inventory_path)},
            "topology": self.experiment.topology.name,
            "binding": dict(self.binding),
            "replicas": [r.to_dict() for r in self.replicas],
            "faults": [f.to_dict() for f in self.faults],
            "phases": [{"phase": p, "start_s": s, "end_s": e} for p, s, e in self.phases],
            "steps": [s.to_dict() for s in self.steps],
            "parts": [s.to_dict() for s in self.parts],
            "teardown": teardown_path(self.lab),
        }


def teardown_path(lab: LabDefinition) -> str:
    """How a run ends on ``lab``: ``reset`` where a reset is cheap and kills every process of every node
    (netns namespaces: the reset is the undeploy, and it verifies the baseline), else ``undeploy``
    (teardown.yml, then a baseline verify) — physical hosts and VMs have no such reset."""
    return "reset" if provider_for(lab).capabilities.teardown_by_reset else "undeploy"
