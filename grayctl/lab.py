"""The lab's lifecycle: bootstrap, up, status, reset, down, doctor - each a run returning a record.

Every function drives playbooks through ``grayctl.run.ansible`` and returns plain data for the CLI to
render; none touches a host itself.

  run_lab_bootstrap  playbooks/lab_bootstrap.yml (packages, on this machine), then the fault
                     backend's needs                                         -> BackendCheck
  run_lab_up         playbooks/lab_up.yml, then baseline.yml record over SSH -> LabRecord
  run_lab_status     playbooks/lab_inspect.yml, then an Ansible ping over SSH -> LabRecord
  run_lab_reset      playbooks/lab_reset.yml, then baseline.yml verify       -> LabRecord (DriftError on drift,
                     or the drift in the record with accept_drift); a physical lab (an Ansible
                     inventory, grayctl/physical.py): playbooks/reimage.yml, then verify
  run_lab_down       playbooks/lab_down.yml                                  -> LabRecord
  run_lab_doctor     lab_inspect.yml plus baseline verify, and the fault backend's needs on
                     this host (grayctl/faultbackend.py)                     -> DoctorReport

The netns provider's role (roles/netns_lab) records every resource before creating it, so
``down`` and ``doctor`` work after a crash. The module's result is read from the runner's events.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grayctl.errors import DriftError, LabError, StepFailed
from grayctl.faultbackend import BackendCheck, nodes_python, probe_fault_backend
from grayctl.labdef import LabDefinition
from grayctl.paths import PLAYBOOKS_DIR

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

APPLY_TASK = "Bring the lab to the requested state"  # roles/netns_lab/tasks/apply.yml
QEMU_TASK = "Bring the lab's VM nodes to the requested state"  # roles/qemu_lab/tasks/apply.yml
DRIFT_TASK = "Fail when the node drifted from its golden baseline"  # roles/baseline/tasks/verify.yml
BASELINE_PLAYBOOK = "baseline.yml"
REIMAGE_PLAYBOOK = "reimage.yml"  # physical labs: each node's backend (roles/reimage)


@dataclass
class NodeStatus:
    name: str
    roles: list[str]
    mgmt_ip: str
    data_ip: str
    netns: str
    reachable: bool | None = None  # None: not checked


@dataclass
class LabRecord:
    """What a lab command did and how the lab stands afterwards."""

    lab: str
    lab_dir: str
    status: str  # up | down | creating | removing
    inventory: str
    nodes: list[NodeStatus] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    cleaned: dict[str, list[str]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    baseline: str = "skipped"  # recorded | verified | drift accepted | skipped (no baseline playbook) | not run
    changed: bool = False
    # With --accept-drift: node -> [{check, golden, seen, why}], what verify found and the caller accepted.
    drift: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    lab: str
    status: str
    missing: list[str]
    left_behind: list[str]
    unrecorded: list[str]
    sshd_not_listening: list[str]
    drift: list[str]
    notes: list[str] = field(default_factory=list)
    # grayctl.faultbackend's check for the netns nodes (they share this host's kernel); None: not checked
    fault_backend: dict[str, Any] | None = None

    @property
    def backend_missing(self) -> list[dict[str, str]]:
        return list((self.fault_backend or {}).get("missing") or [])

    @property
    def clean(self) -> bool:
        return not (self.missing or self.left_behind or self.unrecorded or self.sshd_not_listening
                    or self.drift or self.backend_missing or self.status not in ("up", "down"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def ensure_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"'{what}' needs root: the lab is namespaces, links, cgroups and sshds on this machine",
                       hint=f"run it as root, e.g. sudo grayctl {what}")


def _role_vars(defn: LabDefinition, state: str) -> dict[str, Any]:
    # inline: the definition was validated here, and --nodes is already applied
    # reset, down and inspect act on the node count that is up (0: the recorded one)
    from grayctl.image import IMAGE_CACHE

    return {"netns_lab_definition": defn.to_dict(), "netns_lab_nodes": defn.count if state == "present" else 0,
            "netns_lab_home": str(defn.lab_dir), "netns_lab_state": state, "qemu_lab_image_cache": str(IMAGE_CACHE),
            # VMs mount this package (wherever it is installed) over virtio-9p, not a checkout's
            "qemu_lab_grayctl_dir": str(Path(__file__).resolve().parent)}


def _run_provider(playbook: str, defn: LabDefinition, state: str, verbose: bool) -> dict[str, Any]:
    """Run a lab_* playbook on the controller; the module's result, or LabError saying why not."""
    from grayctl.run.ansible import run_playbook

    try:
        result = run_playbook(playbook, extravars=_role_vars(defn, state), verbose=verbose)
    except StepFailed as err:
        # on the controller, a failed preflight or module is this machine's problem: exit 3
        raise LabError(err.message, hint=err.hint) from None
    res = result.results(APPLY_TASK).get("localhost")
    if res is None:
        raise LabError(f"{playbook} ran but reported no result for '{APPLY_TASK}'")
    vm = result.results(QEMU_TASK).get("localhost")
    return _merge_vms(res, vm) if vm else res


