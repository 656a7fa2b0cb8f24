"""Node-side fault executor: apply, revert, list, probe, and the on-host expiry watcher.

Run on a lab node by the fault role (argv lists, no shell), inside the node (its network
namespace and cgroup, since the SSH session lands there)::

    python -m grayctl.faults.node.faultctl probe
    python -m grayctl.faults.node.faultctl apply  --dir FAULT_DIR --spec JSON [--not-before NS] [--expire-by NS]
    python -m grayctl.faults.node.faultctl revert --dir FAULT_DIR --id ID [--not-before NS]
    python -m grayctl.faults.node.faultctl list   --dir FAULT_DIR
    python -m grayctl.faults.node.faultctl purge  --dir FAULT_DIR --id ID
    python -m grayctl.faults.node.faultctl watch  --dir FAULT_DIR --id ID --at EPOCH [--pid PID]

Each prints one JSON object. ``apply`` is idempotent: an active record with the same spec is
left alone (``changed: false``) while its expiry lives; one whose expiry is gone (it reverted the
fault, or a lab reset killed it with the rest of the node) is closed first and the fault applied
anew. Every fault gets an on-host expiry in its own session:
``grayctl.faults.node.expiry`` for netfilter-only faults (its revert is by fault id), ``faultctl
watch`` for everything else (tc qdiscs, stress-ng, stutter, a killed service) — it reverts from
the record at the deadline, or as soon as the fault's helper process exits.

The record ``FAULT_DIR/<id>.json`` holds type, target, interface, ports, peers, parameters,
backend (and the probe's evidence), the exact argv lists applied, host timestamps (UTC, ns) and,
after revert, what removed it, when, and whether the kernel/process state read back clean.
Records stay until ``purge`` (after the controller fetched them).

``--not-before NS`` (this node's clock, epoch ns) schedules the step: the controller starts the
play early and the node acts on time, so Ansible's latency does not become the fault's lag. A
scheduled apply is recorded first (``status: scheduled``); a revert that comes before it (the
controller's cleanup) cancels it (``status: cancelled``), and the waiting apply then does nothing.
Waits are bounded (``MAX_SCHEDULE_S``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grayctl.faults.backends import Actions, network_actions, select_backend, stress_argv
from grayctl.faults.catalog import CATALOG
from grayctl.faults.node import effect, runtimectl, steer
from grayctl.faults.realise import describe
from grayctl.faults.node.procs import (
    alive,
    fault_processes,
    group_members,
    memory_limit,
    proc_state,
    restart_service,
    service_dirs,
    service_process,
    spawn,
    stop_group,
)
from grayctl.faults.spec import (
    FaultRefused,
    Spec,
    ensure_interface_allowed,
    load_spec,
    plain_path,
    validate_fault_id,
    validate_network,
)

__all__ = ["apply_fault", "list_faults", "main", "probe_netem", "revert_fault"]

EXPIRY_GRACE_S = 2.0
MAX_SCHEDULE_S = 60.0  # the furthest ahead a step may be scheduled (the controller leads by <= 15 s)
CALLED_NS = time.time_ns()  # when this process started: the controller learns its lead from it


def _now() -> tuple[int, str]:
    ns = time.time_ns()
    return ns, datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")


def _run(argv: Sequence[str], stdin: str | None = None) -> dict[str, Any]:
    ns, utc = _now()
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False)
        rc, err = proc.returncode, proc.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        rc, err = 127, str(exc)
    return {"argv": list(argv), "rc": rc, "stderr": err[-500:], "at_ns": ns, "at_utc": utc}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------- probe

def probe_netem() -> dict[str, Any]:
    """Whether this kernel can run netem: add a netem qdisc to a throwaway ifb device, then delete it.

    Evidence: the exact commands and tc's answer ("Specified qdisc kind is unknown" = no sch_netem).
    ifb is used because it is a device this node may create and delete without touching traffic.
    """
    dev = f"gcprb{os.getpid() % 100000}"
    steps = [_run(["ip", "link", "add", dev, "type", "ifb"])]
    if steps[0]["rc"] != 0:
        return {"netem": False, "evidence": steps, "why": "could not create a throwaway ifb device"}
    steps.append(_run(["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"]))
    steps.append(_run(["ip", "link", "del", "dev", dev]))
    ok = steps[1]["rc"] == 0
    return {"netem": ok, "evidence": steps,
            "why": "netem qdisc added" if ok else f"tc refused netem: {steps[1]['stderr']}"}


# ---------------------------------------------------------------------------- records

class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, fid: str, suffix: str = ".json") -> Path:
        return self.root / f"{validate_fault_id(fid)}{suffix}"

    def read(self, fid: str) -> dict[str, Any] | None:
        return _read_json(self.path(fid))

    def write(self, rec: dict[str, Any]) -> None:
        _write_json(self.path(rec["fault_id"]), rec)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialises record state changes between a scheduled apply and a revert of the same dir.
        The lock is on the directory itself: no lock file to leave behind."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def all(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.root.glob("*.json")):
            if re.fullmatch(r"[a-z0-9][a-z0-9_]{0,31}\.json", p.name):
                rec = _read_json(p)
                if rec and "fault_id" in rec:
                    out.append(rec)
        return out


def _outlive_the_session() -> None:
    """From here to the end, a hangup of the SSH session (the controller killed: its pty goes) does
    not stop this process half way, between changing the node and starting (apply) or finishing
    (revert) what reverts it. A Python handler, not SIG_IGN: the helpers it starts get the default
    back at exec. SIGKILL still ends it; a waiting (scheduled) step is not covered and may die."""
    signal.signal(signal.SIGHUP, lambda _n, _f: None)


def _spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------- apply

def _start_expiry(store: Store, rec: dict[str, Any], python: str, helper_pid: int | None) -> None:
    fid = rec["fault_id"]
    if rec.get("netfilter_only"):
        argv = [python, "-m", "grayctl.faults.node.expiry", "--at", f"{rec['expire_at']:.3f}", "--fault-id", fid,
                "--record", str(store.path(fid, ".expiry.json")), "--fault-record", str(store.path(fid)),
                "--pidfile", str(store.path(fid, ".expiry.pid"))]
        if helper_pid:
            argv += ["--pid", str(helper_pid)]
    else:
        argv = [python, "-m", "grayctl.faults.node.faultctl", "watch", "--dir", str(store.root), "--id", fid,
                "--at", f"{rec['expire_at']:.3f}"]
        if helper_pid:
            argv += ["--pid", str(helper_pid)]
    pid = spawn(argv, store.path(fid, ".expiry.log"))
    rec["expiry"] = {"argv": argv, "pid": pid, "at": rec["expire_at"],
                     "at_utc": datetime.fromtimestamp(rec["expire_at"], UTC).isoformat()}


def _wait_file(path: Path, pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return True
        if not alive(pid):
            return False
        time.sleep(0.02)
    return path.exists()


def wait_until(not_before_ns: int, still_wanted: Any = None) -> bool:
    """Sleep until ``not_before_ns`` (this node's clock); False as soon as ``still_wanted()`` is
    false. Polls every 50 ms, then sleeps the exact remainder."""
    ahead = (not_before_ns - time.time_ns()) / 1e9
    if ahead > MAX_SCHEDULE_S:
        raise FaultRefused(f"--not-before is {ahead:.1f} s ahead of this node's clock; at most "
                                     f"{MAX_SCHEDULE_S:g} s (is the node's clock far behind the controller's?)")
    while True:
        if still_wanted is not None and not still_wanted():
            return False
        left = (not_before_ns - time.time_ns()) / 1e9
        if left <= 0:
            return True
        time.sleep(min(0.05, left))


def apply_fault(store: Store, raw: dict[str, Any], *, not_before_ns: int | None = None,
                expire_by_ns: int | None = None) -> dict[str, Any]:
    """Apply the fault of ``raw`` (the role's spec); return {changed, record}. Rolls back on failure.
    ``not_before_ns``: record it as scheduled, wait, then apply — unless a revert cancelled it.
    ``expire_by_ns``: the on-host expiry comes no later than this (the run's schedule end plus the
    margin), however late the apply: a late apply does not carry the fault past the schedule."""
    spec = load_spec(raw)
    fid = spec.fault_id
    if expire_by_ns is not None and max(not_before_ns or 0, time.time_ns()) >= expire_by_ns:
        raise FaultRefused(f"fault {fid}: its expiry bound (the schedule's end plus the margin) is already past: "
                           "not applied")
    digest = _spec_hash(raw)
    old = store.read(fid)
    exp = (old or {}).get("expiry") or {}
    if old and old.get("status") == "active" and not (exp.get("pid") and alive(exp["pid"], exp.get("argv"))):
        # Its on-host expiry is gone: it reverted the fault (a netfilter fault's expiry leaves the
        # record as it was) or was killed with the rest of the node (a lab reset). Either way the
        # record is stale: close it from what is there (revert is idempotent), then apply anew,
        # so an apply is never a no-op on the word of a stale record.
        closed = revert_fault(store, fid)
        if not closed["clean"]:
            raise FaultRefused(f"fault {fid}: a stale active record whose leftovers could not be removed: "
                               f"{closed['left']}")
        old = store.read(fid)
    if old and old.get("status") == "active":
        if old.get("spec_sha256") == digest:
            return {"changed": False, "record": old}
        raise FaultRefused(f"fault {fid} is already active on this node with other parameters: "
                                     f"revert it first")
    python = plain_path(raw.get("python") or sys.executable, "python")
    me = os.getpid()

    def ours() -> bool:  # the scheduled record is still this process's: no revert or purge came
        cur = store.read(fid)
        return bool(cur) and cur.get("status") == "scheduled" and cur.get("scheduler_pid") == me

    scheduled = not_before_ns is not None and not_before_ns > time.time_ns()
    if scheduled:
        assert not_before_ns is not None
        with store.locked():
            store.write({"fault_id": fid, "type": spec.type, "status": "scheduled", "spec": raw,
                         "spec_sha256": digest, "scheduled_ns": not_before_ns, "scheduler_pid": me,
                         "called_ns": CALLED_NS, "start_ns": None, "end_ns": None})
        if not wait_until(not_before_ns, ours):
            return {"changed": False, "cancelled": True, "record": store.read(fid)}
    _outlive_the_session()
    with store.locked():  # a revert cannot cancel between this check and the 'applying' record
        if scheduled and not ours():
            return {"changed": False, "cancelled": True, "record": store.read(fid)}
        start_ns, start_utc = _now()
        expire_at = start_ns / 1e9 + spec.expire_after_s
        if expire_by_ns is not None:
            if start_ns >= expire_by_ns:  # the wait for not_before ran past it
                if scheduled:
                    store.write({**(store.read(fid) or {}), "status": "cancelled", "end_ns": start_ns,
                                 "end_reason": "the expiry bound passed before the scheduled apply"})
                raise FaultRefused(f"fault {fid}: its expiry bound passed before the apply: not applied")
            expire_at = min(expire_at, expire_by_ns / 1e9)
        rec: dict[str, Any] = {
            "fault_id": fid, "type": spec.type, "service": spec.service, "target_service": raw.get("target_service"),
            "node": raw.get("node"), "interface": spec.interface, "ports": list(spec.ports), "peers": list(spec.peers),
            "peer_services": raw.get("peer_services"), "direction": spec.direction, "parameters": spec.parameters,
            "backend_requested": spec.backend, "spec": raw, "spec_sha256": digest, "status": "applying",
            "start_ns": start_ns, "start_utc": start_utc, "expire_at": expire_at, "commands": [], "notes": [],
            "end_ns": None, "end_utc": None, "revert_verified": None,
            "called_ns": CALLED_NS, "scheduled_ns": not_before_ns, "expire_by_ns": expire_by_ns,
            "realisation": raw.get("realisation"), "widened": bool(raw.get("widened")),
        }
        # A previous instance's files (never purged: its controller died) would be read as this
        # one's: its helper's counters as the effect's "before", its expiry's reason at the revert.
        for stale in (".stats.json", ".expiry.json"):
            store.path(fid, stale).unlink(missing_ok=True)
        store.write(rec)
    try:
        (_apply_runtime if raw.get("runtime") is not None else APPLY[spec.family])(store, spec, rec, python,
                                                                                   expire_at)
        # Evidence that it acts, within effect.WINDOW_S of the apply; "require" (the run's plan)
        # fails the step without it, "record" (a hand-written spec's default) only records it.
        rec["effect"] = effect.verify(rec, store.path(fid, ".stats.json"))
        store.write(rec)
        if not rec["effect"]["verified"] and raw.get("effect", "record") == "require":
            raise NoEffect(f"fault {fid} ({spec.type}) shows no effect within {effect.WINDOW_S:g} s of apply: "
                           f"{rec['effect']['how']} did not hold (evidence {rec['effect']['evidence']}); "
                           f"it was reverted")
    except Exception as exc:
        rec["status"] = "failed"
        rec["error"] = str(exc)
        store.write(rec)
        revert_fault(store, fid, reason="apply-failed")
        raise
    rec["status"] = "active"
    rec["applied_ns"], rec["applied_utc"] = _now()
    if rec.get("realisation"):  # the plan's words, for this node and with the backend it chose
        rt = raw.get("runtime")
        if rt is not None:
            rec["realisation"] = describe(spec.type, service=spec.service, target_service=raw_target(spec),
                                          nodes=[socket.gethostname()], widen=False, runtime=True,
                                          component=rt.get("component"), in_process=rt.get("in_process", True),
                                          peer_services=rt.get("peers") or ())
        else:
            rec["realisation"] = describe(spec.type, service=spec.service, target_service=raw_target(spec),
                                          nodes=[socket.gethostname()], widen=bool(rec.get("widened")),
                                          interface=spec.interface, direction=spec.direction,
                                          backend=rec.get("backend") or spec.backend,
                                          peer_services=spec.raw.get("peer_services") or ())
    store.write(rec)
    return {"changed": True, "record": rec}


class NoEffect(RuntimeError):
    """An apply whose effect is not seen on the host (faultctl's exit code 6)."""


def _check(rec: dict[str, Any], result: dict[str, Any]) -> None:
    rec["commands"].append(result)
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(result['argv'])} failed (rc {result['rc']}): {result['stderr']}")


def _apply_network(store: Store, spec: Spec, rec: dict[str, Any], python: str, expire_at: float) -> None:
    ensure_interface_allowed(spec)
    if not Path(f"/sys/class/net/{spec.interface}").exists():
        raise FaultRefused(f"interface {spec.interface!r} does not exist on this host")
    probe = probe_netem()
    rec["probe"] = probe
    backend = select_backend(spec, probe["netem"])
    files = {"helper_pid": str(store.path(spec.fault_id, ".helper.pid")),
             "stats": str(store.path(spec.fault_id, ".stats.json"))}
    if spec.fraction < 1 and not shutil.which("conntrack"):
        raise FaultRefused("a flow fraction needs the conntrack tool on the node (Debian package "
                                     "conntrack) to forget the fault's connection marks at revert")
    flow_slot = _free_flow_slot(store, spec.fault_id) if spec.fraction < 1 else None
    act = network_actions(spec, backend, python=python, expire_at=expire_at, files=files,
                                    flow_slot=flow_slot)
    if act.tc_devices:
        _refuse_foreign_qdisc(act, spec)
    rec.update(backend=backend, mechanism=act.mechanism, revert_commands=act.revert, tc_devices=act.tc_devices,
               ifb=act.ifb, netfilter=act.netfilter, nft_script=act.nft_script, flow_mark=act.flow_mark,
               fraction=spec.fraction, netfilter_only=act.netfilter and not act.tc_devices)
    rec["notes"] += act.notes
    store.write(rec)
    if act.flow_mark:
        # Connections a crashed earlier user of this slot marked would count as decided: forget them.
        rec["commands"].append(_forget_flows(act.flow_mark))
    helper_pid = None
    if act.helper:
        helper_pid = spawn(act.helper, store.path(spec.fault_id, ".helper.log"))
        rec["helper"] = {"argv": act.helper, "pid": helper_pid}
        store.write(rec)
        if not _wait_file(Path(files["stats"]), helper_pid, 10):
            log = store.path(spec.fault_id, ".helper.log").read_text()[-500:]
            raise RuntimeError(f"the delayer did not start: {log}")
    _start_expiry(store, rec, python, helper_pid)
    store.write(rec)
    # The nft table first: with a flow fraction it holds the selection chains, which must mark
    # connections before the rules that match the mark exist.
    if act.nft_script:
        _check(rec, {**_run(["nft", "-f", "-"], stdin=act.nft_script), "stdin": act.nft_script})
    for argv in act.commands:
        _check(rec, _run(argv))


def raw_target(spec: Spec) -> str:
    return str(spec.raw.get("target_service") or spec.service)


def _free_flow_slot(store: Store, fid: str) -> int:
    """The lowest conntrack-mark slot no other active fault on this node holds."""
    used = {(r.get("flow_mark") or {}).get("slot") for r in store.all()
            if r.get("fault_id") != fid and r.get("status") in ("applying", "active", "revert-failed")}
    for slot in range(steer.FlowMark.SLOTS):
        if slot not in used:
            return slot
    raise FaultRefused(f"all {steer.FlowMark.SLOTS} flow-fraction slots on this node are in use")


def _forget_flows(flow_mark: dict[str, Any]) -> dict[str, Any]:
    """Delete the conntrack entries carrying the fault's decided bit (conntrack picks the flows up again,
    unmarked). Deleting, not updating: some kernels refuse ctnetlink mark updates ("Operation not
    supported"). rc 1 = no entry matched."""
    d = flow_mark["decided"]
    out = _run(["conntrack", "-D", "-m", f"{d}/{d}"])
    out["ok"] = out["rc"] in (0, 1)
    return out


def _marked_flows(flow_mark: dict[str, Any]) -> int | None:
    d = flow_mark["decided"]
    out = subprocess.run(["conntrack", "-L", "-m", f"{d}/{d}"], capture_output=True, text=True, check=False) \
        if shutil.which("conntrack") else None
    m = re.search(r"(\d+) flow entries", out.stderr) if out else None
    return int(m.group(1)) if m else None


def _refuse_foreign_qdisc(act: Actions, spec: Spec) -> None:
    """One tc fault per interface: never replace a qdisc tree that is not the baseline's."""
    for dev in act.tc_devices:
        out = subprocess.run(["tc", "-j", "qdisc", "show", "dev", dev], capture_output=True, text=True, check=False)
        try:
            qdiscs = json.loads(out.stdout or "[]")
        except ValueError:
            qdiscs = []
        busy = [q for q in qdiscs if q.get("kind") not in ("noqueue", "pfifo_fast", "fq_codel", "mq", "pfifo", "fq")]
        if busy:
            raise FaultRefused(f"{dev} already has qdiscs {[q.get('kind') for q in busy]} (another tc "
                                         f"fault?): {spec.fault_id} would replace them; compound tc faults on one "
                                         f"interface are not supported")


def _apply_stress(store: Store, spec: Spec, rec: dict[str, Any], python: str, expire_at: float) -> None:
    temp = store.path(spec.fault_id, ".hdd")
    if spec.type == "disk-io-stress":
        temp.mkdir(mode=0o700, exist_ok=True)
        rec["temp_dir"] = str(temp)
    limit = memory_limit()
    argv, notes = stress_argv(spec, timeout_s=round(max(expire_at - rec["start_ns"] / 1e9, 1.0), 3),
                              memory_limit=limit, temp_dir=str(temp))
    rec.update(backend="stress-ng", mechanism="stress-ng", memory_limit=limit)
    rec["notes"] += notes + ["stress-ng runs in the node's cgroup (the SSH session's); --timeout is the on-host expiry"]
    pid = spawn(argv, store.path(spec.fault_id, ".helper.log"))
    rec["helper"] = {"argv": argv, "pid": pid}
    rec["commands"].append({"argv": argv, "rc": None, "detached": True, "pid": pid, "at_ns": _now()[0]})
    store.write(rec)
    time.sleep(0.3)
    if not alive(pid):
        raise RuntimeError(f"stress-ng exited at once: {store.path(spec.fault_id, '.helper.log').read_text()[-500:]}")
    _start_expiry(store, rec, python, pid)


def _apply_process(store: Store, spec: Spec, rec: dict[str, Any], python: str, _expire_at: float) -> None:
    services_dir = Path(plain_path(spec.raw.get("services_dir", ""), "services_dir"))
    dirs = service_dirs(services_dir, spec.service)
    targets = [t for t in (service_process(d) for d in dirs) if t]
    running = [t for t in targets if t["running"]]
    if not running:
        raise FaultRefused(f"no running replica of service {spec.service!r} on this node "
                                     f"(looked in {services_dir}/{spec.service}-<n>/pid)")
    rec.update(targets=running, backend="signals", mechanism=spec.type)
    v = spec.values
    if spec.type == "process-pause":
        argv = [python, "-m", "grayctl.faults.node.stutter", "--at", f"{rec['expire_at']:.3f}",
                "--stats", str(store.path(spec.fault_id, ".stats.json"))]
        for t in running:
            argv += ["--pgid", str(t["pid"])]
        if v["stutter"]:
            argv += ["--pause", v["stutter"]["pause"].to_tc(), "--every", v["stutter"]["every"].to_tc()]
            rec["mechanism"] = "stutter"
        elif v["duration"]:
            argv += ["--pause", v["duration"].to_tc()]
        rec["notes"].append("SIGSTOP/SIGCONT of each replica's process group; the helper SIGCONTs on any exit")
        pid = spawn(argv, store.path(spec.fault_id, ".helper.log"))
        rec["helper"] = {"argv": argv, "pid": pid}
        rec["commands"].append({"argv": argv, "rc": None, "detached": True, "pid": pid, "at_ns": _now()[0]})
        store.write(rec)
        _start_expiry(store, rec, python, pid)
        return
    sig = getattr(signal, "SIG" + v["signal"])
    restart = v["restart"]
    rec["killed"] = []
    for t in running:
        ns, utc = _now()
        os.killpg(t["pid"], sig)
        rec["killed"].append({"pid": t["pid"], "signal": sig.name, "at_ns": ns, "at_utc": utc})
        rec["commands"].append({"argv": ["kill", f"-{sig.name}", f"-{t['pid']}"], "rc": 0, "at_ns": ns})
    end = time.monotonic() + 10
    while time.monotonic() < end and any(group_members(t["pid"]) for t in running):
        time.sleep(0.05)
    if restart:
        try:
            rec["restarted"] = [restart_service(t) for t in running]
        except OSError as exc:
            raise RuntimeError(f"killed, but the restart of the recorded command line failed: {exc}") from None
        rec["notes"].append("killed, then restarted at once from the recorded command line (pid.cmd)")
    else:
        rec["notes"].append("killed; restarted from the recorded command line at revert (window end or expiry)")
        store.write(rec)
        _start_expiry(store, rec, python, None)


_NAME = re.compile(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")


def _runtime_entry(spec: Spec, expire_at: float) -> dict[str, Any]:
    """The control-file entry of a runtime-realised fault (grayctl.faults.node.runtimectl), validated."""
    rt = spec.raw.get("runtime")
    if not isinstance(rt, dict):
        raise FaultRefused("runtime must be a mapping {component, peers, peer_addresses} (grayctl plan writes it)")
    if not CATALOG[spec.type].runtime_realisable:
        raise FaultRefused(f"{spec.type} cannot be realised by the service runtime: {CATALOG[spec.type].runtime_refusal}")
    component = rt.get("component")
    if component is not None and not (isinstance(component, str) and _NAME.match(component)):
        raise FaultRefused(f"runtime.component {component!r} is not a component name")
    peers = rt.get("peers") or []
    if not isinstance(peers, list) or not all(isinstance(p, str) and _NAME.match(p) for p in peers):
        raise FaultRefused(f"runtime.peers {peers!r} must be a list of component or service names")
    addresses = [str(validate_network(a).network_address) for a in rt.get("peer_addresses") or []]
    spec.values  # noqa: B018 -- parse the parameters here: a bad one is refused before anything is written
    return {"id": spec.fault_id, "type": spec.type, "component": component, "parameters": spec.parameters,
            "peers": peers, "peer_addresses": addresses, "direction": spec.direction, "fraction": spec.fraction,
            "start_mono": time.monotonic(), "expires_mono": runtimectl.mono_deadline(expire_at),
            "expires_at": expire_at}


def _apply_runtime(store: Store, spec: Spec, rec: dict[str, Any], python: str, expire_at: float) -> None:
    """A fault the service runtime realises: an entry in each local replica's control file, and the
    same on-host expiry as a host fault (``watch``: it removes the entries); the entry's own
    monotonic expiry stops the runtime even when that watcher is dead too."""
    entry = _runtime_entry(spec, expire_at)
    services_dir = Path(plain_path(spec.raw.get("services_dir", ""), "services_dir"))
    running = [t for t in (service_process(d) for d in service_dirs(services_dir, spec.service)) if t and t["running"]]
    if not running:
        raise FaultRefused(f"no running replica of service {spec.service!r} on this node "
                           f"(looked in {services_dir}/{spec.service}-<n>/pid): the runtime realises this fault")
    rec.update(backend="runtime", mechanism="runtime control file", runtime=spec.raw["runtime"],
               runtime_dirs=[t["dir"] for t in running])
    store.write(rec)  # the directories first: a revert after a crash from here on finds every entry
    for t in running:
        path = runtimectl.put_entry(t["dir"], {**entry, "seed": int(hashlib.sha256(
            f"{spec.fault_id}:{t['dir']}".encode()).hexdigest()[:12], 16)})
        rec["commands"].append({"write": str(path), "entry": spec.fault_id, "replica_pid": t["pid"], "rc": 0,
                                "at_ns": _now()[0]})
    rec["notes"].append("realised by the service runtime at the target's boundary: an entry in each replica's "
                        f"{runtimectl.CONTROL_FILE} (polled by the runtime), expiring by itself on the node's "
                        "monotonic clock")
    store.write(rec)
    _start_expiry(store, rec, python, None)


# The executor of each catalog family (roles/fault/tasks/<family>.yml is the role's side of it).
APPLY = {"network": _apply_network, "resource": _apply_stress, "process": _apply_process}


def _family(rec: dict[str, Any]) -> str | None:
    ft = CATALOG.get(str(rec.get("type")))
    return ft.family if ft else None


# ---------------------------------------------------------------------------- revert

def _link_up(dev: str) -> bool:
    """Whether ``dev`` is administratively up (IFF_UP in /sys/class/net/<dev>/flags)."""
    try:
        return bool(int(Path(f"/sys/class/net/{dev}/flags").read_text(), 16) & 0x1)
    except (OSError, ValueError):
        return False


def _leftovers(rec: dict[str, Any]) -> list[str]:
    """Read the state back: what of this fault is still on the node."""
    left: list[str] = []
    fid = rec["fault_id"]
    if rec.get("netfilter"):
        left += steer.fault_leftovers(fid)
    for dev in rec.get("tc_devices") or []:
        out = subprocess.run(["tc", "-j", "qdisc", "show", "dev", dev], capture_output=True, text=True, check=False)
        for q in json.loads(out.stdout or "[]"):
            # "0:" is the kernel's own default (fq_codel/pfifo_fast/mq on a real NIC once the fault's root
            # is deleted); grayctl always names its handles, so anything else is the fault's.
            if q.get("kind") != "noqueue" and q.get("handle") != "0:":
                left.append(f"qdisc {q.get('kind')} {q.get('handle')} on {dev}")
    iface = rec.get("interface")
    if _family(rec) == "network" and iface and Path(f"/sys/class/net/{iface}").exists() and not _link_up(iface):
        # Whatever a network fault changed on its interface, the baseline has the interface up.
        left.append(f"link {iface} is down")
    if rec.get("ifb") and Path(f"/sys/class/net/{rec['ifb']}").exists():
        left.append(f"link {rec['ifb']}")
    helper = rec.get("helper") or {}
    if helper.get("pid") and alive(helper["pid"], helper.get("argv")):
        left.append(f"helper pid {helper['pid']} ({helper['argv'][0]})")
    if helper.get("pid") and _family(rec) == "resource":
        live = fault_processes(helper["pid"], helper.get("argv"))
        if live:
            left.append(f"stress-ng processes {live} of group {helper['pid']}")
    for t in rec.get("targets") or []:
        for pid in group_members(t["pid"]) if rec["type"] == "process-pause" else []:
            if proc_state(pid) == "T":
                left.append(f"stopped process {pid} of {t['dir']}")
    if rec.get("type") == "process-kill":
        for t in rec.get("targets") or []:
            now = service_process(Path(t["dir"]))
            if not now or not now["running"]:
                left.append(f"service {t['dir']} is not running")
    if rec.get("temp_dir") and Path(rec["temp_dir"]).exists():
        left.append(f"directory {rec['temp_dir']}")
    for path in runtimectl.entries_of((runtimectl.control_path(d) for d in rec.get("runtime_dirs") or []), fid):
        left.append(f"runtime control entry in {path}")
    if rec.get("flow_mark"):
        n = _marked_flows(rec["flow_mark"])
        if n is None:
            left.append("conntrack marks not checked: the conntrack tool is missing")
        elif n:
            left.append(f"{n} conntrack entries with mark bit {rec['flow_mark']['decided']}")
    return left


def revert_fault(store: Store, fid: str, *, reason: str = "revert", not_before_ns: int | None = None) -> dict[str, Any]:
    """Remove everything of fault ``fid`` per its record, verify by reading back; idempotent.
    ``not_before_ns``: wait until then first. A scheduled apply that has not acted is cancelled."""
    if not_before_ns is not None:
        wait_until(not_before_ns)
    _outlive_the_session()
    with store.locked():
        rec = store.read(fid)
        if rec is not None and rec.get("status") == "scheduled":
            ns, utc = _now()
            rec.update(status="cancelled", end_ns=ns, end_utc=utc, end_reason=f"{reason} before the scheduled apply",
                       revert_verified=True)
            store.write(rec)
            return {"changed": True, "record": rec, "left": [], "clean": True}
    if rec is None:
        left = steer.fault_leftovers(fid)
        return {"changed": False, "record": None, "left": left, "clean": not left}
    if rec.get("status") == "cancelled" or (rec.get("status") == "reverted" and rec.get("revert_verified")):
        return {"changed": False, "record": rec, "left": [], "clean": True}
    steps: list[dict[str, Any]] = []
    exp = rec.get("expiry") or {}
    me = os.getpid()
    if exp.get("pid") and exp["pid"] != me and alive(exp["pid"], exp.get("argv")):
        # The expiry of a netfilter fault reverts on SIGTERM itself ("cancelled"); the watcher is
        # simply stopped (this process does the revert).
        try:
            os.kill(exp["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        end = time.monotonic() + 10
        while alive(exp["pid"], exp.get("argv")) and time.monotonic() < end:
            time.sleep(0.02)
    helper = rec.get("helper") or {}
    if helper.get("pid"):
        if _family(rec) == "resource" or rec.get("type") == "process-pause":
            steps.append({"stop_group": helper["pid"], **stop_group(helper["pid"], argv=helper.get("argv"))})
        elif alive(helper["pid"], helper.get("argv")):
            steps.append({"stop_group": helper["pid"],
                          **stop_group(helper["pid"], grace=EXPIRY_GRACE_S, argv=helper.get("argv"))})
    for t in rec.get("targets") or []:
        if rec.get("type") == "process-pause":
            for pid in group_members(t["pid"]):
                if proc_state(pid) == "T":
                    os.kill(pid, signal.SIGCONT)
                    steps.append({"sigcont": pid})
    if rec.get("type") == "process-kill" and not rec.get("restarted"):
        rec["restarted"] = []
        for t in rec.get("targets") or []:
            now = service_process(Path(t["dir"]))
            if not now or not now["running"]:
                try:
                    rec["restarted"].append(restart_service(t))
                except OSError as exc:  # read back below as "not running": revert-failed, in words
                    steps.append({"restart_failed": t["dir"], "error": str(exc)})
    for argv in rec.get("revert_commands") or []:
        steps.append(_run(argv))
    for d in rec.get("runtime_dirs") or []:
        steps.append({"runtime_control": str(runtimectl.control_path(d)), "removed": runtimectl.drop_entry(d, fid)})
    if rec.get("netfilter"):
        steps.append({"removed": steer.revert_fault(fid)})
    if rec.get("flow_mark"):
        steps.append(_forget_flows(rec["flow_mark"]))  # after the selection chains are gone
    if rec.get("temp_dir"):
        subprocess.run(["rm", "-rf", "--one-file-system", rec["temp_dir"]], check=False)
    left = _leftovers(rec)
    for _ in range(10):
        if not left:
            break
        time.sleep(0.2)
        if rec.get("netfilter"):
            steer.revert_fault(fid)
        if rec.get("flow_mark"):
            _forget_flows(rec["flow_mark"])
        left = _leftovers(rec)
    ns, utc = _now()
    expiry_rec = _read_json(store.path(fid, ".expiry.json"))
    if reason == "revert" and expiry_rec and expiry_rec.get("reason") in ("expired", "helper-exited"):
        reason = f"expiry:{expiry_rec['reason']}"
    rec.update(status="reverted" if not left else "revert-failed", end_ns=ns, end_utc=utc, end_reason=reason,
               revert_called_ns=CALLED_NS, revert_scheduled_ns=not_before_ns,
               revert_steps=steps, leftovers=left, revert_verified=not left,
               helper_stats=_read_json(store.path(fid, ".stats.json")), expiry_record=expiry_rec)
    if rec.get("type") == "process-kill" and rec.get("restarted"):
        rec["notes"].append("the restarted replicas are not health-checked here; topology_deploy verifies them")
    store.write(rec)
    return {"changed": True, "record": rec, "left": left, "clean": not left}


def purge(store: Store, fid: str) -> dict[str, Any]:
    rec = store.read(fid)
    if rec and rec.get("status") in ("active", "applying"):
        raise FaultRefused(f"fault {fid} is still active: revert it before purging its record")
    removed = []
    for p in store.root.glob(f"{validate_fault_id(fid)}.*"):
        if p.is_file():
            p.unlink()
            removed.append(p.name)
    return {"changed": bool(removed), "removed": removed}


def list_faults(store: Store) -> dict[str, Any]:
    recs = store.all()
    return {"changed": False, "faults": recs, "active": [r["fault_id"] for r in recs if r.get("status") not in ("reverted", "cancelled")]}


def watch(store: Store, fid: str, at: float, pid: int | None) -> int:
    """The on-host expiry of non-netfilter faults: revert at ``at``, when ``pid`` exits, or on SIGTERM."""
    stop: list[str] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda n, _f: stop.append("cancelled"))
    try:
        pidfd = os.pidfd_open(pid) if pid else None
    except ProcessLookupError:
        pidfd = None
    reason = "helper-exited" if (pid and pidfd is None) else ""
    while not reason:
        if stop:
            return 0  # the controller's revert stops the watcher and reverts itself
        left = at - time.time()
        if left <= 0:
            reason = "expired"
            break
        ready, _, _ = select.select([wake_r] + ([pidfd] if pidfd is not None else []), [], [], min(left, 1.0))
        if pidfd is not None and pidfd in ready:
            reason = "helper-exited"
        elif wake_r in ready:
            os.read(wake_r, 64)
    out = revert_fault(store, fid, reason=f"expiry:{reason}")
    _write_json(store.path(fid, ".expiry.json"), {"fault_id": fid, "reason": reason, "clean": out["clean"],
                                                  "left": out["left"], "reverted_utc": _now()[1]})
    return 0 if out["clean"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grayctl.faults.node.faultctl")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("probe")
    for name in ("apply", "revert", "list", "purge", "watch"):
        sp = sub.add_parser(name)
        sp.add_argument("--dir", type=Path, required=True)
        if name == "apply":
            sp.add_argument("--spec", required=True, help="the fault spec as JSON")
        elif name != "list":
            sp.add_argument("--id", required=True)
        if name in ("apply", "revert"):
            sp.add_argument("--not-before", type=int, default=None, metavar="NS",
                            help="act at this time of this node's clock (epoch ns), not before")
        if name == "apply":
            sp.add_argument("--expire-by", type=int, default=None, metavar="NS",
                            help="the on-host expiry comes no later than this (epoch ns, this node's clock)")
        if name == "watch":
            sp.add_argument("--at", type=float, required=True)
            sp.add_argument("--pid", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "probe":
            print(json.dumps(probe_netem()))
            return 0
        args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(args.dir)
        if args.cmd == "watch":
            return watch(store, args.id, args.at, args.pid)
        if args.cmd == "apply":
            out = apply_fault(store, json.loads(args.spec), not_before_ns=args.not_before, expire_by_ns=args.expire_by)
        elif args.cmd == "revert":
            out = revert_fault(store, args.id, not_before_ns=args.not_before)
        elif args.cmd == "purge":
            out = purge(store, args.id)
        else:
            out = list_faults(store)
    except ValueError as exc:  # FaultRefused, TcError, SteerError, UnitError: refused in words
        print(json.dumps({"changed": False, "failed": True, "msg": str(exc)}))
        return 3
    except KeyError as exc:  # a spec written by hand, not by the plan: its type's parameter is missing
        print(json.dumps({"changed": False, "failed": True,
                          "msg": f"parameter {exc} is required by this fault type (grayctl plan writes the spec)"}))
        return 3
    except NoEffect as exc:
        print(json.dumps({"changed": True, "failed": True, "no_effect": True, "msg": str(exc)}))
        return 6
    except RuntimeError as exc:
        print(json.dumps({"changed": True, "failed": True, "msg": str(exc)}))
        return 4
    print(json.dumps(out, default=str))
    return 0 if out.get("clean", True) else 5


if __name__ == "__main__":
    sys.exit(main())
