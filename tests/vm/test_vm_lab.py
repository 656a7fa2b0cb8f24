"""A real VM node in a mixed lab: golden image, boot over SSH, reimage by overlay, netem measured, nothing left.

One lab for the module: node01 and node03 are network namespaces, node02 a qemu VM booted from the
golden image (``grayctl image build``, reused when cached). Faults go through playbooks/fault.yml
with the netem backend required, on the VM's data interface; their effect is measured from node01
with ping (RTT) and a TCP bulk send (rate). Bounds are loose (TCG guest, shared 2-core host):
fidelity figures are bench/vm_bench.py's job.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

import pytest

from vmlab import VmLab, leftovers  # tests/vm is on sys.path (rootdir-less test dir)

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="VM nodes need root"),
    pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v qemu-system-x86_64 debootstrap qemu-img"],
                                      capture_output=True).returncode != 0, reason="qemu/debootstrap missing"),
]


@pytest.fixture(scope="module")
def image() -> dict:
    import json
    import sys

    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grayctl", "image", "build", "--json"], capture_output=True,
                          text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads(proc.stdout)
    rec["wall"] = time.monotonic() - t0
    print(f"\nimage: {'reused' if rec['reused'] else 'built'} in {rec['wall']:.0f} s ({rec['dir']})")
    return rec


@pytest.fixture(scope="module")
def lab(image, tmp_path_factory) -> VmLab:
    vl = VmLab(tmp_path_factory.mktemp("vmlab"))
    t0 = time.monotonic()
    up = vl.grayctl_json("lab", "up")
    print(f"lab up (1 VM, 2 netns, baseline) in {time.monotonic() - t0:.0f} s; accel "
          f"{up['report']['qemu']['accel'].get('chosen')}; boot to SSH {up['report']['qemu']['seconds']}")
    vl.up = up
    try:
        yield vl
    finally:
        # no 'fault revert --all' first: lab down removes the VM (its overlay, so its faults) and the
        # namespaces with their rules and cgroups - a minute saved in the tier's budget
        down = vl.grayctl("lab", "down", check=False)
        assert down.returncode == 0, down.stderr
        from grayctl.lab.definition import load_lab

        assert leftovers(vl, load_lab(str(vl.file)).lab_id) == []


def test_the_vm_is_a_lab_node_with_mgmt_and_data_and_real_netem(lab):
    v = lab.node_vars("node02")
    assert v["grayctl_provider"] == "qemu" and v["grayctl_python"] == "/usr/bin/python3" and "grayctl_netns" not in v
    assert lab.up["baseline"] == "recorded"
    accel = lab.up["report"]["qemu"]["accel"]
    assert accel["chosen"] in ("kvm", "tcg") and accel["reason"]
    out = lab.ssh("node02", "hostname; ip -br -4 addr show mgmt; ip -br -4 addr show data; "
                            "modprobe sch_netem && echo netem-ok; "
                            "python3 -c 'import grayctl.faults.node.faultctl as f; print(f.__file__)'")
    assert out.splitlines()[0] == "node02"
    assert "10.240.0.3/24" in out and "10.240.64.3/24" in out and "netem-ok" in out
    assert "/opt/grayctl/grayctl/faults/node/faultctl.py" in out  # the controller's grayctl, shared
    rtts, _ = lab.ping("node01", "node02", count=20)
    assert len(rtts) >= 18  # the data network joins the netns node and the VM


def test_reset_reimages_the_vm_and_a_file_written_before_is_gone(lab):
    lab.ssh("node02", "echo before-reset > /root/marker && sync && cat /root/marker")
    t0 = time.monotonic()
    rec = lab.grayctl_json("lab", "reset")
    took = time.monotonic() - t0
    assert rec["baseline"] == "verified"
    assert lab.ssh("node02", "test -e /root/marker && echo still-there || echo gone").strip() == "gone"
    print(f"\nreimage: lab reset {took:.0f} s (VM {rec['report']['qemu']['seconds']})")


def _added(lab, base: float, count: int = 300) -> tuple[float, float, float]:
    rtts, sent = lab.ping("node01", "node02", count=count)
    return statistics.fmean(rtts) - base, statistics.pstdev(rtts), 1 - len(rtts) / sent


@pytest.fixture(scope="module")
def base(lab) -> float:
    return statistics.median(lab.ping("node01", "node02", count=100)[0])


def test_netem_latency_with_jitter_and_correlation_scoped_to_one_peer(lab, base):
    # one fault covers delay, jitter, correlation and peer scope (the tier's time budget): towards
    # node01's data address only; node03, another netns node, must see no delay
    lab.fault("present", "vlat", "network-latency", {"delay": "100ms", "jitter": "10ms", "correlation": "25%",
                                                      "distribution": "normal"}, fault_backend="netem",
              fault_peers=[lab.data_ip("node01")])
    rec = lab.record("vlat")
    assert rec["backend"] == "netem" and any("netem" in c["argv"] for c in rec["commands"]), rec
    added, sd, _ = _added(lab, base)
    to03 = statistics.median(lab.ping("node03", "node02", count=50)[0])
    print(f"\nnetem 100ms±10ms 25% towards node01: +{added:.1f} ms, σ {sd:.1f}; node03 median {to03:.1f} (base {base:.1f})")
    lab.fault("absent", "vlat", "network-latency", {})
    assert 85 < added < 115 and 4 < sd < 20, (added, sd)
    assert to03 < base + 15, (base, to03)
    assert lab.record("vlat")["revert_verified"]
    assert _added(lab, base, count=50)[0] < 5


@pytest.mark.slow  # netem's other parameters: the default tier keeps delay/jitter/peers (CI budget)
def test_netem_loss_drops_its_share(lab, base):
    lab.fault("present", "vloss", "network-loss", {"percent": "20%", "correlation": "0%"}, fault_backend="netem")
    _, _, lost = _added(lab, base, count=400)
    print(f"\nnetem loss 20%: {lost:.3f} of 400 lost")
    lab.fault("absent", "vloss", "network-loss", {})
    assert 0.12 < lost < 0.30, lost


@pytest.mark.slow
def test_netem_bandwidth_limits_a_tcp_transfer_from_the_vm(lab):
    free = lab.throughput_mbit("node02", "node01")
    lab.fault("present", "vbw", "network-bandwidth", {"rate": "10mbit", "burst": "32KiB", "limit": "256KiB"},
              fault_backend="netem")
    shaped = lab.throughput_mbit("node02", "node01", port=45002)
    print(f"\nnetem/tbf 10mbit: {shaped:.2f} Mbit/s shaped, {free:.1f} unshaped")
    lab.fault("absent", "vbw", "network-bandwidth", {})
    assert 7 < shaped < 11.5 and free > 2 * shaped, (free, shaped)


def test_after_the_faults_every_node_is_at_its_golden_baseline(lab):
    lab.playbook("baseline.yml")  # verify: the VM included
    assert lab.ssh("node02", "tc qdisc show dev data").count("netem") == 0
