# -*- coding: utf-8 -*-
"""A network namespace's own kernel settings: its net sysctls and its policy-routing rules.

What ``ip netns add`` gives a namespace and nothing else puts back: the netns lab's reset empties
processes, qdiscs, firewall rules and links, but a namespace's ``/proc/sys/net`` values and its
``ip rule`` list live as long as the namespace. So the netns lab records both when it makes a
node (``snapshot``), and its reset writes back what differs (``restore``); the fingerprint reads
the rules the same way (``rule_lines``), so a leftover rule is drift.

Everything under ``/proc/sys/net`` that a non-initial namespace sees is that namespace's own (the
kernel registers the global tables for the initial namespace only), so restoring it never touches
the host.

Map:
  rule_lines(family, rules_json) -> [str]          one canonical line per rule ("inet pref=0 ...")
  snapshot(python, netns_paths) -> {path: state}   sysctls and rules of each namespace, in parallel
  restore(python, netns_path, golden, now) -> (done, left)   write back what differs from ``now``
                                                   (a snapshot), then read again; nothing to do: no process
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.grayctl.lab.plugins.module_utils.commands import run, run_all, tool

FAMILIES = ("inet", "inet6")
# Run inside the namespace (nsenter --net; -I -S: stdlib only, no site start-up, a third of the cost): every readable, writable file under /proc/sys/net,
# keyed by its path below /proc/sys (device names may hold dots, so no dotted keys), and the rules.
_READ = r"""
import json, os, subprocess, sys
out = {"sysctls": {}, "rules": {}}
for d, _dirs, files in os.walk("/proc/sys/net"):
    for f in files:
        p = os.path.join(d, f)
        try:
            if not os.stat(p).st_mode & 0o200:
                continue
            with open(p) as fh:
                out["sysctls"][p[len("/proc/sys/"):]] = fh.read().rstrip("\n")
        except OSError:
            continue  # write-only (route/flush) or unset (stable_secret): nothing to restore
for fam in ("inet", "inet6"):
    proc = subprocess.run([sys.argv[1], "-j", "-f", fam, "rule", "show"], capture_output=True, text=True)
    out["rules"][fam] = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
print(json.dumps(out))
"""
_WRITE = r"""
import json, sys
failed = {}
for key, value in json.load(sys.stdin).items():
    try:
        with open("/proc/sys/" + key, "w") as fh:
            fh.write(value)
    except OSError as exc:
        failed[key] = str(exc)
print(json.dumps(failed))
"""
# ip rule selectors and actions, in the order ip(8) prints them, with the JSON keys they come from
_RULE_KEYS = (("priority", "pref"), ("not", None), ("src", "from"), ("dst", "to"), ("tos", "tos"),
              ("fwmark", "fwmark"), ("iif", "iif"), ("oif", "oif"), ("l3mdev", None), ("uidrange", "uidrange"),
              ("ipproto", "ipproto"), ("sport", "sport"), ("dport", "dport"), ("table", "lookup"),
              ("suppress_prefixlength", "suppress_prefixlength"), ("goto", "goto"), ("nat", "nat"),
              ("realms", "realms"), ("action", None))


def rule_lines(family, rules):
    """One canonical line per rule of ``ip -j rule show``: 'inet pref=0 from=all table=local'."""
    lines = []
    for r in rules:
        parts = []
        for key in sorted(r):
            value = r[key]
            if key in ("src", "dst") and r.get(key + "len") is not None:
                value = "%s/%s" % (value, r[key + "len"])
            elif key in ("srclen", "dstlen"):
                continue
            parts.append("%s=%s" % (key, value))
        lines.append("%s %s" % (family, " ".join(parts)))
    return sorted(lines)


def _rule_args(r):
    """``ip rule add|del`` arguments that name rule ``r`` (from ``ip -j rule show``)."""
    args = []
    for key, word in _RULE_KEYS:
        if key not in r:
            continue
        value = r[key]
        if key == "not":
            args.append("not")
            continue
        if key == "l3mdev":
            args.append("l3mdev")
            continue
        if key == "action":
            if value not in ("to_tbl", "unicast"):
                args.insert(0, value)  # blackhole, unreachable, prohibit: the rule's type
            continue
        if key in ("src", "dst"):
            if value == "all":
                continue
            if r.get(key + "len") is not None:
                value = "%s/%s" % (value, r[key + "len"])
        if key == "fwmark" and r.get("fwmask"):
            value = "%s/%s" % (value, r["fwmask"])
        args += [word, str(value)]
    return args


def _nsenter(netns_path):
    return [tool("nsenter") or "nsenter", "--net=" + netns_path, "--"]


def snapshot(python, netns_paths):
    """{netns path: {"sysctls": {key: value}, "rules": {family: [rule]}}} of each namespace (None: unread)."""
    ip = tool("ip") or "ip"
    results = run_all([(_nsenter(p) + [python, "-I", "-S", "-c", _READ, ip], None) for p in netns_paths], check=False)
    out = {}
    for path, (rc, stdout, _err) in zip(netns_paths, results):
        try:
            out[path] = json.loads(stdout) if rc == 0 else None
        except ValueError:
            out[path] = None
    return out


def _differences(golden, now):
    sysctls = dict((k, v) for k, v in golden.get("sysctls", {}).items()
                   if k in now["sysctls"] and now["sysctls"][k] != v)  # a key that came or went: the links' business
    rules = {}
    for fam in FAMILIES:
        want = dict((json.dumps(r, sort_keys=True), r) for r in golden.get("rules", {}).get(fam, []))
        have = dict((json.dumps(r, sort_keys=True), r) for r in now["rules"].get(fam, []))
        extra = [have[k] for k in have if k not in want]
        missing = [want[k] for k in want if k not in have]
        if extra or missing:
            rules[fam] = (extra, missing)
    return sysctls, rules


def restore(python, netns_path, golden, now, check=False):
    """Write back the sysctls and rules that differ from ``golden``; (what was restored, what is still off).
    ``now``: the namespace as a ``snapshot`` of every node read it (one parallel read for the lab; a
    reset that finds nothing to restore starts no further process)."""
    done = []
    if now is None:
        return done, ["could not read the namespace's sysctls and rules"]
    ip = tool("ip") or "ip"
    for _round in range(2):  # a write to conf/all or conf/default may move the per-device values
        sysctls, rules = _differences(golden, now)
        if not sysctls and not rules:
            break
        if sysctls:
            done.append("sysctls " + ", ".join(sorted(k.replace("/", ".") for k in sysctls)))
            if not check:
                run(_nsenter(netns_path) + [python, "-I", "-S", "-c", _WRITE], json.dumps(sysctls), check=False)
        for fam, (extra, missing) in sorted(rules.items()):
            done.append("ip rules (%s): %d removed, %d restored" % (fam, len(extra), len(missing)))
            if not check:
                for r in extra:
                    run([ip, "-n", netns_path.rsplit("/", 1)[1], "-f", fam, "rule", "del"] + _rule_args(r), check=False)
                for r in missing:
                    run([ip, "-n", netns_path.rsplit("/", 1)[1], "-f", fam, "rule", "add"] + _rule_args(r), check=False)
        if check:
            return done, []
        now = snapshot(python, [netns_path])[netns_path] or {"sysctls": {}, "rules": {}}
    sysctls, rules = _differences(golden, now)
    left = ["sysctl %s=%s (recorded %s)" % (k, now["sysctls"][k], golden["sysctls"][k]) for k in sorted(sysctls)]
    left += ["ip rules (%s) differ from the recorded ones" % fam for fam in sorted(rules)]
    return done, left
