"""monitor.yml on a real 3-node netns lab: exporters on every node, Prometheus + observer on the monitor.

Own lab name and address range (10.234.x), lab home under tmp (GRAYCTL_LAB_HOME). A stand-in "service"
(a second grayctl exporter, started over SSH on the app node's mgmt address) gives the app layer a real
/metrics target without the deploy role. After ``monitor_state=absent`` the golden baseline must verify
(nothing left in the node cgroups, empty state directories).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from grayctl.lab.definition import load_lab
from grayctl.metrics import collect_run_metrics, query_range_chunked
from grayctl.paths import PROJECT_ROOT

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root"),
]

PY = sys.executable  # the controller's interpreter (nodes run the lab's node runtime instead)
PLAYBOOK = str(Path(PY).with_name("ansible-playbook"))  # the same venv, whatever PATH says
SERVICE_PORT = 9110


def _run(argv, env, timeout=300, check=True):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv[:3]} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monlab")
    name = f"m{os.getpid() % 100000}"
    lab_file = tmp / f"{name}.yml"
    lab_file.write_text(yaml.safe_dump({"name": name, "nodes": {"count": 3},
                                        "networks": {"management": "10.234.0.0/24", "data": "10.234.64.0/24"},
                                        "limits": {"cpu": "50%", "memory": "256MiB"}}))
    env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp / "labs")}
    os.environ["GRAYCTL_LAB_HOME"] = env["GRAYCTL_LAB_HOME"]
    defn = load_lab(str(lab_file))
    state = {"env": env, "file": lab_file, "defn": defn, "tmp": tmp, "stand_in": None}
    try:
        _run([PY, "-m", "grayctl", "lab", "up", "--lab", str(lab_file)], env)
        yield state
    finally:
        # Each teardown step on its own: a failing one must not leave the lab (and its range) behind.
        inv = str(defn.inventory_path)
        try:
            if state["stand_in"]:
                _ssh(state, state["stand_in"][0], f"kill {state['stand_in'][1]}", check=False)
            _run([PLAYBOOK, "-i", inv, "playbooks/monitor.yml", "-e", "monitor_state=absent"], env, check=False)
        finally:
            _run([PY, "-m", "grayctl", "lab", "down", "--lab", str(lab_file)], env, check=False)


def _inventory(state) -> dict:
    return yaml.safe_load(Path(state["defn"].inventory_path).read_text())


def _hosts(state) -> dict:
    inv = _inventory(state)
    hosts = {}

    def walk(group):
        for h, v in (group.get("hosts") or {}).items():
            if v or h not in hosts:
                hosts[h] = v or {}
        for child in (group.get("children") or {}).values():
            walk(child or {})
    walk(inv["all"])
    return hosts


def _ssh(state, ip, command, check=True):
    d = state["defn"].lab_dir
    return subprocess.run(["ssh", "-i", str(d / "ssh" / "id_ed25519"), "-o", f"UserKnownHostsFile={d / 'known_hosts'}",
                           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{ip}", command],
                          capture_output=True, text=True, check=check, timeout=60).stdout


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_monitor_scrapes_every_layer_and_absent_leaves_the_nodes_clean(lab):
    env, inv = lab["env"], str(lab["defn"].inventory_path)
    hosts = _hosts(lab)
    inv_doc = _inventory(lab)
    monitor = next(iter(inv_doc["all"]["children"]["monitor"]["hosts"]))
    app = next(iter(inv_doc["all"]["children"]["app"]["hosts"]))
    app_vars = hosts[app]
    node_python = inv_doc["all"]["children"]["lab_nodes"]["vars"]["grayctl_python"]  # the lab's node runtime
    # stand-in service replica: a second grayctl exporter in the app node (real /metrics over mgmt)
    out = _ssh(lab, app_vars["grayctl_mgmt_ip"],
               f"setsid {node_python} -m grayctl.exporters --listen {app_vars['grayctl_mgmt_ip']}:{SERVICE_PORT} "
               "</dev/null >/dev/null 2>&1 & echo $!")
    lab["stand_in"] = (app_vars["grayctl_mgmt_ip"], int(out.strip()))
    services = [{"service": "stand-in", "replica": 0, "node": app, "mgmt_ip": app_vars["grayctl_mgmt_ip"],
                 "metrics_port": SERVICE_PORT, "data_ip": app_vars["grayctl_data_ip"], "port": 8100}]
    extra = lab["tmp"] / "monitor-vars.json"
    extra.write_text(json.dumps({"monitor_services": services, "monitor_run_id": "t1"}))

    t_start = time.time()
    _run([PLAYBOOK, "-i", inv, "playbooks/monitor.yml", "-e", f"@{extra}"], env)
    url = f"http://{hosts[monitor]['grayctl_mgmt_ip']}:9090"
    targets = _get(url + "/api/v1/targets?state=active")["data"]["activeTargets"]
    jobs = {}
    for t in targets:
        jobs.setdefault(t["labels"]["job"], []).append(t)
    assert {"prometheus", "node", "cgroup", "qdisc", "service", "observer", "workload"} <= set(jobs)
    for job in ("prometheus", "node", "cgroup", "qdisc", "service", "observer"):
        down = [(t["scrapeUrl"], t["lastError"]) for t in jobs[job] if t["health"] != "up"]
        assert not down, f"{job} targets down: {down}"
    assert len(jobs["node"]) == 3 and all(t["labels"]["layer"] == "system" for t in jobs["node"])

    time.sleep(8)
    end = time.time()
    # every layer has series at 1 s resolution
    for q, layer in (("grayctl_cgroup_cpu_usage_seconds_total", "system"), ("node_netstat_Tcp_RetransSegs", "system"),
                     ("grayctl_qdisc_drops_total", "network"), ("grayctl_cgroup_up", "app"),
                     ("grayctl_observer_node_up", "observer")):
        series = query_range_chunked(url, q, end - 6, end, 1.0)
        assert series, f"no series for {q}"
        ts = [float(v[0]) for v in series[0]["values"]]
        assert len(ts) >= 5 and all(abs(b - a - 1.0) < 1e-6 for a, b in zip(ts, ts[1:])), (q, ts)
    healthy = query_range_chunked(url, "grayctl_observer_healthy", end - 4, end, 1.0)
    assert healthy and healthy[0]["metric"]["service"] == "stand-in"  # nothing on its /health: 0
    df = collect_run_metrics(url, t_start, end, 1.0, {"up_count": "count(up == 1)"})
    assert {"system", "network", "observer", "extra"} <= set(df["layer"])
    assert str(df["ts"].dt.tz) == "UTC"
    cpu = df[(df["layer"] == "system") & (df["metric"] == "cpu_cores")]
    assert set(cpu["entity"]) == {"node01", "node02", "node03"}

    # absent: everything stops, files go, the baseline verifies clean
    _ssh(lab, lab["stand_in"][0], f"kill {lab['stand_in'][1]}")
    lab["stand_in"] = None
    keep = lab["tmp"] / "tsdb"
    _run([PLAYBOOK, "-i", inv, "playbooks/monitor.yml", "-e", "monitor_state=absent",
          "-e", "monitor_run_id=t1", "-e", "monitor_keep_tsdb=true",
          "-e", f"monitor_tsdb_dest={keep}"], env)
    assert (keep / monitor / "tsdb" / "t1" / "grayctl-queries.json").is_file()
    time.sleep(1)
    _run([PLAYBOOK, "-i", inv, "playbooks/baseline.yml"], env)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    for line in ps.splitlines():
        assert str(lab["defn"].lab_dir) + "/nodes" not in line or "sshd" in line, line
