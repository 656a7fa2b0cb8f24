"""The lab's lifecycle: bootstrap, up, status, reset, down, doctor - each a run returning a record.

Every function drives playbooks through ``grayctl.runner`` and returns plain data for the CLI to
render; none touches a host itself.

  run_lab_bootstrap  playbooks/lab_bootstrap.yml (packages, on this machine)
  run_lab_up         playbooks/lab_up.yml, then baseline.yml record over SSH -> LabRecord
  run_lab_status     playbooks/lab_inspect.yml, then an Ansible ping over SSH -> LabRecord
  run_lab_reset      playbooks/lab_reset.yml, then baseline.yml verify       -> LabRecord (DriftError on drift)
  run_lab_down       playbooks/lab_down.yml                                  -> LabRecord
  run_lab_doctor     lab_inspect.yml plus baseline verify                    -> DoctorReport

The netns provider's role (roles/netns_lab) records every resource before creating it, so
``down`` and ``doctor`` work after a crash. The module's result is read from the runner's events.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from grayctl.errors import DriftError, LabError, StepFailed
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
DRIFT_TASK = "Fail when the node drifted from its golden baseline"  # roles/baseline/tasks/verify.yml
BASELINE_PLAYBOOK = "baseline.yml"


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
    baseline: str = "skipped"  # recorded | verified | skipped (no baseline playbook) | not run
    changed: bool = False
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

    @property
    def clean(self) -> bool:
        return not (self.missing or self.left_behind or self.unrecorded or self.sshd_not_listening
                    or self.drift or self.status not in ("up", "down"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def ensure_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"'{what}' needs root: the lab is namespaces, links, cgroups and sshds on this machine",
                       hint=f"run it as root, e.g. sudo grayctl {what}")


def _role_vars(defn: LabDefinition, state: str) -> dict[str, Any]:
    # inline: the definition was validated here, and --nodes is already applied
    # reset, down and inspect act on the node count that is up (0: the recorded one)
    return {"netns_lab_definition": defn.to_dict(), "netns_lab_nodes": defn.count if state == "present" else 0,
            "netns_lab_home": str(defn.lab_dir), "netns_lab_state": state}


def _run_provider(playbook: str, defn: LabDefinition, state: str, verbose: bool) -> dict[str, Any]:
    """Run a lab_* playbook on the controller; the module's result, or LabError saying why not."""
    from grayctl.runner import run_playbook

    try:
        result = run_playbook(playbook, extravars=_role_vars(defn, state), verbose=verbose)
    except StepFailed as err:
        # on the controller, a failed preflight or module is this machine's problem: exit 3
        raise LabError(err.message, hint=err.hint) from None
    res = result.results(APPLY_TASK).get("localhost")
    if res is None:
        raise LabError(f"{playbook} ran but reported no result for '{APPLY_TASK}'")
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
    from grayctl.runner import run_playbook

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


def run_lab_bootstrap(*, verbose: bool = False) -> None:
    from grayctl.runner import run_playbook

    ensure_root("lab bootstrap")
    run_playbook("lab_bootstrap.yml", verbose=verbose)


def run_lab_up(defn: LabDefinition, nodes: int | None = None, *, verbose: bool = False) -> LabRecord:
    """Create or converge the lab, then record every node's golden baseline."""
    ensure_root("lab up")
    if nodes is not None:
        defn = defn.with_count(nodes)
    t0 = time.monotonic()
    record = _record(defn, _run_provider("lab_up.yml", defn, "present", verbose))
    record.seconds["up"] = round(time.monotonic() - t0, 2)
    if _has_baseline():
        t1 = time.monotonic()
        _baseline(defn, "record", verbose)
        record.baseline = "recorded"
        record.seconds["baseline"] = round(time.monotonic() - t1, 2)
    return record


def run_lab_status(defn: LabDefinition, *, verbose: bool = False, ping: bool = True) -> LabRecord:
    """Nodes, addresses, roles; with ``ping``, whether Ansible reaches each over SSH."""
    from grayctl.runner import run_module

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


def run_lab_reset(defn: LabDefinition, *, verbose: bool = False) -> LabRecord:
    """Every node back to its golden baseline, then verified; DriftError (exit 5) with the diff."""
    ensure_root("lab reset")
    t0 = time.monotonic()
    record = _record(defn, _run_provider("lab_reset.yml", defn, "reset", verbose))
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
        result = _baseline(recorded_defn, "verify", verbose, check=False)
        if not result.ok:
            raise DriftError("after reset:\n" + "\n".join(_drift_lines(result)),
                             hint="the baseline records are in " + str(defn.lab_dir / "baseline"))
        record.baseline = "verified"
    record.seconds["verify"] = round(time.monotonic() - t1, 2)
    return record


def run_lab_down(defn: LabDefinition, *, verbose: bool = False) -> LabRecord:
    """Remove everything the lab's record holds (in reverse order); what was removed."""
    ensure_root("lab down")
    t0 = time.monotonic()
    record = _record(defn, _run_provider("lab_down.yml", defn, "absent", verbose))
    record.seconds["down"] = round(time.monotonic() - t0, 2)
    return record


def run_lab_doctor(defn: LabDefinition, *, verbose: bool = False) -> DoctorReport:
    """Anything left behind, missing or unrecorded, and drifted nodes. Changes nothing."""
    ensure_root("lab doctor")
    record = _record(defn, _run_provider("lab_inspect.yml", defn, "inspect", verbose))
    rep = record.report
    doctor = DoctorReport(
        lab=defn.name, status=rep.get("status", "unknown"), missing=rep.get("missing", []),
        left_behind=rep.get("left_behind", []), unrecorded=rep.get("unrecorded", []),
        sshd_not_listening=rep.get("sshd_not_listening", []), drift=[],
    )
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
