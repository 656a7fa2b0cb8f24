"""Faults, both halves: what the controller plans and what the node executes.

  catalog     the one list of fault types: family, parameters, defaults, units, backends, export
              names; docs/fault-catalog.md's Types section is generated from it
  validate    an experiment's ``parameters`` parsed against the catalog, with file positions
  spec        the resolved, node-facing spec of one fault on one node (the plan writes it, the
              node validates it); parameters resolved against the catalog
  tc          tc argv lists: netem, token buckets, scoping, ifb ingress
  backends    spec + backend -> the exact argv lists, helper and nft script of one fault
  node/       what runs on the node: the executor ``faultctl`` and the helpers (delayer,
              netfilter steering, stutter, on-host expiry, probes)

Layers point one way: controller code (plan, experiment) imports ``catalog``, ``validate`` and
``spec``; the node half imports only grayctl.faults.* and grayctl.units.
"""

from grayctl.faults.catalog import CATALOG, FAULT_TYPES, FaultType, Param

__all__ = ["CATALOG", "FAULT_TYPES", "FaultType", "Param"]
