"""Runtime-realised faults end to end on a private netns lab: the seed's fault on gen1 (and gen2, slow).

One 6-node lab (4 app nodes for gen2-coarse, a monitor, a client) with its own name, addresses
(10.231.x) and lab home under a tmp dir, removed in a finalizer. In gen1 every component of the
social network shares one process, so the seed's latency on ``social-graph-service`` has no packet
to act on: the service runtime realises it at the component's boundary, from the control file the
node's fault executor writes (grayctl.faults.node.runtimectl).

1. The seed file, verbatim, with ``--set topology=gen1-monolith`` (and a short schedule): the
   run completes, injection.json says runtime realisation with a verified effect (the runtime's own
   counters), and compose-post's median user latency rises by >= 150 ms in the fault window against
   the baseline (its write path calls social-graph once per request).
2. ``grayctl run`` SIGKILLed (its whole process group) while the runtime fault acts, and the node's
   expiry watcher SIGKILLed too: nothing is left to remove the control entry, yet the runtime stops
   faulting by the entry's own monotonic expiry (its counters stop while calls keep arriving). Then
   ``grayctl fault revert --all`` removes the entry and a lab reset leaves the lab clean.

Budget: lab up, one short run (~2-3 min of Ansible on a loaded 2-core machine), one killed run and
the expiry wait (~1 min), a revert and a reset. gen2 is one more run: slow tier.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grayctl.faults.node import runtimectl
from grayctl.paths import PROJECT_ROOT
from runlab import RunLab, dataset_dir, request_figures  # tests/lab is on sys.path (rootdir-less test dir)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

SEED = PROJECT_ROOT / "experiments" / "seed.yaml"
# The seed file as shipped, with a schedule short enough for the default tier and a rate that gives
# compose-post (10 % of the mix) enough requests per phase for a median.
SHORT = ["--set", "schedule.warmup=3s", "--set", "schedule.baseline=12s", "--set", "schedule.fault=12s",
         "--set", "schedule.recovery=4s", "--set", "workload.rate=40/s"]
KILLED = {
    "name": "rt-kill", "topology": "gen1-monolith",
    "workload": {"rate": "40/s", "arrival": "constant", "seed": 2},  # compose-post: ~4/s into social-graph
    # the fault phase outlasts the controller's lead on the revert play (<= 15 s): no revert is on its way
    # to the node when the run is killed, so only the expiries can end the fault
    "schedule": {"warmup": "2s", "baseline": "4s", "fault": "30s", "recovery": "2s"},
    "chaos_injections": [{"id": "sg-delay", "type": "network-latency", "target_service": "social-graph-service",
                          "parameters": {"delay": "100ms"}}],
}
APPLY_GUARD_S = 900  # hang guard for the run to reach its fault phase (a loaded machine), not an expectation


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = RunLab(tmp_path_factory.mktemp("rtf-lab"), prefix="rf", count=6, network="10.231")
    try:
        lab.grayctl("lab", "up", "--lab", str(lab.file))
        yield lab
    finally:
        lab.down("gen1-monolith")


def _node_var(lab: RunLab, node: str, key: str) -> str:
    inv = yaml.safe_load(lab.defn.inventory_path.read_text())["all"]["children"]["lab_nodes"]
    return {**inv["vars"], **inv["hosts"][node]}[key]


def _records(lab: RunLab) -> list[dict]:
    out = []
    for node in lab.defn.node_names:
        for p in (Path(_node_var(lab, node, "grayctl_state_dir")).parent / "faults").glob("*.json"):
            if p.name.count(".") == 1:
                out.append({**json.loads(p.read_text()), "node": node})
    return out


def _seed_run(lab: RunLab, topology: str) -> None:
    proc = lab.grayctl("run", str(SEED), "--set", f"topology={topology}", "--set", f"lab={lab.file}", *SHORT,
                       "--out", str(lab.tmp / "runs"), "--quiet")
    ds = dataset_dir(proc.stdout)
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["experiment"]["topology"] == topology
    (inj,) = json.loads((ds / "injection.json").read_text())
    assert inj["realisation"].startswith("runtime: in-process calls into social-graph-service in service "), inj
    assert inj["backend"] == "runtime" and inj["revert_verified"] is True
    assert inj["effect"]["verified"] is True and inj["effect"]["evidence"]["after"] > inj["effect"]["evidence"]["before"]
    labels = pd.read_parquet(ds / "labels.parquet")
    active = labels[labels["fault_active"]]
    assert len(active) and active["fault_realisations"].str.startswith("runtime: ").all()
    # users see it: compose-post's median, fault window against baseline
    fig = request_figures(ds, "compose-post")
    rise = fig["fault"]["p50_s"] - fig["baseline"]["p50_s"]
    print(f"\n{topology}: compose-post p50 baseline {fig['baseline']['p50_s'] * 1e3:.1f} ms, "
          f"fault {fig['fault']['p50_s'] * 1e3:.1f} ms (+{rise * 1e3:.1f} ms), n={fig['fault']['requests']}")
    assert fig["fault"]["requests"] >= 20 and rise >= 0.150, fig
    assert lab.leftovers() == []


def test_the_seed_fault_runs_on_gen1_realised_by_the_runtime_and_users_see_it(lab: RunLab) -> None:
    _seed_run(lab, "gen1-monolith")


@pytest.mark.slow
def test_the_seed_fault_runs_on_gen2_realised_by_the_runtime_and_users_see_it(lab: RunLab) -> None:
    _seed_run(lab, "gen2-coarse")


def _fault_calls(url: str, fid: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("grayctl_runtime_fault_calls_total{") and f'fault_id="{fid}"' in line)


def _compose(lab: RunLab, node: str, cfg: dict, n: int) -> None:
    """``n`` compose-post requests to the monolith from inside its node (the data network)."""
    url = f"http://{cfg['listen']['ip']}:{cfg['listen']['port']}/nginx-frontend/compose-post"
    code = ("import sys, urllib.request\n"
            f"for _ in range({n}):\n"
            f"    urllib.request.urlopen(urllib.request.Request({url!r}, method='POST'), timeout=10).read()\n")
    subprocess.run(["ip", "netns", "exec", lab.defn.netns_of(node), "python3", "-c", code], check=True, timeout=120)


def test_a_sigkilled_run_leaves_a_runtime_fault_that_ends_by_its_own_monotonic_expiry(lab: RunLab) -> None:
    exp = lab.experiment(KILLED, "rt-kill")
    err = (lab.tmp / "rt-kill.stderr").open("w")
    proc = subprocess.Popen(lab.argv("run", str(exp), "--out", str(lab.tmp / "runs-kill"), "--json"), env=lab.env,
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + APPLY_GUARD_S
        assert proc.stdout is not None
        for line in proc.stdout:
            ev = json.loads(line) if line.startswith("{") else {}
            if ev.get("kind") == "fault" and ev["data"]["state"] == "applied":
                break
            assert time.monotonic() < deadline and ev.get("kind") != "run_end", ev
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (rec,) = [r for r in _records(lab) if r["spec"].get("name") == "sg-delay"]
    assert rec["status"] == "active" and rec["backend"] == "runtime", rec
    # the executor's on-host expiry is killed too: only the control entry's own expiry is left
    watcher = rec["expiry"]["pid"]
    cmd = Path(f"/proc/{watcher}/cmdline").read_bytes().split(b"\0")
    assert b"watch" in cmd, cmd
    os.kill(watcher, signal.SIGKILL)
    (replica_dir,) = rec["runtime_dirs"]
    control = runtimectl.control_path(replica_dir)
    entry = runtimectl.read_entries(control)[rec["fault_id"]]
    cfg = json.loads((Path(replica_dir) / "config.json").read_text())
    metrics = f"http://{cfg['metrics']['ip']}:{cfg['metrics']['port']}/metrics"
    node = rec["node"]
    before = _fault_calls(metrics, rec["fault_id"])
    _compose(lab, node, cfg, 5)
    during = _fault_calls(metrics, rec["fault_id"])
    assert during >= before + 5  # it acts on every compose-post's call into social-graph
    # past the entry's expiry (the node's monotonic clock; netns nodes share the host's)
    wait = entry["expires_mono"] - time.monotonic() + 1.0
    assert 0 < wait < 120, entry
    time.sleep(wait)
    after = _fault_calls(metrics, rec["fault_id"])
    _compose(lab, node, cfg, 5)
    assert _fault_calls(metrics, rec["fault_id"]) == after  # calls arrive, the fault no longer acts on them
    assert rec["fault_id"] in runtimectl.read_entries(control)  # nobody removed it: the runtime ended it itself
    # the usual cleanup path still removes the entry, and the lab ends clean
    lab.grayctl("fault", "revert", "--all", "--lab", str(lab.file))
    assert not control.exists() or rec["fault_id"] not in runtimectl.read_entries(control)
    lab.grayctl("lab", "reset", "--lab", str(lab.file))
    assert lab.leftovers() == []
