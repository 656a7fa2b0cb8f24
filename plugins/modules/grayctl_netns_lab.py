#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Create, inspect, reset and remove a grayctl lab made of network namespaces, in one call.

Runs on the controller (localhost), as root, stdlib only. One module call does the work of
hundreds of tasks: ``ip -batch``, per-namespace batches run in parallel, and every sshd
started at once, so a 16-node lab comes up in well under a second of module time.

Map of this module:

- ``resolve``         the lab definition (a dict, as in ``lab.yml``) -> a plan: names,
                      addresses, paths, limits. Mirrors ``grayctl/lab/definition.py``; a unit test keeps
                      the two in step.
- ``Host``            what this machine offers: tools, cgroup layout, routes, mounts.
- ``Record``          the lab state file. Every resource is appended (and the file atomically
                      rewritten) *before* it is created, and dropped once it is verifiably gone,
                      so removal after a crash works from the record alone - never by name.
- ``KINDS``           per resource kind: exists / create / remove.
- ``present`` / ``absent`` / ``reset`` / ``inspect``  the four states.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_netns_lab
short_description: A grayctl lab of network-namespace nodes on this host
description:
  - Each node is a network namespace plus a persistent UTS namespace (hostname = node name), two
    veth links C(mgmt) and C(data) on a management and a data bridge, a per-node cgroup with CPU
    and memory limits, a state directory and an sshd bound to the node's management address.
  - Every resource is recorded in C(<lab_dir>/state.json) before it is created; O(state=absent)
    removes exactly what is recorded, in reverse order, and works after a crash.
  - Writes C(<lab_dir>/inventory.yml) and C(<lab_dir>/known_hosts) for reaching the nodes over SSH.
  - Supports check mode for every state.
version_added: "0.1.0"
author: grayctl
extends_documentation_fragment:
  - grayctl.lab.lab_provider
options:
  state:
    description:
      - C(present) creates or converges the lab (grows or shrinks to the node count).
      - C(absent) removes everything the record holds.
      - C(reset) brings every node back to its golden baseline (kills processes in the node's
        cgroup except the sshd listener, deletes qdiscs, firewall rules and extra links, restores
        addresses, writes back the namespace's net sysctls and ip rules as recorded when it was made,
        empties the state directory and removes the fault records beside it), then converges like
        C(present).
      - C(inspect) changes nothing and reports what exists, what is missing and what is left behind.
    type: str
    choices: [present, absent, reset, inspect]
    default: present
  source:
    description: Where the definition came from, for messages.
    type: str
    default: "<definition>"
"""

EXAMPLES = r"""
- name: Create a 3-node lab
  grayctl.lab.grayctl_netns_lab:
    state: present
    definition: "{{ lookup('ansible.builtin.file', 'inventories/local/lab.yml') | from_yaml }}"
    nodes: 3
"""

RETURN = r"""
lab:
  description: name, id, dir, state_file, inventory, known_hosts, key, status.
  type: dict
  returned: always
nodes:
  description: One entry per node - name, index, roles, mgmt_ip, data_ip, netns, state_dir, cgroup.
  type: list
  returned: always
created:
  description: Resources created (or, in check mode, that would be).
  type: list
  returned: always
removed:
  description: Resources removed (or, in check mode, that would be).
  type: list
  returned: always
cleaned:
  description: For O(state=reset), per node, what was found and cleaned.
  type: dict
  returned: always
report:
  description: >-
    For every state, what exists now: status, exists, missing (recorded but gone), left_behind
    (recorded although the lab is down), unrecorded (carrying this lab's names but not in its record
    - never touched), dead_sshd, clean (bool).
  type: dict
  returned: always
