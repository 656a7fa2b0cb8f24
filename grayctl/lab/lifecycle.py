"""The lab's lifecycle: bootstrap, up, status, reset, down, doctor - each a run returning a record.

Every function drives playbooks through ``grayctl.run.ansible`` and returns plain data for the CLI to
render; none touches a host itself. Each asks the lab's provider (grayctl/lab/provider.py) to do
its part:

  run_lab_bootstrap  playbooks/lab_bootstrap.yml (packages, on this machine), then the fault
                     backend's needs                                         -> BackendCheck
  run_lab_up         the provider's up (netns, qemu: lab_up.yml), then baseline.yml record over SSH
                                                                             -> LabRecord
  run_lab_status     the provider's status (lab_inspect.yml; physical: the inventory), then an
                     Ansible ping over SSH                                   -> LabRecord
  run_lab_reset      the provider's reset (netns, qemu: lab_reset.yml; physical: reimage.yml),
                     then baseline.yml verify                                -> LabRecord (DriftError on drift,
                     or the drift in the record with accept_drift)
  run_lab_down       the provider's down (lab_down.yml)                      -> LabRecord
  run_lab_doctor     the provider's inspect plus baseline verify, and the fault backend's needs on
                     this host (grayctl/faultbackend.py)                     -> DoctorReport
"""

from __future__ import annotations

from typing import Any

from grayctl.faultbackend import BackendCheck, nodes_python, probe_fault_backend
from grayctl.lab.provider import provider_for
from grayctl.lab.records import DoctorReport, LabRecord, NodeStatus, ensure_root

__all__ = [
    "LabRecord",
    "NodeStatus",
    "DoctorReport",
    "ensure_root",
    "run_lab_bootstrap",
    "run_lab_up",
    "run_lab_status",
    "run_lab_reset",
    "run_lab_down",
    "run_lab_doctor",
]


def run_lab_bootstrap(*, with_test_tools: bool = False, verbose: bool = False) -> BackendCheck:
    """Install the lab's packages (``with_test_tools``: also what only the test suite and benchmarks
    use); then what the fault backend this host would choose still lacks (pip packages, say)."""
    from grayctl.run.ansible import run_playbook

    ensure_root("lab bootstrap")
    run_playbook("lab_bootstrap.yml", extravars={"lab_bootstrap_with_test_tools": with_test_tools}, verbose=verbose)
    python, where = nodes_python()
    return probe_fault_backend(python, python_source=where)


def run_lab_up(defn: Any, nodes: int | None = None, *, verbose: bool = False) -> LabRecord:
    """Create or converge the lab, then record every node's golden baseline."""
    return provider_for(defn).up(defn, nodes, verbose=verbose)


def run_lab_status(defn: Any, *, verbose: bool = False, ping: bool = True) -> LabRecord:
    """Nodes, addresses, roles; with ``ping``, whether Ansible reaches each over SSH."""
    from grayctl.run.ansible import run_module

    record = provider_for(defn).status(defn, verbose=verbose)
    if record.status != "up":
        record.nodes = []  # the definition's nodes are not what is (not) there
        return record
    if ping:
        result = run_module("ansible.builtin.ping", inventory=defn.inventory_path, pattern="lab_nodes",
                            check=False, verbose=verbose)
        pong = result.results("ansible.builtin.ping")
        failed = {f.host for f in result.failures}
        for node in record.nodes:
            node.reachable = node.name in pong and node.name not in failed
    return record


def run_lab_reset(defn: Any, *, verbose: bool = False, accept_drift: bool = False) -> LabRecord:
    """Every node back to its golden baseline, then verified; DriftError (exit 5) with the diff, or
    with ``accept_drift`` the drift in ``record.drift``. A physical lab (an inventory) is reimaged
    by playbooks/reimage.yml, each node through its own backend."""
    return provider_for(defn).reset(defn, verbose=verbose, accept_drift=accept_drift)


def run_lab_down(defn: Any, *, verbose: bool = False) -> LabRecord:
    """Remove everything the lab's record holds (in reverse order); what was removed."""
    return provider_for(defn).down(defn, verbose=verbose)


def run_lab_doctor(defn: Any, *, verbose: bool = False) -> DoctorReport:
    """Anything left behind, missing or unrecorded, and drifted nodes. Changes nothing."""
    return provider_for(defn).doctor(defn, verbose=verbose)
