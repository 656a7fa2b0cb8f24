#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Node side of grayctl_collect: wait for (or stop) a recorded process, then find and return files.

Runs with the action plugin of the same name (plugins/action/grayctl_collect.py), which
writes the returned files on the controller: one module call per node instead of find + fetch loops.
Used by the workload role and playbooks/collect.yml as grayctl.lab.grayctl_collect.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_collect
short_description: Wait for a process to finish, then return the files it left (compressed, in the result)
description:
  - With O(wait_pid_file) (a C(grayctl_process) pid file; its C(.cmd) record names the command), waits up to
    O(wait_timeout) seconds until that process has exited. With O(stop), sends it SIGTERM first.
  - With O(absent_cmdline), then fails when any process's command line (arguments joined by spaces) still
    contains that text, like C(pgrep -f).
  - Finds the regular files under O(dir) whose names match O(patterns), in O(dir) and up to O(depth)
    directory levels below, and returns each one's path relative to O(dir), size and sha1, plus, with
    O(send), its content (zlib, base64) when it is at most O(inline_max) bytes; the action plugin fetches
    larger ones over the connection.
  - Returns the files named in O(read) parsed as JSON in C(contents); fails when a file of O(required) or
    O(read) is missing.
  - The action plugin of the same name runs this module on the node and, with O(dest), writes the files on
    the controller at C(dest/<path relative to dir>). A file already there with the same content is left
    alone, so a re-run changes nothing.
