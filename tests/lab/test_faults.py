"""Every fault type on a real netns lab: inject through playbooks/fault.yml, measure from another
node on the data network, revert, and check the node against its golden baseline.

One lab for the module (3 nodes, 10.242.0.0/24 + 10.242.64.0/24, lab home in a tmp dir). Node01
holds the target; probes (grayctl.faults.node.probe, UDP one-way) go from node01 to node02, so
egress faults on node01 show. Process faults act on a stand-in service recorded the way
topology_deploy records a replica (``services/<service>-<n>/pid`` and ``pid.cmd``). Bounds are
generous: fidelity is bench/fault_fidelity.py's job. The three revert paths: the revert step,
SIGTERM of ``grayctl fault inject``, SIGKILL of it (the on-host expiry cleans up alone).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grayctl.faults.node.probe import run_probes
from grayctl.faults.spec import to_spec
from grayctl.paths import PROJECT_ROOT

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root"),
]

# GRAYCTL_TEST_FAULT_NETS="MGMT,DATA" moves the lab off these ranges when another lab holds them.
MGMT, DATA = os.environ.get("GRAYCTL_TEST_FAULT_NETS", "10.242.0.0/24,10.242.64.0/24").split(",")
NODE2_DATA = str(ipaddress.ip_network(DATA)[3])
NO_NODE_DATA = str(ipaddress.ip_network(DATA)[4])


class FaultLab:
    def __init__(self, tmp: Path) -> None:
        self.name = f"ft{os.getpid() % 100000}"
        self.tmp = tmp
        self.file = tmp / "lab.yml"
        self.file.write_text(yaml.safe_dump({"name": self.name, "nodes": {"count": 3},
                                             "networks": {"management": MGMT, "data": DATA},
                                             "limits": {"cpu": "50%", "memory": "256MiB"}}))
        self.env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp / "labs")}
        self.dir = tmp / "labs" / self.name
        self.inventory = self.dir / "inventory.yml"

    def grayctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "grayctl", *args, "--lab", str(self.file)], env=self.env,
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300, check=False)
        assert not check or proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
        return proc

    def netns(self, node: str) -> str:
        return f"gc-{self.name}-{node}"

    def node_vars(self, node: str) -> dict:
        inv = yaml.safe_load(self.inventory.read_text())["all"]["children"]["lab_nodes"]
        return {**inv["vars"], **inv["hosts"][node]}

    def fault(self, state: str, fid: str, ftype: str, params: dict, *, check: bool = True, limit: str = "node01",
              fault_not_before_ns: dict | None = None, **spec) -> subprocess.CompletedProcess[str]:
        """playbooks/fault.yml with the spec the plan would write (``spec``: to_spec's keywords)."""
        ev = {"fault_state": state, "fault_record_dir": str(self.tmp / "records"),
              "fault_spec": to_spec(fid, ftype, params, expire_after_s=120, **{"service": "svc", **spec}),
              "fault_not_before_ns": fault_not_before_ns or {}}
        evf = self.tmp / f"{fid}-{state}.json"
        evf.write_text(json.dumps(ev))
        proc = subprocess.run(["ansible-playbook", "-i", str(self.inventory), "playbooks/fault.yml", "--limit", limit,
                               "-e", f"@{evf}"], env=self.env, capture_output=True, text=True, cwd=PROJECT_ROOT,
                              timeout=180, check=False)
        assert not check or proc.returncode == 0, proc.stdout[-4000:]
        return proc

    def record(self, fid: str) -> dict:
        return json.loads((self.tmp / "records" / "node01" / f"{fid}.json").read_text())

    def assert_baseline(self) -> None:
        proc = subprocess.run(["ansible-playbook", "-i", str(self.inventory), "playbooks/baseline.yml"], env=self.env,
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=180, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:]

    def probe(self, port: int, count: int = 150, rate: float = 100.0, **kw):
        return run_probes(self.netns("node01"), self.netns("node02"), NODE2_DATA, port, rate=rate, count=count,
                          flows=8, **kw)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> FaultLab:
    tmp = tmp_path_factory.mktemp("faults")
    fl = FaultLab(tmp)
    fl.grayctl("lab", "up")
    try:
        yield fl
    finally:
        fl.grayctl("fault", "revert", "--all", check=False)
        fl.grayctl("lab", "down", check=False)
    assert fl.name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout


def _mean(run) -> float:
    return statistics.fmean(run.delays_ms()) if run.delays_ms() else float("nan")


# ---------------------------------------------------------------------------- network

def test_latency_on_the_fallback_adds_the_delay_then_reverts_to_baseline(lab):
    base = _mean(lab.probe(40001))
    lab.fault("present", "lat", "network-latency", {"delay": "50ms", "jitter": "5ms", "correlation": "0%",
                                                     "distribution": "normal"})
    rec = lab.record("lat")
    assert rec["backend"] == "fallback" and rec["probe"]["netem"] is False
    assert rec["helper"]["argv"][2] == "grayctl.faults.node.nfqdelay" and rec["expiry"]["pid"]
    lab.fault("present", "lat", "network-latency", {"delay": "50ms", "jitter": "5ms", "correlation": "0%",
                                                     "distribution": "normal"})  # idempotent
    added = _mean(lab.probe(40002)) - base
    assert 40 < added < 65, added
    lab.fault("absent", "lat", "network-latency", {})
    rec = lab.record("lat")
    assert rec["revert_verified"] and rec["end_ns"] > rec["start_ns"]
    assert _mean(lab.probe(40003)) < base + 5
    lab.assert_baseline()


def _pinging(lab: FaultLab) -> subprocess.Popen:
    """Bounded background traffic node01 -> node02 over the data network (20 pings a second, 15 s)."""
    return subprocess.Popen(["ip", "netns", "exec", lab.netns("node01"), "ping", "-n", "-q", "-i", "0.05",
                             "-c", "300", NODE2_DATA], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_latency_fault_with_traffic_is_verified_by_the_delayers_own_counters(lab):
    ping = _pinging(lab)
    try:
        lab.fault("present", "eff", "network-latency", {"delay": "20ms"}, peers=[NODE2_DATA], effect="require")
    finally:
        ping.kill()
        ping.wait()
    rec = lab.record("eff")
    assert rec["effect"]["verified"] is True, rec["effect"]
    assert rec["effect"]["how"].startswith("fallback delayer counters")
    assert rec["effect"]["evidence"]["after"] > rec["effect"]["evidence"]["before"]
    lab.fault("absent", "eff", "network-latency", {})
    lab.assert_baseline()


def test_a_delay_scoped_to_a_peer_that_gets_no_traffic_shows_no_effect_and_fails_its_step(lab):
    # NO_NODE_DATA is on the data network but no node holds it: nothing is sent there, so the
    # delayer's counters cannot move. The run's spec requires the effect: the apply fails, in words.
    ping = _pinging(lab)  # traffic elsewhere (to node02) must not count as this fault's effect
    try:
        proc = lab.fault("present", "noeff", "network-latency", {"delay": "20ms"}, peers=[NO_NODE_DATA],
                         effect="require", check=False)
    finally:
        ping.kill()
        ping.wait()
    assert proc.returncode != 0
    assert "shows no effect within 2 s of apply" in proc.stdout, proc.stdout[-3000:]
    rec = lab.record("noeff")
    assert rec["effect"]["verified"] is False and rec["status"] != "active"
    assert rec["effect"]["evidence"]["after"] == rec["effect"]["evidence"]["before"]
    assert rec["revert_verified"], rec  # reverted at once: nothing left behind
    lab.assert_baseline()


@pytest.mark.parametrize("peers,hit", [([NODE2_DATA], True), ([NO_NODE_DATA], False)])
def test_loss_is_scoped_to_the_peer_addresses(lab, peers, hit):
    lab.fault("present", "loss", "network-loss", {"percent": "30%", "correlation": "0%"}, peers=peers)
    run = lab.probe(40010, count=300, rate=200)
    lab.fault("absent", "loss", "network-loss", {})
    frac = run.lost / run.sent
    assert (0.18 < frac < 0.45) if hit else frac < 0.02, frac
    assert lab.record("loss")["mechanism"] == "nft-loss"
    lab.assert_baseline()


def test_partition_drops_everything_and_traffic_recovers_after_revert(lab):
    lab.fault("present", "part", "network-partition", {"peers": "all", "direction": "both"},
              peers=[NODE2_DATA])
    assert lab.probe(40020, count=50).received == 0
    lab.fault("absent", "part", "network-partition", {})
    assert lab.probe(40021, count=50).received == 50
    lab.assert_baseline()


def test_reorder_sends_a_share_at_once_and_delays_the_rest(lab):
    lab.fault("present", "reo", "network-reorder", {"percent": "50%", "correlation": "0%", "gap": 1,
                                                     "delay": "40ms"})
    d = lab.probe(40030, count=200).delays_ms()
    lab.fault("absent", "reo", "network-reorder", {})
    fast, slow = sum(x < 15 for x in d), sum(x > 30 for x in d)
    assert fast > 40 and slow > 40, (fast, slow)
    lab.assert_baseline()


def test_bandwidth_shapes_with_a_token_bucket(lab):
    lab.fault("present", "bw", "network-bandwidth", {"rate": "1mbit", "burst": "4KiB", "limit": "64KiB"})
    rec = lab.record("bw")
    assert rec["mechanism"] == "tbf" and rec["commands"][0]["argv"][:3] == ["tc", "qdisc", "replace"]
    run = lab.probe(40040, count=200, rate=400, payload=1200)  # ~3.8 Mbit/s offered
    lab.fault("absent", "bw", "network-bandwidth", {})
    assert run.lost > 20 or _mean(run) > 50, (run.lost, _mean(run))
    lab.assert_baseline()


@pytest.mark.parametrize("ftype,word", [("network-corruption", "corrupt"), ("network-duplication", "duplicate")])
def test_the_fallback_refuses_what_it_cannot_do_instead_of_injecting_something_else(lab, ftype, word):
    proc = lab.fault("present", "nope", ftype, {"percent": "5%", "correlation": "0%"}, check=False)
    assert proc.returncode != 0 and f"cannot {word}" in proc.stdout
    lab.fault("absent", "nope", ftype, {})
    lab.assert_baseline()


def test_a_required_netem_backend_fails_preflight_on_this_kernel(lab):
    proc = lab.fault("present", "nem", "network-latency", {"delay": "10ms"}, backend="netem", check=False)
    assert proc.returncode != 0 and "no sch_netem" in proc.stdout
    lab.assert_baseline()


@pytest.mark.parametrize("iface", ["mgmt", "lo", "eth9"])
def test_the_guard_refuses_any_interface_but_the_data_interface(lab, iface):
    proc = lab.fault("present", "grd", "network-loss", {"percent": "50%"}, interface=iface, check=False)
    assert proc.returncode != 0 and "data interface only" in proc.stdout
    lab.assert_baseline()


def _data_link_up(lab: FaultLab) -> bool:
    out = subprocess.run(["ip", "netns", "exec", lab.netns("node01"), "ip", "-j", "link", "show", "dev", "data"],
                         capture_output=True, text=True, check=True)
    return "UP" in json.loads(out.stdout)[0]["flags"]


def _ping_node02(lab: FaultLab) -> bool:
    """One ping node01 -> node02 over the data network (as the service's traffic goes)."""
    return subprocess.run(["ip", "netns", "exec", lab.netns("node01"), "ping", "-n", "-q", "-c", "1", "-W", "1",
                           NODE2_DATA], capture_output=True, check=False).returncode == 0


def test_flap_takes_the_data_link_down_and_up_on_its_cycle_and_reverts_to_baseline(lab):
    assert _ping_node02(lab)
    lab.fault("present", "flp", "network-flap", {"down": "2s", "up": "3s"})
    rec = lab.record("flp")
    assert rec["mechanism"] == "link-flap" and rec["helper"]["argv"][2] == "grayctl.faults.node.flap"
    # Sample for two cycles: each ping is judged by the link state read before and after it.
    seen: dict[bool, list[bool]] = {True: [], False: []}
    end = time.monotonic() + 10
    while time.monotonic() < end:
        before, ok, after = _data_link_up(lab), _ping_node02(lab), _data_link_up(lab)
        if before == after:
            seen[before].append(ok)
        time.sleep(0.1)
    assert seen[False] and not any(seen[False]), seen  # down: nothing crosses the data network
    assert seen[True] and sum(seen[True]) >= 0.8 * len(seen[True]), seen  # up: it does (ARP may cost one)
    lab.fault("absent", "flp", "network-flap", {})
    rec = lab.record("flp")
    assert rec["revert_verified"] and rec["helper_stats"]["cycles"] >= 2, rec.get("leftovers")
    assert rec["helper_stats"]["events"][-1]["state"] == "up"
    assert _data_link_up(lab) and _ping_node02(lab)
    lab.assert_baseline()


def test_burst_loss_on_the_fallback_drops_in_bursts_and_reverts(lab):
    params = {"burst": {"p": "2%", "r": "25%", "bad_loss": "100%", "good_loss": "0%"}}
    lab.fault("present", "ge", "network-loss", params)
    rec = lab.record("ge")
    assert rec["backend"] == "fallback" and rec["mechanism"] == "nfqueue-delayer"
    argv = rec["helper"]["argv"]
    assert argv[argv.index("--gemodel"):][:5] == ["--gemodel", "2%", "25%", "100%", "0%"] and "--seed" in argv
    run = lab.probe(40050, count=3000, rate=1000, drain_s=0.3)
    lab.fault("absent", "ge", "network-loss", {})
    lost = [s not in run.delays_ns for s in range(run.sent)]
    bursts = sum(1 for i, x in enumerate(lost) if x and (i == 0 or not lost[i - 1]))
    # theory: loss 2/27 = 7.4 %, mean burst 4 (bursts of single drops would be random loss)
    assert 0.02 < sum(lost) / run.sent < 0.16, sum(lost)
    assert bursts and sum(lost) / bursts > 2.0, (sum(lost), bursts)
    assert lab.record("ge")["revert_verified"]
    assert lab.probe(40051, count=200, rate=500, drain_s=0.3).lost == 0
    lab.assert_baseline()


def _tcp_exchanges(lab: FaultLab, port: int, n: int) -> list[float]:
    """``n`` new TCP connections node01 -> node02, one request/response each: seconds per exchange."""
    import socket
    import threading

    from grayctl.faults.node.probe import netns_socket

    srv = netns_socket(lab.netns("node02"), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((NODE2_DATA, port))
    srv.listen(64)
    srv.settimeout(30)

    def serve() -> None:
        for _ in range(n):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(16))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    out = []
    try:
        for _ in range(n):
            c = netns_socket(lab.netns("node01"), socket.SOCK_STREAM)
            c.settimeout(10)
            with c:
                c.connect((NODE2_DATA, port))
                t0 = time.monotonic()
                c.sendall(b"ping")
                c.recv(16)
                out.append(time.monotonic() - t0)
    finally:
        srv.close()
        t.join(timeout=10)
    return out


def _marked_conntrack(lab: FaultLab, bit: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", lab.netns("node01"), "conntrack", "-L", "-m", f"{bit}/{bit}"],
                         capture_output=True, text=True, check=False)
    return int(out.stderr.split("conntrack-tools): ")[1].split()[0])


def test_a_flow_fraction_delays_about_that_share_of_new_connections_and_reverts_the_marks(lab):
    n, frac = 150, 0.3
    lab.fault("present", "ffr", "network-latency", {"delay": "60ms"}, scope={"fraction": "30%"})
    rec = lab.record("ffr")
    fm = rec["flow_mark"]
    assert rec["mechanism"] == "nfqueue-delayer" and rec["fraction"] == frac
    assert "chain select_out" in rec["nft_script"] and any("connmark" in c["argv"] for c in rec["commands"])
    times = _tcp_exchanges(lab, 40060, n)
    assert _marked_conntrack(lab, fm["decided"]) >= n  # every connection was decided at its start
    lab.fault("absent", "ffr", "network-latency", {})
    slow = sum(t > 0.03 for t in times)
    # Binomial(150, 0.3): mean 45, sd 5.6; 99.9 % bounds (3.29 sd), not a timing assertion.
    sd = (n * frac * (1 - frac)) ** 0.5
    assert abs(slow - n * frac) <= 3.29 * sd, (slow, sorted(times)[::15])
    assert lab.record("ffr")["revert_verified"]
    assert _marked_conntrack(lab, fm["decided"]) == 0
    assert all(t < 0.03 for t in _tcp_exchanges(lab, 40061, 20))  # nothing delayed after the revert
    lab.assert_baseline()


def test_stopping_a_fault_stops_children_that_left_its_process_group():
    """procs.stop_group: the group and the descendants, verified gone (the molecule fault_stress scenario flake)."""
    from grayctl.faults.node import procs

    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(300)\ntime.sleep(300)"
    argv = [sys.executable, "-c", code]
    leader = subprocess.Popen(argv, start_new_session=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while len(procs.fault_processes(leader.pid, argv)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = procs.fault_processes(leader.pid, argv)
        assert len(pids) == 2, pids
        out = procs.stop_group(leader.pid, grace=1.0, argv=argv)
        leader.wait(timeout=10)
        assert out["left"] == [] and sorted(out["pids"]) == sorted(pids)
        assert all(not Path(f"/proc/{p}").exists() or _state(p) in "ZX" for p in pids)
    finally:
        for p in set(pids + procs.descendants(leader.pid) + [leader.pid]):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        leader.wait(timeout=10)


# ---------------------------------------------------------------------------- stress

def _cgroup_procs(lab: FaultLab, name: str) -> list[str]:
    cg = Path(lab.node_vars("node01")["grayctl_node_cgroup"])
    out = []
    for f in cg.rglob("cgroup.procs"):
        for pid in f.read_text().split():
            try:
                if name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    out.append(pid)
            except OSError:
                pass
    return out


@pytest.mark.parametrize("ftype,params", [
    ("cpu-stress", {"workers": 1, "load": "50%"}),
    ("memory-stress", {"bytes": "32MiB", "workers": 1}),
    ("disk-io-stress", {"workers": 1, "bytes": "8MiB"}),
])
def test_stress_runs_inside_the_node_cgroup_and_is_gone_after_revert(lab, ftype, params):
    lab.fault("present", "st", ftype, params)
    time.sleep(0.5)
    assert _cgroup_procs(lab, "stress-ng"), "stress-ng is not in the node's cgroup"
    lab.fault("absent", "st", ftype, {})
    assert not _cgroup_procs(lab, "stress-ng")
    assert lab.record("st")["revert_verified"]
    lab.assert_baseline()


# ---------------------------------------------------------------------------- process

@pytest.fixture
def service(lab):
    """A stand-in replica 'svc-0' on node01, recorded the way topology_deploy's grayctl_process does."""
    d = Path(lab.node_vars("node01")["grayctl_state_dir"]) / "services" / "svc-0"
    d.mkdir(parents=True)
    # The node's own interpreter: a node sees nothing of the host's /root (where this venv's python may live),
    # and process-kill restarts the recorded command line on the node.
    argv = [lab.node_vars("node01")["grayctl_python"], "-c", "import time\nwhile True: time.sleep(0.01)"]
    proc = subprocess.Popen(["ip", "netns", "exec", lab.netns("node01"), *argv], start_new_session=True)
    time.sleep(0.3)
    child = proc.pid  # ip netns exec execs the command in place: same pid, own session
    (d / "pid.cmd").write_text("\0".join(argv))
    (d / "pid").write_text(f"{child}\n")
    yield d
    pid = int((d / "pid").read_text())
    for p in (pid, proc.pid):
        try:
            os.killpg(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=5)
    subprocess.run(["rm", "-rf", str(d.parent)], check=True)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_process_pause_stops_the_service_and_revert_continues_it(lab, service):
    pid = int((service / "pid").read_text())
    lab.fault("present", "pz", "process-pause", {}, service="svc")
    time.sleep(0.3)
    assert _state(pid) == "T"
    effect = lab.record("pz")["effect"]
    assert effect["verified"] is True and effect["evidence"]["states"] == {str(pid): "T"}, effect
    lab.fault("absent", "pz", "process-pause", {}, service="svc")
    assert _state(pid) in "RS"
    assert lab.record("pz")["revert_verified"]


def test_process_stutter_pauses_periodically(lab, service):
    pid = int((service / "pid").read_text())
    lab.fault("present", "stu", "process-pause", {"stutter": {"pause": "100ms", "every": "200ms"}},
              service="svc")
    seen = {_state(pid) for _ in range(60) if time.sleep(0.01) is None}
    lab.fault("absent", "stu", "process-pause", {}, service="svc")
    assert "T" in seen and seen & set("RS"), seen
    events = lab.record("stu")["helper_stats"]["events"]
    assert sum(e[0] == "STOP" for e in events) >= 2
    assert _state(pid) in "RS"


@pytest.mark.parametrize("restart", [True, False])
def test_process_kill_with_and_without_restart(lab, service, restart):
    pid = int((service / "pid").read_text())
    lab.fault("present", "kil", "process-kill", {"signal": "KILL", "restart": restart}, service="svc")
    time.sleep(0.2)
    new = int((service / "pid").read_text())
    assert not Path(f"/proc/{pid}/cmdline").exists() or _state(pid) == "Z"
    assert (new != pid) == restart
    lab.fault("absent", "kil", "process-kill", {}, service="svc")
    now = int((service / "pid").read_text())
    assert _state(now) in "RS" and lab.record("kil")["revert_verified"]


# ---------------------------------------------------------------------------- revert paths

EXPERIMENT = """\
name: fx
topology: gen1-monolith
schedule: {warmup: 0s, baseline: 0s, fault: 60s, recovery: 0s}
chaos_injections:
  - id: lat-x
    type: network-latency
    target_service: monolith
    parameters: {delay: 30ms}
"""


def _inject_in_background(lab: FaultLab, *args: str) -> subprocess.Popen:
    exp = lab.tmp / "exp.yaml"
    exp.write_text(EXPERIMENT)
    return subprocess.Popen([sys.executable, "-m", "grayctl", "fault", "inject", str(exp), "--lab", str(lab.file),
                             *args], env=lab.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_injected(proc: subprocess.Popen, lab: FaultLab, timeout: float = 60) -> None:
    netns = lab.netns("node01")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"], capture_output=True, text=True, check=False)
        if "grayctl_lat_x" in out.stdout or "mangle" in out.stdout:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the fault never appeared")


def _node_clean(lab: FaultLab) -> bool:
    netns = lab.netns("node01")
    rules = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "ruleset"], capture_output=True, text=True, check=False)
    return not rules.stdout.strip() and not _cgroup_procs(lab, "grayctl.faults.node")


def test_revert_at_the_end_of_the_window(lab):
    # `fault inject` writes run specs (effect: require): the delay needs traffic to show its effect.
    ping = _pinging(lab)
    try:
        proc = _inject_in_background(lab, "--duration", "2")
        out, err = proc.communicate(timeout=120)
    finally:
        ping.kill()
        ping.wait()
    assert proc.returncode == 0, err
    assert "verified clean" in out
    assert _node_clean(lab)
    lab.assert_baseline()


def test_sigterm_of_grayctl_reverts_every_fault(lab):
    proc = _inject_in_background(lab, "--duration", "60")
    _wait_injected(proc, lab)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _node_clean(lab)
    lab.assert_baseline()


def test_sigkill_of_grayctl_leaves_the_node_clean_within_the_expiry_margin(lab):
    proc = _inject_in_background(lab, "--duration", "3", "--expire-margin", "2")
    _wait_injected(proc, lab)
    proc.kill()
    proc.communicate(timeout=10)
    killed = time.monotonic()
    while time.monotonic() - killed < 12 and not _node_clean(lab):
        time.sleep(0.2)
    assert _node_clean(lab), "the on-host expiry did not revert the fault"
    # the record stays on the node until the next revert-all fetches and removes it
    lab.grayctl("fault", "revert", "--all")
    lab.assert_baseline()


# ---------------------------------------------------------------------------- scheduled steps

def _node_record(lab: FaultLab, fid: str) -> dict | None:
    path = Path(lab.node_vars("node01")["grayctl_state_dir"]).parent / "faults" / f"{fid}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_a_scheduled_apply_waits_for_its_time_on_the_node_and_the_revert_for_its_own(lab):
    # the play must reach the node before apply_at: at load 20 on 2 cores that took 8 s here
    apply_at = time.time_ns() + 12 * 10**9
    lab.fault("present", "sched", "network-loss", {"percent": "5%"}, fault_not_before_ns={"node01": apply_at})
    rec = lab.record("sched")
    assert rec["scheduled_ns"] == apply_at and rec["status"] == "active"
    assert rec["called_ns"] < apply_at <= rec["start_ns"], "the node acted before its time"
    revert_at = time.time_ns() + 2 * 10**9
    lab.fault("absent", "sched", "network-loss", {"percent": "5%"}, fault_not_before_ns={"node01": revert_at})
    rec = lab.record("sched")
    assert rec["revert_scheduled_ns"] == revert_at and rec["end_ns"] >= revert_at
    assert rec["status"] == "reverted" and rec["revert_verified"]
    assert _node_clean(lab)


def test_a_revert_before_the_scheduled_time_cancels_the_apply_and_nothing_is_applied(lab):
    ev = {"fault_state": "present", "fault_record_dir": str(lab.tmp / "records"),
          "fault_spec": to_spec("later", "network-loss", {"percent": "5%"}, expire_after_s=120, service="svc"),
          "fault_not_before_ns": {"node01": time.time_ns() + 40 * 10**9}}
    evf = lab.tmp / "later.json"
    evf.write_text(json.dumps(ev))
    play = subprocess.Popen(["ansible-playbook", "-i", str(lab.inventory), "playbooks/fault.yml", "--limit", "node01",
                             "-e", f"@{evf}"], env=lab.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 120
        while ((_node_record(lab, "later") or {}).get("status") != "scheduled" and time.monotonic() < end
               and play.poll() is None):
            time.sleep(0.2)
        assert (_node_record(lab, "later") or {}).get("status") == "scheduled", play.communicate()
        lab.fault("absent", "later", "network-loss", {"percent": "5%"})  # what the run's cleanup does
        out, _ = play.communicate(timeout=120)  # the waiting apply sees the cancel within 50 ms
    finally:
        if play.poll() is None:
            play.kill()
    assert play.returncode != 0 and "cancelled by a revert before its scheduled time" in out
    assert lab.record("later")["status"] == "cancelled"
    assert _node_clean(lab)
    lab.assert_baseline()


def test_a_hand_written_spec_missing_a_parameter_is_refused_in_words_and_leaves_nothing(lab):
    proc = lab.fault("present", "nopct", "network-loss", {"loss": "5%"}, check=False)
    assert proc.returncode != 0 and "parameter 'percent' is required by this fault type" in proc.stdout
    assert "Traceback" not in proc.stdout
    lab.fault("absent", "nopct", "network-loss", {})
    assert _node_clean(lab)