host:
  description: uid, missing_tools, optional_tools, cgroup layout, clashes (host routes/addresses in the lab's ranges).
  type: dict
  returned: always
"""

import errno
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.grayctl.lab.plugins.module_utils.commands import CommandFailed, run, run_all, tool
from ansible_collections.grayctl.lab.plugins.module_utils.files import write_if_changed
from ansible_collections.grayctl.lab.plugins.module_utils import netns_state
from ansible_collections.grayctl.lab.plugins.module_utils.labdef import (
    DEFAULTS, PROVIDER_OPTIONS, VM_STATE_DIR, node_address, plan_to_act_on, resolve_lab)
from ansible_collections.grayctl.lab.plugins.module_utils.process import pid_alive, read_pid
from ansible_collections.grayctl.lab.plugins.module_utils.record import Record, RecordError

REQUIRED_TOOLS = ("ip", "tc", "sshd", "ssh-keygen", "nsenter", "unshare", "mount", "umount")
OPTIONAL_TOOLS = ("nft", "iptables-legacy", "ip6tables-legacy")
NETNS_DIR = "/run/netns"
SSHD_PRIVSEP_DIR = "/run/sshd"
# Devices the kernel puts into every new namespace when tunnel modules are loaded; undeletable.
FALLBACK_LINKS = {"tunl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0", "sit0", "ip6tnl0", "ip6gre0"}
NODE_LINKS = {"lo", "mgmt", "data"}
SSHD_READY_TIMEOUT = 15.0


class LabFailure(Exception):
    """A problem the user must see; becomes fail_json(msg=...)."""


# ---------------------------------------------------------------------------
# The definition -> the plan (kept in step with grayctl/lab/definition.py by tests/unit/test_labdef.py)

GROUP_RE = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")
RESERVED_GROUPS = {"all", "ungrouped", "lab_nodes"}
CPU_PERIOD_US = 100000
SIZE_UNITS = {"B": 1, "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "TB": 1000 ** 4,
              "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4}
CPU_RE = re.compile(r"\A([0-9]+(?:\.[0-9]+)?)%\Z")
SIZE_RE = re.compile(r"\A([0-9]+)(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\Z")
MIN_MEMORY = 32 * 1024 ** 2  # sshd plus one Ansible module must fit


def parse_cpu(text):
    """``'50%'`` of one core -> (cfs quota us, period us)."""
    m = CPU_RE.match(str(text))
    if not m or not 1.0 <= float(m.group(1)) <= 100.0 * 1024:
        raise ValueError("limits.cpu must be a share of one core such as 50%% or 200%% (1%% or more), got %r" % (text,))
    return int(round(float(m.group(1)) / 100.0 * CPU_PERIOD_US)), CPU_PERIOD_US


def parse_memory(text):
    m = SIZE_RE.match(str(text))
    if not m:
        raise ValueError("limits.memory must be a size such as 512MiB, got %r" % (text,))
    value = int(m.group(1)) * SIZE_UNITS[m.group(2)]
    if value < MIN_MEMORY:
        raise ValueError("limits.memory %r is below the 32MiB a node needs for sshd and Ansible" % (text,))
    return value


def default_roles(names):
    """The last node is the client, the one before the monitor, the rest run the app."""
    roles = dict((n, set()) for n in names)
    roles[names[-1]].add("client")
    roles[names[-2] if len(names) >= 2 else names[-1]].add("monitor")
    for n in names[:-2] if len(names) >= 3 else names[:1]:
        roles[n].add("app")
    return dict((n, sorted(r)) for n, r in roles.items())


def resolve(defn, count=0, home="", env=None):
    """The plan for ``defn``: every name, address, path and limit the lab will have."""
    defn = defn or {}
    if defn.get("provider", "netns") != "netns":
        raise ValueError("provider must be 'netns' for this role, got %r" % (defn.get("provider"),))
    base = resolve_lab(defn, count, home, env)
    limits = defn.get("limits") or {}
    quota, period = parse_cpu(limits.get("cpu", DEFAULTS["cpu"]))
    memory = parse_memory(limits.get("memory", DEFAULTS["memory"]))
    name, lab_id, lab_dir, names, vms = base["name"], base["lab_id"], base["lab_dir"], base["names"], base["vms"]
    mgmt, data = base["mgmt"], base["data"]

    explicit = defn.get("roles")
    if explicit:
        roles = dict((n, ["app"]) for n in names)
        for node, groups in explicit.items():
            if node in roles:
                groups = [groups] if isinstance(groups, str) else list(groups)
                bad = [g for g in groups if not GROUP_RE.match(str(g)) or g in RESERVED_GROUPS]
                if bad:
                    raise ValueError("roles.%s: %r is not a usable group name" % (node, bad[0]))
                roles[node] = sorted(set(groups))
    else:
        roles = default_roles(names)
    # VM nodes (providers.qemu) are the qemu_lab role's: this module makes the bridges they join and
    # lists them in the inventory, nothing else.
    qemu = base["qemu"] if vms or defn.get("qemu") else None

    plan_nodes, vm_nodes = [], []
    for i, node in enumerate(names, start=1):
        mgmt_ip, data_ip = str(node_address(mgmt, i)), str(node_address(data, i))
        if node in vms:
            vm_nodes.append({"name": node, "index": i, "roles": roles[node], "provider": "qemu",
                             "mgmt_ip": mgmt_ip, "data_ip": data_ip, "netns": "", "state_dir": VM_STATE_DIR})
            continue
        node_dir = os.path.join(lab_dir, "nodes", node)
        plan_nodes.append({
            "name": node,
            "index": i,
            "roles": roles[node],
            "mgmt_ip": mgmt_ip,
            "data_ip": data_ip,
            "netns": "gc-%s-%s" % (name, node),
            "mgmt_veth": "%sm%03d" % (lab_id, i),
            "data_veth": "%sd%03d" % (lab_id, i),
            "node_dir": node_dir,
            "state_dir": os.path.join(node_dir, "state"),
            "uts": os.path.join(lab_dir, "uts", node),
            "sshd_config": os.path.join(node_dir, "sshd_config"),
            "pidfile": os.path.join(node_dir, "sshd.pid"),
            "sshd_log": os.path.join(node_dir, "sshd.log"),
        })
    return {
        "name": name,
        "lab_id": lab_id,
        "lab_dir": lab_dir,
        "count": base["count"],
        "prefix": base["prefix"],
        "management": str(mgmt),
        "data": str(data),
        "host_mgmt_ip": str(mgmt.network_address + 1),
        "cpu_quota_us": quota,
        "cpu_period_us": period,
        "memory_bytes": memory,
        "mgmt_bridge": base["mgmt_bridge"],
        "data_bridge": base["data_bridge"],
        "nodes": plan_nodes,  # the namespace nodes
        "vm_nodes": vm_nodes,
        "qemu": qemu,
    }


# ---------------------------------------------------------------------------
# Commands


def json_stream(text):
    """``ip -j -batch`` prints one JSON document per command."""
    out, dec, i = [], json.JSONDecoder(), 0
    text = text.strip()
    while i < len(text):
        doc, i = dec.raw_decode(text, i)
        out.append(doc)
        while i < len(text) and text[i].isspace():
            i += 1
    return out


# ---------------------------------------------------------------------------
# The host


def mountpoints():
    points = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def cgroup_layout():
    """Where the cpu and memory controllers and the cgroup2 tree are mounted.

    Hybrid hosts (this lab's machines): limits in v1 ``cpu``/``memory``, plus a cgroup2
    directory for pressure files and ``cgroup.kill``. Pure cgroup2: everything in one tree.
    """
    layout = {"mode": "none", "cpu": None, "memory": None, "unified": None}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            pre, _, post = line.partition(" - ")
            fstype, _, opts = (post.split() + ["", "", ""])[:3]
            point = pre.split()[4]
            if fstype == "cgroup2" and layout["unified"] is None:
                layout["unified"] = point
            elif fstype == "cgroup":
                names = set(opts.split(","))
                if "cpu" in names and layout["cpu"] is None:
                    layout["cpu"] = point
                if "memory" in names and layout["memory"] is None:
                    layout["memory"] = point
    if layout["cpu"] and layout["memory"]:
        layout["mode"] = "hybrid"
    elif layout["unified"]:
        layout["mode"] = "v2"
    return layout


def hierarchies(layout):
    """The hierarchies a node joins: name -> mount point."""
    out = {}
    if layout["mode"] == "hybrid":
        out["cpu"] = layout["cpu"]
        out["memory"] = layout["memory"]
    if layout["unified"]:
        out["unified"] = layout["unified"]
    return out


def host_facts(plan):
    ours = {plan["mgmt_bridge"], plan["data_bridge"]}
    clashes = []
    rc, out, _ = run([tool("ip") or "ip", "-j", "-4", "route", "show", "table", "all"], check=False)
    nets = [ipaddress.IPv4Network(plan["management"]), ipaddress.IPv4Network(plan["data"])]
    if rc == 0 and out.strip():
        for r in json.loads(out):
            dst = r.get("dst", "")
            if dst in ("default", "") or r.get("dev") in ours or r.get("type") in ("broadcast", "local"):
                continue
            try:
                net = ipaddress.IPv4Network(dst, strict=False)
            except ValueError:
                continue
            for mine in nets:
                if net.overlaps(mine):
                    clashes.append("route %s dev %s overlaps %s" % (dst, r.get("dev", "?"), mine))
    rc, out, _ = run([tool("ip") or "ip", "-j", "-4", "addr", "show"], check=False)
    if rc == 0 and out.strip():
        for link in json.loads(out):
            if link.get("ifname") in ours:
                continue
            for a in link.get("addr_info", []):
                ip = ipaddress.IPv4Address(a["local"])
                for mine in nets:
                    if ip in mine:
                        clashes.append("address %s on %s is inside %s" % (ip, link.get("ifname"), mine))
    layout = cgroup_layout()
    return {
        "uid": os.geteuid(),
        "missing_tools": [t for t in REQUIRED_TOOLS if not tool(t)],
        "optional_tools": dict((t, bool(tool(t))) for t in OPTIONAL_TOOLS),
        "cgroup": layout,
        "clashes": sorted(set(clashes)),
    }


def proc_cgroup_paths(pid):
    """{hierarchy key: path inside it} for a process: '0::' is cgroup2, else controller names."""
    out = {}
    try:
        with open("/proc/%d/cgroup" % pid) as fh:
            for line in fh:
                hid, ctrls, path = line.rstrip("\n").split(":", 2)
                out[ctrls or "0"] = path
    except (OSError, ValueError):
        return None
    return out


def cgroup_procs(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


# ---------------------------------------------------------------------------
# Resources: one dict each, {"kind", "id", ...}; exists / create / remove per kind


def by_kind(resources):
    """[(kind, resources)] for each run of one kind, in order: one batch (one ip -batch) per run."""
    return [(kind, list(group)) for kind, group in itertools.groupby(resources, key=lambda r: r["kind"])]


class Lab:
    """One lab on this host: the plan, the record and the operations on its resources."""

    def __init__(self, module, plan):
        self.module = module
        self.check = module.check_mode
        self.plan = plan
        self.ip = tool("ip") or "ip"
        self.tc = tool("tc") or "tc"
        self.layout = cgroup_layout()
        self.hier = hierarchies(self.layout)
        self.created = []
        self.removed = []
        self.why_changed = []  # present(): what it found to change (a second up that changes says why)
        self.lab_dir = plan["lab_dir"]
        self.ssh_dir = os.path.join(self.lab_dir, "ssh")
        self.record = Record(os.path.join(self.lab_dir, "state.json"), {}, self.check, "lab state file")

    # -- desired resources -------------------------------------------------
    def cgroup_dirs(self, *parts):
        return dict((h, os.path.join(root, *parts)) for h, root in self.hier.items())

    def node_cgroup(self, node):
        return self.cgroup_dirs("grayctl", self.plan["name"], node["name"])

    def lab_resources(self):
        p = self.plan
        out = [{"kind": "mount", "id": "mount:" + os.path.join(self.lab_dir, "uts"),
                "path": os.path.join(self.lab_dir, "uts")}]
        # 'grayctl' is shared by every lab on the host: removed by whichever lab finds it empty
        for h, path in self.cgroup_dirs("grayctl").items():
            out.append({"kind": "cgroup", "id": "cgroup:" + path, "path": path, "shared": True,
                        "hierarchy": h})
        for h, path in self.cgroup_dirs("grayctl", p["name"]).items():
            out.append({"kind": "cgroup", "id": "cgroup:" + path, "path": path, "hierarchy": h})
        out.append({"kind": "bridge", "id": "link:" + p["mgmt_bridge"], "name": p["mgmt_bridge"],
                    "address": "%s/%d" % (p["host_mgmt_ip"], ipaddress.IPv4Network(p["management"]).prefixlen)})
        out.append({"kind": "bridge", "id": "link:" + p["data_bridge"], "name": p["data_bridge"], "address": None})
        return out

    def node_resources(self, node):
        """One node's resources, in creation order."""
        n = node["name"]
        out = [
            {"kind": "dir", "id": "dir:" + node["node_dir"], "path": node["node_dir"], "node": n},
            {"kind": "netns", "id": "netns:" + node["netns"], "name": node["netns"], "node": n},
            {"kind": "uts", "id": "uts:" + node["uts"], "path": node["uts"], "hostname": n, "node": n},
            {"kind": "veth", "id": "link:" + node["mgmt_veth"], "name": node["mgmt_veth"], "peer": "mgmt",
             "netns": node["netns"], "bridge": self.plan["mgmt_bridge"], "node": n},
            {"kind": "veth", "id": "link:" + node["data_veth"], "name": node["data_veth"], "peer": "data",
             "netns": node["netns"], "bridge": self.plan["data_bridge"], "node": n},
        ]
        for h, path in self.node_cgroup(node).items():
            out.append({"kind": "cgroup", "id": "cgroup:" + path, "path": path, "hierarchy": h, "node": n})
        out.append({"kind": "sshd", "id": "sshd:" + n, "node": n, "pidfile": node["pidfile"],
                    "config": node["sshd_config"], "cgroups": self.node_cgroup(node)})
        return out

    def file_resources(self):
        return [{"kind": "file", "id": "file:" + path, "path": path}
                for path in (os.path.join(self.lab_dir, "known_hosts"), os.path.join(self.lab_dir, "inventory.yml"))]

    # -- existence ----------------------------------------------------------
    def exists(self, r, mounts=None):
        kind = r["kind"]
        if kind in ("mount", "uts"):
            return r["path"] in (mountpoints() if mounts is None else mounts)
        if kind == "netns_runtime":
            return r["path"] in (mountpoints() if mounts is None else mounts)
        if kind == "netns":
            return os.path.exists(os.path.join(NETNS_DIR, r["name"]))
        if kind in ("bridge", "veth"):
            return os.path.exists("/sys/class/net/" + r["name"])
        if kind in ("cgroup", "dir"):
            return os.path.isdir(r["path"])
        if kind == "file":
            return os.path.exists(r["path"])
        if kind == "sshd":
            return self.sshd_pid(r) is not None
        raise LabFailure("unknown resource kind %r in the record" % kind)

    def sshd_pid(self, r):
        """The sshd listener's pid if it is alive *and* in this node's cgroup (so it is ours)."""
        pid = read_pid(r["pidfile"])
        if not pid or not pid_alive(pid):
            return None
        paths = proc_cgroup_paths(pid) or {}
        cg = r.get("cgroups") or {}
        if "unified" in cg:
            want = "/" + os.path.relpath(cg["unified"], self.hier.get("unified", "/"))
            return pid if paths.get("0") == want else None
        for h in ("cpu", "memory"):
            if h in cg:
                want = "/" + os.path.relpath(cg[h], self.hier[h])
                if not any(want == v for k, v in paths.items() if h in k.split(",")):
                    return None
        return pid

    # -- creation, batched by kind -----------------------------------------
    def create(self, batch):
        """Create resources (already recorded), grouped by kind in the order given."""
        for kind, group in by_kind(batch):
            if not self.check:
                getattr(self, "create_" + kind)(group)
            self.created.extend(group)

    def create_mount(self, group):
        mount = tool("mount")
        for r in group:
            os.makedirs(r["path"], mode=0o700, exist_ok=True)
            # a mount point of its own, shared like /run/netns: unmounting a node's UTS file
            # then also reaches the sshds' mount namespaces (slaves of this one)
            run([mount, "--bind", r["path"], r["path"]])
            run([mount, "--make-shared", r["path"]])

    def create_cgroup(self, group):
        for r in group:
            # makedirs, again if need be: the shared grayctl/ parent may be removed under us by another
            # lab's down (it found it empty) between our finding it and making our directory in it
            for attempt in range(20):
                try:
                    os.makedirs(r["path"], exist_ok=True)
                    break
                except FileNotFoundError:
                    if attempt == 19:
                        raise
                    time.sleep(0.01)
            if self.layout["mode"] == "v2" and not r.get("node"):
                # parents hand the cpu and memory controllers down to the node cgroups
                with open(os.path.join(r["path"], "cgroup.subtree_control"), "w") as fh:
                    fh.write("+cpu +memory")

    def create_bridge(self, group):
        lines = []
        for r in group:
            lines.append("link add %s type bridge forward_delay 0 stp_state 0" % r["name"])
            if r.get("address"):
                lines.append("addr add %s dev %s" % (r["address"], r["name"]))
            lines.append("link set %s up" % r["name"])
        run([self.ip, "-batch", "-"], "\n".join(lines) + "\n")

    def create_dir(self, group):
        for r in group:
            os.makedirs(os.path.join(r["path"], "state"), mode=0o755, exist_ok=True)
            os.makedirs(os.path.join(r["path"], "home"), mode=0o700, exist_ok=True)

    def create_netns_runtime(self, group):
        pass  # made by the first 'ip netns add'; recorded so the last lab down can unmount it

    def create_netns(self, group):
        run([self.ip, "-batch", "-"], "".join("netns add %s\n" % r["name"] for r in group))

    def create_uts(self, group):
        unshare = tool("unshare")
        for r in group:
            open(r["path"], "a").close()
        run_all([([unshare, "--uts=" + r["path"], "hostname", r["hostname"]], None) for r in group])

    def create_veth(self, group):
        lines = []
        for r in group:
            # the node end is created inside the namespace under its final name
            lines.append("link add %s type veth peer name %s netns %s" % (r["name"], r["peer"], r["netns"]))
            lines.append("link set %s master %s up" % (r["name"], r["bridge"]))
        run([self.ip, "-batch", "-"], "\n".join(lines) + "\n")

    def create_sshd(self, group):
        nodes = dict((n["name"], n) for n in self.plan["nodes"])
        self.start_sshds([nodes[r["node"]] for r in group])

    def create_file(self, group):
        pass  # written by write_access_files(), which runs after every present

    # -- removal, reverse record order, batched by kind --------------------
    def remove(self, resources):
        """Remove resources (in the order given); drop each from the record once verifiably gone."""
        for kind, group in by_kind(resources):
            if self.check:
                self.removed.extend(group)
            else:
                getattr(self, "remove_" + kind)(group)
                mounts = mountpoints()
                gone = [r for r in group if r.get("_released") or not self.exists(r, mounts)]
                self.record.drop(r["id"] for r in gone)
                self.removed.extend(gone)
                left = [r["id"] for r in group if r not in gone]
                if left:
                    raise LabFailure("could not remove: %s (still recorded in %s; run again or see "
                                     "'grayctl lab doctor')" % (", ".join(left), self.record.path))

    def kill_cgroup(self, r):
        """Kill every process in a cgroup this lab created (the record says it is ours)."""
        path = r["path"]
        if not os.path.isdir(path):
            return
        kill_file = os.path.join(path, "cgroup.kill")
        if os.path.exists(kill_file):
            with open(kill_file, "w") as fh:
                fh.write("1")
        deadline = time.time() + 5
        while time.time() < deadline:
            pids = cgroup_procs(path)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove_cgroup(self, group):
        for r in group:
            if not r.get("shared"):
                # cgroup.kill is recursive: on the shared grayctl/ parent it would kill every other lab
                self.kill_cgroup(r)
            deadline = time.time() + 5
            while True:
                try:
                    os.rmdir(r["path"])
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if r.get("shared") and err.errno in (errno.EBUSY, errno.ENOTEMPTY):
                        r["_released"] = True  # another lab still uses it: it removes it later
                        break
                    if time.time() > deadline:
                        raise LabFailure("cannot remove cgroup %s: %s" % (r["path"], err)) from None
                    time.sleep(0.02)  # exiting tasks leave the cgroup asynchronously

    def remove_sshd(self, group):
        pids = []
        for r in group:
            pid = self.sshd_pid(r)
            if pid:
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
        deadline = time.time() + 3
        while pids and time.time() < deadline:
            pids = [p for p in pids if pid_alive(p)]
            time.sleep(0.01)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # sessions and anything they started die with the node's cgroup (removed next)

    def remove_links(self, group):
        lines = ["link del %s" % r["name"] for r in group if os.path.exists("/sys/class/net/" + r["name"])]
        if lines:
            run([self.ip, "-force", "-batch", "-"], "\n".join(lines) + "\n", check=False)

    remove_veth = remove_links
    remove_bridge = remove_links

    def remove_uts(self, group):
        self.umount([r["path"] for r in group])
        for r in group:
            if os.path.exists(r["path"]) and r["path"] not in mountpoints():
                os.unlink(r["path"])

    def remove_mount(self, group):
        self.umount([r["path"] for r in group])
        for r in group:
            try:
                os.rmdir(r["path"])
            except FileNotFoundError:
                pass
            except OSError as err:
                raise LabFailure("cannot remove %s: %s" % (r["path"], err)) from None

    def umount(self, paths):
        """Unmount each path (one umount call for all; stacked mounts take further rounds)."""
        for _ in range(10):
            mounted = [p for p in paths if p in mountpoints()]
            if not mounted:
                return
            run([tool("umount")] + mounted)
        raise LabFailure("still mounted after 10 rounds: %s" % ", ".join(mounted))

    def remove_netns(self, group):
        lines = ["netns del %s" % r["name"] for r in group if os.path.exists(os.path.join(NETNS_DIR, r["name"]))]
        if lines:
            run([self.ip, "-force", "-batch", "-"], "\n".join(lines) + "\n", check=False)

    def remove_netns_runtime(self, group):
        for r in group:
            if os.path.isdir(r["path"]) and os.listdir(r["path"]):
                r["_released"] = True  # namespaces of someone else live there
                continue
            self.umount([r["path"]])
            if r.get("created_dir"):
                try:
                    os.rmdir(r["path"])
                except OSError:
                    pass

    def remove_dir(self, group):
        for r in group:
            shutil.rmtree(r["path"], ignore_errors=True)

    def remove_file(self, group):
        for r in group:
            try:
                os.unlink(r["path"])
            except FileNotFoundError:
                pass

    # -- SSH material --------------------------------------------------------
    def ensure_keys(self):
        """One lab host key and one client key pair, generated once, kept across up/down."""
        keygen = tool("ssh-keygen")
        made = []
        if not self.check:
            os.makedirs(self.ssh_dir, mode=0o700, exist_ok=True)
            os.chmod(self.lab_dir, 0o700)
            os.chmod(self.ssh_dir, 0o700)
        for name, comment in (("ssh_host_ed25519_key", "grayctl-lab-%s-host" % self.plan["name"]),
                              ("id_ed25519", "grayctl-lab-%s" % self.plan["name"])):
            path = os.path.join(self.ssh_dir, name)
            if not os.path.exists(path):
                made.append(path)
                if not self.check:
                    run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
            if not self.check:
                os.chmod(path, 0o600)
        if not self.check:
            with open(os.path.join(self.ssh_dir, "id_ed25519.pub")) as fh:
                write_if_changed(os.path.join(self.ssh_dir, "authorized_keys"), fh.read(), 0o600)
        return made

    def sshd_config_text(self, node):
        return "\n".join([
            "# Written by grayctl (netns_lab) for %s of lab %s; regenerated by 'lab up'."
            % (node["name"], self.plan["name"]),
            "ListenAddress %s:22" % node["mgmt_ip"],
            "AddressFamily inet",
            "HostKey %s" % os.path.join(self.ssh_dir, "ssh_host_ed25519_key"),
            "PidFile %s" % node["pidfile"],
            "AuthorizedKeysFile %s" % os.path.join(self.ssh_dir, "authorized_keys"),
            "AllowUsers root",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # grayctl writes the key files 0600 in a 0700 dir; StrictModes would also refuse a lab
            # home below a world-writable directory such as /tmp (where tests put theirs)
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            "",
        ])

    def start_sshds(self, nodes):
        """Start one sshd per node at once, inside its cgroups, network and UTS namespaces."""
        sshd, nsenter = tool("sshd"), tool("nsenter")
        if not os.path.isdir(SSHD_PRIVSEP_DIR):
            # what openssh's tmpfiles.d makes at boot under systemd; a host prerequisite, kept
            os.makedirs(SSHD_PRIVSEP_DIR, mode=0o755, exist_ok=True)
        procs = []
        for node in nodes:
            write_if_changed(node["sshd_config"], self.sshd_config_text(node))
            try:
                os.unlink(node["pidfile"])
            except FileNotFoundError:
                pass
            procfiles = [os.path.join(p, "cgroup.procs") for p in self.node_cgroup(node).values()]

            def join(files=procfiles):
                # in the child before exec: sshd and all it spawns inherit the node's limits
                for f in files:
                    with open(f, "w") as fh:
                        fh.write(str(os.getpid()))

            # 'ip netns exec' gives sshd a mount namespace of its own (a slave of the host's) whose
            # /sys shows the node's links; in it the node's home is mounted over /root, so sessions
            # neither run the host's dotfiles nor share its ~/.ansible (a killed session once left
            # the host's pyenv rehash lock behind, stalling every later login by 60 s)
            home = os.path.join(node["node_dir"], "home")
            # Nothing of the host's /root is visible on a node: grayctl's node programs run from
            # the node runtime (grayctl.node_runtime, <lab dir>/runtime), never from a checkout.
            argv = [self.ip, "netns", "exec", node["netns"], nsenter, "--uts=" + node["uts"], "--",
                    "/bin/sh", "-c", 'mount --rbind "$0" /root && exec "$@"', home,
                    sshd, "-f", node["sshd_config"], "-E", node["sshd_log"]]
            procs.append((node, subprocess.Popen(argv, preexec_fn=join, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        for node, proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise LabFailure("sshd for %s did not start: %s %s" % (node["name"], out.strip(), self.log_tail(node)))
        self.wait_sshds(nodes)

    def log_tail(self, node):
        try:
            with open(node["sshd_log"]) as fh:
                return "(sshd log: %s)" % " | ".join(fh.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    def wait_sshds(self, nodes):
        """Until every sshd has written its pid file and accepts TCP on its management address."""
        waiting = list(nodes)
        deadline = time.time() + SSHD_READY_TIMEOUT
        while waiting:
            still = []
            for node in waiting:
                # a LISTEN socket, read from /proc: connecting would leave transient sshd children
                if not listening(read_pid(node["pidfile"]), node["mgmt_ip"]):
                    still.append(node)
            waiting = still
            if waiting and time.time() > deadline:
                raise LabFailure("sshd not ready on %s after %ds %s" % (
                    ", ".join(n["name"] for n in waiting), SSHD_READY_TIMEOUT, self.log_tail(waiting[0])))
            if waiting:
                time.sleep(0.01)

    def write_access_files(self):
        """known_hosts (strict host key checking) and the Ansible inventory for the lab."""
        if self.check:
            return []
        with open(os.path.join(self.ssh_dir, "ssh_host_ed25519_key.pub")) as fh:
            keytype, key = fh.read().split()[:2]
        # VM nodes are given the same lab host key at boot (qemu_lab's seed)
        known = "".join("%s %s %s\n" % (n["mgmt_ip"], keytype, key) for n in self.all_nodes())
        written = [name for name, text in (("known_hosts", known), ("inventory.yml", self.inventory_text()))
                   if write_if_changed(os.path.join(self.lab_dir, name), text, 0o644)]
        return written

    def all_nodes(self):
        return sorted(self.plan["nodes"] + self.plan.get("vm_nodes", []), key=lambda n: n["index"])

    def inventory_text(self):
        p = self.plan
        q = json.dumps
        common = [
            ("ansible_user", "root"),
            ("ansible_ssh_private_key_file", os.path.join(self.ssh_dir, "id_ed25519")),
            ("ansible_ssh_common_args", "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
             % os.path.join(self.lab_dir, "known_hosts")),
            ("ansible_python_interpreter", "/usr/bin/python3"),
            # The node runtime (an installed copy of grayctl, see grayctl/node_runtime.py) that the
            # controller links here before anything runs on the nodes.
            ("grayctl_python", os.path.join(self.lab_dir, "runtime", "bin", "python")),
            ("grayctl_lab", p["name"]),
            ("grayctl_lab_dir", self.lab_dir),
            ("grayctl_provider", "netns"),
            ("grayctl_mgmt_iface", "mgmt"),
            ("grayctl_data_iface", "data"),
        ]
        lines = ["# Written by grayctl (netns_lab) for lab %s; regenerated by 'lab up'. Do not edit." % p["name"],
                 "all:", "  children:", "    lab_nodes:", "      vars:"]
        lines += ["        %s: %s" % (k, q(v)) for k, v in common]
        lines.append("      hosts:")
        for n in self.all_nodes():
            lines.append("        %s:" % n["name"])
            if n.get("provider") == "qemu":
                # a VM has its own Python with grayctl (in the image), no netns and no node cgroup
                for k, v in (("ansible_host", n["mgmt_ip"]), ("grayctl_mgmt_ip", n["mgmt_ip"]),
                             ("grayctl_data_ip", n["data_ip"]), ("grayctl_state_dir", n["state_dir"]),
                             ("grayctl_node_cgroup", ""), ("grayctl_provider", "qemu"),
                             ("grayctl_python", "/usr/bin/python3")):
                    lines.append("          %s: %s" % (k, q(v)))
                continue
            cg = self.node_cgroup(n).get("unified", "")
            for k, v in (("ansible_host", n["mgmt_ip"]), ("grayctl_mgmt_ip", n["mgmt_ip"]),
                         ("grayctl_data_ip", n["data_ip"]), ("grayctl_state_dir", n["state_dir"]),
                         ("grayctl_node_cgroup", cg), ("grayctl_netns", n["netns"])):
                lines.append("          %s: %s" % (k, q(v)))
        groups = {}
        for n in self.all_nodes():
            for g in n["roles"]:
                groups.setdefault(g, []).append(n["name"])
        for g in sorted(groups):
            lines += ["    %s:" % g, "      hosts:"] + ["        %s:" % h for h in groups[g]]
        return "\n".join(lines) + "\n"

    # -- node configuration (inside the namespaces) -------------------------
    def node_views(self, nodes, qdiscs=False):
        """Per node: links with addresses, routes (and qdiscs), read in parallel."""
        jobs = [([self.ip, "-j", "-n", n["netns"], "-batch", "-"], "addr show\nroute show\n") for n in nodes]
        if qdiscs:
            jobs += [([self.tc, "-j", "-n", n["netns"], "qdisc", "show"], None) for n in nodes]
        results = run_all(jobs, check=False)
        views = {}
        for k, n in enumerate(nodes):
            rc, out, _ = results[k]
            docs = json_stream(out) if rc == 0 else [[], []]
            view = {
                "links": dict((link["ifname"], link) for link in (docs[0] if docs else [])),
                "routes": docs[1] if len(docs) > 1 else [],
                "qdiscs": [],
            }
            if qdiscs:
                rc2, qout, _ = results[len(nodes) + k]
                view["qdiscs"] = json.loads(qout) if rc2 == 0 and qout.strip() else []
            views[n["name"]] = view
        return views

    def expected_addrs(self, node):
        mp = ipaddress.IPv4Network(self.plan["management"]).prefixlen
        dp = ipaddress.IPv4Network(self.plan["data"]).prefixlen
        return {"mgmt": "%s/%d" % (node["mgmt_ip"], mp), "data": "%s/%d" % (node["data_ip"], dp)}

    def config_drift(self, node, view):
        """What differs from a freshly made node's links and addresses (not qdiscs/firewall)."""
        issues = []
        links = view["links"]
        for name, want in [("lo", None)] + sorted(self.expected_addrs(node).items()):
            link = links.get(name)
            if link is None:
                issues.append("link %s missing" % name)
                continue
            if "UP" not in link.get("flags", []):
                issues.append("link %s down" % name)
            if want:
                have = sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in link.get("addr_info", [])
                              if a.get("family") == "inet")
                if have != [want]:
                    issues.append("%s addresses %s, want %s" % (name, have, want))
        extra = sorted(set(links) - NODE_LINKS - FALLBACK_LINKS)
        if extra:
            issues.append("extra links %s" % extra)
        nets = {str(ipaddress.IPv4Network(self.plan["management"])), str(ipaddress.IPv4Network(self.plan["data"]))}
        routes = sorted(r.get("dst", "") for r in view["routes"])
        if sorted(nets) != routes:
            issues.append("routes %s, want %s" % (routes, sorted(nets)))
        return issues, extra

    def configure_nodes(self, nodes, views=None, fresh=()):
        """Bring lo/mgmt/data to their planned state; only touches nodes that differ.

        ``fresh`` names nodes whose namespace was just made: configured without looking first.
        """
        look = [n for n in nodes if n["name"] not in fresh]
        if views is None:
            views = self.node_views(look)
        jobs, touched = [], []
        for n in nodes:
            if n["name"] in fresh:
                issues, extra = ["new node"], []
            else:
                issues, extra = self.config_drift(n, views[n["name"]])
            if not issues:
                continue
            touched.append((n["name"], issues))
            addrs = self.expected_addrs(n)
            lines = ["link del %s" % x for x in extra]
            lines += ["link set lo up"]
            for dev in ("mgmt", "data"):
                # flush drops stray addresses and the routes that came with them
                lines += ["addr flush dev %s" % dev, "addr add %s dev %s" % (addrs[dev], dev), "link set %s up" % dev]
            lines.append("route flush proto static")
            lines.append("route flush proto boot")
            jobs.append(([self.ip, "-force", "-n", n["netns"], "-batch", "-"], "\n".join(lines) + "\n"))
        if not self.check:
            run_all(jobs, check=False)
            if touched:
                views = self.node_views([n for n in nodes if n["name"] in dict(touched)])
                for n in nodes:
                    if n["name"] in views:
                        issues, _ = self.config_drift(n, views[n["name"]])
                        if issues:
                            raise LabFailure("%s: could not configure: %s" % (n["name"], "; ".join(issues)))
        return touched

    def apply_limits(self, nodes):
        """cfs quota/period and memory limit per node cgroup; writes only what differs."""
        p = self.plan
        page = os.sysconf("SC_PAGE_SIZE")
        memory = p["memory_bytes"] // page * page  # the kernel keeps whole pages; compare like with like
        if self.layout["mode"] == "hybrid":
            files = [("cpu", "cpu.cfs_period_us", str(p["cpu_period_us"])),
                     ("cpu", "cpu.cfs_quota_us", str(p["cpu_quota_us"])),
                     ("memory", "memory.limit_in_bytes", str(memory))]
        elif self.layout["mode"] == "v2":
            files = [("unified", "cpu.max", "%d %d" % (p["cpu_quota_us"], p["cpu_period_us"])),
                     ("unified", "memory.max", str(memory))]
        else:
            files = []
        changed = []
        for n in nodes:
            cg = self.node_cgroup(n)
            for h, name, value in files:
                path = os.path.join(cg[h], name)
                try:
                    with open(path) as fh:
                        current = fh.read().strip()
                except OSError:
                    current = None
                if current != value:
                    changed.append("%s %s=%s" % (n["name"], name, value))
                    if not self.check:
                        with open(path, "w") as fh:
                            fh.write(value)
        return changed

    def record_netns_defaults(self, fresh):
        """Record each node namespace's net sysctls and ip rules as made (``fresh``: just created)
        or, for a node with none recorded yet, as first seen; the reset writes them back."""
        known = self.record.data.setdefault("netns_defaults", {}) if not self.check else {}
        nodes = [n for n in self.plan["nodes"] if n["name"] in fresh or n["name"] not in known]
        if self.check or not nodes:
            return []
        paths = dict((n["name"], os.path.join(NETNS_DIR, n["netns"])) for n in nodes)
        snap = netns_state.snapshot(sys.executable, list(paths.values()))
        done = []
        for name, path in paths.items():
            if snap.get(path) is not None and known.get(name) != snap[path]:
                known[name] = snap[path]
                done.append(name)
        return done  # a namespace that could not be read is not recorded: not a change either

    def restore_netns_defaults(self, nodes, cleaned):
        """The reset's sysctl and ip rule step: what differs from the recorded defaults goes back."""
        known = self.record.data.get("netns_defaults") or {}
        todo = []
        for n in nodes:
            if not os.path.exists(os.path.join(NETNS_DIR, n["netns"])):
                continue  # gone: present (the reset's last step) makes it anew and records it fresh
            if n["name"] not in known:
                cleaned[n["name"]].append("no recorded sysctls or ip rules to restore (a lab made before they "
                                          "were recorded): recorded now, as this reset leaves them")
                continue
            todo.append(n)
        # one read of every namespace, in parallel (one at a time was most of a 14-node reset)
        now = netns_state.snapshot(sys.executable, [os.path.join(NETNS_DIR, n["netns"]) for n in todo])
        for n in todo:
            path = os.path.join(NETNS_DIR, n["netns"])
            done, left = netns_state.restore(sys.executable, path, known[n["name"]], now.get(path), check=self.check)
            cleaned[n["name"]] += ["restored " + d for d in done] + ["could not restore " + x for x in left]


def listening(pid, ip, port=22):
    """Whether a LISTEN socket on ip:port exists in pid's network namespace (no connection made)."""
    if not pid:
        return False
    want = "%s:%04X" % ("".join("%02X" % b for b in reversed(socket.inet_aton(ip))), port)
    try:
        with open("/proc/%d/net/tcp" % pid) as fh:
            return any(f[1] == want and f[3] == "0A" for f in (line.split() for line in fh.readlines()[1:]))
    except OSError:
        return False


# ---------------------------------------------------------------------------
# The four states


def desired(lab):
    res = lab.lab_resources()
    for node in lab.plan["nodes"]:
        res.extend(lab.node_resources(node))
    return res + lab.file_resources()


def by_phase(resources):
    """Creation order across nodes: every node's namespaces, then every node's links, ...

    So one ``ip -batch`` makes all namespaces, one makes all veths, and so on. The record is
    appended phase by phase, so reverse record order is still reverse dependency order.
    """
    order = ["mount", "cgroup_parent", "bridge", "dir", "netns_runtime", "netns", "uts", "veth", "cgroup", "sshd",
             "file"]

    def key(r):
        kind = "cgroup_parent" if r["kind"] == "cgroup" and not r.get("node") else r["kind"]
        return order.index(kind)

    return sorted(resources, key=key)  # stable: node order kept inside a phase


def check_foreign(lab, want):
    """Refuse to adopt anything that carries our names but is not in our record."""
    recorded = lab.record.ids()
    mounts = mountpoints()
    foreign = [r["id"] for r in want if r["id"] not in recorded and r["kind"] not in ("cgroup", "file", "dir", "sshd")
               and lab.exists(r, mounts)]
    if foreign:
        raise LabFailure("these exist but were not created by this lab (not in %s): %s - another lab with the "
                         "same name or address plan, or a leftover from a lost state file; remove them by hand "
                         "after checking what they are" % (lab.record.path, ", ".join(foreign[:10])))


def present(lab):
    """Make what is missing; True when anything changed. Why it changed goes into ``lab.why_changed``
    (the module's ``why_changed``): a second up that reports a change says what it found."""
    plan = lab.plan
    changed = False
    why = lab.why_changed
    recorded_plan = lab.record.data.get("plan")
    if recorded_plan and lab.record.resources:
        for key in ("management", "data", "prefix"):
            if recorded_plan.get(key) != plan.get(key):
                raise LabFailure("the lab is up with %s=%s; the definition now says %s: run 'grayctl lab down' first"
                                 % (key, recorded_plan.get(key), plan.get(key)))
    if not lab.check:
        os.makedirs(lab.lab_dir, mode=0o700, exist_ok=True)
    made = lab.ensure_keys()
    if made:
        why.append("keys made: %s" % ", ".join(made))
        changed = True

    # shrink: nodes in the record that the plan no longer has, removed from their record entries
    wanted_nodes = set(n["name"] for n in plan["nodes"])
    surplus = [r for r in lab.record.resources if r.get("node") and r["node"] not in wanted_nodes]
    if surplus:
        lab.remove(list(reversed(surplus)))
        why.append("surplus removed: %s" % ", ".join(r["id"] for r in surplus))
        for name in set(r["node"] for r in surplus) if not lab.check else ():
            lab.record.data.get("netns_defaults", {}).pop(name, None)
        changed = True

    want = by_phase(desired(lab))
    check_foreign(lab, want)
    mounts = mountpoints()
    recorded = lab.record.ids()
    # a shared parent made by another lab is recorded too, so whichever lab leaves last removes it
    missing = [r for r in want if not lab.exists(r, mounts) or (r.get("shared") and r["id"] not in recorded)]
    # a node whose cgroups were recreated needs its sshd restarted inside them
    renew = set(r["node"] for r in missing if r["kind"] in ("cgroup", "netns", "uts") and r.get("node"))
    missing_ids = set(r["id"] for r in missing)
    for r in want:
        if r["kind"] == "sshd" and r["node"] in renew and r["id"] not in missing_ids:
            missing.append(r)
            if not lab.check:
                lab.remove_sshd([r])
    missing = by_phase(missing)
    fresh_nodes = set(r["node"] for r in missing if r["kind"] == "netns")
    if missing:
        changed = True
        why.append("missing, made: %s" % ", ".join(r["id"] for r in missing))
        if not lab.check:
            lab.record.data["plan"] = plan
            lab.record.data["lab"] = plan["name"]
            lab.record.data["lab_dir"] = lab.lab_dir
            lab.record.set_status("creating")
        if any(r["kind"] == "netns" for r in missing) and NETNS_DIR not in mounts:
            rt = {"kind": "netns_runtime", "id": "mount:" + NETNS_DIR, "path": NETNS_DIR,
                  "created_dir": not os.path.isdir(NETNS_DIR)}
            missing.insert(next(i for i, r in enumerate(missing) if r["kind"] == "netns"), rt)
        # phases: record a phase, then create it; node configuration follows the veths
        phases = []
        for r in missing:
            if phases and phases[-1][0]["kind"] == r["kind"] and r["kind"] != "netns_runtime":
                phases[-1].append(r)
            else:
                phases.append([r])
        fresh = set(r["node"] for r in missing if r["kind"] == "netns")
        configured = False
        for group in phases:
            if group[0]["kind"] == "sshd":
                # sshd must listen on configured links, inside limited cgroups
                lab.configure_nodes(plan["nodes"], fresh=fresh)
                lab.apply_limits(plan["nodes"])
                configured = True
            if not lab.check:
                lab.record.append(group)
                crash_point(group[0]["kind"])
            lab.create(group)
        if not configured:
            lab.configure_nodes(plan["nodes"], fresh=fresh)
            lab.apply_limits(plan["nodes"])
    else:
        touched = lab.configure_nodes(plan["nodes"])
        limits = lab.apply_limits(plan["nodes"])
        why.extend("configured %s: %s" % (n, "; ".join(issues)) for n, issues in touched)
        why.extend("limit set: %s" % x for x in limits)
        changed |= bool(touched or limits)
    for n in plan["nodes"]:
        if not os.path.isdir(n["state_dir"]):
            changed = True
            why.append("state dir made: %s" % n["state_dir"])
            if not lab.check:
                os.makedirs(n["state_dir"], mode=0o755)
    recorded = lab.record_netns_defaults(fresh_nodes)
    if recorded:
        why.append("sysctls and ip rules recorded: %s" % ", ".join(recorded))
    access = lab.write_access_files()
    if access:
        why.append("access files written: %s" % ", ".join(access))
    changed |= bool(recorded or access)
    if not lab.check:
        lab.record.data["plan"] = plan
        lab.record.data.setdefault("lab", plan["name"])
        lab.record.data.setdefault("lab_dir", lab.lab_dir)
        if lab.record.data.get("status") != "up":
            lab.record.set_status("up")
        elif changed:
            lab.record.save()
        # the sshds must answer before anyone uses the inventory
        lab.wait_sshds(plan["nodes"])
    return changed


def crash_point(kind):
    """Test hook: die like a killed process right after recording the phase ``kind``."""
    if os.environ.get("GRAYCTL_NETNS_LAB_CRASH_AFTER_RECORDING") == kind:
        os.kill(os.getpid(), signal.SIGKILL)


def absent(lab):
    if not lab.record.resources:
        if lab.record.data.get("status") not in ("down", None) and not lab.check:
            lab.record.set_status("down")
        return False
    if not lab.check:
        lab.record.set_status("removing")
    lab.remove(list(reversed(list(lab.record.resources))))
    if not lab.check:
        lab.record.data.pop("netns_defaults", None)  # the namespaces they describe are gone
        lab.record.set_status("down")
    return True


def _empty_dir(d, entries):
    """Remove ``entries`` of directory ``d`` (files, links, whole subtrees); ``d`` itself stays."""
    for e in entries:
        p = os.path.join(d, e)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


def reset(lab):
    """The netns reimage: every node back to how 'present' made it."""
    plan = lab.plan
    if lab.record.data.get("status") != "up" or not lab.record.resources:
        raise LabFailure("the lab %s is not up (state %s): nothing to reset; run 'grayctl lab up'"
                         % (plan["name"], lab.record.data.get("status")))
    nodes = plan["nodes"]
    cleaned = dict((n["name"], []) for n in nodes)
    sshd_by_node = dict((r["node"], r) for r in lab.record.resources if r["kind"] == "sshd")

    # 1. processes: everything in the node's cgroups but its sshd listener (SSH sessions included)
    killed = {}
    for n in nodes:
        listener = lab.sshd_pid(sshd_by_node[n["name"]]) if n["name"] in sshd_by_node else None
        for path in lab.node_cgroup(n).values():
            strays = [p for p in cgroup_procs(path) if p != listener]
            first = list(strays)
            rounds = 0
            while strays and rounds < 200:  # forks racing the kill show up in the next round
                for pid in strays:
                    try:
                        os.kill(pid, signal.SIGKILL) if not lab.check else None
                    except ProcessLookupError:
                        pass
                if lab.check:
                    break
                rounds += 1
                time.sleep(0.005)
                strays = [p for p in cgroup_procs(path) if p != listener]
            if rounds or (lab.check and strays):
                killed[n["name"]] = killed.get(n["name"], set()) | set(first)

    for name, pids in killed.items():
        cleaned[name].append("killed %d processes" % len(pids))
    views = lab.node_views(nodes, qdiscs=True)
    jobs = []
    # 2. qdiscs: anything but the kernel's default (handle 0:) goes
    for n in nodes:
        lines = []
        for q in views[n["name"]]["qdiscs"]:
            if q.get("dev") not in ("mgmt", "data"):
                continue
            if q.get("kind") in ("ingress", "clsact"):
                lines.append("qdisc del dev %s %s" % (q["dev"], q["kind"]))
            elif q.get("root") and q.get("handle") != "0:":
                lines.append("qdisc del dev %s root" % q["dev"])
        if lines:
            cleaned[n["name"]].append("deleted qdiscs")
            jobs.append(([lab.tc, "-force", "-n", n["netns"], "-batch", "-"], "\n".join(sorted(set(lines))) + "\n"))
    if not lab.check:
        run_all(jobs, check=False)

    # 3. firewall rules inside the namespace: nftables (includes iptables-nft), then legacy tables
    nft = tool("nft")
    nsenter = tool("nsenter")
    fw_tools = [t for t in ("iptables-legacy", "ip6tables-legacy") if tool(t)]
    jobs = []
    for n in nodes:
        net = "--net=" + os.path.join(NETNS_DIR, n["netns"])
        if nft:
            jobs.append((n, "nft", [nsenter, net, "--", nft, "list", "ruleset"]))
        for t in fw_tools:
            jobs.append((n, t, [nsenter, net, "--", tool(t + "-save") or t + "-save"]))
    results = run_all([(argv, None) for _, _, argv in jobs], check=False)
    fixes = []
    for (n, which, _), (_rc, out, _) in zip(jobs, results, strict=True):
        if which == "nft" and out.strip():
            net = "--net=" + os.path.join(NETNS_DIR, n["netns"])
            fixes.append(([nsenter, net, "--", nft, "flush", "ruleset"], None))
            cleaned[n["name"]].append("flushed nftables")
        elif which != "nft" and legacy_dirty(out):
            prefix = [nsenter, "--net=" + os.path.join(NETNS_DIR, n["netns"]), "--", tool(which)]
            fixes.extend((prefix + args, None) for args in legacy_flush(out))
            cleaned[n["name"]].append("flushed " + which)
    if not lab.check:
        run_all(fixes, check=False)

    # 4. extra links, addresses and routes back to the plan
    for name, _ in lab.configure_nodes(nodes, views):
        cleaned[name].append("restored links and addresses")

    # 5. the namespace's own settings: net sysctls and ip rules, as recorded when it was made
    lab.restore_netns_defaults(nodes, cleaned)

    # 6. the state directory, emptied (not removed: it is part of the node); and the fault records
    # beside it (roles/fault's fault_dir): steps 1-3 reverted every fault they describe, so a record
    # left 'active' (its controller was killed; a netfilter fault's expiry does not rewrite it) would
    # make the next apply of that fault id a no-op or a refusal
    for n in nodes:
        for d, said in ((os.path.join(os.path.dirname(n["state_dir"]), "faults"), "removed the fault records (%d files)"),
                        (n["state_dir"], "emptied state dir (%d entries)")):
            entries = os.listdir(d) if os.path.isdir(d) else []
            if entries:
                cleaned[n["name"]].append(said % len(entries))
                if not lab.check:
                    _empty_dir(d, entries)

    # 7. anything missing (a killed sshd, a deleted namespace) is recreated
    converged = present(lab)
    cleaned = dict((k, v) for k, v in cleaned.items() if v)
    return bool(cleaned) or converged, cleaned


def legacy_dirty(save_output):
    """iptables-legacy-save output with rules, user chains ('-' policy) or non-ACCEPT policies."""
    for line in save_output.splitlines():
        if line.startswith("-A "):
            return True
        m = re.match(r"^:(\S+) (\S+)", line)
        if m and m.group(2) != "ACCEPT":
            return True
    return False


def legacy_flush(save_output):
    """Arguments that empty every table in a save output and reset builtin policies to ACCEPT."""
    out, table = [], None
    for line in save_output.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            out += [["-t", table, "-F"], ["-t", table, "-X"], ["-t", table, "-Z"]]
        m = re.match(r"^:(\S+) (\S+)", line)
        if table and m and m.group(2) not in ("ACCEPT", "-"):
            out.append(["-t", table, "-P", m.group(1), "ACCEPT"])
    return out


def inspect(lab):
    """What exists, what is missing, what is left behind; changes nothing."""
    status = lab.record.data.get("status", "down")
    mounts = mountpoints()
    exists, missing = [], []
    for r in lab.record.resources:
        (exists if lab.exists(r, mounts) else missing).append(r["id"])
    up = status == "up"
    left_behind = [] if up else list(exists)
    # names this lab would use but its record does not hold: reported, never touched
    recorded = lab.record.ids()
    plan = lab.record.data.get("plan") or lab.plan
    unrecorded = []
    prefix = "gc-%s-" % plan["name"]
    if os.path.isdir(NETNS_DIR):
        unrecorded += ["netns:" + n for n in sorted(os.listdir(NETNS_DIR))
                       if n.startswith(prefix) and "netns:" + n not in recorded]
    # <lab_id>vm/vdNNN are the VM nodes' taps: the qemu_lab module records and reports those
    vm_tap = re.compile(r"\A%sv[md][0-9]{3}\Z" % plan["lab_id"])
    unrecorded += ["link:" + n for n in sorted(os.listdir("/sys/class/net"))
                   if n.startswith(plan["lab_id"]) and "link:" + n not in recorded and not vm_tap.match(n)]
    for root in lab.hier.values():
        base = os.path.join(root, "grayctl", plan["name"])
        for d in ([base] + [os.path.join(base, x) for x in sorted(os.listdir(base))
                            if os.path.isdir(os.path.join(base, x))]) if os.path.isdir(base) else []:
            if "cgroup:" + d not in recorded:
                unrecorded.append("cgroup:" + d)
                unrecorded += ["process:%d" % p for p in cgroup_procs(d)]
    sshd_down = []
    if up:
        for r in lab.record.resources:
            if r["kind"] == "sshd" and r["id"] in exists:
                node = next((n for n in plan["nodes"] if n["name"] == r["node"]), None)
                if node and not listening(lab.sshd_pid(r), node["mgmt_ip"]):
                    sshd_down.append(r["node"])
    report = {
        "status": status,
        "exists": exists,
        "missing": missing,
        "left_behind": left_behind,
        "unrecorded": sorted(set(unrecorded)),
        "sshd_not_listening": sshd_down,
        "recorded": len(lab.record.resources),
    }
    report["clean"] = (not missing and not left_behind and not report["unrecorded"] and not sshd_down
                       and status in ("up", "down"))
    return report


# ---------------------------------------------------------------------------


# Module level so tests/lint/test_ansible_doc.py can check DOCUMENTATION against it.
ARGUMENT_SPEC = dict(PROVIDER_OPTIONS, source=dict(type="str", default="<definition>"))


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    p = module.params
    try:
        plan = resolve(p["definition"], p["nodes"], p["home"])
    except (ValueError, TypeError) as err:
        module.fail_json(msg="%s: %s" % (p["source"], err))
    state = p["state"]
    result = {"changed": False, "created": [], "removed": [], "cleaned": {}}
    try:
        lab = Lab(module, plan)
        lab.plan = plan = plan_to_act_on(state, plan, lab.record.data.get("plan"), resolve, p)
        host = host_facts(plan)
        result["host"] = host
        if state != "inspect":
            if host["uid"] != 0:
                raise LabFailure("the netns lab needs root (running as uid %d)" % host["uid"])
            if host["missing_tools"]:
                raise LabFailure("missing tools: %s (run 'grayctl lab bootstrap')" % ", ".join(host["missing_tools"]))
        if state == "present":
            if host["clashes"]:
                raise LabFailure("the lab's address ranges clash with this host: %s" % "; ".join(host["clashes"]))
            result["changed"] = present(lab)
        elif state == "absent":
            result["changed"] = absent(lab)
        elif state == "reset":
            result["changed"], result["cleaned"] = reset(lab)
        result["report"] = inspect(lab)
    except (LabFailure, CommandFailed, RecordError) as err:
        module.fail_json(msg=str(err), **result)
    except OSError as err:
        module.fail_json(msg="%s: %s" % (type(err).__name__, err), **result)
    result["created"] = [strip(r) for r in lab.created]
    result["why_changed"] = lab.why_changed
    result["removed"] = [strip(r) for r in lab.removed]
    result["lab"] = {
        "name": plan["name"], "id": plan["lab_id"], "dir": lab.lab_dir, "state_file": lab.record.path,
        "inventory": os.path.join(lab.lab_dir, "inventory.yml"),
        "known_hosts": os.path.join(lab.lab_dir, "known_hosts"),
        "key": os.path.join(lab.ssh_dir, "id_ed25519"),
        "status": lab.record.data.get("status", "down"),
        "host_mgmt_ip": plan["host_mgmt_ip"], "management": plan["management"], "data": plan["data"],
    }
    result["nodes"] = [dict((k, n[k]) for k in ("name", "index", "roles", "mgmt_ip", "data_ip", "netns", "state_dir"))
                       for n in lab.all_nodes()]
    for n in result["nodes"]:
        n["provider"] = "qemu" if not n["netns"] else "netns"
        n["cgroup"] = lab.node_cgroup(n).get("unified", "") if n["netns"] else ""
    module.exit_json(**result)


def strip(r):
    return dict((k, v) for k, v in r.items() if not k.startswith("_") and k != "cgroups")


if __name__ == "__main__":
    main()