options:
  dest:
    description:
      - Absolute controller directory to write the found files into (taken by the action plugin, not sent
        to the node). Without it only the file list and the O(read) files' contents are returned.
    type: path
  dir: {description: Directory to search; a missing one holds no files., type: path, required: true}
  patterns: {description: File name patterns (fnmatch)., type: list, elements: str, default: []}
  depth: {description: Directory levels below O(dir) to search too., type: int, default: 0}
  required: {description: Relative paths that must be found., type: list, elements: str, default: []}
  read: {description: Relative paths of JSON files returned parsed in C(contents)., type: list, elements: str, default: []}
  send:
    description:
      - Return the matched files' contents (else only their list and O(read)). The action plugin sets it
        from O(dest) (true when O(dest) is given) and ignores a value given in the task.
    type: bool
    default: true
  inline_max: {description: "Largest file returned inline, in bytes; larger ones are fetched over the connection.", type: int, default: 67108864}
  wait_pid_file: {description: Pid file of the process to wait for (C(dir/pid) of grayctl_process)., type: path}
  wait_timeout: {description: Seconds to wait for that process to exit., type: float, default: 60}
  wait_required: {description: Fail when it is still running after O(wait_timeout) (else a warning)., type: bool, default: true}
  stop: {description: Send the recorded process (group) SIGTERM before waiting., type: bool, default: false}
  absent_cmdline: {description: Fail when a process's command line contains this text after the wait., type: str}
  renew_lease:
    description:
      - Seconds from now to move the deadline of every lease in O(lease_dir) to (see grayctl_process's
        O(lease)). The run's collect renews them, so the topology outlives a slow collect. 0 - none.
    type: float
    default: 0
  lease_dir: {description: The node's lease directory (grayctl_process O(lease_dir))., type: path}
author: grayctl
"""

EXAMPLES = r"""
- name: Stop the load generator, wait for it, and fetch its records to the controller
  grayctl.lab.grayctl_collect:
    dir: /var/lib/grayctl/workload
    patterns: [requests.parquet, workload-summary.json]
    wait_pid_file: /var/lib/grayctl/workload/pid
    stop: true
    wait_timeout: 20
    wait_required: false
    dest: "/srv/runs/{{ run_id }}/{{ inventory_hostname }}/workload"

- name: Fetch each replica's spans (one directory level down)
  grayctl.lab.grayctl_collect:
    dir: /var/lib/grayctl/services
    patterns: [spans.jsonl, runtime.jsonl]
    depth: 1
    dest: "/srv/runs/{{ run_id }}/{{ inventory_hostname }}"

- name: Read the generator's summary without copying anything
  grayctl.lab.grayctl_collect:
    dir: /var/lib/grayctl/workload
    read: [workload-summary.json]
  register: __summary
"""

RETURN = r"""
files:
  description:
    - "Found files: C(path) (relative to O(dir)), C(abs), C(size), C(sha1)."
    - The module adds C(data) (zlib, base64) to a file sent inline; the action plugin removes it once written.
  type: list
  elements: dict
  returned: always
contents: {description: The O(read) files parsed as JSON., type: dict, returned: always}
waited_s: {description: Seconds spent waiting for the process., type: float, returned: always}
stopped: {description: Whether SIGTERM was sent., type: bool, returned: always}
leases_renewed: {description: How many leases O(renew_lease) moved., type: int, returned: always}
written: {description: Controller paths the action plugin wrote (files already the same are not rewritten)., type: list, elements: str, returned: always}
"""

import base64
import fnmatch
import hashlib
import json
import os
import signal
import time
import zlib

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.grayctl.lab.plugins.module_utils import lease
from ansible_collections.grayctl.lab.plugins.module_utils.process import cmdline, matching, recorded, signal_group


def _find(root, patterns, depth):
    found = []
    level = [(root, "")]
    for d in range(depth + 1):
        nxt = []
        for path, rel in level:
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    nxt.append((e.path, os.path.join(rel, e.name)))
                elif e.is_file(follow_symlinks=False) and any(fnmatch.fnmatch(e.name, p) for p in patterns):
                    found.append((e.path, os.path.join(rel, e.name)))
        level = nxt if d < depth else []
    return found


# Module level so tests/lint/test_ansible_doc.py can check DOCUMENTATION against it.
ARGUMENT_SPEC = dict(
    dir=dict(type="path", required=True),
    patterns=dict(type="list", elements="str", default=[]),
    depth=dict(type="int", default=0),
    required=dict(type="list", elements="str", default=[]),
    read=dict(type="list", elements="str", default=[]),
    send=dict(type="bool", default=True),
    inline_max=dict(type="int", default=64 * 1024 * 1024),
    wait_pid_file=dict(type="path"),
    wait_timeout=dict(type="float", default=60.0),
    wait_required=dict(type="bool", default=True),
    stop=dict(type="bool", default=False),
    absent_cmdline=dict(type="str"),
    renew_lease=dict(type="float", default=0.0),
    lease_dir=dict(type="path"),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, files=[], contents={}, waited_s=0.0, stopped=False, leases_renewed=0)
    if p["renew_lease"] > 0 and p["lease_dir"] and not module.check_mode:
        result["leases_renewed"] = lease.renew(p["lease_dir"], p["renew_lease"])

    if p["wait_pid_file"]:
        t0 = time.time()
        pid, argv = recorded(p["wait_pid_file"])
        if pid is not None and p["stop"] and not module.check_mode and signal_group(pid, signal.SIGTERM):
            result.update(changed=True, stopped=True)  # not when it exited meanwhile
        while pid is not None and cmdline(pid) == argv:
            if time.time() - t0 >= p["wait_timeout"]:
                msg = "pid %d (%s) still running after %gs" % (pid, p["wait_pid_file"], p["wait_timeout"])
                if p["wait_required"]:
                    module.fail_json(msg=msg, **result)
                module.warn(msg)
                break
            time.sleep(0.05)
        result["waited_s"] = round(time.time() - t0, 3)

    if p["absent_cmdline"]:
        left = ["%d %s" % found for found in matching(p["absent_cmdline"])]
        if left:
            module.fail_json(msg="still running: %s" % "; ".join(left), left=left, **result)

    found = _find(p["dir"], p["patterns"] + p["read"], p["depth"])
    rels = set(rel for _, rel in found)
    missing = [r for r in p["required"] + p["read"] if r not in rels]
    if missing:
        module.fail_json(msg="missing in %s: %s" % (p["dir"], ", ".join(sorted(set(missing)))), **result)
    for path, rel in found:
        with open(path, "rb") as fh:
            raw = fh.read()
        entry = dict(path=rel, abs=path, size=len(raw), sha1=hashlib.sha1(raw).hexdigest())
        if rel in p["read"]:
            try:
                result["contents"][rel] = json.loads(raw.decode("utf-8"))
            except ValueError as exc:
                module.fail_json(msg="%s is not JSON: %s" % (path, exc), **result)
        if p["send"] and len(raw) <= p["inline_max"]:
            entry["data"] = base64.b64encode(zlib.compress(raw, 1)).decode("ascii")
        result["files"].append(entry)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
