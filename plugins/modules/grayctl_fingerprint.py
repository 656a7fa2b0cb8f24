#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""Fingerprint a lab node and compare it with its golden baseline.

Runs on the node (stdlib only, any Python 3.7+). One call collects everything, so verifying a
lab costs one module round trip per node.

Map of this module:

- ``collect_*``   read one part of the node's state and return plain, canonical data;
- ``to_*``        normalise raw tool output (handles, counters, comments removed);
- ``check_declared`` the invariants that hold regardless of any golden record;
- ``compare``     the recorded parts against a golden fingerprint;
- ``main``        the AnsibleModule wrapper.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_fingerprint
short_description: Fingerprint a grayctl lab node and compare it with its golden baseline
description:
  - Collects a canonical fingerprint of a lab node - kernel release, package versions, sysctls,
    links, qdiscs, nftables and iptables rules, policy-routing (ip) rules, leftover processes and
    the state directory.
  - Returns the fingerprint and the sha256 of its canonical JSON.
  - Checks the I(declared) invariants (no leftover processes, empty state and fault-record
    directories, no link of a forbidden kind such as C(ifb)) on every call.
  - Records the CPU and memory limits of the cgroup it runs in (on a netns node, the node's own),
    compared when the golden record has them.
  - Given O(golden), compares the I(recorded) parts with it and reports each difference as
    C(field), C(golden), C(now) and C(why); fails on drift unless O(fail_on_drift=false).
  - Read-only; supports check mode.
version_added: "0.1.0"
author: grayctl
options:
  packages:
    description: Debian packages whose installed version is recorded (C(null) when absent).
    type: list
    elements: str
    default: []
  sysctls:
    description: Sysctl keys (dotted form) whose value is recorded (C(null) when absent).
    type: list
    elements: str
    default: []
  interfaces:
    description: Interfaces whose qdiscs are recorded; empty means every link of the node.
    type: list
    elements: str
    default: []
  cgroup:
    description:
      - cgroup v2 directory of the node. When set, leftover processes are the processes in this
        cgroup (and below), minus the sshd listener, this module's ancestors and its children.
      - When empty, leftover processes are those whose name matches O(process_names).
    type: str
    default: ""
  process_names:
    description: Shell-style patterns of workload process names, used when O(cgroup) is empty.
    type: list
    elements: str
    default: []
  state_dir:
    description: The node's grayctl state directory; it must exist and be empty.
    type: path
    required: true
  fault_dir:
    description:
      - The node's fault-record directory (the fault role's C(fault_dir)); declared to hold no
        unfinished fault (a record scheduled, applying, active or revert-failed, or unreadable). Ended
        records (reverted, cancelled, failed) are the node's history until the next reset removes them.
        Empty string - not checked.
    type: str
    default: ""
  forbidden_link_kinds:
    description: Link kinds that are drift wherever they appear (fault plumbing left behind).
    type: list
    elements: str
    default: [ifb]
  golden:
    description: A golden fingerprint (the C(fingerprint) this module returned when recording).
    type: dict
  fail_on_drift:
    description: Fail when a declared invariant is violated or the node differs from O(golden).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Compare the node with its golden fingerprint
  grayctl.lab.grayctl_fingerprint:
    packages: [iproute2, nftables]
    sysctls: [net.ipv4.ip_forward]
    state_dir: /var/lib/grayctl/state
    golden: "{{ lookup('ansible.builtin.file', 'golden/node1.json') | from_json | json_query('fingerprint') }}"
"""

RETURN = r"""
fingerprint:
  description: The canonical fingerprint (see docs/baseline.md for each field).
  returned: always
  type: dict
sha256:
  description: sha256 of the fingerprint's canonical JSON (sorted keys, no spaces).
  returned: always
  type: str
violations:
  description: Declared invariants that do not hold, as C(field)/C(golden)/C(now)/C(why) entries.
  returned: always
  type: list
drift:
  description: Every difference - the violations plus the recorded parts that differ from O(golden).
  returned: always
  type: list
drifted:
  description: Whether O(drift) is non-empty.
  returned: always
  type: bool
