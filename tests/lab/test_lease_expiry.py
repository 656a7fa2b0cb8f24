"""A run's topology ends by its lease when the controller dies: ``lab doctor`` is clean afterwards.

``grayctl run`` is SIGKILLed (its whole process group: grayctl, ansible-runner and its children, as
at a power loss) during the baseline, with no fault active: what it leaves is the deployed topology
(replicas, exporters, Prometheus, the load generator) and their state. Each was started with a lease
(plugins/module_utils/lease.py: the schedule plus LEASE_MARGIN_S, on the node's monotonic clock), so
by that deadline, plus the watchdog's SIGTERM-then-SIGKILL, every node is back at its golden
baseline by itself: the verify passes, ``lab doctor`` exits 0, and no process of the lab is left
but the sshds. Bounded by the leases the nodes recorded, never by a guess of the machine's speed.

Own lab: 3 nodes (gen1: the monolith, the monitor, the client), 10.225.x. A few minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from grayctl.plan.build import LEASE_MARGIN_S
from grayctl.paths import PROJECT_ROOT
from runlab import RunLab  # tests/lab is on sys.path (rootdir-less test dir)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

SCHEDULE = {"warmup": "2s", "baseline": "20s", "fault": "2s", "recovery": "2s"}
EXPERIMENT = {"name": "lease", "topology": "gen1-monolith", "workload": {"rate": "10/s", "arrival": "constant",
                                                                         "seed": 1},
              "schedule": SCHEDULE, "chaos_injections": []}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = RunLab(tmp_path_factory.mktemp("lease-lab"), prefix="l", count=3, network="10.225")
    try:
        lab.grayctl("lab", "up", "--lab", str(lab.file))
        yield lab
    finally:
        lab.down("gen1-monolith")


def node_processes(lab: RunLab) -> dict[str, list[str]]:
    """Per node, every process in its cgroup but its sshd listener: what a lease must end."""
    out = {}
    for node in lab.defn.node_names:
        cg = Path("/sys/fs/cgroup/unified/grayctl") / lab.defn.name / node / "cgroup.procs"
        if not cg.exists():
            cg = Path("/sys/fs/cgroup/grayctl") / lab.defn.name / node / "cgroup.procs"
        pids = [int(p) for p in cg.read_text().split()] if cg.exists() else []
        cmds = []
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            if cmd and not cmd.startswith(("sshd", "/usr/sbin/sshd")):
                cmds.append(cmd)
        out[node] = cmds
    return out


def leases(lab: RunLab) -> dict[str, list[dict]]:
    out = {}
    for node in lab.defn.node_names:
        d = lab.dir / "nodes" / node / "state" / ".lease"
        out[node] = [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.is_dir() else []
    return out


def test_a_sigkilled_runs_topology_ends_by_its_lease_and_doctor_is_clean(lab: RunLab) -> None:
    exp = lab.experiment(EXPERIMENT, "lease")
    proc = subprocess.Popen(lab.argv("run", str(exp), "--out", str(lab.tmp / "runs"), "--quiet"), env=lab.env,
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        # killed once the load generator runs (its lease is the last one prepare grants): the baseline
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            granted = leases(lab)
            if any("/workload" in e["dir"] for entries in granted.values() for e in entries):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its load generator started"
        os.killpg(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    granted = leases(lab)
    assert all(granted.values()), granted  # every node holds the leases of what the run started on it
    assert any(node_processes(lab).values())  # the topology is up after the kill
    # every lease ends within the schedule plus the margin of its grant; the watchdog then needs
    # up to 10 s (SIGTERM, 5 s, SIGKILL, 5 s) per process
    schedule = sum(float(v.rstrip("s")) for v in SCHEDULE.values())
    by = killed + schedule + LEASE_MARGIN_S + 30
    while time.monotonic() < by and (any(node_processes(lab).values()) or any(leases(lab).values())):
        time.sleep(1.0)
    assert node_processes(lab) == {n: [] for n in lab.defn.node_names}, "a leased process outlived its lease"
    ended = time.monotonic() - killed
    assert all(not any((lab.dir / "nodes" / n / "state").iterdir()) for n in lab.defn.node_names)
    doctor = lab.grayctl("lab", "doctor", "--lab", str(lab.file), check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    print(f"\nkill to clean nodes: {ended:.1f} s (leases: schedule {schedule:.0f} s + margin {LEASE_MARGIN_S:.0f} s)")
    # and the next run starts from there with nothing to reset
    nxt = lab.grayctl("run", str(lab.experiment({**EXPERIMENT, "name": "after"}, "after")), "--out",
                      str(lab.tmp / "runs-after"), "--quiet", "--allow-invalid-load")
    ds = Path(next(x for x in nxt.stdout.splitlines() if x.strip().startswith("dataset:")).split("dataset:", 1)[1]
              .strip())
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["baseline"]["reset"] == "verified"
    assert lab.leftovers() == []
