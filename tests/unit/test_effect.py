"""Effect verification (grayctl.faults.node.effect) on real processes and real tool output shapes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from grayctl.faults.node.effect import cgroup_evidence, nft_packets, qdisc_sent_packets, verify

TC = """qdisc tbf 8001: root refcnt 2 rate 1Mbit burst 32Kb lat 1.0s
 Sent 1514 bytes 7 pkt (dropped 0, overlimits 0 requeues 0)
qdisc ingress ffff: parent ffff:fff1 ----------------
 Sent 0 bytes 3 pkt (dropped 0, overlimits 0 requeues 0)
"""
NFT = """table inet grayctl_f1 {
	chain out {
		ip daddr 10.0.0.3 counter packets 12 bytes 900 drop
		ip saddr 10.0.0.3 counter packets 5 bytes 300 drop
	}
}
"""


def test_qdisc_and_nft_counters_are_summed_from_the_tools_output():
    assert qdisc_sent_packets(TC) == 10
    assert nft_packets(NFT) == 17
    assert qdisc_sent_packets("") == 0 and nft_packets("") == 0


def _child() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    time.sleep(0.3)  # past the exec: until then /proc/PID/cmdline is empty and the process looks gone
    return proc


def test_a_stopped_process_is_verified_by_its_state_and_a_running_one_is_not():
    proc = _child()
    try:
        rec = {"type": "process-pause", "targets": [{"pid": proc.pid}]}
        running = verify(rec, window_s=0.2)
        assert running["verified"] is False and running["evidence"]["states"][str(proc.pid)] in ("S", "R")
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = verify(rec, window_s=0.5)
        assert stopped["verified"] is True and stopped["evidence"]["states"][str(proc.pid)] == "T"
    finally:
        proc.kill()
        proc.wait()


def test_a_kill_is_verified_only_once_the_process_is_gone():
    proc = _child()
    rec = {"type": "process-kill", "killed": [{"pid": proc.pid}]}
    assert verify(rec, window_s=0.2)["verified"] is False
    proc.kill()
    proc.wait()
    assert verify(rec, window_s=0.5)["verified"] is True


def test_stress_is_verified_by_its_workers_cpu_time_with_the_cgroup_figures_beside_it():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<5: pass"],
                            start_new_session=True)
    idle = _child()
    time.sleep(0.8)  # past the interpreters' start-up, which burns CPU of its own
    try:
        out = verify({"type": "cpu-stress", "helper": {"pid": busy.pid}}, window_s=1.5)
        assert out["verified"] is True and out["evidence"]["after"] > out["evidence"]["before"]
        assert "cgroup" in out["evidence"]
        assert verify({"type": "cpu-stress", "helper": {"pid": idle.pid}}, window_s=0.5)["verified"] is False
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()


def test_the_cgroup_figures_come_from_this_hosts_cgroup_files():
    figures = cgroup_evidence()
    assert any(k in figures for k in ("cpu.stat", "cpu.pressure", "cpuacct.usage")), figures
