"""The run plan: experiment + topology + lab -> an ordered list of steps. Pure data.

Map of the package (``from grayctl.plan import X`` works for every name in ``__all__``):
  model     Plan, Step, Replica, FaultTarget: what a plan is made of; ``Plan.to_dict()`` is what
            ``grayctl plan --json`` prints; ``teardown_path(lab)``: how a run ends on that lab
  build     build_plan(experiment, lab) -> Plan: slots bound to lab nodes, faults to nodes and
            interfaces, the schedule to time windows, the steps
  services  the deploy and workload steps' extra vars: every replica's resolved runtime config,
            the load generator's targets
  timing    revert_aim_s, fault_edges: a fault's aimed revert, its planned against measured edges

Layers: the plan imports no playbook runner, no subprocess and no node-side code (the fault
catalog and the runtime config contract are the only doors; tests/unit/test_layers.py). It
touches no host; ``grayctl run`` (grayctl/run/) executes its steps, ``grayctl.deploy`` its parts.
"""

from grayctl.plan.build import DATA_IFACE, build_plan
from grayctl.plan.model import FaultTarget, Plan, Replica, Step, teardown_path
from grayctl.plan.timing import fault_edges, revert_aim_s

__all__ = ["DATA_IFACE", "FaultTarget", "Plan", "Replica", "Step", "build_plan", "fault_edges", "revert_aim_s",
           "teardown_path"]
