"""Nothing left behind whatever dies (issue 19): SIGKILL of ``grayctl run`` while faults are active.

One private 5-node lab for three-tier (frontend, api, store on node01-03, a monitor, a client) with its
own name, addresses (10.227.x) and lab home under a tmp dir, removed in a finalizer. ``grayctl run`` is
started in its own session and its whole process group is SIGKILLed (the controller, ansible-runner,
the playbooks and their SSH sessions: nothing of it runs a handler) once a network fault (delay on
the fallback delayer), a resource fault (cpu-stress) and a process fault (process-pause) are all
applied, each on its own node. What must clean up then is on the nodes: each fault's on-host expiry
(the fault's planned length + 30 s after its apply, at most the schedule's end + 30 s:
grayctl/plan/build.py, faultctl --expire-by), bounded here by the expiry time each node recorded
+ 5 s, never by a guess of how fast the machine is. A second test SIGKILLs ``grayctl fault inject``
and injects the same fault again with no reset between: it must apply anew, not trust the record
the expiry left 'active'.

No expiry covers the deployed topology (replicas, exporters, Prometheus): after the kill it stays up
until the next reset. The baseline check therefore allows exactly that drift (the processes and
state entries the run had at the kill, nothing a fault made), and the next ``grayctl run`` must start
from there (its reimage clears it) and complete with no manual step; after it everything verifies.

The time from the kill to a clean node is printed per fault class (``-s`` shows it).

Slow tier (``scripts/test slow``): the same SIGKILL per fault class (delay, loss, partition,
bandwidth, cpu/memory/disk stress, pause, stutter), and SIGTERM/SIGINT in each phase (prepare,
baseline, fault, collect): each reverts, keeps what was collected, marks the dataset incomplete and
exits 130.

Budget: lab up, one run killed ~40 s into it, ~60 s of expiry, one short run, lab down: a few
minutes on a quiet 2-core machine, more under load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from grayctl.faults.spec import EXPIRY_MARGIN_S
from grayctl.paths import PROJECT_ROOT
from grayctl.units import parse_duration
from midfault import (APPLY_GUARD_S, EXPIRY_SLACK_S, MATRIX, drift, expiry_record, fault_state, node_records,
                      node_var, processes, session_gone, start_run, until_applied)
from runlab import RunLab  # tests/lab is on sys.path (rootdir-less test dir)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

TOPOLOGY = "three-tier"
FAULTS = {  # fault id -> (class, the entry in chaos_injections)
    "api-delay": ("network", {"type": "network-latency", "target_service": "api",
                              "parameters": {"delay": "30ms"}, "backend": "fallback"}),
    "fe-cpu": ("resource", {"type": "cpu-stress", "target_service": "frontend",
                            "parameters": {"workers": 1, "load": "50%"}}),
    "store-pause": ("process", {"type": "process-pause", "target_service": "store", "parameters": {}}),
}
# The fault phase is long enough for the three inject plays to run one after another before the
# first fault's revert is due (a loaded machine takes several seconds per play).
KILLED = {
    "name": "kill-test", "topology": TOPOLOGY,
    "workload": {"rate": "20/s", "arrival": "constant", "seed": 3},
    "schedule": {"warmup": "2s", "baseline": "4s", "fault": "40s", "recovery": "2s"},
    "chaos_injections": [{"id": fid, **entry} for fid, (_cls, entry) in FAULTS.items()],
}
NEXT = {
    "name": "after-kill", "topology": TOPOLOGY,
    "workload": {"rate": "10/s", "arrival": "constant", "seed": 4},
    "schedule": {"warmup": "2s", "baseline": "4s", "fault": "4s", "recovery": "2s"},
    "chaos_injections": [{"id": "api-delay", **FAULTS["api-delay"][1]}],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = RunLab(tmp_path_factory.mktemp("kill-lab"), prefix="k", count=5, network="10.227")
    try:
        lab.grayctl("lab", "up", "--lab", str(lab.file))
        yield lab
    finally:
        lab.down(TOPOLOGY)


# ---------------------------------------------------------------------------- the test
# (reading a node, the run's events: tests/lab/midfault.py, shared with test_cut.py)

def _kill_when_applied(proc: subprocess.Popen, ids: set[str]) -> tuple[float, float]:
    """Read the run's event stream until every fault is applied; SIGKILL its process group.
    The kill's time, and the run's t0 (the timeline's start, epoch s)."""
    t0 = until_applied(proc, ids)
    os.killpg(proc.pid, signal.SIGKILL)
    killed = time.time()
    proc.wait(timeout=60)
    return killed, t0


@dataclass
class Killed:
    """One run SIGKILLed mid-fault, and each fault's node back at its pre-run state."""
    at: float  # the kill (host epoch s: netns nodes share the host clock)
    records: dict[str, dict]  # fault id (experiment) -> its node record at the kill
    clean_at: dict[str, float]  # fault id -> when its node was first seen back at its pre-run state
    topology: dict[str, set[int]]  # node -> what the run deployed there, as at the kill (pids)
    state_at_kill: dict[str, set[str]]  # node -> its state dir's entries at the kill


def _kill_mid_fault(lab: RunLab, doc: dict, name: str, classes: dict[str, str]) -> Killed:
    """Run ``doc``, SIGKILL its whole process group once every fault is applied, then poll each fault's
    node until it is back at its pre-run state: each by its own recorded expiry + EXPIRY_SLACK_S."""
    before = {node: fault_state(lab, node) for node in lab.defn.node_names}
    assert not any(s["fault processes"] or s["stopped"] or s["nft"] for s in before.values()), before
    proc = start_run(lab, lab.experiment(doc, name), lab.tmp / f"runs-{name}")
    ids = {f["id"] for f in doc["chaos_injections"]}
    try:
        killed, t0 = _kill_when_applied(proc, ids)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # nothing of the controller runs any more: no handler, no cleanup step, no playbook
    assert session_gone(proc.pid), subprocess.run(["ps", "-s", str(proc.pid), "-o", "pid,stat,args"],
                                                    capture_output=True, text=True, check=False).stdout

    records = node_records(lab)
    by_fault = {rec["spec"]["name"]: rec for rec in records.values() if rec["spec"].get("name") in ids}
    assert set(by_fault) == ids, records
    assert all(rec["status"] == "active" for rec in by_fault.values()), by_fault  # the kill left them applied
    nodes = {fid: rec["node"] for fid, rec in by_fault.items()}
    assert len(set(nodes.values())) == len(ids), nodes
    # each expiry: the apply + the window + the margin, capped at the schedule's end + the margin
    # (faultctl --expire-by: a late apply does not carry the fault past the schedule)
    total = sum(parse_duration(v).seconds for v in doc["schedule"].values())
    for fid, rec in by_fault.items():
        bound = rec["expire_by_ns"] / 1e9
        assert bound == pytest.approx(t0 + total + EXPIRY_MARGIN_S, abs=1.0), (fid, bound, t0)
        assert rec["expire_at"] == pytest.approx(min(rec["start_ns"] / 1e9 + rec["spec"]["expire_after_s"], bound))
        print(f"\n{fid}: applied {rec['start_ns'] / 1e9 - t0:5.1f} s after t0, expiry at {rec['expire_at'] - t0:5.1f} s"
              f" ({'capped at the schedule end + margin' if rec['expire_at'] < rec['start_ns'] / 1e9 + rec['spec']['expire_after_s'] else 'window + margin'})")  # one fault per node: each one's clean time is its own
    # what the run deployed, as it was at the kill (the processes of the topology, its state entries)
    topology = {node: {p for p, _s, a in processes(lab, node) if "grayctl.faults.node" not in a
                       and "stress-ng" not in a} for node in lab.defn.node_names}
    state_at_kill = {node: set(os.listdir(node_var(lab, node, "grayctl_state_dir"))) for node in lab.defn.node_names}
    # the faults are there: the check below can tell an applied fault from a clean node
    for fid, node in nodes.items():
        assert fault_state(lab, node) != before[node], (fid, node)

    clean_at: dict[str, float] = {}
    last: dict[str, dict] = {}
    expire = {fid: float(rec["expire_at"]) for fid, rec in by_fault.items()}
    while len(clean_at) < len(ids) and time.time() < max(expire.values()) + EXPIRY_SLACK_S:
        for fid, node in nodes.items():
            if fid not in clean_at:
                last[fid] = fault_state(lab, node)
                if last[fid] == before[node]:
                    clean_at[fid] = time.time()
        time.sleep(0.25)
    for fid, node in sorted(nodes.items()):
        if fid in clean_at:
            print(f"\n{classes[fid]:8} {fid:12} on {node}: clean {clean_at[fid] - killed:6.1f} s after the kill "
                  f"(its expiry was due {expire[fid] - killed:6.1f} s after it)")
    late = {fid: last[fid] for fid in ids if fid not in clean_at}
    assert not late, f"not clean by the expiry + {EXPIRY_SLACK_S} s: {late}"
    assert all(clean_at[fid] <= expire[fid] + EXPIRY_SLACK_S for fid in ids)

    # the nodes say who cleaned up: the expiry, verified. A netfilter-only fault's expiry
    # (grayctl.faults.node.expiry) writes its own record beside the fault's; faultctl watch
    # (the others) reverts through the fault's record itself.
    for fid, rec in node_records(lab).items():
        fname = rec["spec"].get("name")
        if fname not in ids:
            continue
        exp = expiry_record(lab, rec["node"], fid)
        # every fault's record is closed by its expiry, a netfilter fault's too (expiry --fault-record)
        assert rec["status"] == "reverted", (rec["status"], exp)
        assert rec["revert_verified"] and str(rec["end_reason"]).startswith("expiry:"), rec
        done, how = rec["end_ns"] / 1e9, rec["end_reason"]
        assert how.startswith("expiry:expired"), how
        print(f"{classes[fname]:8} {fname:12} node: {how} {done - killed:6.1f} s after the kill")
    return Killed(killed, by_fault, clean_at, topology, state_at_kill)


def _only_the_topology_drifts(lab: RunLab, k: Killed) -> None:
    """The golden baseline, field by field: nothing of a fault differs (qdiscs, nft and iptables rules,
    links, sysctls, stress or fault processes, stopped processes). What a SIGKILL does leave is the
    deployed topology (replicas, exporters, Prometheus) and its state entries: no expiry covers them;
    the next run's reimage removes them. So each drift entry must be one of those, as they were at the
    kill, never something a fault made."""
    drifted = drift(lab)
    for node, entries in drifted.items():
        for e in entries:
            if e["field"] == "processes":
                pid = int(str(e["now"]).split()[1])
                assert pid in k.topology[node], (node, e)  # a process the run deployed, not a fault's
            else:
                assert e["field"] == "state_dir" and e["now"] in k.state_at_kill[node], (node, e)
    assert drifted, "the killed run's topology is still up: verify must see it (else this check sees nothing)"


def test_sigkill_of_a_run_mid_fault_leaves_every_node_clean_by_the_on_host_expiry(lab: RunLab) -> None:
    k = _kill_mid_fault(lab, KILLED, "killed", {fid: cls for fid, (cls, _e) in FAULTS.items()})
    _only_the_topology_drifts(lab, k)
    doctor = lab.grayctl("lab", "doctor", "--lab", str(lab.file), "--json", check=False)
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 5, doctor.stdout + doctor.stderr  # drift alone, no lab resource problem
    assert report["status"] == "up" and not (report["missing"] or report["left_behind"] or report["unrecorded"]
                                              or report["sshd_not_listening"]), report
    fields = {line.strip().split(":")[0] for line in report["drift"] if line.startswith("  ")}
    assert fields <= {"processes", "state_dir"}, report["drift"]  # fault_dir: every record ended by its expiry

    # the next run starts from there and completes, no manual step between
    # (--allow-invalid-load: whether a 2-core machine's generator keeps its send schedule is not this test's question)
    nxt = lab.grayctl("run", str(lab.experiment(NEXT, "next")), "--out", str(lab.tmp / "runs-next"), "--quiet",
                      "--allow-invalid-load")
    ds = Path(next(x for x in nxt.stdout.splitlines() if x.strip().startswith("dataset:")).split("dataset:", 1)[1]
              .strip())
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["teardown"]["verify_clean"]["ok"] is True
    assert manifest["baseline"]["reset"] == "reset"  # its reimage, not a reuse: the killed run left no end reset
    assert lab.leftovers() == []
    assert drift(lab) == {}
    assert lab.grayctl("lab", "doctor", "--lab", str(lab.file), check=False).returncode == 0


def test_a_fault_whose_expiry_reverted_it_after_a_sigkill_is_applied_anew_by_the_next_inject(lab: RunLab) -> None:
    """A netfilter fault's expiry reverts it and closes its record (reverted, expiry:expired); the next
    apply of the same spec applies it again, not 'already active' or a silent skip (no reset between)."""
    exp = lab.experiment({**NEXT, "name": "inject-twice"}, "inject-twice")
    plan = json.loads(lab.grayctl("plan", "--json", str(exp), "--lab", str(lab.file)).stdout)
    ((node,),) = [f["nodes"] for f in plan["faults"]]
    store_ip = next(r for r in plan["replicas"] if r["service"] == "store")["data_ip"]
    # traffic from the api node (the run spec requires the delayer's counters to move)
    ping = subprocess.Popen(["ip", "netns", "exec", lab.defn.netns_of(node), "ping", "-n", "-q", "-i", "0.05",
                             "-w", "300", store_ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = subprocess.Popen(lab.argv("fault", "inject", str(exp), "--lab", str(lab.file), "--duration", "3",
                                          "--expire-margin", "2", "--record-dir", str(lab.tmp / "inject-1")),
                                 env=lab.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
        deadline = time.monotonic() + APPLY_GUARD_S
        while not fault_state(lab, node)["nft"]:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.time()
        first.communicate(timeout=60)
        (rec,) = [r for r in node_records(lab).values() if r["spec"].get("name") == "api-delay"]
        fid = rec["fault_id"]
        while expiry_record(lab, node, fid) is None and time.time() < float(rec["expire_at"]) + EXPIRY_SLACK_S:
            time.sleep(0.2)
        assert (expiry_record(lab, node, fid) or {}).get("reason") == "expired"
        closed = node_records(lab)[fid]
        assert not fault_state(lab, node)["nft"] and closed["status"] == "reverted", closed
        assert closed["end_reason"] == "expiry:expired" and closed["revert_verified"] is True, closed
        again = lab.grayctl("fault", "inject", str(exp), "--lab", str(lab.file), "--duration", "3",
                            "--expire-margin", "2", "--record-dir", str(lab.tmp / "inject-2"))
    finally:
        ping.kill()
        ping.wait()
    assert "verified clean" in again.stdout, again.stdout
    (second,) = json.loads((lab.tmp / "inject-2" / "injection.json").read_text())["faults"]
    assert second["start_ns"] / 1e9 > killed, (second["start_ns"], killed)  # applied now, not the stale record
    assert second["effect"]["verified"] is True and second["revert_verified"] is True
    assert not fault_state(lab, node)["nft"]
    lab.grayctl("fault", "revert", "--all", "--lab", str(lab.file))
    assert lab.leftovers() == []


# ---------------------------------------------------------------------------- slow tier: the matrices
# One run per case on the same lab; each starts from where the last left off (its reimage resets).
# Timeouts are hang guards sized for a loaded machine, not expectations.



@pytest.mark.slow
@pytest.mark.parametrize("case", list(MATRIX))
def test_sigkill_mid_fault_per_fault_class_is_cleaned_by_the_expiry(lab: RunLab, case: str) -> None:
    cls, entry = MATRIX[case]
    doc = {**KILLED, "name": f"kill-{case}", "schedule": {**KILLED["schedule"], "fault": "15s"},
           "chaos_injections": [{"id": case, **entry}]}
    k = _kill_mid_fault(lab, doc, f"kill-{case}", {case: cls})
    _only_the_topology_drifts(lab, k)


# What each phase is, seen in the run's --json events: the signal goes when it is seen.
PHASES = {
    "prepare": lambda ev: ev["kind"] == "step_start" and ev.get("step") == "prepare",
    "baseline": lambda ev: ev["kind"] == "phase" and ev.get("phase") == "baseline",
    "fault": lambda ev: ev["kind"] == "fault" and ev["data"]["state"] == "applied",
    "collect": lambda ev: ev["kind"] == "step_start" and ev.get("step") == "collect",
}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_signal_in_each_phase_reverts_keeps_what_was_collected_and_exits_130(lab: RunLab, phase: str,
                                                                               sig: signal.Signals) -> None:
    doc = {**NEXT, "name": f"sig-{phase}", "schedule": {"warmup": "2s", "baseline": "6s", "fault": "10s",
                                                        "recovery": "2s"}}
    out = lab.tmp / f"runs-sig-{phase}-{sig.name}"
    with (lab.tmp / f"sig-{phase}-{sig.name}.stderr").open("w+") as err:
        proc = subprocess.Popen(lab.argv("run", str(lab.experiment(doc, f"sig-{phase}")), "--out", str(out), "--json"),
                                env=lab.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        sent = False
        try:
            for line in proc.stdout:
                if line.startswith("{") and PHASES[phase](json.loads(line)):
                    proc.send_signal(sig)
                    sent = True
                    break
        finally:
            if not sent and proc.poll() is None:  # never leave a run going into the next test
                proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=APPLY_GUARD_S)
        err.seek(0)
        assert sent, f"the run never reached {phase}: {err.read()[-3000:]}"
        assert proc.returncode == 130, err.read()[-3000:]
    events = [json.loads(x) for x in rest.splitlines() if x.startswith("{")]
    end = events[-1]
    assert end["kind"] == "run_end" and end["data"]["status"] == "incomplete" and end["data"]["exit_code"] == 130
    cleanup = {e["step"]: e["data"]["ok"] for e in events if e["kind"] == "cleanup"}
    assert cleanup.get("lab-reset") and all(cleanup.values()), cleanup
    datasets = [p for p in out.iterdir() if p.is_dir() and not p.name.endswith(".run")] if out.is_dir() else []
    if phase != "prepare":  # from the schedule on, something was collected: kept, marked incomplete
        (ds,) = datasets
        manifest = json.loads((ds / "manifest.json").read_text())
        assert manifest["status"] == "incomplete", manifest["status"]
        assert (ds / "labels.parquet").is_file()
        verify = lab.grayctl("dataset", "verify", str(ds), check=False)
        assert verify.returncode == 6 and "incomplete" in (verify.stdout + verify.stderr)
    else:
        assert all(json.loads((d / "manifest.json").read_text())["status"] == "incomplete" for d in datasets)
    assert lab.leftovers() == []
    assert lab.baseline_verifies()