def _merge_vms(res: dict[str, Any], vm: dict[str, Any]) -> dict[str, Any]:
    """The qemu_lab module's result folded into the netns one: one record, one doctor report."""
    res = dict(res)
    res["created"] = res.get("created", []) + vm.get("created", [])
    res["removed"] = vm.get("removed", []) + res.get("removed", [])
    res["changed"] = bool(res.get("changed")) or bool(vm.get("changed"))
    rep, vrep = dict(res.get("report", {})), vm.get("report", {})
    for key in ("missing", "left_behind", "unrecorded", "exists"):
        rep[key] = rep.get(key, []) + vrep.get(key, [])
    rep["sshd_not_listening"] = rep.get("sshd_not_listening", []) + vrep.get("ssh_not_listening", [])
    rep["clean"] = bool(rep.get("clean", True)) and bool(vrep.get("clean", True))
    if vrep.get("status") in ("creating", "removing"):
        rep["status"] = vrep["status"]
    rep["qemu"] = {"accel": vm.get("accel", {}), "vms": vm.get("vms", []), "seconds": vm.get("seconds", {}),
                   "image": vm.get("image")}
    res["report"] = rep
    return res


def _record(defn: LabDefinition, res: dict[str, Any]) -> LabRecord:
    lab = res.get("lab", {})
    return LabRecord(
        lab=defn.name,
        lab_dir=str(defn.lab_dir),
        status=lab.get("status", "unknown"),
        inventory=str(defn.inventory_path),
        nodes=[NodeStatus(n["name"], list(n["roles"]), n["mgmt_ip"], n["data_ip"], n["netns"])
               for n in res.get("nodes", [])],
        created=res.get("created", []),
        removed=res.get("removed", []),
        cleaned=res.get("cleaned", {}),
        report=res.get("report", {}),
        changed=bool(res.get("changed")),
    )


def _has_baseline() -> bool:
    return (PLAYBOOKS_DIR / BASELINE_PLAYBOOK).is_file()


def _golden_complete(defn: LabDefinition) -> bool:
    golden = defn.lab_dir / "baseline" / "golden"
    return all((golden / f"{n}.json").is_file() for n in defn.node_names)


def _baseline(defn: LabDefinition, mode: str, verbose: bool, check: bool = True):
    from grayctl.run.ansible import run_playbook

    return run_playbook(BASELINE_PLAYBOOK, inventory=defn.inventory_path,
                        extravars={"baseline_mode": mode}, verbose=verbose, check=check)


def _drift_lines(result) -> list[str]:
    """The baseline role's diff lines per drifted node; other failures as the runner renders them."""
    lines: list[str] = []
    drift = result.results(DRIFT_TASK)
    for f in result.failures:
        msg = (drift.get(f.host) or {}).get("msg") if f.task == DRIFT_TASK else None
        if isinstance(msg, list):
            lines += [str(msg[0])] + [f"  {m}" for m in msg[1:]]
        else:
            lines.append(f.render())
    return lines


