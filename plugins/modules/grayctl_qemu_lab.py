#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Create, reimage, inspect and remove the VM nodes of a grayctl lab (the qemu provider), in one call.

Runs on the controller (localhost), as root, stdlib only. The netns_lab module runs first: it makes
the lab's management and data bridges, the lab's SSH keys, and lists VM nodes in the inventory.
This module gives each VM node (``providers.qemu`` in the lab definition):

- a copy-on-write qcow2 overlay of the golden image (``grayctl image build``);
- two tap devices, on the management and the data bridge, seen in the guest as ``mgmt`` and ``data``
  (PCI slots 3 and 4; the image names its NICs by slot);
- a seed (fw_cfg blob): the node's addresses, the lab's SSH host key and authorized key;
- a qemu process booting the image's kernel directly, with a serial log, and the controller's
  grayctl package shared read-only (virtio-9p) so the node runs the same grayctl as netns nodes.

Map of this module:

- ``resolve``       the lab definition -> the VM plan (names, addresses, taps, paths); mirrors
                    grayctl/lab/definition.py and the netns module (tests/unit/test_labdef.py keeps them in step).
- ``probe_accel``   KVM if a guest kernel really runs under it within a bound, else TCG; recorded.
- ``Record``        ``<lab_dir>/qemu.json``: every resource appended before it is created, dropped
                    once verifiably gone, so removal after a crash works from the record alone.
- ``present`` / ``absent`` / ``reset`` / ``inspect``.  ``reset`` is a real reimage: stop the VM,
  discard its overlay, make a fresh one from the golden image, boot, wait for SSH (all in parallel).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_qemu_lab
short_description: The qemu VM nodes of a grayctl lab on this host
description:
  - Each VM node is a qemu process booting a golden image's kernel with a copy-on-write overlay of
    its disk, two tap NICs on the lab's management and data bridges and a per-node seed (addresses,
    the lab's SSH host key and authorized key) passed through fw_cfg.
  - Every resource is recorded in C(<lab_dir>/qemu.json) before it is created; O(state=absent)
    removes exactly what is recorded, in reverse order, and works after a crash.
  - Acceleration C(auto) boots a guest kernel under KVM with a bounded timeout and falls back to
    TCG when it does not finish; the choice and the evidence are recorded.
  - A lab without VM nodes and without a record is a no-op (qemu need not be installed).
version_added: "0.1.0"
author: grayctl
extends_documentation_fragment:
  - grayctl.lab.lab_provider
options:
  state:
    description:
      - C(present) creates or converges the VM nodes, C(absent) removes everything recorded,
        C(reset) reimages every VM node (fresh overlay, boot, SSH), C(inspect) changes nothing.
    type: str
    choices: [present, absent, reset, inspect]
    default: present
  image:
    description: Image directory to use; empty resolves the definition's C(qemu.image) under O(image_cache).
    type: str
    default: ""
  image_cache:
    description: Where C(grayctl image build) keeps images (C(<name>/latest) is the newest build).
    type: path
    default: /var/cache/grayctl/images
  grayctl_dir:
    description:
      - The controller's C(grayctl) package directory, shared read-only with every VM (virtio-9p, mount
        tag C(grayctl)); the image mounts it at /opt/grayctl/grayctl, so VM nodes run the controller's
        grayctl as netns nodes do. Empty shares nothing.
    type: str
    default: ""
  boot_timeout:
    description: Seconds a VM may take from start to accepting SSH.
    type: int
    default: 300
  probe_timeout:
    description: Seconds the KVM probe guest may take before KVM is declared unusable.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Start the lab's VM nodes
  grayctl.lab.grayctl_qemu_lab:
    state: present
    definition: "{{ lookup('ansible.builtin.file', 'tests/vm/lab.yml') | from_yaml }}"
"""

RETURN = r"""
vms:
  description: One entry per VM node - name, mgmt_ip, data_ip, taps, overlay, pid, accel.
  type: list
  returned: always
accel:
  description: The acceleration in use and how it was chosen (probe evidence).
  type: dict
  returned: always
created:
  description: Resources created.
  type: list
  returned: always
removed:
  description: Resources removed.
  type: list
  returned: always
