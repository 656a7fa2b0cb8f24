"""A lab given as an Ansible inventory: physical servers, BMCs, hypervisor guests.

``--lab`` takes a lab definition (``lab.yml``, grayctl makes the nodes) or, for a lab grayctl does
not make, an Ansible inventory: a path to one (``inventories/example-physical/hosts.yml``) or the
name of a directory under ``inventories/`` that holds ``hosts.yml`` and no ``lab.yml``.

  is_inventory(path) -> bool            an inventory rather than a lab definition
  load_physical_lab(path) -> PhysicalLab read through Ansible itself: ``ansible-inventory --list``
                                         for hosts and groups in inventory order, then one
                                         ``debug`` per host so grayctl_* variables are rendered by
                                         the inventory's own templating (group_vars, vaults)

``PhysicalLab`` has the surface of ``LabDefinition`` that the plan, the run and the lifecycle use
(name, provider, nodes, lab_dir, inventory_path, source). ``PhysicalProvider`` is its side of the
provider seam: grayctl neither creates nor removes these machines, so ``up`` and ``down`` refuse;
the reset is playbooks/reimage.yml, which runs each node's backend (``grayctl_reimage``, one role
each: docs/reimage.md), then the baseline verify and the node runtime.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grayctl.errors import InputError, LabError, Problem
from grayctl.lab.baseline import drift_lines, golden_complete, run_baseline, verify
from grayctl.lab.node import LabNode
from grayctl.lab.provider import Capabilities, Provider, ReimageStep
from grayctl.lab.records import DoctorReport, LabRecord, NodeStatus

__all__ = ["PhysicalLab", "PhysicalProvider", "is_inventory", "load_physical_lab"]

PROVIDER = "physical"
REIMAGE_PLAYBOOK = "reimage.yml"  # each node's backend (roles/reimage)
REQUIRED = ("grayctl_lab", "grayctl_lab_dir", "grayctl_mgmt_ip", "grayctl_data_ip", "grayctl_state_dir")
# Rendered per host by Ansible (one ad-hoc debug): what grayctl needs of each node.
_PROBE = ('{"msg": "{{ {\\"lab\\": grayctl_lab | default(\\"\\"), \\"lab_dir\\": grayctl_lab_dir | default(\\"\\"), '
          '\\"mgmt_ip\\": grayctl_mgmt_ip | default(\\"\\"), \\"data_ip\\": grayctl_data_ip | default(\\"\\"), '
          '\\"state_dir\\": grayctl_state_dir | default(\\"\\"), \\"reimage\\": grayctl_reimage | default(\\"none\\"), '
          '\\"provider\\": grayctl_provider | default(\\"physical\\"), \\"groups\\": group_names} }}"}')


@dataclass(frozen=True)
class PhysicalLab:
    name: str
    inventory_path: Path
    lab_dir: Path
    nodes: tuple[LabNode, ...]
    reimage: dict[str, str] = field(default_factory=dict)  # node -> backend
    source: Path | None = field(default=None, compare=False)
    provider: str = PROVIDER
    vm_nodes: tuple[str, ...] = ()

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def count(self) -> int:
        return len(self.nodes)

    def with_count(self, count: int) -> PhysicalLab:
        if count != len(self.nodes):
            raise InputError(Problem(f"lab {self.name!r} is an inventory of {len(self.nodes)} node(s); "
                                     "grayctl does not add or remove its nodes", path="--nodes"))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "provider": PROVIDER, "inventory": str(self.inventory_path),
                "nodes": {n.name: {"roles": list(n.roles), "mgmt_ip": n.mgmt_ip, "data_ip": n.data_ip,
                                   "reimage": self.reimage.get(n.name)} for n in self.nodes}}


def is_inventory(path: Path) -> bool:
    """An Ansible inventory (YAML with a top-level ``all``, or INI sections) rather than a lab.yml."""
    if path.is_dir():
        return (path / "hosts.yml").is_file() and not (path / "lab.yml").is_file()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    from grayctl.source import _deep_flow_at

    if _deep_flow_at(text) is not None:  # PyYAML would spend the square of the depth: load_lab refuses it
        return False
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError):  # ValueError: a tag PyYAML cannot build ('!!float y')
        data = None
    except RecursionError:  # nested deeper than PyYAML's recursion: no inventory; load_lab says where
        return False
    if isinstance(data, dict):
        return "all" in data and "name" not in data
    if path.suffix in (".yml", ".yaml"):
        return False  # a broken YAML file: load_lab names its line, ansible-inventory would not
    return any(line.strip().startswith("[") for line in text.splitlines())


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)  # the venv's Ansible, when grayctl runs from one
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        raise LabError(f"{name} is not installed", hint="install grayctl with its dependencies (ansible-core)")
    return path


def _ordered_hosts(inventory: dict[str, Any], group: str) -> list[str]:
    entry = inventory.get(group, {})
    out = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        out += [h for h in _ordered_hosts(inventory, child) if h not in out]
    return out


def load_physical_lab(path: str | Path, *, verbose: bool = False) -> PhysicalLab:
    """Read an inventory into a PhysicalLab; InputError naming the file, host and variable when a
    node lacks what grayctl needs."""
    from grayctl.run.ansible import run_module

    path = Path(path).resolve()
    proc = subprocess.run([_tool("ansible-inventory"), "-i", str(path), "--list"], check=False, capture_output=True,
                          text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise InputError(Problem(f"ansible-inventory cannot read it: {proc.stderr.strip()[-400:]}", file=str(path)))
    inventory = json.loads(proc.stdout)
    hosts = _ordered_hosts(inventory, "lab_nodes")
    if not hosts:
        raise InputError(Problem("the inventory has no hosts in group lab_nodes", file=str(path), path="lab_nodes",
                                 expected="a lab_nodes group whose children are app, client and monitor"))
    result = run_module("ansible.builtin.debug", inventory=path.resolve(), pattern="lab_nodes", module_args=_PROBE,
                        check=False, verbose=verbose)
    seen = result.results("ansible.builtin.debug")
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    problems: list[Problem] = []
    nodes: list[LabNode] = []
    reimage: dict[str, str] = {}
    labs: set[tuple[str, str]] = set()
    for i, host in enumerate(hosts, start=1):
        v = (seen.get(host) or {}).get("msg")
        if not isinstance(v, dict):
            problems.append(Problem(f"Ansible could not render the variables of host {host}", file=str(path),
                                    path=f"lab_nodes.{host}"))
            continue
        for var, key in (("grayctl_lab", "lab"), ("grayctl_lab_dir", "lab_dir"), ("grayctl_mgmt_ip", "mgmt_ip"),
                         ("grayctl_data_ip", "data_ip"), ("grayctl_state_dir", "state_dir")):
            if not v.get(key) and var not in hostvars.get(host, {}):
                problems.append(Problem(f"host {host} has no {var}", file=str(path), path=f"{host}.{var}",
                                        expected="see inventories/example-physical/README.md"))
        labs.add((str(v.get("lab")), str(v.get("lab_dir"))))
        roles = tuple(sorted(g for g in v.get("groups", []) if g != "lab_nodes"))
        nodes.append(LabNode(name=host, index=i, roles=roles, mgmt_ip=str(v.get("mgmt_ip")),
                             data_ip=str(v.get("data_ip")), provider=PROVIDER))
        reimage[host] = str(v.get("reimage"))
    if len(labs) > 1:
        problems.append(Problem(f"the hosts disagree on grayctl_lab / grayctl_lab_dir: {sorted(labs)}",
                                file=str(path), expected="one lab per inventory (set both in group_vars/all.yml)"))
    if problems:
        raise InputError(problems, hint="the variables are listed in inventories/example-physical/README.md")
    name, lab_dir = next(iter(labs))
    return PhysicalLab(name=name, inventory_path=path, lab_dir=Path(lab_dir), nodes=tuple(nodes), reimage=reimage,
                       source=path)


class PhysicalProvider(Provider):
    name = PROVIDER
    capabilities = Capabilities(creates_nodes=False, reset_reimages=True, teardown_by_reset=False,
                                reset_reusable=False, host_kernel=False)
    reimage = ReimageStep(REIMAGE_PLAYBOOK, "lab_nodes", "every node back to its golden image through its backend, "
                                                          "then SSH")

    def _record(self, lab: PhysicalLab) -> LabRecord:
        """A physical lab as it stands: up, its nodes from the inventory (no netns)."""
        return LabRecord(lab=lab.name, lab_dir=str(lab.lab_dir), status="up", inventory=str(lab.inventory_path),
                         nodes=[NodeStatus(n.name, list(n.roles), n.mgmt_ip, n.data_ip, "") for n in lab.nodes])

    def _refuse(self, lab: PhysicalLab, what: str) -> LabRecord:
        raise LabError(f"lab {lab.name} is an inventory of machines grayctl does not create or remove: "
                       f"'lab {what}' does not apply",
                       hint=f"reimage with 'grayctl lab reset --lab {lab.inventory_path}'; record golden baselines "
                            f"with ansible-playbook -i {lab.inventory_path} playbooks/baseline.yml -e baseline_mode=record")

    def up(self, lab: PhysicalLab, nodes: int | None, *, verbose: bool) -> LabRecord:
        return self._refuse(lab, "up")

    def down(self, lab: PhysicalLab, *, verbose: bool) -> LabRecord:
        return self._refuse(lab, "down")

    def status(self, lab: PhysicalLab, *, verbose: bool) -> LabRecord:
        return self._record(lab)

    def reset(self, lab: PhysicalLab, *, verbose: bool, accept_drift: bool) -> LabRecord:
        """reimage.yml over the lab's inventory (a failure names host, backend and step: StepFailed),
        then baseline verify. Golden records are never written here: record them right after imaging
        (docs/reimage.md), so a reimage that did not work cannot bless itself."""
        from grayctl.run.ansible import run_playbook

        record = self._record(lab)
        t0 = time.monotonic()
        run_playbook(REIMAGE_PLAYBOOK, inventory=lab.inventory_path, verbose=verbose)
        record.changed = True
        record.cleaned = {n.name: [f"reimaged ({lab.reimage.get(n.name, '?')})"] for n in lab.nodes}
        record.seconds["reimage"] = round(time.monotonic() - t0, 2)
        if not golden_complete(lab):
            missing = [n for n in lab.node_names if not (lab.lab_dir / "baseline" / "golden" / f"{n}.json").is_file()]
            raise LabError(f"no golden baseline for {', '.join(missing)} in {lab.lab_dir / 'baseline' / 'golden'}",
                           hint=f"right after imaging: ansible-playbook -i {lab.inventory_path} playbooks/baseline.yml "
                                "-e baseline_mode=record")
        t1 = time.monotonic()
        record.drift = verify(lab, verbose, accept_drift, "after reimage")
        record.baseline = "drift accepted" if record.drift else "verified"
        record.seconds["verify"] = round(time.monotonic() - t1, 2)
        t2 = time.monotonic()
        self._install_node_runtime(lab, verbose)
        record.seconds["runtime"] = round(time.monotonic() - t2, 2)
        return record

    def _install_node_runtime(self, lab: PhysicalLab, verbose: bool) -> None:
        """A reimaged physical node has no grayctl: the node_runtime role installs this one from a
        bundle (package files + wheels), after the verify, as software the run deploys."""
        from grayctl.node_runtime import BUNDLE_CACHE, build_bundle
        from grayctl.run.ansible import run_playbook

        bundle = build_bundle(BUNDLE_CACHE)
        run_playbook("node_runtime.yml", inventory=lab.inventory_path, extravars={"node_runtime_bundle": str(bundle)},
                     verbose=verbose)

    def doctor(self, lab: PhysicalLab, *, verbose: bool) -> DoctorReport:
        # grayctl made none of its resources: only drift can be checked
        doctor = DoctorReport(lab=lab.name, status="up", missing=[], left_behind=[], unrecorded=[],
                              sshd_not_listening=[], drift=[])
        if golden_complete(lab):
            doctor.drift = drift_lines(run_baseline(lab, "verify", verbose, check=False))
        else:
            doctor.notes.append("no golden baseline for every node: record one right after imaging "
                                "(playbooks/baseline.yml -e baseline_mode=record)")
        doctor.notes.append("fault backend not checked: each node's executor probes its own kernel when it applies one")
        return doctor
