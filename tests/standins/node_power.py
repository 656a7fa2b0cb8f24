"""The power of one netns lab node, as the BMC and hypervisor stand-ins drive it.

A stand-in (tests/standins/redfish_bmc.py, ipmi_chassis.py, proxmox_api.py, libvirt_events.py)
answers its real protocol and turns power requests into what a real machine would do:

  power_off()       every process of the node dies at once (its sshd and SSH sessions included),
                    as when a server loses power: its SSH port goes away
  boot(network)     after ``boot_delay`` seconds (POST), the node comes back on SSH. A network
                    boot (PXE into the golden image, or a restored snapshot's disk) is the netns
                    lab's reset: processes, qdiscs, firewall rules and links back to plan, state
                    directory emptied (playbooks/lab_reset.yml). A disk boot only brings the sshd
                    back (playbooks/lab_up.yml): what the node had on disk is still there.

Resetting is per lab, not per node: a network boot resets every node of the stand-in's lab, so the
tests give each lab node its own stand-in and run backends one after another.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class NodePower:
    def __init__(self, lab_file: str | Path, lab_home: str | Path, node: str, *, boot_delay: float = 2.0,
                 log: str | Path | None = None) -> None:
        self.lab_file, self.lab_home, self.node = str(lab_file), str(lab_home), node
        self.boot_delay = boot_delay
        self.log = Path(log) if log else None
        inv = yaml.safe_load((Path(lab_home) / "inventory.yml").read_text())
        hostvars = {**inv["all"]["children"]["lab_nodes"]["vars"],
                    **(inv["all"]["children"]["lab_nodes"]["hosts"][node] or {})}
        self.mgmt_ip = hostvars["ansible_host"]
        self.cgroup = hostvars.get("grayctl_node_cgroup") or ""

    # -- what the machine does -----------------------------------------------------------------
    def is_on(self) -> bool:
        """Powered means: its sshd answers (a netns node has no other sign of life)."""
        try:
            with socket.create_connection((self.mgmt_ip, 22), timeout=1.0):
                return True
        except OSError:
            return False

    def power_off(self) -> int:
        """Kill every process in the node's cgroup, repeatedly until none is left; how many died."""
        procs = Path(self.cgroup) / "cgroup.procs"
        killed: set[int] = set()
        for _ in range(200):
            try:
                pids = [int(p) for p in procs.read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        self.note("power-off", killed=len(killed))
        return len(killed)

    def boot(self, network: bool) -> int:
        """Come back after the POST delay: a network boot reimages (the lab's reset), a disk boot
        only restarts the node's sshd. Runs in the caller's process; the return code of Ansible."""
        time.sleep(self.boot_delay)
        playbook = "lab_reset.yml" if network else "lab_up.yml"
        ansible = Path(sys.executable).with_name("ansible-playbook")
        argv = [str(ansible) if ansible.exists() else "ansible-playbook", f"playbooks/{playbook}",
                "-e", f"netns_lab_definition={self.lab_file}", "-e", f"netns_lab_home={self.lab_home}"]
        proc = subprocess.run(argv, cwd=PROJECT_ROOT, check=False, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")})
        self.note("boot", network=network, playbook=playbook, rc=proc.returncode,
                  tail=proc.stdout[-600:] if proc.returncode else "")
        return proc.returncode

    def boot_detached(self, network: bool) -> None:
        """boot() in a detached process, so the BMC answers at once (as a real one does)."""
        argv = [sys.executable, str(Path(__file__).resolve()), "boot", "--lab-file", self.lab_file,
                "--lab-home", self.lab_home, "--node", self.node, "--boot-delay", str(self.boot_delay)]
        if network:
            argv.append("--network")
        if self.log:
            argv += ["--log", str(self.log)]
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, cwd=PROJECT_ROOT)

    @classmethod
    def from_args(cls, a: Any) -> NodePower:
        """The node named by ``add_node_args``'s options."""
        return cls(a.lab_file, a.lab_home, a.node, boot_delay=a.boot_delay, log=a.log)

    def note(self, event: str, **fields: object) -> None:
        if self.log:
            with self.log.open("a") as fh:
                fh.write(json.dumps({"t": time.time(), "node": self.node, "event": event, **fields}) + "\n")


def add_node_args(ap: Any, *, boot_delay: float, log: bool = True) -> None:
    """The options every stand-in takes to find its lab node (``log``: the JSON-lines request log)."""
    ap.add_argument("--lab-file", required=True)
    ap.add_argument("--lab-home", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--boot-delay", type=float, default=boot_delay)
    if log:
        ap.add_argument("--log", required=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["off", "boot", "status"])
    add_node_args(ap, boot_delay=2.0, log=False)
    ap.add_argument("--network", action="store_true", help="boot into the golden image (reimage)")
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    node = NodePower.from_args(a)
    if a.action == "off":
        node.power_off()
        return 0
    if a.action == "status":
        print("on" if node.is_on() else "off")
        return 0
    return node.boot(a.network)


if __name__ == "__main__":
    sys.exit(main())
