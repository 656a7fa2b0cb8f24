"""Lab tests of the fallback network faults: real namespaces, real queue, real packets.

Two namespaces ``fna-<pid>`` and ``fnb-<pid>`` joined by a veth whose ends are named ``data``
(10.243.1.1 and 10.243.1.2). The helper runs in A; A's egress to B is steered into its queue;
UDP one-way probes (grayctl.faults.node.probe) measure what crosses. Bounds are generous:
fidelity is bench/fault_fidelity.py's job, not a timed test's.

Every test records what it starts; the fixture's finalizer kills those processes, reverts the
fault ids and deletes the namespaces, then asserts nothing is left.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="lab tier: needs root to create network namespaces and netfilter rules"),
]

from grayctl.faults.node import steer  # noqa: E402
from grayctl.faults.node.probe import run_probes  # noqa: E402

A_ADDR, B_ADDR = "10.243.1.1", "10.243.1.2"


@dataclass
class Pair:
    a: str
    b: str
    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    fault_ids: list[str] = field(default_factory=list)

    def start(self, module: str, *args: str) -> subprocess.Popen:
        """Run ``python -m module args`` inside A, in its own session (like the role does)."""
        argv = ["ip", "netns", "exec", self.a, sys.executable, "-m", module, *args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_delayer(self, fault_id: str, queue: int, *args: str) -> tuple[subprocess.Popen, Path]:
        self.fault_ids.append(fault_id)
        stats = self.tmp / f"{fault_id}.stats.json"
        proc = self.start("grayctl.faults.node.nfqdelay", "--queue", str(queue), "--fault-id", fault_id,
                          "--stats", str(stats), "--stats-interval", "200ms",
                          "--expire-at", str(time.time() + 120), *args)
        _wait_for(lambda: stats.exists() or proc.poll() is not None, 10)
        assert proc.poll() is None, proc.communicate()
        return proc, stats

    def probe(self, port: int, **kw):
        return run_probes(self.a, self.b, B_ADDR, port, **kw)


def _wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pid = os.getpid()
    p = Pair(f"fna-{pid}", f"fnb-{pid}", tmp_path)
    veth_a, veth_b = f"fnv{pid}"[:15], f"fnw{pid}"[:15]
    try:
        _ip("netns", "add", p.a)
        _ip("netns", "add", p.b)
        _ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        _ip("link", "set", veth_a, "netns", p.a)
        _ip("link", "set", veth_b, "netns", p.b)
        for ns, dev, addr in ((p.a, veth_a, A_ADDR), (p.b, veth_b, B_ADDR)):
            _ip("-n", ns, "link", "set", dev, "name", "data")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "data")
            _ip("-n", ns, "link", "set", "data", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield p
    finally:
        for proc in p.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if os.path.exists(f"/run/netns/{p.a}"):
            for fid in p.fault_ids:
                steer.revert_fault(fid, netns=p.a)
        for ns in (p.a, p.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert p.a not in left and p.b not in left
        assert all(proc.poll() is not None for proc in p.procs)


def _added_ms(run, baseline_ms: float) -> list[float]:
    return [d - baseline_ms for d in run.delays_ms()]


def _baseline_ms(pair: Pair) -> float:
    return statistics.median(pair.probe(9100, rate=500, count=200, drain_s=0.2).delays_ms())


def test_delay_50ms_jitter_10ms_has_that_mean_and_spread(pair: Pair) -> None:
    base = _baseline_ms(pair)
    proc, stats = pair.start_delayer("lab_delay", 11, "--delay", "50ms", "--jitter", "10ms", "--seed", "1")
    steer.apply_queue_steer("lab_delay", steer.Scope.build("data", peers=[B_ADDR]), 11, netns=pair.a)
    # 20 flows at 200/s: each flow's packets are 100 ms apart, far beyond the jitter, so the
    # per-flow order rule never shifts a sample.
    run = pair.probe(9101, rate=200, count=1000, flows=20, drain_s=0.5)
    added = _added_ms(run, base)
    assert run.received == run.sent
    assert statistics.mean(added) == pytest.approx(50, rel=0.15)
    assert statistics.stdev(added) == pytest.approx(10, rel=0.25)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    record = json.loads(stats.read_text())
    assert record["exit_reason"] == "SIGTERM" and record["delayed"] >= 1000
    assert "iptables mangle chain GRAYCTL_lab_delay" in record["reverted"]
    assert steer.fault_leftovers("lab_delay", netns=pair.a) == []


def _binomial_ok(lost: int, n: int, p: float, z: float = 3.29) -> bool:
    """Within the 99.9 % normal-approximation interval of Binomial(n, p)."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return abs(lost - mean) <= z * sd