def _drift_records(defn: LabDefinition, nodes: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Per drifted node, per check: golden vs seen, from the verify records (baseline/last/<node>.json)."""
    import json

    out: dict[str, list[dict[str, Any]]] = {}
    for node in sorted(nodes):
        try:
            rec = json.loads((defn.lab_dir / "baseline" / "last" / f"{node}.json").read_text())
        except (OSError, ValueError):
            out[node] = [{"check": "?", "golden": None, "seen": None, "why": "no verify record on the controller"}]
            continue
        out[node] = [{"check": d.get("field"), "golden": d.get("golden"), "seen": d.get("now"), "why": d.get("why")}
                     for d in rec.get("drift") or []]
    return out


def _verify(defn: LabDefinition, verbose: bool, accept_drift: bool, when: str) -> dict[str, list[dict[str, Any]]]:
    """Baseline verify; {} when clean. Drift raises DriftError with a per node, per check diff, or
    with ``accept_drift`` is returned. Any other failure (a node unreachable) always raises."""
    result = _baseline(defn, "verify", verbose, check=False)
    if result.ok:
        return {}
    drifted = {f.host for f in result.failures if f.task == DRIFT_TASK}
    other = [f for f in result.failures if f.task != DRIFT_TASK]
    drift = _drift_records(defn, drifted)
    if accept_drift and drift and not other:
        return drift
    total = len(defn.node_names)
    head = (f"{len(drifted)} of {total} node(s) differ from their golden baseline {when}"
            + (f"; {len(other)} node(s) could not be verified" if other else "") + " (check: golden -> now):")
    lines = [head]
    for node, checks in drift.items():
        lines.append(f"  {node}:")
        lines += [f"    {c['check']}: {c['golden']!s} -> {c['seen']!s}" + (f"  ({c['why']})" if c.get("why") else "")
                  for c in checks]
    lines += [f"  {f.render()}" for f in other]
    hint = f"the golden and last fingerprints are in {defn.lab_dir / 'baseline'}"
    if drift and not other:
        hint += "; --accept-drift runs anyway and records the deviation (in a run's manifest.json: baseline)"
    raise DriftError("\n".join(lines), hint=hint)


def run_lab_bootstrap(*, with_test_tools: bool = False, verbose: bool = False) -> BackendCheck:
    """Install the lab's packages (``with_test_tools``: also what only the test suite and benchmarks
    use); then what the fault backend this host would choose still lacks (pip packages, say)."""
    from grayctl.run.ansible import run_playbook

    ensure_root("lab bootstrap")
    run_playbook("lab_bootstrap.yml", extravars={"lab_bootstrap_with_test_tools": with_test_tools}, verbose=verbose)
    python, where = nodes_python()
    return probe_fault_backend(python, python_source=where)


def _is_physical(defn: Any) -> bool:
    """A lab given as an Ansible inventory (grayctl/physical.py): grayctl neither creates nor removes it."""
    return getattr(defn, "provider", "netns") == "physical"


def _physical_record(lab: Any) -> LabRecord:
    """A physical lab as it stands: up, its nodes from the inventory (no netns)."""
    return LabRecord(lab=lab.name, lab_dir=str(lab.lab_dir), status="up", inventory=str(lab.inventory_path),
                     nodes=[NodeStatus(n.name, list(n.roles), n.mgmt_ip, n.data_ip, "") for n in lab.nodes])


def _refuse_physical(defn: Any, what: str) -> None:
    if _is_physical(defn):
        raise LabError(f"lab {defn.name} is an inventory of machines grayctl does not create or remove: "
                       f"'lab {what}' does not apply",
                       hint=f"reimage with 'grayctl lab reset --lab {defn.inventory_path}'; record golden baselines "
                            f"with ansible-playbook -i {defn.inventory_path} playbooks/baseline.yml -e baseline_mode=record")


def _link_node_runtime(defn: LabDefinition) -> None:
    """Point the lab's ``runtime`` link (the inventory's grayctl_python) at this grayctl's node
    runtime. netns nodes share this host's filesystem, so one runtime here serves them all; a lab
    that is up keeps running the code of its last up or reset."""
    from grayctl.node_runtime import ensure_runtime

    ensure_runtime(link=defn.lab_dir / "runtime")


def run_lab_up(defn: LabDefinition, nodes: int | None = None, *, verbose: bool = False) -> LabRecord:
    """Create or converge the lab, then record every node's golden baseline."""
    _refuse_physical(defn, "up")
    ensure_root("lab up")
    if nodes is not None:
        defn = defn.with_count(nodes)
    if defn.vm_nodes and defn.qemu:
        from grayctl.image import find_image

        find_image(defn.qemu["image"])  # before anything is made: 'grayctl image build' first
    t0 = time.monotonic()
    record = _record(defn, _run_provider("lab_up.yml", defn, "present", verbose))
    _link_node_runtime(defn)
    record.seconds["up"] = round(time.monotonic() - t0, 2)
    if _has_baseline():
        t1 = time.monotonic()
        _baseline(defn, "record", verbose)
        record.baseline = "recorded"
        record.seconds["baseline"] = round(time.monotonic() - t1, 2)
    return record