seconds:
  description: Per phase (boot, reimage) and per node (boot_to_ssh) wall times.
  type: dict
  returned: always
report:
  description: status, exists, missing, left_behind, unrecorded, ssh_not_listening, clean.
  type: dict
  returned: always
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.grayctl.lab.plugins.module_utils.commands import CommandFailed, run, tool
from ansible_collections.grayctl.lab.plugins.module_utils.files import write_atomic
from ansible_collections.grayctl.lab.plugins.module_utils.labdef import (
    PROVIDER_OPTIONS, VM_STATE_DIR, node_address, plan_to_act_on, resolve_lab)
from ansible_collections.grayctl.lab.plugins.module_utils.process import cmdline, pid_alive, read_pid
from ansible_collections.grayctl.lab.plugins.module_utils.record import Record, RecordError

SIZE_UNITS = {"MiB": 1, "GiB": 1024, "MB": 1, "GB": 1000}
# The image's .link files name NICs by slot. One name per line: ansible-doc warns on tuple targets.
MGMT_SLOT = 3
DATA_SLOT = 4
DISK_SLOT = 5
RNG_SLOT = 6


class LabFailure(Exception):
    """A problem the user must see; becomes fail_json(msg=...)."""


# ---------------------------------------------------------------------------
# The definition -> the VM plan (in step with grayctl/lab/definition.py and the netns module)


def memory_mib(text):
    m = re.match(r"\A([0-9]+)(MiB|GiB|MB|GB)\Z", str(text))
    if not m:
        raise ValueError("qemu.memory must be a size such as 1GiB or 768MiB, got %r" % (text,))
    value = int(m.group(1)) * SIZE_UNITS[m.group(2)]
    if value < 256:
        raise ValueError("qemu.memory %r is below the 256MiB a VM node needs" % (text,))
    return value


def mac_of(lab, node, iface):
    h = hashlib.sha1(("%s/%s/%s" % (lab, node, iface)).encode()).hexdigest()
    return "52:54:00:%s:%s:%s" % (h[0:2], h[2:4], h[4:6])


def machine_id_of(lab, node):
    return hashlib.sha256(("grayctl/%s/%s" % (lab, node)).encode()).hexdigest()[:32]


def resolve(defn, count=0, home="", env=None):
    """The VM plan for ``defn``: taps, MACs, disks and paths of its ``providers.qemu`` nodes."""
    base = resolve_lab(defn, count, home, env)
    qemu = base["qemu"]
    if qemu["accel"] not in ("auto", "kvm", "tcg"):
        raise ValueError("qemu.accel must be auto, kvm or tcg, got %r" % (qemu["accel"],))
    mem = memory_mib(qemu["memory"])
    name, lab_id, lab_dir, mgmt, data = base["name"], base["lab_id"], base["lab_dir"], base["mgmt"], base["data"]
    plan_vms = []
    for i, node in enumerate(base["names"], start=1):
        if node not in base["vms"]:
            continue
        vm_dir = os.path.join(lab_dir, "vms", node)
        mgmt_ip, data_ip = node_address(mgmt, i), node_address(data, i)
        plan_vms.append({
            "name": node, "index": i,
            "mgmt_ip": str(mgmt_ip), "data_ip": str(data_ip),
            "mgmt_cidr": "%s/%d" % (mgmt_ip, mgmt.prefixlen), "data_cidr": "%s/%d" % (data_ip, data.prefixlen),
            # 'v' keeps VM taps apart from the netns module's veths (gcXXXXXm001); 12 chars <= IFNAMSIZ
            "mgmt_tap": "%svm%03d" % (lab_id, i), "data_tap": "%svd%03d" % (lab_id, i),
            "mgmt_mac": mac_of(name, node, "mgmt"), "data_mac": mac_of(name, node, "data"),
            "machine_id": machine_id_of(name, node),
            "vm_dir": vm_dir, "overlay": os.path.join(vm_dir, "disk.qcow2"), "seed": os.path.join(vm_dir, "seed.json"),
            "pidfile": os.path.join(vm_dir, "qemu.pid"), "serial_log": os.path.join(vm_dir, "serial.log"),
            "state_dir": VM_STATE_DIR,
        })
    return {
        "name": name, "lab_id": lab_id, "lab_dir": lab_dir, "count": base["count"],
        "management": str(mgmt), "data": str(data),
        "mgmt_bridge": base["mgmt_bridge"], "data_bridge": base["data_bridge"],
        "qemu": dict(qemu, memory_mib=mem), "vms": plan_vms,
    }


