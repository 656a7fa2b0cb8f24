"""Nothing left behind when the controller loses a node (issue 19): the management path cut mid-fault.

One private 5-node lab for three-tier (frontend, api, store on node01-03, a monitor, a client) with
its own name, addresses (10.229.x) and lab home under a tmp dir, removed in a finalizer. A
``grayctl run`` applies one fault (a netem delay on the api node); once it is applied, the test cuts
the management path between the controller and that node:

- default tier: the node's management link down, from the host end of its veth (the bridge port:
  as a cable pulled at the switch; the node keeps its own ``mgmt`` end, addresses and routes);
- slow tier: the node's SSH port blocked (an nft table of the test's own inside the node's netns,
  dropping TCP to port 22; deleted afterwards); and the link cut under one fault of each class
  (midfault.MATRIX: delay, loss, partition, bandwidth, cpu/memory/disk stress, pause, stutter) and
  under a runtime-realised latency (its replica's control entry must end by the expiry too).

While it is cut, the run's revert cannot reach the node. The fault must still end by itself at its
on-host expiry (the fault's planned length + 30 s after its apply, at most the schedule's end
+ 30 s): no qdisc, nft rule, delayer, stress or stopped process left on the node, checked from the
host (a netns node shares its file system), by the expiry the node recorded + CUT_SLACK_S (a hang
guard sized for a loaded machine; the figure itself is bench/kill_bench.py's). The node's record says
the expiry ended it. Meanwhile the run waits for the node (its cleanup does not reset a node it cannot
reach before the node's own expiry). Then the path comes back and the run ends: exit 4 (a step
failed: node unreachable, docs/exit-codes.md), a message naming the node and the lost path, and
the dataset marked ``incomplete`` (never ``complete``) with the node in ``lost_nodes``. After the
run's own cleanup every node verifies against its golden baseline and ``grayctl lab doctor`` is
clean.

Budget: lab up, one run that waits ~60 s for the expiry, lab down: a few minutes on a quiet 2-core
machine, more under load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

import pytest

from midfault import (APPLY_GUARD_S, MATRIX, Drain, drift, expiry_record, fault_state, node_records,
                      start_run, until_applied)
from runlab import RunLab  # tests/lab is on sys.path (rootdir-less test dir)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

TOPOLOGY = "three-tier"
FID = "api-delay"
DOC = {
    "name": "cut-test", "topology": TOPOLOGY,
    "workload": {"rate": "10/s", "arrival": "constant", "seed": 5},
    # the revert is due 30 s after the apply, and its play starts up to 15 s early (timeline.MAX_LEAD_S):
    # the cut, a few seconds after the apply is reported, comes before it; the expiry is 30 s after that
    "schedule": {"warmup": "2s", "baseline": "4s", "fault": "30s", "recovery": "2s"},
    "chaos_injections": [{"id": FID, "type": "network-latency", "target_service": "api",
                          "parameters": {"delay": "30ms"}}],
}
CUT_SLACK_S = 30.0  # hang guard past the node's recorded expiry, for a loaded machine: not a measurement
CUT_TABLE = "grayctl_cut_test"  # the slow case's own nft table in the node's netns


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = RunLab(tmp_path_factory.mktemp("cut-lab"), prefix="c", count=5, network="10.229")
    try:
        lab.grayctl("lab", "up", "--lab", str(lab.file))
        yield lab
    finally:
        lab.down(TOPOLOGY)


# ---------------------------------------------------------------------------- the cuts

def _mgmt_veth(lab: RunLab, node: str) -> str:
    """The host end of the node's management veth, as the lab recorded it (its bridge port)."""
    state = json.loads((lab.dir / "state.json").read_text())
    (name,) = [r["name"] for r in state["resources"] if r["kind"] == "veth" and r.get("node") == node
               and r.get("peer") == "mgmt"]
    return name


@contextmanager
def link_down(lab: RunLab, node: str) -> Iterator[None]:
    veth = _mgmt_veth(lab, node)
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)