report:
  description: O(drift) as readable lines, one per difference.
  returned: always
  type: list
"""

import fnmatch
import hashlib
import json
import os
import re
import socket
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.grayctl.lab.plugins.module_utils.commands import tool
from ansible_collections.grayctl.lab.plugins.module_utils.netns_state import rule_lines

SCHEMA = 1
BUILTIN_CHAINS = {
    "filter": {"INPUT", "FORWARD", "OUTPUT"},
    "nat": {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
    "mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
    "raw": {"PREROUTING", "OUTPUT"},
    "security": {"INPUT", "FORWARD", "OUTPUT"},
}
# Parent majors the kernel assigns itself (8001:, 8002:, ...): meaningless between boots.
AUTO_HANDLE = re.compile(r"^[89a-f][0-9a-f]{3}:")
COMMENT = re.compile(r'\s*-m comment --comment (?:"(?:[^"\\]|\\.)*"|\S+)')
COUNTERS = re.compile(r"^\[\d+:\d+\]\s*")
NFT_VOLATILE = {"handle", "metainfo", "comment"}
SSHD_NAMES = ("sshd", "sshd-session")


# --------------------------------------------------------------------------- processes

def _read(path):
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except (IOError, OSError):
        return None


def _proc_table():
    """pid -> (ppid, comm, argv) for every live (not zombie) process visible now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read("/proc/%s/stat" % entry)
        if stat is None:
            continue
        stat = stat.decode("utf-8", "replace")
        close = stat.rfind(")")
        comm = stat[stat.find("(") + 1:close]
        fields = stat[close + 2:].split()
        if fields[0] in ("Z", "X"):
            # Exited, not yet reaped: holds nothing but a pid (a SIGKILLed orphan's parent may
            # reap it a moment later), so it is not a leftover.
            continue
        cmdline = _read("/proc/%s/cmdline" % entry) or b""
        argv = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
        table[int(entry)] = (int(fields[1]), comm, argv)
    return table


def _ancestors(table, pid):
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        pid = table.get(pid, (0,))[0]
    return seen


def _descendants(table, pid):
    children = {}
    for child, (ppid, _comm, _argv) in table.items():
        children.setdefault(ppid, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cgroup2_root():
    for path in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        data = _read(path)
        for line in (data or b"").decode("utf-8", "replace").splitlines():
            left, _sep, right = line.partition(" - ")
            if right.split(" ")[:1] == ["cgroup2"]:
                return left.split(" ")[4]
    return "/sys/fs/cgroup/unified"


def _cgroup_pids(cgroup, table):
    """Pids in ``cgroup`` and below: from cgroup.procs, else from /proc/<pid>/cgroup."""
    if os.path.isdir(cgroup):
        pids = set()
        for directory, _dirs, _files in os.walk(cgroup):
            data = _read(os.path.join(directory, "cgroup.procs")) or b""
            pids.update(int(p) for p in data.split())
        return pids
    # The node's mount namespace may hide /sys/fs/cgroup (ip netns exec remounts /sys).
    relative = "/" + os.path.relpath(cgroup, _cgroup2_root()).lstrip("./")
    pids = set()
    for pid in table:
        for line in (_read("/proc/%d/cgroup" % pid) or b"").decode("utf-8", "replace").splitlines():
            if line.startswith("0::"):
                path = line[3:]
                if path == relative or path.startswith(relative.rstrip("/") + "/"):
                    pids.add(pid)
    return pids


def _describe(pid, comm, argv):
    command = " ".join(argv) or "[%s]" % comm
    if len(command) > 120:
        command = command[:117] + "..."
    return "pid %d %s: %s" % (pid, comm, command)


def collect_processes(cgroup, patterns):
    """Leftover processes: the node's cgroup minus ourselves, or name matches."""
    table = _proc_table()
    me = os.getpid()
    exempt = _ancestors(table, me) | _descendants(table, me) | {me}
    if cgroup:
        candidates = _cgroup_pids(cgroup, table)
        # The node's sshd: its listener (an sshd whose parent is outside the node's cgroup) and
        # the listener's connection processes (idle SSH sessions are access, not workload; what
        # a session started is still reported unless it is this module's own ancestry).
        sshd = set()
        for pid in sorted(candidates):
            chain, cur = [], pid
            while cur in candidates and table.get(cur, (0, ""))[1] in SSHD_NAMES:
                chain.append(cur)
                cur = table[cur][0]
            if chain and cur not in candidates:
                sshd.update(chain)
        exempt |= sshd
    else:
        candidates = set()
        for pid, (_ppid, comm, argv) in table.items():
            names = [comm] + [os.path.basename(a) for a in argv[:2]]
            if any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns):
                candidates.add(pid)
    return sorted(
        _describe(pid, table[pid][1], table[pid][2])
        for pid in candidates - exempt
        if pid in table
    )