def run_lab_status(defn: LabDefinition, *, verbose: bool = False, ping: bool = True) -> LabRecord:
    """Nodes, addresses, roles; with ``ping``, whether Ansible reaches each over SSH."""
    from grayctl.run.ansible import run_module

    if _is_physical(defn):
        record = _physical_record(defn)
    else:
        ensure_root("lab status")
        record = _record(defn, _run_provider("lab_inspect.yml", defn, "inspect", verbose))
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


def run_lab_reset(defn: LabDefinition, *, verbose: bool = False, accept_drift: bool = False) -> LabRecord:
    """Every node back to its golden baseline, then verified; DriftError (exit 5) with the diff, or
    with ``accept_drift`` the drift in ``record.drift``. A physical lab (an inventory) is reimaged
    by playbooks/reimage.yml, each node through its own backend."""
    if _is_physical(defn):
        return _reset_physical(defn, verbose=verbose, accept_drift=accept_drift)
    ensure_root("lab reset")
    t0 = time.monotonic()
    record = _record(defn, _run_provider("lab_reset.yml", defn, "reset", verbose))
    _link_node_runtime(defn)
    record.seconds["reset"] = round(time.monotonic() - t0, 2)
    if not _has_baseline():
        return record
    recorded_defn = defn.with_count(len(record.nodes)) if record.nodes else defn
    t1 = time.monotonic()
    if not _golden_complete(recorded_defn):
        # a node without a golden record (an older lab, or one just grown) gets one now
        _baseline(recorded_defn, "record", verbose)
        record.baseline = "recorded"
    else:
        record.drift = _verify(recorded_defn, verbose, accept_drift, "after reset")
        record.baseline = "drift accepted" if record.drift else "verified"
    record.seconds["verify"] = round(time.monotonic() - t1, 2)
    return record


def _reset_physical(lab: Any, *, verbose: bool, accept_drift: bool) -> LabRecord:
    """reimage.yml over the lab's inventory (a failure names host, backend and step: StepFailed),
    then baseline verify. Golden records are never written here: record them right after imaging
    (docs/reimage.md), so a reimage that did not work cannot bless itself."""
    from grayctl.run.ansible import run_playbook

    record = _physical_record(lab)
    t0 = time.monotonic()
    run_playbook(REIMAGE_PLAYBOOK, inventory=lab.inventory_path, verbose=verbose)
    record.changed = True
    record.cleaned = {n.name: [f"reimaged ({lab.reimage.get(n.name, '?')})"] for n in lab.nodes}
    record.seconds["reimage"] = round(time.monotonic() - t0, 2)
    if not _golden_complete(lab):
        missing = [n for n in lab.node_names if not (lab.lab_dir / "baseline" / "golden" / f"{n}.json").is_file()]
        raise LabError(f"no golden baseline for {', '.join(missing)} in {lab.lab_dir / 'baseline' / 'golden'}",
                       hint=f"right after imaging: ansible-playbook -i {lab.inventory_path} playbooks/baseline.yml "
                            "-e baseline_mode=record")
    t1 = time.monotonic()
    record.drift = _verify(lab, verbose, accept_drift, "after reimage")
    record.baseline = "drift accepted" if record.drift else "verified"
    record.seconds["verify"] = round(time.monotonic() - t1, 2)
    t2 = time.monotonic()
    _install_node_runtime(lab, verbose)
    record.seconds["runtime"] = round(time.monotonic() - t2, 2)
    return record


