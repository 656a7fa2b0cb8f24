"""Topology files: a logical application, its decomposition into services, and their placement.

Map of the package (``from grayctl.topology import X`` works for every name in ``__all__``):
  model      the pure description: Topology, Component, Endpoint, Call, Parallel, Step, Dist, Store,
             Concurrency, RequestType, Service (frozen dataclasses; walks and ``to_dict`` on Topology)
  load       load_topology(name_or_path) -> Topology, find_topology(name) -> Path,
             list_topologies() -> [(name, path, summary)], TOPOLOGIES_DIR
  validate   validate_topology(data, positions, file, path) -> Topology   (InputError on any problem)
  include    ``application: {from: apps/<name>.yaml}``: the application in a file of its own
  placement  ``decomposition``, ``placement`` and ``ports`` -> services with their slots and ports
  graph      the call graph's structure: find_cycle
  render     the call graph as Graphviz: to_dot(topology), to_image(dot, format)

Layers point one way: model <- graph, placement, include <- validate <- load; render reads the
model only. The file format is documented in docs/topology-format.md.
"""

from __future__ import annotations

from grayctl.topology.load import TOPOLOGIES_DIR, find_topology, list_topologies, load_topology
from grayctl.topology.model import (
    Call,
    Component,
    Concurrency,
    Dist,
    Endpoint,
    Parallel,
    RequestType,
    Service,
    Step,
    Store,
    Topology,
)
from grayctl.topology.validate import validate_topology

__all__ = [
    "TOPOLOGIES_DIR",
    "Call",
    "Component",
    "Concurrency",
    "Dist",
    "Endpoint",
    "Parallel",
    "RequestType",
    "Service",
    "Step",
    "Store",
    "Topology",
    "find_topology",
    "list_topologies",
    "load_topology",
    "validate_topology",
]
