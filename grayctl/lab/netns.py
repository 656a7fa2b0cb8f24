"""The netns provider: nodes are network namespaces on this machine (roles/netns_lab).

The lab_* playbooks run the netns_lab role on the controller (and the qemu_lab role after it,
which makes nothing for a lab without VM nodes); the role records every resource before creating
it, so ``down`` and ``doctor`` work after a crash. The module's result is read from the runner's
events. A reset recreates every node in place, kills every process and empties its state: it is
the run's undeploy too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grayctl
from grayctl.errors import LabError, StepFailed
from grayctl.faultbackend import nodes_python, probe_fault_backend
from grayctl.lab.baseline import drift_lines, golden_complete, has_baseline, judge, run_baseline, verify
from grayctl.lab.provider import Capabilities, Provider, ReimageStep
from grayctl.lab.records import DoctorReport, LabRecord, NodeStatus, ensure_root

__all__ = ["APPLY_TASK", "QEMU_TASK", "NetnsProvider", "merge_vms"]

APPLY_TASK = "Bring the lab to the requested state"  # roles/netns_lab/tasks/apply.yml
QEMU_TASK = "Bring the lab's VM nodes to the requested state"  # roles/qemu_lab/tasks/apply.yml


class NetnsProvider(Provider):
    name = "netns"
    capabilities = Capabilities(creates_nodes=True, reset_reimages=False, teardown_by_reset=True,
                                reset_reusable=True, host_kernel=True)
    reimage = ReimageStep("lab_reset.yml", "localhost", "only when the verify (prepare's first play) finds "
                          "drift: every node back to the golden baseline, verified")

    def reset_vars(self, lab: Any) -> dict[str, Any]:
        return {"netns_lab_state": "reset", "netns_lab_definition": str(lab.source)}

    # -- the lab_* playbooks -----------------------------------------------------------------

    def role_vars(self, defn: Any, state: str) -> dict[str, Any]:
        # inline: the definition was validated here, and --nodes is already applied
        # reset, down and inspect act on the node count that is up (0: the recorded one)
        from grayctl.lab.image import IMAGE_CACHE

        return {"netns_lab_definition": defn.to_dict(), "netns_lab_nodes": defn.count if state == "present" else 0,
                "netns_lab_home": str(defn.lab_dir), "netns_lab_state": state,
                "qemu_lab_image_cache": str(IMAGE_CACHE),
                # VMs mount this package (wherever it is installed) over virtio-9p, not a checkout's
                "qemu_lab_grayctl_dir": str(Path(grayctl.__file__).resolve().parent)}

    def apply(self, playbook: str, defn: Any, state: str, verbose: bool) -> dict[str, Any]:
        """Run a lab_* playbook on the controller; the module's result, or LabError saying why not."""
        from grayctl.run.ansible import run_playbook

        try:
            result = run_playbook(playbook, extravars=self.role_vars(defn, state), verbose=verbose)
        except StepFailed as err:
            # on the controller, a failed preflight or module is this machine's problem: exit 3
            raise LabError(err.message, hint=err.hint) from None
        res = result.results(APPLY_TASK).get("localhost")
        if res is None:
            raise LabError(f"{playbook} ran but reported no result for '{APPLY_TASK}'")
        return self.fold(result, res)

    def fold(self, result: Any, res: dict[str, Any]) -> dict[str, Any]:
        """The lab_* playbooks run the qemu_lab role after netns_lab (it reports on every lab, with or
        without VM nodes): its result folded into the netns one."""
        vm = result.results(QEMU_TASK).get("localhost")
        return merge_vms(res, vm) if vm else res

    def record(self, defn: Any, res: dict[str, Any]) -> LabRecord:
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

    def link_node_runtime(self, defn: Any) -> None:
        """Point the lab's ``runtime`` link (the inventory's grayctl_python) at this grayctl's node
        runtime. netns nodes share this host's filesystem, so one runtime here serves them all; a lab
        that is up keeps running the code of its last up or reset."""
        from grayctl.node_runtime import ensure_runtime

        ensure_runtime(link=defn.lab_dir / "runtime")

    def host_kernel_nodes(self, defn: Any) -> list[str]:
        """The nodes that run on this host's kernel (the fault backend is probed here for them)."""
        return list(defn.node_names)

    def before_up(self, defn: Any) -> None:
        """Checks before anything is made."""

    # -- the lifecycle -----------------------------------------------------------------------

    def up(self, lab: Any, nodes: int | None, *, verbose: bool) -> LabRecord:
        ensure_root("lab up")
        defn = lab.with_count(nodes) if nodes is not None else lab
        self.before_up(defn)
        t0 = time.monotonic()
        record = self.record(defn, self.apply("lab_up.yml", defn, "present", verbose))
        self.link_node_runtime(defn)
        record.seconds["up"] = round(time.monotonic() - t0, 2)
        if has_baseline():
            t1 = time.monotonic()
            run_baseline(defn, "record", verbose)
            record.baseline = "recorded"
            record.seconds["baseline"] = round(time.monotonic() - t1, 2)
        return record

    def status(self, lab: Any, *, verbose: bool) -> LabRecord:
        ensure_root("lab status")
        return self.record(lab, self.apply("lab_inspect.yml", lab, "inspect", verbose))

    def reset(self, lab: Any, *, verbose: bool, accept_drift: bool) -> LabRecord:
        ensure_root("lab reset")
        if has_baseline() and golden_complete(lab) and lab.inventory_path.is_file():
            return self.reset_and_verify(lab, verbose=verbose, accept_drift=accept_drift)
        t0 = time.monotonic()
        record = self.record(lab, self.apply("lab_reset.yml", lab, "reset", verbose))
        self.link_node_runtime(lab)
        record.seconds["reset"] = round(time.monotonic() - t0, 2)
        if not has_baseline():
            return record
        recorded = lab.with_count(len(record.nodes)) if record.nodes else lab
        t1 = time.monotonic()
        if not golden_complete(recorded):
            # a node without a golden record (an older lab, or one just grown) gets one now
            run_baseline(recorded, "record", verbose)
            record.baseline = "recorded"
        else:
            record.drift = verify(recorded, verbose, accept_drift, "after reset")
            record.baseline = "drift accepted" if record.drift else "verified"
        record.seconds["verify"] = round(time.monotonic() - t1, 2)
        return record

    def reset_and_verify(self, lab: Any, *, verbose: bool, accept_drift: bool) -> LabRecord:
        """The reset and the verify in one ansible-playbook run (lab_reset.yml's two plays, with the
        lab's inventory beside the controller's): one start-up less, ~2 s of every run's end. A node
        count that changed since the inventory was written gets the separate verify after all."""
        from grayctl.paths import CONTROLLER_INVENTORY
        from grayctl.run.ansible import run_playbook

        self.link_node_runtime(lab)  # before: the verify does not use it, the next run's replicas do
        t0 = time.monotonic()
        result = run_playbook("lab_reset.yml", inventory=[CONTROLLER_INVENTORY, lab.inventory_path],
                              extravars=self.role_vars(lab, "reset"),
                              verbose=verbose, check=False)
        res = result.results(APPLY_TASK).get("localhost")
        if res is None or any(f.host == "localhost" for f in result.failures):
            failed = [f.render() for f in result.failures if f.host == "localhost"]
            raise LabError("lab_reset.yml: " + ("; ".join(failed) or f"no result for '{APPLY_TASK}'"))
        record = self.record(lab, self.fold(result, res))
        record.seconds["reset+verify"] = round(time.monotonic() - t0, 2)
        recorded = lab.with_count(len(record.nodes)) if record.nodes else lab
        if set(recorded.node_names) != set(lab.node_names):
            record.drift = verify(recorded, verbose, accept_drift, "after reset")
        else:
            record.drift = judge(lab, result, accept_drift, "after reset")
        record.baseline = "drift accepted" if record.drift else "verified"
        return record

    def down(self, lab: Any, *, verbose: bool) -> LabRecord:
        ensure_root("lab down")
        t0 = time.monotonic()
        record = self.record(lab, self.apply("lab_down.yml", lab, "absent", verbose))
        record.seconds["down"] = round(time.monotonic() - t0, 2)
        return record

    def doctor(self, lab: Any, *, verbose: bool) -> DoctorReport:
        ensure_root("lab doctor")
        record = self.record(lab, self.apply("lab_inspect.yml", lab, "inspect", verbose))
        rep = record.report
        doctor = DoctorReport(
            lab=lab.name, status=rep.get("status", "unknown"), missing=rep.get("missing", []),
            left_behind=rep.get("left_behind", []), unrecorded=rep.get("unrecorded", []),
            sshd_not_listening=rep.get("sshd_not_listening", []), drift=[],
        )
        if self.host_kernel_nodes(lab):
            python, where = nodes_python(lab.lab_dir, lab.inventory_path if doctor.status == "up" else None)
            doctor.fault_backend = probe_fault_backend(python, python_source=where).to_dict()
        if doctor.status not in ("up", "down"):
            doctor.notes.append(f"the lab's state is '{doctor.status}': a lab command was interrupted; "
                                "'grayctl lab down' removes what it recorded")
        if doctor.status == "up" and has_baseline() and not doctor.missing:
            recorded = lab.with_count(len(record.nodes)) if record.nodes else lab
            if golden_complete(recorded):
                doctor.drift = drift_lines(run_baseline(recorded, "verify", verbose, check=False))
            else:
                doctor.notes.append("no golden baseline for every node: 'grayctl lab reset' records one")
        return doctor


def merge_vms(res: dict[str, Any], vm: dict[str, Any]) -> dict[str, Any]:
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