# --------------------------------------------------------------------------- commands

def _start(argv):
    argv = [tool(argv[0]) or argv[0]] + list(argv[1:])
    try:
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, LC_ALL="C")
        )
    except OSError as exc:
        return exc


def _legacy_tools():
    """{'iptables': argv, 'ip6tables': argv} of the legacy savers, when the default is not legacy."""
    default = tool("iptables-save")
    if default and "legacy" in os.path.basename(os.path.realpath(default)):
        return {}
    tools = {}
    for family in ("iptables", "ip6tables"):
        path = tool(family + "-legacy-save")
        if path:
            tools[family] = [path]
    return tools


def _finish(proc):
    """(stdout text, error text or None)."""
    if isinstance(proc, Exception):
        return "", str(proc)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace").strip() or (
            "exit status %d" % proc.returncode
        )
    return out.decode("utf-8", "replace"), None


def to_packages(out, names):
    found = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].strip().startswith("ii"):
            found[parts[0].split(":")[0]] = parts[1]
    return dict((name, found.get(name)) for name in names)


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def to_qdiscs(text, interfaces):
    """Per interface, one readable line per qdisc; handles and counters dropped."""
    result = dict((name, []) for name in interfaces)
    for qdisc in json.loads(text or "[]"):
        dev = qdisc.get("dev")
        if interfaces and dev not in interfaces:
            continue
        where = "root" if qdisc.get("root") else "parent %s" % AUTO_HANDLE.sub(
            "auto:", qdisc.get("parent", "?")
        )
        if qdisc.get("kind") in ("ingress", "clsact"):
            where = ""
        options = " ".join(
            "%s=%s" % (key, _scalar(value)) for key, value in sorted((qdisc.get("options") or {}).items())
        )
        line = ("%s %s %s" % (where, qdisc.get("kind"), options)).strip()
        result.setdefault(dev, []).append(line)
    return dict((dev, sorted(lines)) for dev, lines in result.items())


def to_links(text):
    links = {}
    for link in json.loads(text or "[]"):
        kind = (link.get("linkinfo") or {}).get("info_kind") or (
            "loopback" if link.get("link_type") == "loopback" else "device"
        )
        state = "up" if "UP" in (link.get("flags") or []) else "down"
        links[link["ifname"]] = "%s mtu=%s %s" % (kind, link.get("mtu"), state)
    return links


def _strip_nft(value):
    if isinstance(value, dict):
        if set(value) == {"counter"}:
            return {"counter": None}
        return dict((k, _strip_nft(v)) for k, v in value.items() if k not in NFT_VOLATILE)
    if isinstance(value, list):
        return [_strip_nft(v) for v in value]
    return value


def to_nftables(text):
    """Rules, sets, maps, ... as canonical JSON lines; tables and empty accept chains dropped."""
    lines = []
    for item in json.loads(text or "{}").get("nftables", []):
        kind = next(iter(item))
        body = item[kind]
        if kind in ("metainfo", "table"):
            continue
        if kind == "chain" and body.get("policy", "accept") == "accept":
            continue
        if kind in ("counter", "quota"):
            body = dict((k, v) for k, v in body.items() if k not in ("packets", "bytes", "used"))
        lines.append(json.dumps({kind: _strip_nft(body)}, sort_keys=True, separators=(",", ":")))
    return lines