# ---------------------------------------------------------------------------
# Processes


def stop_pid(pid, grace=10.0):
    """SIGTERM (qemu exits at once), SIGKILL after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.time() + 5
        while pid_alive(pid) and time.time() < deadline:
            time.sleep(0.05)


def ssh_banner(ip, timeout=2.0):
    """Whether ip:22 answers with an SSH banner (sshd is up, not just the port)."""
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Acceleration


def probe_accel(qemu_bin, image_dir, want, timeout, work_dir):
    """'kvm' only if a guest kernel boots to its first panic under KVM within ``timeout`` seconds.

    The probe boots the image's kernel with no root disk and ``panic=-1``: it reaches the
    kernel's 'VFS: Unable to mount root fs' panic, reboots, and ``-no-reboot`` ends qemu. Under
    KVM that takes a second or two; a KVM that hangs (as on the development machines) is killed.
    """
    evidence = {"requested": want, "kvm_device": os.path.exists("/dev/kvm")}
    if want == "tcg":
        evidence.update(chosen="tcg", reason="requested")
        return evidence
    if not evidence["kvm_device"] or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        if want == "kvm":
            raise LabFailure("qemu.accel is kvm but /dev/kvm is missing or not accessible")
        evidence.update(chosen="tcg", reason="no usable /dev/kvm")
        return evidence
    log = os.path.join(work_dir, "kvm-probe.log")
    # the default CPU model, as the VMs use: '-cpu host' aborts on MSR writes on some hosts
    argv = [qemu_bin, "-machine", "pc", "-accel", "kvm", "-m", "256", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "file:" + log, "-no-reboot",
            "-kernel", os.path.join(image_dir, "vmlinuz"), "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]
    t0 = time.time()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        ok = proc.returncode == 0
        tail = out.decode(errors="replace").strip()[-300:]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        ok, tail = False, "no answer in %ds (killed)" % timeout
    seconds = round(time.time() - t0, 2)
    try:
        with open(log, errors="replace") as fh:
            serial = fh.read()
        os.unlink(log)
    except OSError:
        serial = ""
    ok = ok and "Kernel panic" in serial
    evidence.update(kvm_probe={"ok": ok, "seconds": seconds, "detail": tail if not ok else "guest kernel ran"})
    if ok:
        evidence.update(chosen="kvm", reason="a guest kernel ran under KVM in %ss" % seconds)
    elif want == "kvm":
        raise LabFailure("qemu.accel is kvm but a KVM guest did not run: %s" % tail)
    else:
        evidence.update(chosen="tcg", reason="KVM probe failed (%s); TCG instead" % tail)
    return evidence


# ---------------------------------------------------------------------------
# Resources: dir, tap, seed, overlay, qemu - per VM, in creation order


def vm_resources(vm, plan):
    n = vm["name"]
    return [
        {"kind": "dir", "id": "dir:" + vm["vm_dir"], "path": vm["vm_dir"], "node": n},
        {"kind": "tap", "id": "link:" + vm["mgmt_tap"], "name": vm["mgmt_tap"], "bridge": plan["mgmt_bridge"], "node": n},
        {"kind": "tap", "id": "link:" + vm["data_tap"], "name": vm["data_tap"], "bridge": plan["data_bridge"], "node": n},
        {"kind": "file", "id": "file:" + vm["seed"], "path": vm["seed"], "node": n},
        {"kind": "overlay", "id": "file:" + vm["overlay"], "path": vm["overlay"], "node": n},
        {"kind": "qemu", "id": "qemu:" + n, "node": n, "pidfile": vm["pidfile"], "overlay": vm["overlay"],
         "serial_log": vm["serial_log"]},
    ]


class Lab:
    def __init__(self, plan, image_cache, image_override, boot_timeout, probe_timeout, grayctl_dir=""):
        self.plan = plan
        self.grayctl_dir = grayctl_dir
        self.lab_dir = plan["lab_dir"]
        self.record = Record(os.path.join(self.lab_dir, "qemu.json"), {"accel": None, "image": None},
                             what="VM record")
        self.image_cache = image_cache
        self.image_override = image_override
        self.boot_timeout = boot_timeout
        self.probe_timeout = probe_timeout
        self.ip = tool("ip") or "ip"
        self.created, self.removed = [], []
        self.seconds = {}

    # -- existence
    def qemu_pid(self, r):
        """The qemu pid if alive *and* running this VM's overlay (so it is ours)."""
        pid = read_pid(r["pidfile"])
        if pid and pid_alive(pid) and any(r["overlay"] in a for a in cmdline(pid) or []):
            return pid
        return None

    def exists(self, r):
        kind = r["kind"]
        if kind == "dir":
            return os.path.isdir(r["path"])
        if kind == "tap":
            return os.path.exists("/sys/class/net/" + r["name"])
        if kind in ("file", "overlay"):
            return os.path.exists(r["path"])
        if kind == "qemu":
            return self.qemu_pid(r) is not None
        raise LabFailure("unknown resource kind %r in %s" % (kind, self.record.path))

    # -- the image and acceleration
    def image_dir(self):
        ref = self.image_override or self.plan["qemu"]["image"]
        path = ref if ref.startswith("/") else os.path.join(self.image_cache, ref, "latest")
        path = os.path.realpath(path)
        for f in ("disk.qcow2", "vmlinuz", "initrd.img", "image.json"):
            if not os.path.isfile(os.path.join(path, f)):
                raise LabFailure("image %r is not built (%s has no %s): run 'grayctl image build%s'"
                                 % (ref, path, f, "" if ref.startswith("/") else " --name " + ref))
        return path

    def accel(self, image_dir):
        rec = self.record.data.get("accel")
        want = self.plan["qemu"]["accel"]
        if rec and rec.get("requested") == want:
            return rec  # probed when the lab came up; a reset keeps the choice
        rec = probe_accel(self.qemu_bin(), image_dir, want, self.probe_timeout, self.lab_dir)
        self.record.data["accel"] = rec
        self.record.save()
        return rec

    def qemu_bin(self):
        q = tool("qemu-system-x86_64")
        if not q:
            raise LabFailure("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 qemu-utils, "
                             "or 'grayctl lab bootstrap')")
        return q

    # -- creation
    def create(self, r, vm, image_dir, accel):
        kind = r["kind"]
        if kind == "dir":
            os.makedirs(r["path"], mode=0o700, exist_ok=True)
        elif kind == "tap":
            if not os.path.exists("/sys/class/net/" + r["bridge"]):
                raise LabFailure("bridge %s is missing: the netns_lab role makes it (run 'grayctl lab up')"
                                 % r["bridge"])
            run([self.ip, "tuntap", "add", "dev", r["name"], "mode", "tap"])
            run([self.ip, "link", "set", r["name"], "master", r["bridge"], "up"])
        elif kind == "file":
            write_atomic(r["path"], json.dumps(self.seed(vm)), 0o600)
        elif kind == "overlay":
            run([tool("qemu-img") or "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                 "-b", os.path.join(image_dir, "disk.qcow2"), r["path"]])
        elif kind == "qemu":
            self.start(vm, image_dir, accel)

    def seed(self, vm):
        ssh = os.path.join(self.lab_dir, "ssh")
        try:
            with open(os.path.join(ssh, "ssh_host_ed25519_key")) as fh:
                key = fh.read()
            with open(os.path.join(ssh, "ssh_host_ed25519_key.pub")) as fh:
                pub = fh.read()
            with open(os.path.join(ssh, "id_ed25519.pub")) as fh:
                auth = fh.read()
        except OSError as err:
            raise LabFailure("the lab's SSH keys are missing (%s): the netns_lab role makes them first" % err) from None
        return {"mgmt": vm["mgmt_cidr"], "data": vm["data_cidr"], "host_key": key, "host_key_pub": pub,
                "authorized_keys": auth}

    def argv(self, vm, image_dir, accel):
        q = self.plan["qemu"]
        kvm = accel["chosen"] == "kvm"
        # quiet: every console line is a slow serial write under TCG; the log still gets systemd's status
        cmd = ("root=/dev/vda rw console=ttyS0 quiet panic=-1 systemd.hostname=%s systemd.machine_id=%s"
               % (vm["name"], vm["machine_id"]))
        return [
            self.qemu_bin(), "-name", "grayctl-%s-%s" % (self.plan["name"], vm["name"]),
            "-machine", "pc", "-accel", "kvm" if kvm else "tcg",
            "-smp", str(q["cpus"]), "-m", str(q["memory_mib"]),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-chardev", "file,id=serial0,path=" + vm["serial_log"], "-serial", "chardev:serial0",
            "-kernel", os.path.join(image_dir, "vmlinuz"), "-initrd", os.path.join(image_dir, "initrd.img"),
            "-append", cmd,
            # cache=unsafe: a node's disk is disposable (reimage discards it); no host fsync per guest flush
            "-drive", "file=%s,if=none,id=disk0,format=qcow2,cache=unsafe,discard=unmap" % vm["overlay"],
            "-device", "virtio-blk-pci,drive=disk0,addr=0x%x" % DISK_SLOT,
            "-netdev", "tap,id=mgmt,ifname=%s,script=no,downscript=no" % vm["mgmt_tap"],
            "-device", "virtio-net-pci,netdev=mgmt,mac=%s,addr=0x%x" % (vm["mgmt_mac"], MGMT_SLOT),
            "-netdev", "tap,id=data,ifname=%s,script=no,downscript=no" % vm["data_tap"],
            "-device", "virtio-net-pci,netdev=data,mac=%s,addr=0x%x" % (vm["data_mac"], DATA_SLOT),
            "-device", "virtio-rng-pci,addr=0x%x" % RNG_SLOT,
            "-fw_cfg", "name=opt/grayctl/seed,file=" + vm["seed"],
            "-pidfile", vm["pidfile"], "-daemonize",
        ] + (["-virtfs", "local,path=%s,mount_tag=grayctl,security_model=none,readonly=on" % self.grayctl_dir]
             if self.grayctl_dir else [])

    def start(self, vm, image_dir, accel):
        for p in (vm["pidfile"], vm["serial_log"]):
            if os.path.exists(p):
                os.unlink(p)
        # -daemonize: qemu forks, writes its pid file and detaches (own session) once the VM runs
        run(self.argv(vm, image_dir, accel))
        self.started[vm["name"]] = time.time()

    # -- removal
    def remove(self, r):
        kind = r["kind"]
        if kind == "qemu":
            pid = self.qemu_pid(r)
            if pid:
                stop_pid(pid)
            for p in (r["pidfile"],):
                if os.path.exists(p):
                    os.unlink(p)
        elif kind == "tap":
            if os.path.exists("/sys/class/net/" + r["name"]):
                run([self.ip, "link", "del", r["name"]], check=False)
        elif kind in ("file", "overlay"):
            if os.path.exists(r["path"]):
                os.unlink(r["path"])
        elif kind == "dir":
            shutil.rmtree(r["path"], ignore_errors=True)

    def remove_all(self, resources):
        for r in resources:
            self.remove(r)
            if self.exists(r):
                raise LabFailure("could not remove %s (still recorded in %s)" % (r["id"], self.record.path))
            self.record.drop([r["id"]])
            self.removed.append(r)

    # -- waiting
    def wait_ssh(self, vms):
        """Until every VM's sshd answers on its management address; seconds from start per VM."""
        waiting = dict((v["name"], v) for v in vms)
        deadline = time.time() + self.boot_timeout
        with ThreadPoolExecutor(max_workers=max(1, len(vms))) as pool:
            while waiting:
                names = list(waiting)
                ok = list(pool.map(lambda n: ssh_banner(waiting[n]["mgmt_ip"], 5.0), names))
                for name, up in zip(names, ok):
                    if up:
                        self.seconds.setdefault("boot_to_ssh", {})[name] = round(
                            time.time() - self.started.get(name, time.time()), 1)
                        del waiting[name]
                if not waiting:
                    break
                dead = [n for n in waiting if not self.qemu_pid({"pidfile": waiting[n]["pidfile"],
                                                                   "overlay": waiting[n]["overlay"]})]
                if dead or time.time() > deadline:
                    bad = dead or list(waiting)
                    raise LabFailure("%s: %s (serial log: %s)" % (
                        ", ".join(bad), "qemu exited" if dead else "no SSH after %ds" % self.boot_timeout,
                        tail(waiting[bad[0]]["serial_log"])))
                time.sleep(0.5)


def tail(path, lines=6):
    try:
        with open(path, errors="replace") as fh:
            return " | ".join(x.strip() for x in fh.read().strip().splitlines()[-lines:])
    except OSError:
        return "(none)"


# ---------------------------------------------------------------------------
# The four states


def present(lab):
    plan = lab.plan
    changed = False
    lab.started = {}
    wanted = set(v["name"] for v in plan["vms"])
    surplus = [r for r in lab.record.resources if r.get("node") not in wanted]
    if surplus:
        lab.remove_all(list(reversed(surplus)))
        changed = True
    if not plan["vms"]:
        if lab.record.data.get("status") not in ("down", None) and not lab.record.resources:
            lab.record.data["status"] = "down"
            lab.record.save()
        return changed
    os.makedirs(os.path.join(lab.lab_dir, "vms"), mode=0o700, exist_ok=True)
    image_dir = lab.record.data.get("image") if lab.record.resources else None
    if not image_dir or not os.path.isdir(image_dir):
        image_dir = lab.image_dir()
    accel = lab.accel(image_dir)
    lab.record.data.update(plan=plan, image=image_dir, lab=plan["name"])
    booting = []
    t0 = time.time()
    for vm in plan["vms"]:
        todo = [r for r in vm_resources(vm, plan) if not lab.exists(r)]
        if not todo:
            continue
        changed = True
        lab.record.data["status"] = "creating"
        lab.record.append(todo)  # on disk before anything is made
        for r in todo:
            lab.create(r, vm, image_dir, accel)
            lab.created.append(r)
        if any(r["kind"] == "qemu" for r in todo):
            booting.append(vm)
    lab.wait_ssh(booting)
    if booting:
        lab.seconds["boot"] = round(time.time() - t0, 1)
    lab.record.data["status"] = "up"
    lab.record.save()
    return changed


def absent(lab):
    if not lab.record.resources:
        if lab.record.data.get("status") not in ("down", None):
            lab.record.data["status"] = "down"
            lab.record.save()
        return False
    lab.record.data["status"] = "removing"
    lab.record.save()
    lab.remove_all(list(reversed(list(lab.record.resources))))
    lab.record.data["status"] = "down"
    lab.record.save()
    return True


def reset(lab):
    """Reimage every VM node: stop it, discard its overlay, fresh overlay, boot, SSH."""
    plan = lab.plan
    lab.started = {}
    if not plan["vms"]:
        return False
    image_dir = lab.record.data.get("image") or lab.image_dir()
    accel = lab.accel(image_dir)
    t0 = time.time()
    by_node = {}
    for r in lab.record.resources:
        by_node.setdefault(r.get("node"), []).append(r)
    vms = [v for v in plan["vms"] if v["name"] in by_node]
    # stop all first (in parallel), then new overlays, then boot all: VMs boot side by side
    with ThreadPoolExecutor(max_workers=max(1, len(vms))) as pool:
        list(pool.map(lambda v: [lab.remove(r) for r in by_node[v["name"]] if r["kind"] == "qemu"], vms))
    for vm in vms:
        for r in by_node[vm["name"]]:
            if r["kind"] == "overlay":
                lab.remove(r)
                lab.create(r, vm, image_dir, accel)
        qemu = [r for r in by_node[vm["name"]] if r["kind"] == "qemu"]
        lab.create(qemu[0], vm, image_dir, accel)
    lab.wait_ssh(vms)
    lab.seconds["reimage"] = round(time.time() - t0, 1)
    # VMs the record lacks (a lab that grew) are created like present does
    present(lab)
    return True


def inspect(lab):
    status = lab.record.data.get("status", "down")
    exists, missing = [], []
    for r in lab.record.resources:
        (exists if lab.exists(r) else missing).append(r["id"])
    up = status == "up"
    recorded = set(r["id"] for r in lab.record.resources)
    plan = lab.record.data.get("plan") or lab.plan
    unrecorded = ["link:" + n for n in sorted(os.listdir("/sys/class/net"))
                  if re.match(r"\A%sv[md][0-9]{3}\Z" % plan["lab_id"], n) and "link:" + n not in recorded]
    tag = "grayctl-%s-" % plan["name"]
    ours = set(read_pid(r["pidfile"]) for r in lab.record.resources if r["kind"] == "qemu")
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        args = cmdline(pid) or []
        if "-name" in args and args.index("-name") + 1 < len(args) and args[args.index("-name") + 1].startswith(tag) \
                and pid not in ours:
            unrecorded.append("process:%d" % pid)
    ssh_down = []
    if up:
        vms = dict((v["name"], v) for v in plan["vms"])
        names = [r["node"] for r in lab.record.resources if r["kind"] == "qemu" and r["node"] in vms]
        # generous: a TCG guest on a busy host takes seconds to fork sshd and send its banner
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            ok = list(pool.map(lambda n: ssh_banner(vms[n]["mgmt_ip"], 15.0), names))
        ssh_down = [n for n, answered in zip(names, ok) if not answered]
    report = {"status": status, "exists": exists, "missing": missing,
              "left_behind": [] if up else list(exists), "unrecorded": sorted(set(unrecorded)),
              "ssh_not_listening": ssh_down, "recorded": len(lab.record.resources)}
    report["clean"] = not (missing or report["left_behind"] or report["unrecorded"] or ssh_down) \
        and status in ("up", "down")
    return report


# Module level so tests/lint/test_ansible_doc.py can check DOCUMENTATION against it.
ARGUMENT_SPEC = dict(
    PROVIDER_OPTIONS,
    image=dict(type="str", default=""),
    image_cache=dict(type="path", default="/var/cache/grayctl/images"),
    boot_timeout=dict(type="int", default=300),
    probe_timeout=dict(type="int", default=10),
    grayctl_dir=dict(type="str", default=""),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=False,
    )
    p = module.params
    try:
        plan = resolve(p["definition"], p["nodes"], p["home"])
    except (ValueError, TypeError) as err:
        module.fail_json(msg="lab definition: %s" % err)
    result = {"changed": False, "created": [], "removed": [], "vms": [], "accel": {}, "seconds": {}}
    state = p["state"]
    lab = None
    try:
        gdir = os.path.realpath(p["grayctl_dir"]) if p["grayctl_dir"] else ""
        if gdir and not os.path.isfile(os.path.join(gdir, "__init__.py")):
            raise LabFailure("grayctl_dir %s is not the grayctl package directory" % gdir)
        lab = Lab(plan, p["image_cache"], p["image"], p["boot_timeout"], p["probe_timeout"], gdir)
        lab.plan = plan = plan_to_act_on(state, plan, lab.record.data.get("plan"), resolve, p)
        if state != "inspect" and os.geteuid() != 0:
            raise LabFailure("VM nodes need root (taps, qemu)")
        if state == "present":
            result["changed"] = present(lab)
        elif state == "absent":
            result["changed"] = absent(lab)
        elif state == "reset":
            result["changed"] = reset(lab)
        result["report"] = inspect(lab)
    except (LabFailure, CommandFailed, RecordError) as err:
        if lab is not None:
            result.update(created=lab.created, removed=lab.removed, seconds=lab.seconds)
        module.fail_json(msg=str(err), **result)
    except OSError as err:
        module.fail_json(msg="%s: %s" % (type(err).__name__, err), **result)
    result.update(created=lab.created, removed=lab.removed, seconds=lab.seconds,
                  accel=lab.record.data.get("accel") or {}, image=lab.record.data.get("image"))
    pids = dict((r["node"], lab.qemu_pid(r)) for r in lab.record.resources if r["kind"] == "qemu")
    result["vms"] = [{"name": v["name"], "mgmt_ip": v["mgmt_ip"], "data_ip": v["data_ip"],
                      "taps": [v["mgmt_tap"], v["data_tap"]], "overlay": v["overlay"], "pid": pids.get(v["name"]),
                      "serial_log": v["serial_log"]} for v in plan["vms"]]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
