"""The run plan: experiment + topology + lab -> an ordered list of steps. Pure data.

Map:
  build_plan(experiment, lab) -> Plan     bind topology slots to lab nodes, faults to nodes and
                                          interfaces, the schedule to time windows
  Plan.to_dict()                          what ``grayctl plan --json`` prints
  Step                                    one playbook + hosts + extra vars + time window
  revert_aim_s(applied_s, window_s, total)  when a fault's revert is aimed: applied + planned length
  fault_edges(window_s, applied_s, reverted_s, total)  planned vs host-measured edges, lags, held

Binding rule: the topology's placement *slots* (in order of first use) are bound to the lab's
``app`` nodes in order, so the same experiment gives the same binding on every run. A fault's
target is resolved to the nodes of every replica of the service that hosts it, on the data
interface and the service's port. Nothing here touches a host; ``grayctl run`` executes ``steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grayctl.deploy import deploy_extravars, undeploy_extravars, workload_extravars
from grayctl.errors import InputError, Problem
from grayctl.experiment import Experiment, Fault
from grayctl.faults.spec import node_fault_id, to_spec
from grayctl.labdef import LabDefinition
from grayctl.paths import PLAYBOOKS_DIR

# The network interface faults may touch on netns nodes; physical labs set it per host.
DATA_IFACE = "data"
NETWORK_LAYER = "network"


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

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.fault.id, "type": self.fault.type, "target_service": self.fault.target_service,
                "service": self.service, "nodes": list(self.nodes), "interface": self.interface,
                "ports": list(self.ports), "peers": list(self.peers) or "all",
                "peer_addresses": list(self.peer_addresses),
                "window_s": [self.fault.start_s, self.fault.end_s], "backend": self.fault.backend}


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


def build_plan(experiment: Experiment, lab: LabDefinition) -> Plan:
    """Resolve ``experiment`` against ``lab``; raise InputError when they cannot fit together."""
    binding = _bind_slots(experiment, lab)
    replicas = _replicas(experiment, lab, binding)
    faults = tuple(_fault_target(f, experiment, replicas) for f in experiment.faults)
    phases = tuple(experiment.schedule.phases())
    parts = _parts(experiment, replicas)
    return Plan(experiment, lab, binding, replicas, faults, _steps(experiment, lab, replicas, faults, parts), phases,
                parts)


def teardown_path(lab: LabDefinition) -> str:
    """How a run ends on ``lab``: ``reset`` where a reset is cheap and kills every process of every node
    (netns namespaces: the reset is the undeploy, and it verifies the baseline), else ``undeploy``
    (teardown.yml, then a baseline verify) — physical hosts and VMs have no such reset."""
    return "reset" if lab.provider == "netns" and not getattr(lab, "vm_nodes", ()) else "undeploy"


def _problem(experiment: Experiment, message: str, path: str, expected: str | None = None) -> Problem:
    return Problem(message, file=str(experiment.source) if experiment.source else None, path=path,
                   expected=expected)


def _bind_slots(experiment: Experiment, lab: LabDefinition) -> dict[str, str]:
    slots = experiment.topology.slots()
    app_nodes = [n.name for n in lab.nodes if "app" in n.roles]
    if len(slots) > len(app_nodes):
        need = len(slots) + (len(lab.nodes) - len(app_nodes))
        raise InputError(
            _problem(experiment,
                     f"topology {experiment.topology.name!r} places services on {len(slots)} node slots, "
                     f"but lab {lab.name!r} has {len(app_nodes)} app node(s)", "topology",
                     f"a lab with at least {len(slots)} app nodes"),
            hint=f"grayctl lab up --nodes {need}  (or a topology with fewer slots)")
    return dict(zip(slots, app_nodes))


def _replicas(experiment: Experiment, lab: LabDefinition, binding: dict[str, str]) -> tuple[Replica, ...]:
    by_name = {n.name: n for n in lab.nodes}
    out = []
    for svc in experiment.topology.services.values():
        for i, (slot, (port, mport)) in enumerate(zip(svc.replica_slots(), svc.replica_ports())):
            node = by_name[binding[slot]]
            out.append(Replica(svc.name, i, slot, node.name, str(node.data_ip), str(node.mgmt_ip), port, mport))
    return tuple(out)


def _fault_target(fault: Fault, experiment: Experiment, replicas: tuple[Replica, ...]) -> FaultTarget:
    topo = experiment.topology
    service = fault.service
    network = fault.layer == NETWORK_LAYER
    if network and not topo.is_network_hop(fault.target_service):
        # Refuse rather than inject something else silently: in this decomposition the component's
        # calls are in-process, so there is no packet to delay. (Issue 4 may add a mapped equivalent.)
        raise InputError(_problem(
            experiment,
            f"{fault.target_service!r} runs in-process inside service {service!r} in topology "
            f"{topo.name!r}, so a {fault.type} fault has no network hop to act on",
            f"chaos_injections.{fault.id}.target_service",
            f"the service {service!r} itself, or a process/cpu/memory fault"))
    mine = [r for r in replicas if r.service == service]
    peers: tuple[str, ...] = ()
    wanted = fault.parameters.get("peers") if fault.type == "network-partition" else (
        fault.scope.peers if fault.scope.direction is not None else "all")
    if wanted not in (None, "all"):
        peers = tuple(dict.fromkeys(topo.resolve_target(p) for p in wanted))
    nodes = tuple(dict.fromkeys(r.node for r in mine))
    frac = fault.scope.fraction.fraction
    if frac < 1.0 and not network:
        # Resource and process faults: a fraction of the target's replica nodes, first ones in
        # placement order. Refuse when it is not a whole number of nodes: injecting on more or fewer
        # would be another fault. (Network faults: a share of flows, chosen on every node by the
        # fault role — scope.fraction reaches it through fault_spec.fraction.)
        count = frac * len(nodes)
        if abs(count - round(count)) > 1e-9 or round(count) == 0:
            raise InputError(_problem(
                experiment, f"fraction {fault.scope.fraction} of {len(nodes)} replica node(s) of {service!r} is not a "
                f"whole number of nodes",
                f"chaos_injections.{fault.id}.scope.fraction",
                f"a multiple of {100 / len(nodes):g}%"))
        nodes = nodes[:round(count)]
    peer_ips = tuple(dict.fromkeys(r.data_ip for r in replicas if r.service in peers))
    return FaultTarget(fault, service, nodes, DATA_IFACE if network else None,
                       tuple(sorted({r.port for r in mine})), peers, peer_ips)


def _parts(experiment: Experiment, replicas: tuple[Replica, ...]) -> tuple[Step, ...]:
    total = experiment.schedule.total_s
    wl = experiment.workload
    app_nodes = ":".join(dict.fromkeys(r.node for r in replicas))
    return (
        Step("deploy", "prepare", "deploy.yml", app_nodes,
             deploy_extravars(experiment.topology, replicas, seed=experiment.workload.seed),
             why="start every service replica and wait for health"),
        # Hosts lab_nodes: the playbook runs the exporters on every node, Prometheus on group monitor.
        Step("monitor", "prepare", "monitor.yml", "lab_nodes",
             {"monitor_state": "present", "monitor_interval": experiment.metrics.interval.canonical(),
              "monitor_extra_queries": dict(experiment.metrics.extra),
              "monitor_services": [r.to_dict() for r in replicas]},
             why="fresh Prometheus TSDB scraping every target at the metrics interval"),
        Step("workload", "run", "workload.yml", "client",
             workload_extravars(experiment.topology, replicas, rate=wl.rate.per_second, duration=total,
                                arrival=wl.arrival, mix={k: v.value for k, v in wl.mix.items()},
                                seed=wl.seed, connections=wl.connections),
             0.0, total, why="open-loop load for the whole schedule"),
        Step("undeploy", "teardown", "deploy.yml", "lab_nodes", undeploy_extravars(experiment.topology),
             why="stop every service replica"),
    )


def _steps(experiment: Experiment, lab: LabDefinition, replicas: tuple[Replica, ...],
           faults: tuple[FaultTarget, ...], parts: tuple[Step, ...]) -> tuple[Step, ...]:
    sched = experiment.schedule
    total = sched.total_s
    deploy, monitor, workload = (next(p for p in parts if p.name == n) for n in ("deploy", "monitor", "workload"))
    lab_vars = {"netns_lab_state": "reset", "netns_lab_definition": str(lab.source)} \
        if lab.provider == "netns" else {}
    # A physical lab (an inventory) reimages each node through its own backend (grayctl_reimage).
    reimage = Step("reimage", "prepare", "reimage.yml", "lab_nodes", {},
                   why="every node back to its golden image through its backend, then SSH") \
        if lab.provider == "physical" else Step("reimage", "prepare", "lab_reset.yml", "localhost", lab_vars,
                                                why="every node back to the golden baseline")
    steps = [
        reimage,
        Step("verify-baseline", "prepare", "baseline.yml", "lab_nodes", {"baseline_mode": "verify"},
             why="fingerprint each node; refuse to run on drift"),
        # One playbook run for everything before t=0 (each ansible-playbook start-up costs seconds):
        # the run adds its run id and the clock file to these extra vars.
        Step("prepare", "prepare", "prepare.yml", "lab_nodes",
             {**deploy.extravars, **monitor.extravars, **workload.extravars},
             why="replicas and exporters on every node, then Prometheus, clock offsets, and last the "
                 "open-loop load, whose start is t=0"),
    ]
    for ft in faults:
        f = ft.fault
        # Network faults scope to the service's own ports only where it shares its node; on a node
        # of its own every packet of the data interface is the service's (its calls included).
        shared = any(r.node in ft.nodes and r.service != ft.service for r in replicas)
        # One variable for playbooks/fault.yml: the node-facing spec, its family from the catalog.
        # On-host expiry: the node reverts by itself this long after the apply.
        spec = {"fault_spec": to_spec(node_fault_id(f.id), f.type, f.to_dict()["parameters"], name=f.id,
                                      expire_after_s=round(f.end_s - f.start_s + 30, 3), service=ft.service,
                                      target_service=f.target_service, interface=ft.interface,
                                      peers=ft.peer_addresses, peer_services=ft.peers,
                                      ports=ft.ports if shared else (), scope=f.scope.to_dict(), backend=f.backend)}
        hosts = ":".join(ft.nodes)
        steps.append(Step(f"inject:{f.id}", "run", "fault.yml", hosts, {"fault_state": "present", **spec},
                          f.start_s, f.end_s, why=f"{f.type} on {ft.service}"))
        steps.append(Step(f"revert:{f.id}", "run", "fault.yml", hosts, {"fault_state": "absent", **spec},
                          f.end_s, None, why="revert and verify the kernel state is back"))
    steps.append(Step("collect", "collect", "collect_run.yml", "lab_nodes",
                      {**workload.extravars, "workload_state": "wait"}, total,
                      why="wait for the load generator and fetch its records, clock offsets, spans and logs"))
    if teardown_path(lab) == "reset":
        steps.append(Step("reset", "teardown", "lab_reset.yml", "localhost", lab_vars,
                          why="the netns reset kills every process of every node and empties its state "
                              "(the undeploy), then the baseline is verified"))
    else:
        steps += [
            Step("teardown", "teardown", "teardown.yml", "lab_nodes", {},
                 why="stop the load generator, the replicas, the exporters and Prometheus"),
            Step("verify-clean", "teardown", "baseline.yml", "lab_nodes", {"baseline_mode": "verify"},
                 why="nothing left behind"),
        ]
    steps.sort(key=lambda s: (_PHASE_ORDER[s.phase], s.at_s if s.at_s is not None else -1.0))
    return tuple(steps)


_PHASE_ORDER = {"prepare": 0, "run": 1, "collect": 2, "teardown": 3}


def revert_aim_s(applied_s: float, window_s: tuple[float, float], schedule_s: float) -> float:
    """When a fault's revert is aimed (s since t=0): its host-measured apply plus its planned length,
    so a late apply does not shorten the fault (Chaos Mesh's ``duration`` semantics); never past the
    end of the schedule. ``grayctl run`` aims there; the report measures the revert's lag from it."""
    return min(applied_s + (window_s[1] - window_s[0]), schedule_s)


def fault_edges(window_s: tuple[float, float] | None, applied_s: float | None, reverted_s: float | None,
                schedule_s: float) -> dict[str, Any]:
    """A fault's planned window against its host-measured edges (s since t=0): the apply's lag from
    the planned start, the revert's from its aim (``revert_aim_s``), and how long it was held.
    One definition for the report's faults table and ``grayctl run``'s closing lines."""
    ps, pe = window_s if window_s else (None, None)
    aim = (revert_aim_s(applied_s, (ps, pe), schedule_s) if applied_s is not None and ps is not None
           else pe) if pe is not None else None
    return {"planned": [ps, pe], "actual": [applied_s, reverted_s], "aim_end": aim,
            "lag": [applied_s - ps if applied_s is not None and ps is not None else None,
                    reverted_s - aim if reverted_s is not None and aim is not None else None],
            "held_s": reverted_s - applied_s if applied_s is not None and reverted_s is not None else None}
