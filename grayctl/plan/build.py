"""Building the plan: experiment + topology + lab -> the bound slots, replicas, fault targets, steps.

Map:
  build_plan(experiment, lab) -> Plan     bind topology slots to lab nodes, faults to nodes and
                                          interfaces, the schedule to time windows

Binding rule: the topology's placement *slots* (in order of first use) are bound to the lab's
``app`` nodes in order, so the same experiment gives the same binding on every run. A fault's
target is resolved to the nodes of every replica of the service that hosts it, on the data
interface and the service's port. Nothing here touches a host; ``grayctl run`` executes ``steps``.
"""

from __future__ import annotations

from grayctl.errors import InputError, Problem
from grayctl.experiment import Experiment, Fault
from grayctl.faults.realise import describe, realisation_of, realisation_problem, target_kind, widened
from grayctl.faults.spec import expire_after, node_fault_id, to_spec
from grayctl.lab.definition import LabDefinition
from grayctl.lab.provider import provider_for
from grayctl.plan.model import FaultTarget, Plan, Replica, Step, teardown_path
from grayctl.plan.services import deploy_extravars, undeploy_extravars, workload_extravars

__all__ = ["DATA_IFACE", "build_plan"]

# The network interface faults may touch on netns nodes; physical labs set it per host.
DATA_IFACE = "data"
NETWORK_LAYER = "network"

# The deployed topology's lease (plugins/module_utils/lease.py): a run whose controller is gone ends
# its replicas, exporters, Prometheus and load generator this long after the schedule (granted at
# prepare for the schedule plus this; renewed to this at collect, so the metrics and checks after it
# have Prometheus). Generous: the first processes are granted theirs at the start of a prepare that
# takes up to ~50 s on a loaded 2-core machine. The reset at the run's end removes everything first.
LEASE_MARGIN_S = 120.0


def build_plan(experiment: Experiment, lab: LabDefinition) -> Plan:
    """Resolve ``experiment`` against ``lab``; raise InputError when they cannot fit together."""
    binding = _bind_slots(experiment, lab)
    replicas = _replicas(experiment, lab, binding)
    faults = tuple(_fault_target(f, experiment, replicas) for f in experiment.faults)
    phases = tuple(experiment.schedule.phases())
    parts = _parts(experiment, replicas)
    return Plan(experiment, lab, binding, replicas, faults, _steps(experiment, lab, replicas, faults, parts), phases,
                parts)


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
    kind = target_kind(topo.is_network_hop(fault.target_service))
    realise = fault.scope.realise
    why = realisation_problem(fault.type, kind, fault.scope.widen, target=fault.target_service, service=service,
                              topology=topo.name, realise=realise)
    if why:  # load_experiment refuses it first, with the line; a guard for plans built another way
        raise InputError(_problem(experiment, why[0], f"chaos_injections.{fault.id}.target_service", why[1]))
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
    iface = DATA_IFACE if network else None
    wide = widened(kind, fault.scope.widen, realise)
    runtime = None
    if realisation_of(fault.type, kind, fault.scope.widen, realise) == "runtime":
        # The service runtime acts at the component's boundary (grayctl.runtime.faults): peers as
        # written (callers inside the process match by component or service name), and the data
        # addresses of peer services elsewhere (callers arriving over the network).
        names = [] if wanted in (None, "all") else list(dict.fromkeys(wanted))
        component = fault.target_service if fault.target_service in topo.components else None
        runtime = {"component": component, "in_process": kind == "component", "peers": names,
                   "peer_addresses": [ip for ip in dict.fromkeys(r.data_ip for r in replicas
                                                                 if r.service in peers and r.service != service)]}
        how = describe(fault.type, service=service, target_service=fault.target_service, nodes=nodes, widen=False,
                       runtime=True, component=component, in_process=kind == "component", peer_services=names)
    else:
        how = describe(fault.type, service=service, target_service=fault.target_service, nodes=nodes, widen=wide,
                       interface=iface, direction=fault.scope.direction or fault.parameters.get("direction"),
                       backend=fault.backend, peer_services=peers)
    return FaultTarget(fault, service, nodes, iface, tuple(sorted({r.port for r in mine})), peers, peer_ips,
                       how, wide, runtime)


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
                                seed=wl.seed, connections=wl.connections, keep_up_bound=wl.keep_up.bound()),
             0.0, total, why="open-loop load for the whole schedule"),
        Step("undeploy", "teardown", "deploy.yml", "lab_nodes", undeploy_extravars(experiment.topology),
             why="stop every service replica"),
    )