def _install_node_runtime(lab: Any, verbose: bool) -> None:
    """A reimaged physical node has no grayctl: the node_runtime role installs this one from a
    bundle (package files + wheels), after the verify, as software the run deploys."""
    from grayctl.node_runtime import BUNDLE_CACHE, build_bundle
    from grayctl.run.ansible import run_playbook

    bundle = build_bundle(BUNDLE_CACHE)
    run_playbook("node_runtime.yml", inventory=lab.inventory_path, extravars={"node_runtime_bundle": str(bundle)},
                 verbose=verbose)


def run_lab_down(defn: LabDefinition, *, verbose: bool = False) -> LabRecord:
    """Remove everything the lab's record holds (in reverse order); what was removed."""
    _refuse_physical(defn, "down")
    ensure_root("lab down")
    t0 = time.monotonic()
    record = _record(defn, _run_provider("lab_down.yml", defn, "absent", verbose))
    record.seconds["down"] = round(time.monotonic() - t0, 2)
    return record


def run_lab_doctor(defn: LabDefinition, *, verbose: bool = False) -> DoctorReport:
    """Anything left behind, missing or unrecorded, and drifted nodes. Changes nothing."""
    if _is_physical(defn):
        # grayctl made none of its resources: only drift can be checked
        doctor = DoctorReport(lab=defn.name, status="up", missing=[], left_behind=[], unrecorded=[],
                              sshd_not_listening=[], drift=[])
        if _golden_complete(defn):
            doctor.drift = _drift_lines(_baseline(defn, "verify", verbose, check=False))
        else:
            doctor.notes.append("no golden baseline for every node: record one right after imaging "
                                "(playbooks/baseline.yml -e baseline_mode=record)")
        doctor.notes.append("fault backend not checked: each node's executor probes its own kernel when it applies one")
        return doctor
    ensure_root("lab doctor")
    record = _record(defn, _run_provider("lab_inspect.yml", defn, "inspect", verbose))
    rep = record.report
    doctor = DoctorReport(
        lab=defn.name, status=rep.get("status", "unknown"), missing=rep.get("missing", []),
        left_behind=rep.get("left_behind", []), unrecorded=rep.get("unrecorded", []),
        sshd_not_listening=rep.get("sshd_not_listening", []), drift=[],
    )
    if len(defn.vm_nodes) < len(defn.node_names):  # VM nodes have kernels of their own
        python, where = nodes_python(defn.lab_dir, defn.inventory_path if doctor.status == "up" else None)
        doctor.fault_backend = probe_fault_backend(python, python_source=where).to_dict()
    if doctor.status not in ("up", "down"):
        doctor.notes.append(f"the lab's state is '{doctor.status}': a lab command was interrupted; "
                            "'grayctl lab down' removes what it recorded")
    if doctor.status == "up" and _has_baseline() and not doctor.missing:
        recorded_defn = defn.with_count(len(record.nodes)) if record.nodes else defn
        if _golden_complete(recorded_defn):
            result = _baseline(recorded_defn, "verify", verbose, check=False)
            doctor.drift = _drift_lines(result)
        else:
            doctor.notes.append("no golden baseline for every node: 'grayctl lab reset' records one")
    return doctor