def test_nft_random_loss_20_percent_drops_that_share(pair: Pair) -> None:
    pair.fault_ids.append("lab_loss")
    scope = steer.Scope.build("data", peers=[B_ADDR])
    steer.apply_nft_script(steer.build_loss_script("lab_loss", scope, 20.0), netns=pair.a)
    run = pair.probe(9102, rate=1000, count=3000, drain_s=0.3)
    assert _binomial_ok(run.lost, run.sent, 0.20), (run.lost, run.sent)
    steer.revert_fault("lab_loss", netns=pair.a)
    assert steer.fault_leftovers("lab_loss", netns=pair.a) == []


def test_helper_loss_20_percent_drops_that_share(pair: Pair) -> None:
    proc, stats = pair.start_delayer("lab_hloss", 12, "--loss", "20%", "--seed", "3")
    steer.apply_queue_steer("lab_hloss", steer.Scope.build("data", peers=[B_ADDR]), 12, netns=pair.a)
    run = pair.probe(9103, rate=1000, count=3000, drain_s=0.3)
    assert _binomial_ok(run.lost, run.sent, 0.20), (run.lost, run.sent)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_sigkilled_helper_is_reverted_by_expiry_within_the_margin(pair: Pair) -> None:
    proc, _ = pair.start_delayer("lab_kill", 13, "--delay", "20ms")
    record = pair.tmp / "expiry.json"
    # The deadline is far away: the revert must come from the watched helper dying.
    watcher = pair.start("grayctl.faults.node.expiry", "--at", str(time.time() + 300),
                         "--fault-id", "lab_kill", "--pid", str(_inner_pid(pair, proc)),
                         "--record", str(record))
    steer.apply_queue_steer("lab_kill", steer.Scope.build("data", peers=[B_ADDR]), 13, netns=pair.a)
    assert steer.fault_leftovers("lab_kill", netns=pair.a)
    killed_at = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)  # the helper and its `ip netns exec` parent
    assert _wait_for(lambda: not steer.fault_leftovers("lab_kill", netns=pair.a), 2.0)
    assert time.monotonic() - killed_at < 2.0
    assert watcher.wait(timeout=5) == 0
    rec = json.loads(record.read_text())
    assert rec["reason"] == "helper-exited" and rec["clean"]
    run = pair.probe(9104, rate=200, count=100, drain_s=0.3)
    assert run.received == run.sent  # traffic flows again, undelayed
    assert max(run.delays_ms()) < 10


def _inner_pid(pair: Pair, proc: subprocess.Popen) -> int:
    """PID of the python helper (``ip netns exec`` execs it, so it is the same process)."""
    return proc.pid


def test_expiry_deadline_reverts_a_partition_without_any_helper(pair: Pair) -> None:
    pair.fault_ids.append("lab_exp")
    steer.apply_nft_script(steer.build_partition_script("lab_exp", steer.Scope.build("data"), "both"),
                           netns=pair.a)
    watcher = pair.start("grayctl.faults.node.expiry", "--at", str(time.time() + 1.0), "--fault-id", "lab_exp")
    assert watcher.wait(timeout=10) == 0
    assert steer.fault_leftovers("lab_exp", netns=pair.a) == []


def test_helper_expires_by_itself_and_reverts(pair: Pair) -> None:
    pair.fault_ids.append("lab_self")
    stats = pair.tmp / "self.json"
    proc = pair.start("grayctl.faults.node.nfqdelay", "--queue", "14", "--delay", "10ms", "--fault-id",
                      "lab_self", "--stats", str(stats), "--expire-at", str(time.time() + 1.5))
    _wait_for(stats.exists, 5)
    steer.apply_queue_steer("lab_self", steer.Scope.build("data"), 14, netns=pair.a)
    assert proc.wait(timeout=10) == 0
    assert json.loads(stats.read_text())["exit_reason"] == "expired"
    assert steer.fault_leftovers("lab_self", netns=pair.a) == []