def _steps(experiment: Experiment, lab: LabDefinition, replicas: tuple[Replica, ...],
           faults: tuple[FaultTarget, ...], parts: tuple[Step, ...]) -> tuple[Step, ...]:
    sched = experiment.schedule
    total = sched.total_s
    deploy, monitor, workload = (next(p for p in parts if p.name == n) for n in ("deploy", "monitor", "workload"))
    # The provider says how: a netns reset (lab_reset.yml), a physical lab's backends (reimage.yml).
    provider = provider_for(lab)
    lab_vars = provider.reset_vars(lab)
    reimage = Step("reimage", "prepare", provider.reimage.playbook, provider.reimage.hosts, lab_vars,
                   why=provider.reimage.why)
    steps = [
        reimage,
        Step("verify-baseline", "prepare", "baseline.yml", "lab_nodes", {"baseline_mode": "verify"},
             why="fingerprint each node; refuse to run on drift (netns, qemu: in prepare.yml's first play, "
                 "before the reset, which runs only on drift)" if provider.capabilities.reset_reusable
             else "fingerprint each node; refuse to run on drift"),
        # One playbook run for everything before t=0 (each ansible-playbook start-up costs seconds):
        # the run adds its run id and the clock file to these extra vars.
        Step("prepare", "prepare", "prepare.yml", "lab_nodes",
             {**deploy.extravars, **monitor.extravars, **workload.extravars,
              "grayctl_lease_s": round(total + LEASE_MARGIN_S, 3)},
             why="replicas and exporters on every node, then Prometheus, clock offsets, and last the "
                 "open-loop load, whose start is t=0"),
    ]
    for ft in faults:
        f = ft.fault
        # Network faults scope to the service's own ports only where it shares its node; on a node
        # of its own every packet of the data interface is the service's (its calls included).
        shared = any(r.node in ft.nodes and r.service != ft.service for r in replicas)
        # One variable for playbooks/fault.yml: the node-facing spec, its family from the catalog.
        # On-host expiry: the node reverts by itself this long after the apply (the window + the
        # margin; experiment validation refused a window whose expiry would be out of bounds).
        spec = {"fault_spec": to_spec(node_fault_id(f.id), f.type, f.to_dict()["parameters"], name=f.id,
                                      expire_after_s=expire_after(f.end_s - f.start_s), service=ft.service,
                                      target_service=f.target_service, interface=ft.interface,
                                      peers=ft.peer_addresses, peer_services=ft.peers,
                                      ports=ft.ports if shared else (), scope=f.scope.to_dict(), backend=f.backend,
                                      realisation=ft.realisation, widened=ft.widened, effect="require",
                                      runtime=ft.runtime)}
        hosts = ":".join(ft.nodes)
        steps.append(Step(f"inject:{f.id}", "run", "fault.yml", hosts, {"fault_state": "present", **spec},
                          f.start_s, f.end_s, why=f"{f.type}: {ft.realisation}"))
        steps.append(Step(f"revert:{f.id}", "run", "fault.yml", hosts, {"fault_state": "absent", **spec},
                          f.end_s, None, why="revert and verify the kernel state is back"))
    steps.append(Step("collect", "collect", "collect_run.yml", "lab_nodes",
                      {**workload.extravars, "workload_state": "wait", "collect_lease_s": LEASE_MARGIN_S}, total,
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
