"""A real libvirt hypervisor whose domain stands for one netns lab node, for roles/reimage_libvirt.

The libvirt side is real: Debian's libvirtd (qemu driver) runs in session mode as the
unprivileged user ``nobody`` with every directory under a private root (HOME, XDG_*), so it
touches nothing system-wide; its domain is a real qemu guest (TCG, 32 MiB, an empty 16 MiB qcow2
disk: it sits in the BIOS) with a real internal snapshot ``golden``. ``virsh snapshot-revert``
from the role really reverts it.

The guest is not the node: a node that answers SSH and passes the baseline verify needs an OS
image (docs/vm-lab.md builds one for the qemu provider). So a bridge maps the domain's lifecycle
events, which libvirt emits for every revert, onto the node (tests/standins/node_power.py):

  Stopped Snapshot / Stopped *   -> the node powers off
  Started Snapshot               -> the node boots its restored disk: reimaged (the lab's reset)
  Started Booted                 -> the node boots its disk as it was

  hv = Hypervisor(root); hv.start(); uri = hv.uri; hv.make_domain("grayctl-node01")
  python tests/standins/libvirt_hypervisor.py bridge --uri URI --domain D --lab-file F --lab-home H --node N --log L
  hv.stop()   # destroy + undefine the domain, stop libvirtd and virtlogd, remove the root
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_power import NodePower, add_node_args

USER = "nobody"
DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>{qemu}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
    </disk>
    <serial type='null'/>
  </devices>
</domain>
"""


class Hypervisor:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.home = self.root / "home"
        self.run = self.root / "run"
        self.proc: subprocess.Popen | None = None
        self.domains: list[str] = []

    @property
    def uri(self) -> str:
        return f"qemu:///session?socket={self.run}/libvirt/libvirt-sock"

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "XDG_RUNTIME_DIR": str(self.run), "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"), "XDG_DATA_HOME": str(self.home / ".local/share"),
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["virsh", "--quiet", "--connect", self.uri, *args], check=False, capture_output=True, text=True,
                              timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def start(self) -> None:
        for d in (self.home, self.run):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        subprocess.run(["chown", "-R", USER, str(self.home), str(self.run)], check=True)
        self.run.chmod(0o700)
        self.proc = subprocess.Popen(["runuser", "-u", USER, "--", "env", "-i",
                                      *(f"{k}={v}" for k, v in self.env.items()), "libvirtd"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.virsh("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("libvirtd (session, user nobody) did not come up")

    def make_domain(self, name: str, snapshot: str = "golden") -> None:
        disk = self.home / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
        shutil.chown(disk, USER)
        xml = self.root / f"{name}.xml"
        xml.write_text(DOMAIN_XML.format(name=name, disk=disk, qemu=shutil.which("qemu-system-x86_64")))
        self.virsh("define", str(xml))
        self.domains.append(name)
        self.virsh("start", name)
        self.virsh("snapshot-create-as", name, snapshot)

    def stop(self) -> None:
        for name in self.domains:
            self.virsh("destroy", name, check=False)
            self.virsh("undefine", name, "--snapshots-metadata", check=False)
        for pidfile in ("libvirtd.pid", "virtlogd.pid"):
            try:
                pid = int((self.run / "libvirt" / pidfile).read_text())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                pass
        if self.proc is not None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while time.time() < deadline and _owned_by_root_dir(self.root):
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


def _owned_by_root_dir(root: Path) -> list[int]:
    """Pids whose command line names ``root`` (libvirtd's helpers and guests)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes() or \
                    str(root) in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace"):
                found.append(int(pid))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


def bridge(uri: str, domain: str, node: NodePower) -> int:
    """Follow the domain's lifecycle events and power the node accordingly, until killed."""
    proc = subprocess.Popen(["virsh", "--connect", uri, "event", "--domain", domain, "--loop", "--event", "lifecycle"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        # event 'lifecycle' for domain 'D': Stopped Snapshot
        what = line.rsplit(":", 1)[-1].strip()
        node.note("libvirt", lifecycle=what)
        if what.startswith("Stopped"):
            node.power_off()
        elif what == "Started Snapshot":
            node.boot(network=True)
        elif what.startswith("Started"):
            node.boot(network=False)
    return proc.wait()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="map a libvirt domain's lifecycle onto a netns lab node")
    ap.add_argument("action", choices=["bridge"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--domain", required=True)
    add_node_args(ap, boot_delay=1.0)
    a = ap.parse_args(argv)
    node = NodePower.from_args(a)
    node.note("libvirt", lifecycle="bridge up", uri=a.uri, domain=a.domain)
    return bridge(a.uri, a.domain, node)


if __name__ == "__main__":
    sys.exit(main())
