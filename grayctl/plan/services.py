"""What the nodes run, as the plan's extra vars: every replica's runtime config, the load's targets.

Map:
  deploy_services(topology, replicas, *, seed) -> {node: [{name, replica, config}]}
                                                 every replica's runtime config, resolved here
  deploy_extravars(topology, replicas, *, seed) / undeploy_extravars(topology)
                                                 the deploy step's extra vars (roles/topology_deploy)
  workload_targets(topology, replicas)        -> {request type: {method, url, body_size}}
  workload_extravars(topology, replicas, ...) -> the workload step's extra vars (roles/workload)

The controller resolves everything (addresses, downstream URLs, targets); the roles only write
files, supervise processes and check health. ``grayctl plan --json`` shows the same extra vars.
The runtime config is the contract with the node (``grayctl.runtime.config``: resolved here,
validated there); nothing else of the node's code is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grayctl.runtime.config import service_config

if TYPE_CHECKING:
    from grayctl.plan.model import Replica
    from grayctl.topology import Topology

__all__ = ["LOG_FILE", "SPANS_FILE", "WORKLOAD_METRICS_PORT", "deploy_extravars", "deploy_services",
           "undeploy_extravars", "workload_extravars", "workload_targets"]

# The role puts spans and logs in the replica's directory on the node; these are placeholders.
SPANS_FILE = "spans.jsonl"
LOG_FILE = "runtime.jsonl"
WORKLOAD_METRICS_PORT = 9102


def deploy_services(topology: Topology, replicas: tuple[Replica, ...] | list[Replica], *,
                    seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Per node, the replicas it runs with their resolved runtime configs (docs/runtime.md)."""
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
                       keep_up_bound: dict[str, float] | None = None, state: str = "present") -> dict[str, Any]:
    out = {"workload_state": state, "workload_targets": workload_targets(topology, replicas),
           "workload_mix": mix, "workload_rate": rate, "workload_arrival": arrival, "workload_seed": seed,
           "workload_duration": duration, "workload_connections": connections}
    if keep_up_bound is not None:
        out["workload_keep_up_bound"] = keep_up_bound
    return out