def test_partition_drops_everything_and_recovers_after_removal(pair: Pair) -> None:
    pair.fault_ids.append("lab_part")
    scope = steer.Scope.build("data", peers=[B_ADDR])
    steer.apply_nft_script(steer.build_partition_script("lab_part", scope, "both"), netns=pair.a)
    blocked = pair.probe(9105, rate=500, count=500, drain_s=0.3)
    assert blocked.received == 0
    steer.revert_fault("lab_part", netns=pair.a)
    assert steer.fault_leftovers("lab_part", netns=pair.a) == []
    healed = pair.probe(9106, rate=500, count=500, drain_s=0.3)
    assert healed.received == healed.sent


def test_helper_gilbert_elliott_drops_in_bursts_near_the_chains_loss_rate(pair: Pair) -> None:
    proc, stats = pair.start_delayer("lab_ge", 15, "--gemodel", "2%", "25%", "100%", "0%", "--seed", "4")
    steer.apply_queue_steer("lab_ge", steer.Scope.build("data", peers=[B_ADDR]), 15, netns=pair.a)
    run = pair.probe(9107, rate=1000, count=4000, drain_s=0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    lost = [s not in run.delays_ns for s in range(run.sent)]
    bursts = sum(1 for i, x in enumerate(lost) if x and (i == 0 or not lost[i - 1]))
    # theory (delaymodel.ge_theory): loss 7.4 %, mean burst 4; generous bounds, bursty not random
    assert 0.03 < sum(lost) / run.sent < 0.14 and sum(lost) / max(bursts, 1) > 2.0, (sum(lost), bursts)
    assert json.loads(stats.read_text())["dropped"] == sum(lost)
    assert steer.fault_leftovers("lab_ge", netns=pair.a) == []


def test_bandwidth_with_a_flow_fraction_shapes_only_the_selected_connections(pair: Pair) -> None:
    """Flow fractions on a tc fault: nft selects connections and sets skb->priority to htb's class 1:1
    (no tc filter: this kernel has neither cls_fw nor u32 mark); the rest take htb's direct queue."""
    import socket
    import threading

    from grayctl.faults.backends import network_actions
    from grayctl.faults.spec import load_spec
    from grayctl.faults.node.probe import netns_socket

    pair.fault_ids.append("lab_bwf")
    spec = load_spec({"id": "lab_bwf", "type": "network-bandwidth", "interface": "data",
                                "parameters": {"rate": "1mbit", "burst": "2KiB", "limit": "256KiB"},
                                "direction": "egress", "expire_after_s": 60, "data_iface": "data",
                                "fraction": "50%"})
    act = network_actions(spec, "fallback", python=sys.executable, expire_at=0, files={}, flow_slot=0)
    run = lambda *argv, **kw: subprocess.run(["ip", "netns", "exec", pair.a, *argv], check=True,  # noqa: E731
                                             capture_output=True, text=True, **kw)
    run("nft", "-f", "-", input=act.nft_script)
    for argv in act.commands:
        run(*argv)
    n, size = 40, 16384
    srv = netns_socket(pair.b, socket.SOCK_STREAM)
    srv.bind((B_ADDR, 9108))
    srv.listen(64)
    srv.settimeout(30)

    def serve() -> None:
        for _ in range(n):
            conn, _ = srv.accept()
            with conn:
                got = 0
                while got < size:
                    got += len(conn.recv(65536))
                conn.sendall(b"k")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    times = []
    try:
        for _ in range(n):
            with netns_socket(pair.a, socket.SOCK_STREAM) as c:
                c.settimeout(20)
                c.connect((B_ADDR, 9108))
                t0 = time.monotonic()
                c.sendall(b"\0" * size)
                c.recv(1)
                times.append(time.monotonic() - t0)
    finally:
        srv.close()
        t.join(timeout=10)
    shaped = sum(x > 0.05 for x in times)  # 16 KiB at 1 mbit/s takes > 100 ms; unshaped ones ~1 ms
    assert abs(shaped - n / 2) <= 3.29 * math.sqrt(n / 4), sorted(times)  # Binomial(40, 0.5), 99.9 %
    for argv in act.revert:
        run(*argv)
    steer.revert_fault("lab_bwf", netns=pair.a)
    subprocess.run(["ip", "netns", "exec", pair.a, "conntrack", "-D", "-m", "0x1/0x1"], capture_output=True)
    assert steer.fault_leftovers("lab_bwf", netns=pair.a) == []
    listed = subprocess.run(["ip", "netns", "exec", pair.a, "conntrack", "-L", "-m", "0x1/0x1"],
                            capture_output=True, text=True).stderr
    assert " 0 flow entries" in listed, listed