def to_iptables(text):
    """iptables-save without comments, counters and default-policy built-in chains."""
    lines, table = [], "?"
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        line = COUNTERS.sub("", COMMENT.sub("", line))
        line = re.sub(r"\s+\[\d+:\d+\]$", "", line)
        if line.startswith(":"):
            name, _sep, policy = line[1:].partition(" ")
            policy = policy.split(" ")[0]
            if name in BUILTIN_CHAINS.get(table, ()) and policy == "ACCEPT":
                continue
            line = ":%s %s" % (name, policy)
        else:
            line = re.sub(r"\s+-c \d+ \d+", "", line)
        lines.append("%s %s" % (table, line))
    return lines


def to_rules(inet, inet6, errors):
    """Policy-routing rules of both families as canonical lines; None when ip could not list them."""
    if inet is None or inet6 is None:
        return None
    lines = []
    for family, text in (("inet", inet), ("inet6", inet6)):
        try:
            lines += rule_lines(family, json.loads(text) if text.strip() else [])
        except ValueError as exc:
            errors.append("rules: unparsable output (%s)" % exc)
            return None
    return lines


def collect_sysctls(names):
    values = {}
    for name in names:
        data = _read("/proc/sys/" + name.replace(".", "/"))
        values[name] = None if data is None else " ".join(data.decode("utf-8", "replace").split())
    return values


def collect_state_dir(path):
    if not os.path.isdir(path):
        return {"path": path, "exists": False, "entries": []}
    return {"path": path, "exists": True, "entries": sorted(os.listdir(path))}


# faultctl's record statuses that say the fault no longer acts (grayctl.faults.node.faultctl)
ENDED_FAULT_STATUSES = ("reverted", "cancelled", "failed")
FAULT_RECORD = re.compile(r"([a-z0-9][a-z0-9_]{0,31})\.json")  # <id>.json; <id>.expiry.json etc. are its files


def collect_fault_records(path):
    """The fault records in ``path`` that are not ended: {"path", "entries": ["<id>: <status>", ...]}.
    An expiry that reverted a fault after its controller died leaves an ended record: not drift."""
    unfinished = []
    for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
        m = FAULT_RECORD.fullmatch(name)
        if not m:
            continue
        try:
            with open(os.path.join(path, name), encoding="utf-8") as f:
                status = json.load(f).get("status")
        except (OSError, ValueError, AttributeError):
            status = "unreadable"
        if status not in ENDED_FAULT_STATUSES:
            unfinished.append("%s: %s" % (m.group(1), status))
    return {"path": path, "entries": unfinished}


# Limit files per cgroup hierarchy ("" = v2), read where they exist: what a reset re-applies.
LIMIT_FILES = {"": ("cpu.max", "memory.max", "memory.high"),
               "cpu": ("cpu.cfs_quota_us", "cpu.cfs_period_us"), "memory": ("memory.limit_in_bytes",)}