@contextmanager
def ssh_blocked(lab: RunLab, node: str) -> Iterator[None]:
    ns = lab.defn.netns_of(node)
    rules = (f"table inet {CUT_TABLE} {{ chain input {{ type filter hook input priority -300; policy accept; "
             "tcp dport 22 drop; }; }\n")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", CUT_TABLE], check=True)


def _reaches(lab: RunLab, node: str) -> bool:
    """Whether the controller reaches the node over SSH, as Ansible does (key, known hosts), right now."""
    ip = next(n.mgmt_ip for n in lab.defn.nodes if n.name == node)
    argv = ["ssh", "-i", str(lab.dir / "ssh" / "id_ed25519"), "-o", f"UserKnownHostsFile={lab.dir / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
            "-o", "ConnectTimeout=3", f"root@{ip}", "true"]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


# ---------------------------------------------------------------------------- the test

def _cut_mid_fault(lab: RunLab, case: str, cut: Callable[[RunLab, str], AbstractContextManager[None]],
                   ignore_table: str | None = None, entry: dict | None = None) -> None:
    """``entry``: the fault (the id FID), default DOC's delay on api."""
    doc = DOC if entry is None else {**DOC, "name": f"cut-{case}", "chaos_injections": [{"id": FID, **entry}]}
    plan = json.loads(lab.grayctl("plan", "--json", str(lab.experiment(doc, f"cut-{case}")), "--lab",
                                  str(lab.file)).stdout)
    ((node,),) = [f["nodes"] for f in plan["faults"]]
    before = fault_state(lab, node)
    assert not (before["fault processes"] or before["stopped"] or before["nft"] or before["runtime faults"]), before
    out = lab.tmp / f"runs-{case}"
    stderr = f"cut-{case}.stderr"
    proc = start_run(lab, lab.experiment(doc, f"cut-{case}"), out, stderr_name=stderr)
    try:
        t0 = until_applied(proc, {FID})
        events = Drain(proc)
        (rec,) = [r for r in node_records(lab).values() if r["spec"].get("name") == FID]
        assert rec["node"] == node and rec["status"] == "active", rec
        expire_at = float(rec["expire_at"])
        with cut(lab, node):
            cut_at = time.time()
            assert not _reaches(lab, node), "the cut did not cut: the controller still reaches the node"
            assert fault_state(lab, node, ignore_table=ignore_table) != before  # the fault is there to end
            clean_at, now = None, before
            while time.time() < expire_at + CUT_SLACK_S:
                now = fault_state(lab, node, ignore_table=ignore_table)
                if now == before:
                    clean_at = time.time()
                    break
                time.sleep(0.25)
            assert clean_at is not None, f"not clean by the expiry + {CUT_SLACK_S} s: {now}"
            # the node says who ended it: its expiry (read now: the run's revert-all purges it once it
            # reaches the node). faultctl watch reverts through the fault's record; a netfilter-only
            # fault's expiry writes a record of its own beside it (as in test_kill).
            (done,) = [r for r in node_records(lab).values() if r["spec"].get("name") == FID]
            if done["status"] == "reverted":
                assert done["revert_verified"] and str(done["end_reason"]).startswith("expiry:expired"), done
                ended = done["end_ns"] / 1e9
            else:
                exp = expiry_record(lab, node, done["fault_id"])
                assert exp is not None and exp["clean"] and exp["left"] == [] and exp["reason"] == "expired", exp
                ended = datetime.fromisoformat(exp["reverted_utc"]).timestamp()
            # the run is waiting for the node (its cleanup), not ended, not resetting it: the path comes
            # back only once the run says so (a hang guard, not a measurement)
            waiting: list[dict] = []
            guard = time.monotonic() + APPLY_GUARD_S
            while not waiting and proc.poll() is None and time.monotonic() < guard:
                waiting = [e for e in events.events if e["kind"] == "warning" and node in e["data"]["message"]
                           and "unreachable" in e["data"]["message"]]
                time.sleep(0.25)
            assert proc.poll() is None, "the run ended while its node was still cut off"
            assert waiting, "the run did not say it was waiting for the unreachable node"
            assert fault_state(lab, node, ignore_table=ignore_table) == before  # nothing came back meanwhile
        restored_at = time.time()
        print(f"\n{case}: applied {rec['start_ns'] / 1e9 - t0:5.1f} s after t0, cut {cut_at - t0:5.1f} s, "
              f"expiry due {expire_at - t0:5.1f} s, node ended it {ended - t0:5.1f} s, clean {clean_at - t0:5.1f} s "
              f"({clean_at - expire_at:+.1f} s from the expiry); restored {restored_at - t0:5.1f} s")
        rc = proc.wait(timeout=APPLY_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # never leave a run going into the next test: its cleanup resets
            proc.wait(timeout=APPLY_GUARD_S)
    evs = events.join()
    # the premise: the run's revert started only once the path was cut (else it could reach the node first)
    (revert_start,) = [e["at"] for e in evs if e["kind"] == "step_start" and e.get("step") == f"revert:{FID}"]
    assert revert_start > cut_at, f"the revert started {cut_at - revert_start:.1f} s before the cut"
    print(f"{case}: the run ended {time.time() - restored_at:5.1f} s after the path came back, exit {rc}")
    err = (lab.tmp / stderr).read_text()
    end = evs[-1]
    assert end["kind"] == "run_end", end
    assert rc == 4 and end["data"]["exit_code"] == 4 and end["data"]["status"] == "failed", (rc, end, err[-3000:])
    message = end["data"]["error"]
    assert f"lost the management path to {node}" in message and "dataset is incomplete" in message, message
    assert f"lost the management path to {node}" in err, err[-3000:]  # what the user sees
    cleanup = {e["step"]: e["data"]["ok"] for e in evs if e["kind"] == "cleanup"}
    assert cleanup.get("revert-faults") and cleanup.get("lab-reset"), cleanup  # once the node answered again
    (ds,) = [p for p in out.iterdir() if p.is_dir() and not p.name.endswith(".run")]
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["lost_nodes"] == [node], manifest.get("status")
    assert manifest["run_status"] == "failed" and f"lost the management path to {node}" in manifest["error"]
    verify = lab.grayctl("dataset", "verify", str(ds), check=False)
    assert verify.returncode == 6 and "incomplete" in (verify.stdout + verify.stderr)
    assert lab.leftovers() == []
    assert drift(lab) == {}
    assert lab.grayctl("lab", "doctor", "--lab", str(lab.file), check=False).returncode == 0
    assert _reaches(lab, node)


def test_a_run_whose_node_loses_its_mgmt_link_mid_fault_ends_incomplete_and_the_expiry_ends_the_fault(
        lab: RunLab) -> None:
    _cut_mid_fault(lab, "link", link_down)


@pytest.mark.slow
def test_a_run_whose_node_has_its_ssh_port_blocked_mid_fault_ends_incomplete_and_the_expiry_ends_the_fault(
        lab: RunLab) -> None:
    _cut_mid_fault(lab, "ssh", ssh_blocked, ignore_table=CUT_TABLE)  # its table gone too: leftovers() lists any


# The slow tier's matrix: one fault of each class (midfault.MATRIX, as test_kill's SIGKILL matrix), and a
# runtime-realised one, each on its node with that node's management link down.
CUT_MATRIX = {**{case: entry for case, (_cls, entry) in MATRIX.items()},
              "runtime": {"type": "network-latency", "target_service": "api", "parameters": {"delay": "30ms"},
                          "scope": {"realise": "runtime"}}}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CUT_MATRIX))
def test_a_link_cut_mid_fault_per_fault_class_ends_incomplete_and_the_expiry_ends_the_fault(lab: RunLab,
                                                                                           case: str) -> None:
    _cut_mid_fault(lab, f"link-{case}", link_down, entry=CUT_MATRIX[case])
