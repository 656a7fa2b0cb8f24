"""A mixed lab for the vm tier and bench/vm_bench.py: netns nodes plus qemu VM nodes, driven by the CLI.

Measurements go from a netns node to a VM node over the data network: ``ping`` (RTT, one sample
per echo; netem on the VM's egress shows in the reply path) and a TCP bulk send from the VM to a
sink in the netns node (throughput under a rate limit). Addresses: 10.240.0.0/24 (management),
10.240.64.0/24 (data); lab names start with ``v``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from grayctl.faults.node.probe import netns_socket
from grayctl.faults.spec import to_spec
from grayctl.paths import PROJECT_ROOT

MGMT, DATA = "10.240.0.0/24", "10.240.64.0/24"
_RTT_RE = re.compile(r"icmp_seq=(\d+) .*time=([0-9.]+) ms")


class VmLab:
    """Three nodes: node01 and node03 are namespaces, node02 a VM (``vms`` changes which)."""

    def __init__(self, tmp: Path, vms: tuple[str, ...] = ("node02",), count: int = 3, name: str | None = None,
                 memory: str = "768MiB") -> None:
        self.name = name or f"v{os.getpid() % 100000}"
        self.tmp = tmp
        self.file = tmp / "lab.yml"
        self.vms = vms
        self.file.write_text(yaml.safe_dump({
            "name": self.name, "nodes": {"count": count}, "networks": {"management": MGMT, "data": DATA},
            "limits": {"cpu": "50%", "memory": "256MiB"}, "providers": {"qemu": list(vms)},
            "qemu": {"memory": memory, "cpus": 1, "accel": "auto"}}))
        self.env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp / "labs")}
        self.dir = tmp / "labs" / self.name
        self.inventory = self.dir / "inventory.yml"

    # -- the CLI and Ansible
    def grayctl(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "grayctl", *args, "--lab", str(self.file)], env=self.env,
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=timeout, check=False)
        assert not check or proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def grayctl_json(self, *args: str) -> dict:
        return json.loads(self.grayctl(*args, "--json").stdout)

    def playbook(self, playbook: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ansible-playbook", "-i", str(self.inventory), f"playbooks/{playbook}", *args],
                              env=self.env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600,
                              check=False)
        assert not check or proc.returncode == 0, proc.stdout[-4000:]
        return proc

    def fault(self, state: str, fid: str, ftype: str, params: dict, *, target: str = "node02", check: bool = True,
              **extra) -> subprocess.CompletedProcess[str]:
        # extra: the spec's fields with the playbook's old prefix (fault_peers=..., fault_backend=...)
        spec = {k.removeprefix("fault_"): v for k, v in {"service": "svc", **extra}.items()}
        ev = {"fault_state": state, "fault_record_dir": str(self.tmp / "records"),
              "fault_spec": to_spec(fid, ftype, params, expire_after_s=300, **spec)}
        evf = self.tmp / f"{fid}-{state}.json"
        evf.write_text(json.dumps(ev))
        return self.playbook("fault.yml", "--limit", target, "-e", f"@{evf}", check=check)

    def record(self, fid: str, node: str = "node02") -> dict:
        return json.loads((self.tmp / "records" / node / f"{fid}.json").read_text())

    def node_vars(self, node: str) -> dict:
        inv = yaml.safe_load(self.inventory.read_text())["all"]["children"]["lab_nodes"]
        return {**inv["vars"], **inv["hosts"][node]}

    def ssh(self, node: str, command: str, check: bool = True, timeout: float = 120) -> str:
        v = self.node_vars(node)
        argv = ["ssh", "-i", v["ansible_ssh_private_key_file"], *v["ansible_ssh_common_args"].split(),
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"root@{v['ansible_host']}", command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        assert not check or proc.returncode == 0, f"{command}: {proc.stderr}"
        return proc.stdout

    def netns(self, node: str) -> str:
        return f"gc-{self.name}-{node}"

    def data_ip(self, node: str) -> str:
        return self.node_vars(node)["grayctl_data_ip"]

    # -- measurements
    def ping(self, src: str, dst: str, count: int = 200, interval: float = 0.01) -> tuple[list[float], int]:
        """RTTs (ms) of ``count`` echoes from netns node ``src`` to ``dst``'s data address; and how many were sent."""
        proc = subprocess.run(["ip", "netns", "exec", self.netns(src), "ping", "-n", "-i", str(interval),
                               "-c", str(count), "-W", "2", self.data_ip(dst)],
                              capture_output=True, text=True, timeout=count * interval + 60, check=False)
        rtts = {int(m.group(1)): float(m.group(2)) for m in _RTT_RE.finditer(proc.stdout)}
        return [rtts[k] for k in sorted(rtts)], count

    def throughput_mbit(self, vm: str, sink: str, nbytes: int = 3_000_000, port: int = 45001) -> float:
        """Mbit/s of a TCP bulk send from VM ``vm`` to a sink in netns node ``sink`` (timed at the sink)."""
        srv = netns_socket(self.netns(sink), __import__("socket").SOCK_STREAM)
        srv.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_REUSEADDR, 1)
        srv.bind((self.data_ip(sink), port))
        srv.listen(1)
        srv.settimeout(120)
        got: dict[str, float] = {}

        def receive() -> None:
            conn, _ = srv.accept()
            with conn:
                total, first = 0, None
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    if first is None:
                        first = time.monotonic()
                    total += len(chunk)
                got["bytes"], got["seconds"] = total, time.monotonic() - (first or time.monotonic())

        t = threading.Thread(target=receive)
        t.start()
        try:
            self.ssh(vm, "python3 -c \"import socket; s=socket.create_connection(('%s', %d)); "
                         "s.sendall(bytes(%d)); s.close()\"" % (self.data_ip(sink), port, nbytes), timeout=300)
            t.join(180)
        finally:
            srv.close()
        return got["bytes"] * 8 / got["seconds"] / 1e6 if got.get("seconds") else float("nan")


def leftovers(lab: VmLab, lab_id: str) -> list[str]:
    """qemu processes, taps, netns and files of this lab still on the machine."""
    out = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"grayctl-{lab.name}-" in cmd and "qemu" in cmd:
            out.append(f"qemu pid {pid}")
    out += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(lab_id)]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    out += [f"netns {line.split()[0]}" for line in netns.splitlines() if f"gc-{lab.name}-" in line]
    vms = lab.dir / "vms"
    if vms.exists():
        out += [f"file {p}" for p in vms.rglob("*")]
    return out