def collect_cgroup_limits():
    """The CPU and memory limits of this process's cgroups ({"cpu/cpu.cfs_quota_us": "50000", ...}).
    On a netns node the module runs in the node's cgroup (its sshd's), so these are the node's limits."""
    mounts = {}
    for line in (_read("/proc/self/mounts") or b"").decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2":
            mounts.setdefault("", fields[1])
        elif fields[2] == "cgroup":
            for opt in fields[3].split(","):
                if opt in LIMIT_FILES:
                    mounts.setdefault(opt, fields[1])
    limits = {}
    for line in (_read("/proc/self/cgroup") or b"").decode("utf-8", "replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in (parts[1].split(",") if parts[1] else [""]):
            if controller not in LIMIT_FILES or controller not in mounts:
                continue
            for name in LIMIT_FILES[controller]:
                data = _read(os.path.join(mounts[controller], parts[2].lstrip("/"), name))
                if data is not None:
                    limits["%s/%s" % (controller or "v2", name)] = data.decode("utf-8", "replace").strip()
    return limits


def collect(params):
    """The fingerprint and the list of tool errors (missing tools are recorded as null)."""
    processes = collect_processes(params["cgroup"], params["process_names"])
    jobs = {
        "links": _start(["ip", "-j", "-d", "link", "show"]),
        "qdiscs": _start(["tc", "-j", "qdisc", "show"]),
        "nftables": _start(["nft", "-j", "list", "ruleset"]),
        "iptables": _start(["iptables-save"]),
        "ip6tables": _start(["ip6tables-save"]),
        "rules_inet": _start(["ip", "-j", "-f", "inet", "rule", "show"]),
        "rules_inet6": _start(["ip", "-j", "-f", "inet6", "rule", "show"]),
    }
    # With iptables-nft as the default, rules made with iptables-legacy live in separate kernel
    # tables that neither nft nor iptables-save show: read them too when the tool exists.
    legacy = _legacy_tools()
    for family, argv in legacy.items():
        jobs[family + "_legacy"] = _start(argv)
    if params["packages"]:
        jobs["packages"] = _start(
            ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"]
            + list(params["packages"])
        )
    errors, outputs = [], {}
    for name, proc in jobs.items():
        out, err = _finish(proc)
        # dpkg-query exits 1 when a package is not installed: still a valid answer.
        if err and not (name == "packages" and out is not None and not isinstance(proc, Exception)):
            errors.append("%s: %s" % (name, err))
            outputs[name] = None
        else:
            outputs[name] = out

    def parsed(name, parser, *args):
        if outputs.get(name) is None:
            return None
        try:
            return parser(outputs[name], *args)
        except ValueError as exc:
            errors.append("%s: unparsable output (%s)" % (name, exc))
            return None

    fingerprint = {
        "schema": SCHEMA,
        "hostname": socket.gethostname(),
        "kernel": os.uname()[2],
        "packages": parsed("packages", to_packages, params["packages"])
        if params["packages"] else {},
        "sysctls": collect_sysctls(params["sysctls"]),
        "links": parsed("links", to_links),
        "qdiscs": parsed("qdiscs", to_qdiscs, params["interfaces"]),
        "nftables": parsed("nftables", to_nftables),
        "iptables": parsed("iptables", to_iptables),
        "ip6tables": parsed("ip6tables", to_iptables),
        "iptables_legacy": parsed("iptables_legacy", to_iptables) if "iptables" in legacy else [],
        "ip6tables_legacy": parsed("ip6tables_legacy", to_iptables) if "ip6tables" in legacy else [],
        "rules": to_rules(outputs.get("rules_inet"), outputs.get("rules_inet6"), errors),
        "processes": processes,
        "state_dir": collect_state_dir(params["state_dir"]),
        "cgroup_limits": collect_cgroup_limits(),
    }
    if params["fault_dir"]:
        fingerprint["fault_dir"] = collect_fault_records(params["fault_dir"])
    return fingerprint, errors


# --------------------------------------------------------------------------- comparison

def canonical(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _entry(field, golden, now, why):
    return {"field": field, "golden": golden, "now": now, "why": why}


def check_declared(fp, forbidden_kinds):
    """Invariants of a clean node that hold whatever the golden record says."""
    found = []
    for process in fp["processes"]:
        found.append(_entry("processes", None, process, "declared: no leftover processes"))
    state = fp["state_dir"]
    if not state["exists"]:
        found.append(_entry("state_dir", state["path"], None, "declared: state directory must exist"))
    for name in state["entries"]:
        found.append(_entry("state_dir", None, name, "declared: state directory must be empty"))
    for name in (fp.get("fault_dir") or {}).get("entries", []):
        found.append(_entry("fault_dir", None, name, "declared: no unfinished fault (every record reverted, "
                                                     "cancelled or failed)"))
    for name, link in sorted((fp["links"] or {}).items()):
        if link.split(" ")[0] in forbidden_kinds:
            found.append(_entry("links." + name, None, link, "declared: no %s links" % link.split(" ")[0]))
    return found


def _compare_list(field, golden, now, out):
    remaining = list(now)
    for item in golden:
        if item in remaining:
            remaining.remove(item)
        else:
            out.append(_entry(field, item, None, "missing since golden"))
    for item in remaining:
        out.append(_entry(field, None, item, "not in golden"))


def _compare_map(field, golden, now, out, lists=False):
    for key in sorted(set(golden) | set(now)):
        before, after = golden.get(key), now.get(key)
        if lists:
            _compare_list("%s.%s" % (field, key), before or [], after or [], out)
        elif before != after:
            out.append(_entry("%s.%s" % (field, key), before, after, "changed since golden"))


def compare(golden, now):
    """The recorded parts of ``now`` that differ from ``golden``."""
    out = []
    for field in ("schema", "hostname", "kernel"):
        if golden.get(field) != now.get(field):
            out.append(_entry(field, golden.get(field), now.get(field), "changed since golden"))
    for field in ("packages", "sysctls", "links"):
        if golden.get(field) is None or now.get(field) is None:
            if golden.get(field) != now.get(field):
                out.append(_entry(field, golden.get(field), now.get(field), "could not be read"))
            continue
        _compare_map(field, golden[field], now[field], out)
    if golden.get("qdiscs") is not None and now.get("qdiscs") is not None:
        _compare_map("qdiscs", golden["qdiscs"], now["qdiscs"], out, lists=True)
    elif golden.get("qdiscs") != now.get("qdiscs"):
        out.append(_entry("qdiscs", golden.get("qdiscs"), now.get("qdiscs"), "could not be read"))
    for field in ("nftables", "iptables", "ip6tables", "iptables_legacy", "ip6tables_legacy"):
        if golden.get(field) is None or now.get(field) is None:
            if golden.get(field) != now.get(field):
                out.append(_entry(field, golden.get(field), now.get(field), "could not be read"))
            continue
        _compare_list(field, golden[field], now[field], out)
    # cgroup limits: compared when the golden record has them (one recorded before they were read has not)
    if "cgroup_limits" in golden:
        _compare_map("cgroup_limits", golden["cgroup_limits"] or {}, now.get("cgroup_limits") or {}, out)
    # ip rules: compared when the golden record has them (one recorded before they were
    # fingerprinted has no such field; 'grayctl lab reset --accept-drift' is not needed for that)
    if "rules" in golden:
        if golden["rules"] is None or now.get("rules") is None:
            if golden["rules"] != now.get("rules"):
                out.append(_entry("rules", golden["rules"], now.get("rules"), "could not be read"))
        else:
            _compare_list("rules", golden["rules"], now["rules"], out)
    return out


def to_report(entries):
    def show(value):
        return "-" if value is None else json.dumps(value) if not isinstance(value, str) else value

    return [
        "%s: golden=%s now=%s (%s)" % (e["field"], show(e["golden"]), show(e["now"]), e["why"])
        for e in entries
    ]


# --------------------------------------------------------------------------- module

# Module level so tests/lint/test_ansible_doc.py can check DOCUMENTATION against it.
ARGUMENT_SPEC = dict(
    packages=dict(type="list", elements="str", default=[]),
    sysctls=dict(type="list", elements="str", default=[]),
    interfaces=dict(type="list", elements="str", default=[]),
    cgroup=dict(type="str", default=""),
    process_names=dict(type="list", elements="str", default=[]),
    state_dir=dict(type="path", required=True),
    fault_dir=dict(type="str", default=""),
    forbidden_link_kinds=dict(type="list", elements="str", default=["ifb"]),
    golden=dict(type="dict"),
    fail_on_drift=dict(type="bool", default=True),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    fingerprint, errors = collect(params)
    violations = check_declared(fingerprint, params["forbidden_link_kinds"])
    drift = list(violations)
    if params["golden"] is not None:
        declared = set((e["field"], canonical(e["now"])) for e in violations)
        drift.extend(
            e for e in compare(params["golden"], fingerprint)
            if (e["field"], canonical(e["now"])) not in declared
        )
    result = dict(
        changed=False,
        fingerprint=fingerprint,
        sha256=hashlib.sha256(canonical(fingerprint).encode("ascii")).hexdigest(),
        violations=violations,
        drift=drift,
        drifted=bool(drift),
        report=to_report(drift),
        errors=errors,
    )
    if drift and params["fail_on_drift"]:
        module.fail_json(
            msg="%d difference(s) from the golden baseline:\n%s"
            % (len(drift), "\n".join(result["report"])),
            **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
