#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Supervise long-running grayctl processes on a node without an init system's help.

Used as grayctl.lab.grayctl_process by the topology_deploy, node_exporter, monitor, workload and
reimage_none roles; the pid-record helpers are module_utils/process.py. One call can handle a list of processes: every task is an SSH
round trip and a module start per host, so a node's replicas (or exporters) start in one call and
their start-ups overlap.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_process
short_description: Start, stop or await detached processes, each recorded by a pid file in its own directory
description:
  - C(started) launches O(argv) in a new session (C(setsid)), cwd O(dir), stdin from /dev/null,
    stdout and stderr appended to C(dir/stdout.log) and C(dir/stderr.log), and records its pid in
    C(dir/pid) and O(fingerprint) in C(dir/fingerprint). The process inherits the caller's network
    namespace and cgroup, so on a netns lab node it runs inside the node.
  - A recorded process counts as running only while C(/proc/<pid>/cmdline) equals O(argv), so a
    reused pid is never mistaken for it (or signalled).
  - C(started) is idempotent. Nothing changes while the recorded process runs with the same
    fingerprint; with a different fingerprint it is stopped and started again.
  - With O(ready_file), C(started) waits until that file exists, fails early with the tail of
    stderr when the process exits first, and fails after O(ready_timeout) seconds.
  - C(stopped) sends SIGTERM to the process group, waits O(stop_timeout) seconds, then sends SIGKILL,
    and verifies that no process is left. It then removes the pid and fingerprint files.
  - C(finished) waits up to O(wait_timeout) seconds for the process to exit on its own. It never
    signals the process.
  - With O(processes), one call handles a list of processes. The other options are defaults for
    every entry. Stops are signalled together, then every start is launched before any is awaited,
    so the start-ups overlap instead of adding up. O(prune) and O(exclusive) fold the usual
    "find what else is there" and "check nothing else runs" tasks into the same call.
options:
  name: {description: Label used in messages. Required without O(processes)., type: str}
  dir:
    description:
      - The process directory (pid file, fingerprint, stdio logs). Must exist unless O(dir_mode) is given.
        Required without O(processes).
    type: path
  processes:
    description:
      - A list of processes, each a mapping of the per-process options. An option an entry leaves out
        takes the module-level value. The result then has one entry per process in RV(results).
    type: list
    elements: dict
    suboptions:
      name: {description: Label used in messages (see O(name))., type: str, required: true}
      dir: {description: The process directory (see O(dir))., type: path, required: true}
      argv: {description: "Command to run (see O(argv)); default: the module-level value.", type: list, elements: str}
      fingerprint: {description: "See O(fingerprint); default: the module-level value.", type: str}
      clear: {description: "See O(clear); default: the module-level value.", type: list, elements: path}
      ready_file: {description: "See O(ready_file); default: the module-level value.", type: path}
      done_file: {description: "See O(done_file); default: the module-level value.", type: path}
      dir_mode: {description: "See O(dir_mode); default: the module-level value.", type: str}
      files: {description: "See O(files); default: the module-level value.", type: dict}
      health_url: {description: "See O(health_url); default: the module-level value.", type: raw}
      ready_timeout: {description: "See O(ready_timeout); default: the module-level value.", type: float}
      settle: {description: "See O(settle); default: the module-level value.", type: float}
      stop_timeout: {description: "See O(stop_timeout); default: the module-level value.", type: float}
      wait_timeout: {description: "See O(wait_timeout); default: the module-level value.", type: float}
  prune:
    description:
      - A directory that holds one process directory per subdirectory. With C(started), every subdirectory
        that is not the O(dir) of a listed process is stale, its recorded process is stopped (before
        anything starts, so its ports are free) and the subdirectory removed. With C(stopped), every
        subdirectory is stale and the directory itself is removed too.
    type: path
  exclusive:
    description:
      - A command-line fragment. After the action, every running process whose command line (argv
        joined by spaces) contains it must be one of the listed processes, running; with C(stopped)
        none may be left. Fails naming the others, so a stray process cannot go unnoticed.
    type: str
  closed_ports:
    description:
      - With C(stopped), addresses C(host:port) that must refuse connections once the processes are stopped
        (each is given 5 seconds); fails naming one that still accepts. Saves a separate wait_for task.
    type: list
    elements: str
    default: []
  lease:
    description:
      - With C(started), seconds after which each listed process ends by itself, its run directory
        removed, unless renewed or stopped first - a run's topology when its controller is gone (see
        module_utils/lease.py - one entry per process in O(lease_dir), one watchdog per node on the
        monotonic clock). 0 - no lease. C(stopped) releases the entries of the listed processes.
    type: float
    default: 0
  lease_dir:
    description: The node's lease directory (inside the state directory, so it ends empty with it). Required with O(lease).
    type: path
  dir_mode:
    description:
      - With C(started), create O(dir) (and missing parents) with this mode first, so a role needs no
        separate directory task (each task is an SSH round trip and a module start per host).
    type: str
  files:
    description:
      - With C(started), files to write into O(dir) before the start, a mapping of file name to content;
        a mapping or list content is written as JSON. A file is rewritten only when its content differs, and the
        contents are part of the fingerprint, so a changed file restarts the process. Replaces a
        separate copy/template task per file.
    type: dict
    default: {}
  state: {description: Desired state., type: str, choices: [started, stopped, finished], default: started}
  argv: {description: Command to run as an argument list (no shell)., type: list, elements: str, default: []}
  fingerprint: {description: Restart when this differs from the one recorded at the last start., type: str, default: ""}
  clear: {description: Files removed before a start (stale ready or summary files)., type: list, elements: path, default: []}
  done_file:
    description:
      - For a finite job. When the recorded process has exited with the same O(fingerprint) and this file
        exists, the job counts as done and C(started) does not run it again.
    type: path
  ready_file: {description: File whose appearance means the process is ready., type: path}
  health_url:
    description:
      - With C(started), after the start (or when it already runs) GET this URL (or each URL of a list)
        until it answers 200, within O(ready_timeout) seconds; fails with the last answer otherwise.
        Saves a separate uri task.
    type: raw
  ready_timeout: {description: Seconds to wait for O(ready_file)., type: float, default: 30}
  settle: {description: "Without O(ready_file), seconds the process must survive after its start.", type: float, default: 0.5}
  stop_timeout: {description: Seconds between SIGTERM and SIGKILL., type: float, default: 10}
  wait_timeout: {description: Seconds C(finished) waits for the process to exit., type: float, default: 60}
author: grayctl
"""

EXAMPLES = r"""
- name: Start a service replica
  grayctl.lab.grayctl_process:
    name: text-service-0
    dir: /var/lib/grayctl/services/text-service-0
    argv: [/usr/bin/python3, -m, grayctl.runtime, --config, config.json, --ready-file, ready]
    fingerprint: "{{ config | to_json | hash('sha1') }}"
    ready_file: /var/lib/grayctl/services/text-service-0/ready

- name: Start a node's replicas together, remove the others, check nothing else runs
  grayctl.lab.grayctl_process:
    processes:
      - name: a-0
        dir: /var/lib/grayctl/services/a-0
        argv: [/usr/bin/python3, -m, grayctl.runtime, --config, /var/lib/grayctl/services/a-0/config.json]
        files: {config.json: "{{ a_config }}"}
        ready_file: /var/lib/grayctl/services/a-0/ready
      - name: b-0
        dir: /var/lib/grayctl/services/b-0
        argv: [/usr/bin/python3, -m, grayctl.runtime, --config, /var/lib/grayctl/services/b-0/config.json]
        files: {config.json: "{{ b_config }}"}
        ready_file: /var/lib/grayctl/services/b-0/ready
    dir_mode: "0755"
    prune: /var/lib/grayctl/services
    exclusive: "grayctl.runtime --config /var/lib/grayctl/services/"

- name: Stop every replica of the node and check its ports are closed
  grayctl.lab.grayctl_process:
    processes: []
    state: stopped
    prune: /var/lib/grayctl/services
    closed_ports: ["10.213.64.2:8080"]
"""

RETURN = r"""
pid: {description: Pid of the running process (null when stopped)., type: int, returned: without processes}
action: {description: "What was done: none, done, started, restarted, stopped, finished.", type: str, returned: without processes}
killed: {description: Whether SIGKILL was needed to stop it., type: bool, returned: without processes}
written: {description: Directories created and files written before the start., type: list, returned: without processes}
health: {description: The last answer of O(health_url) (status code or error)., type: raw, returned: when health_url is set}
results:
  description:
    - With O(processes), per process C({name, dir, pid, action, killed, written, health}).
    - Each C(action) is one of those above or C(forgotten) (the stale record of a dead process dropped).
  type: list
  returned: with processes
pruned: {description: Stale process directories removed (O(prune))., type: list, returned: always}
matching: {description: "Processes matching O(exclusive), as C({pid, cmdline})", type: list, returned: with exclusive}
lease_watchdog_started: {description: "With O(lease), whether this call started the node's lease watchdog (none ran).", type: bool, returned: with lease}
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.grayctl.lab.plugins.module_utils import lease
from ansible_collections.grayctl.lab.plugins.module_utils.files import read_text, write_atomic
from ansible_collections.grayctl.lab.plugins.module_utils.process import cmdline, matching, recorded, signal_group

# Per-process options: module-level values are the defaults of every entry of `processes`.
PER_PROCESS = dict(
    name=dict(type="str"),
    dir=dict(type="path"),
    argv=dict(type="list", elements="str", default=[]),
    fingerprint=dict(type="str", default=""),
    clear=dict(type="list", elements="path", default=[]),
    ready_file=dict(type="path"),
    done_file=dict(type="path"),
    dir_mode=dict(type="str"),
    files=dict(type="dict", default={}),
    health_url=dict(type="raw"),
    ready_timeout=dict(type="float", default=30.0),
    settle=dict(type="float", default=0.5),
    stop_timeout=dict(type="float", default=10.0),
    wait_timeout=dict(type="float", default=60.0),
)


def _probe(url, timeout):
    """One GET of ``url``: (answered 200, status code or error text)."""
    # Imported here: urls pulls in ssl and http.client, a cost every call without health_url would pay.
    from ansible.module_utils.urls import open_url
    try:
        resp = open_url(url, method="GET", timeout=timeout, validate_certs=False, use_proxy=False)
        code = resp.getcode()
        return code == 200, code
    except Exception as exc:  # noqa: BLE001 - connection refused while it starts, HTTP errors
        return False, str(exc)


def _content(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, sort_keys=True) + "\n"
    return "" if value is None else str(value)


def _makedirs(path, mode):
    """Create ``path`` and its missing parents, each with ``mode``; True when something was created."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for d in reversed(missing):
        os.mkdir(d)
        os.chmod(d, mode)  # mkdir's mode is filtered by the umask
    return bool(missing)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _tail(path, n=2000):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - n))
            return fh.read().decode("utf-8", "replace")
    except (OSError, IOError):
        return ""


class Process(object):
    """One supervised process: its options (``spec``), its files, and its entry of the result."""

    def __init__(self, module, spec):
        self.m = module
        self.p = spec
        self.name = spec["name"]
        self.dir = spec["dir"]
        self.argv = spec["argv"]
        self.pidfile = os.path.join(self.dir, "pid")
        self.fpfile = os.path.join(self.dir, "fingerprint")
        self.stdout = os.path.join(self.dir, "stdout.log")
        self.stderr = os.path.join(self.dir, "stderr.log")
        self.files = dict((str(k), _content(v)) for k, v in (spec["files"] or {}).items())
        self.fingerprint = spec["fingerprint"]
        if self.files:
            # The files' contents count as part of the fingerprint: a changed config restarts the process.
            digest = hashlib.sha1(json.dumps(sorted(self.files.items())).encode("utf-8")).hexdigest()
            self.fingerprint = "%s/files:%s" % (self.fingerprint, digest)
        url = spec["health_url"]
        self.health_urls = [] if url in (None, "") else ([str(u) for u in url] if isinstance(url, list) else [str(url)])
        self.popen = None
        self.pid = None
        self.recorded_cmd = None
        self.result = dict(name=self.name, dir=self.dir, pid=None, action="none", killed=False, written=[])

    def check(self, state):
        """Validate the options that depend on the state; a clear message names the process."""
        for name in self.files:
            if not name or "/" in name or name in (".", ".."):
                self.m.fail_json(msg="%s: files: %r is not a plain file name" % (self.name, name))
        if self.p["dir_mode"]:
            try:
                self.mode = int(self.p["dir_mode"], 8)
            except ValueError:
                self.m.fail_json(msg="%s: dir_mode %r is not an octal mode" % (self.name, self.p["dir_mode"]))
        if state == "started" and not self.argv:
            self.m.fail_json(msg="%s: argv is required to start it" % self.name)

    def prepare(self):
        """Create the directory and write the files (state started)."""
        if self.p["dir_mode"] and _makedirs(self.dir, self.mode):
            self.result["written"].append(self.dir)
        for name, text in sorted(self.files.items()):
            path = os.path.join(self.dir, name)
            if read_text(path, strip=False) != text:
                write_atomic(path, text)
                self.result["written"].append(path)

    def read_record(self):
        self.pid = self.recorded()
        self.recorded_cmd = (read_text(self.pidfile + ".cmd") or "").split("\0")
        self.result["pid"] = self.pid

    def recorded(self):
        """The recorded pid if that process still runs the recorded command, else None."""
        return recorded(self.pidfile, self.argv)[0]

    def same_run(self):
        return self.recorded_cmd == self.argv and (read_text(self.fpfile) or "") == self.fingerprint

    def launch(self):
        for path in self.p["clear"] + ([self.p["ready_file"]] if self.p["ready_file"] else []):
            _remove(path)
        out = open(self.stdout, "ab")
        err = open(self.stderr, "ab")
        try:
            self.popen = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          close_fds=True, start_new_session=True)
        except OSError as exc:
            return "%s: cannot start %s: %s" % (self.name, self.argv[0], exc)
        finally:
            out.close()
            err.close()
        write_atomic(self.pidfile + ".cmd", "\0".join(self.argv))
        write_atomic(self.pidfile, "%d\n" % self.popen.pid)
        write_atomic(self.fpfile, self.fingerprint + "\n")
        self.pid = self.result["pid"] = self.popen.pid
        return None

    def forget(self):
        for path in (self.pidfile, self.pidfile + ".cmd", self.fpfile):
            _remove(path)


def _alive(pid, argv):
    return cmdline(pid) == argv


def stop_all(module, victims):
    """SIGTERM each ``(label, pid, argv, stop_timeout)`` at once, SIGKILL after its bound; labels SIGKILLed."""
    for _label, pid, _argv, _bound in victims:
        signal_group(pid, signal.SIGTERM)
    start = time.time()
    killed = {}
    pending = list(victims)
    while pending:
        now = time.time()
        still = []
        for victim in pending:
            label, pid, argv, bound = victim
            if not _alive(pid, argv):
                continue
            if label not in killed and now - start >= bound:
                signal_group(pid, signal.SIGKILL)
                killed[label] = now + 5.0
            elif label in killed and now >= killed[label]:
                module.fail_json(msg="%s (pid %d) survived SIGKILL" % (label, pid))
            still.append(victim)
        pending = still
        if pending:
            time.sleep(0.05)
    return set(killed)


def await_all(module, procs):
    """Wait for every launched process together: its ready file, or surviving its settle time."""
    start = time.time()
    failures = []
    late = []
    pending = list(procs)
    while pending:
        now = time.time()
        still = []
        for proc in pending:
            p = proc.p
            code = proc.popen.poll()
            if code is not None:
                failures.append("%s exited with %d during startup; stderr: %s" % (proc.name, code, _tail(proc.stderr)))
                proc.result["pid"] = None
                continue
            if p["ready_file"] and os.path.exists(p["ready_file"]):
                continue
            if now - start >= (p["ready_timeout"] if p["ready_file"] else p["settle"]):
                if p["ready_file"]:
                    late.append(proc)
                continue
            still.append(proc)
        pending = still
        if pending:
            time.sleep(0.05)
    if late:
        stop_all(module, [(proc.name, proc.pid, proc.argv, proc.p["stop_timeout"]) for proc in late])
    for proc in late:
        proc.result["pid"] = None
        failures.append("%s not ready after %gs (stopped it); stderr: %s"
                        % (proc.name, proc.p["ready_timeout"], _tail(proc.stderr)))
    return failures


def check_health(procs):
    """GET every health URL until it answers 200, all processes together; the failures."""
    pending = [(proc, url) for proc in procs for url in proc.health_urls]
    start = time.time()
    failures = []
    while pending:
        still = []
        for proc, url in pending:
            left = proc.p["ready_timeout"] - (time.time() - start)
            ok, last = _probe(url, min(5.0, max(0.5, left)))
            proc.result["health"] = last
            if ok:
                continue
            if time.time() - start >= proc.p["ready_timeout"]:
                failures.append("%s: %s did not answer 200 within %gs (last: %s)"
                                % (proc.name, url, proc.p["ready_timeout"], last))
                continue
            still.append((proc, url))
        pending = still
        if pending:
            time.sleep(0.1)
    return failures


def prune(module, top, procs, state):
    """Stop the recorded process of each stale subdirectory of ``top`` and remove it; the removed paths."""
    if not os.path.isdir(top):
        return []
    keep = set() if state == "stopped" else set(os.path.normpath(proc.dir) for proc in procs)
    stale = []
    for entry in sorted(os.listdir(top)):
        path = os.path.join(top, entry)
        if os.path.isdir(path) and not os.path.islink(path) and os.path.normpath(path) not in keep:
            stale.append(path)
    removed = list(stale) + ([top] if state == "stopped" else [])
    if module.check_mode:
        return removed
    victims = []
    for path in stale:
        old = Process(module, dict(PER_PROCESS_DEFAULTS, name=os.path.basename(path), dir=path,
                                   stop_timeout=module.params["stop_timeout"]))
        pid = old.recorded()
        if pid is not None:
            victims.append((old.name, pid, (read_text(old.pidfile + ".cmd") or "").split("\0"), old.p["stop_timeout"]))
    stop_all(module, victims)
    for path in removed:
        shutil.rmtree(path)
    return removed


def still_listening(addresses, timeout=5.0):
    """The ``host:port`` addresses that still accept a connection after ``timeout`` seconds."""
    deadline = time.time() + timeout
    pending = list(addresses)
    while pending:
        still = []
        for address in pending:
            host, _sep, port = address.rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
                still.append(address)
            except (OSError, ValueError):
                pass
        pending = still
        if not pending or time.time() >= deadline:
            return pending
        time.sleep(0.1)
    return []


PER_PROCESS_DEFAULTS = dict((k, v.get("default")) for k, v in PER_PROCESS.items())


# One entry of `processes`: the per-process options without their defaults (an option an entry
# leaves out takes the module-level value), name and dir required. One expression, no item
# assignment: ansible-doc warns on module-level subscript targets.
ENTRY_OPTIONS = dict((k, dict(v, default=None, required=k in ("name", "dir"))) for k, v in PER_PROCESS.items())

# Module level so tests/lint/test_ansible_doc.py can check DOCUMENTATION against it.
ARGUMENT_SPEC = dict(
    PER_PROCESS,
    state=dict(type="str", choices=["started", "stopped", "finished"], default="started"),
    processes=dict(type="list", elements="dict", options=ENTRY_OPTIONS),
    prune=dict(type="path"),
    exclusive=dict(type="str"),
    closed_ports=dict(type="list", elements="str", default=[]),
    lease=dict(type="float", default=0.0),
    lease_dir=dict(type="path"),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    state = p["state"]
    if p["lease"] < 0 or (p["lease"] > 0 and not p["lease_dir"]):
        module.fail_json(msg="grayctl_process: lease must be >= 0 seconds, and lease_dir is required with a lease")
    single = p["processes"] is None
    if single:
        if not p["name"] or not p["dir"]:
            module.fail_json(msg="grayctl_process needs name and dir, or a list of processes")
        entries = [dict((k, p[k]) for k in PER_PROCESS)]
    else:
        entries = [dict((k, p[k] if e.get(k) is None else e[k]) for k in PER_PROCESS) for e in p["processes"]]
    procs = [Process(module, e) for e in entries]
    dirs = [os.path.normpath(proc.dir) for proc in procs]
    if len(set(dirs)) != len(dirs):
        module.fail_json(msg="grayctl_process: two processes share a directory: %s" % sorted(dirs))
    for proc in procs:
        proc.check(state)

    result = dict(changed=False, pruned=[])
    failures = []
    if p["prune"] and state != "finished":
        result["pruned"] = prune(module, p["prune"], procs, state) if state == "started" else []

    if state == "started":
        if not module.check_mode:
            for proc in procs:
                proc.prepare()
        for proc in procs:
            proc.read_record()
        todo = []
        for proc in procs:
            if (proc.pid is None and proc.p["done_file"] and os.path.exists(proc.p["done_file"])
                    and proc.same_run()):
                proc.result["action"] = "done"
            elif proc.pid is not None and proc.same_run():
                pass
            else:
                proc.result["action"] = "restarted" if proc.pid is not None else "started"
                todo.append(proc)
        if not module.check_mode:
            restart = [proc for proc in todo if proc.pid is not None]
            killed = stop_all(module, [(pr.name, pr.pid, pr.recorded_cmd, pr.p["stop_timeout"]) for pr in restart])
            for proc in restart:
                proc.result["killed"] = proc.name in killed
                proc.forget()
            launched = []
            for proc in todo:
                err = proc.launch()
                if err:
                    failures.append(err)
                else:
                    launched.append(proc)
            failures += await_all(module, launched)
            if not failures:
                failures += check_health([proc for proc in procs if proc.result["action"] != "done"])
            if p["lease"] > 0 and not failures:
                for proc in procs:
                    if proc.result["action"] != "done":
                        lease.grant(p["lease_dir"], proc.dir, p["lease"])
                result["lease_watchdog_started"] = lease.ensure_watchdog(p["lease_dir"], sys.executable)
    elif state == "stopped":
        for proc in procs:
            proc.read_record()
        victims = [proc for proc in procs if proc.pid is not None]
        for proc in procs:
            if proc.pid is not None:
                proc.result["action"] = "stopped"
            elif os.path.exists(proc.pidfile):
                proc.result["action"] = "forgotten"  # a stale record to drop
        if not module.check_mode:
            killed = stop_all(module, [(pr.name, pr.pid, pr.recorded_cmd, pr.p["stop_timeout"]) for pr in victims])
            for proc in procs:
                proc.result["killed"] = proc.name in killed
                if proc.result["action"] != "none":
                    proc.forget()
        for proc in procs:
            proc.result["pid"] = None
        if p["lease_dir"] and not module.check_mode:
            for proc in procs:
                lease.release(p["lease_dir"], proc.dir)
            lease.stop_watchdog_if_idle(p["lease_dir"])
        if p["prune"]:
            result["pruned"] = prune(module, p["prune"], procs, state)
        if p["closed_ports"] and not module.check_mode:
            open_ports = still_listening(p["closed_ports"])
            if open_ports:
                failures.append("still accepting connections after the stop: %s" % ", ".join(open_ports))
    else:  # finished
        for proc in procs:
            proc.read_record()
        start = time.time()
        pending = [proc for proc in procs if proc.pid is not None]
        while pending:
            now = time.time()
            for proc in pending:
                if _alive(proc.pid, proc.recorded_cmd) and now - start >= proc.p["wait_timeout"]:
                    module.fail_json(msg="%s (pid %d) still running after %gs"
                                     % (proc.name, proc.pid, proc.p["wait_timeout"]), pid=proc.pid)
            pending = [proc for proc in pending if _alive(proc.pid, proc.recorded_cmd)]
            if pending:
                time.sleep(0.1)
        for proc in procs:
            proc.result.update(action="finished", pid=None)

    if p["exclusive"] and not module.check_mode:
        found = [dict(pid=pid, cmdline=cmd) for pid, cmd in matching(p["exclusive"])]
        result["matching"] = found
        allowed = set(proc.result["pid"] for proc in procs if state == "started" and proc.result["pid"])
        strays = [f for f in found if f["pid"] not in allowed]
        if strays:
            failures.append("processes matching %r that are not %s: %s"
                            % (p["exclusive"], "listed" if state == "started" else "allowed after the stop",
                               "; ".join("%d %s" % (f["pid"], f["cmdline"]) for f in strays)))

    result["changed"] = bool(result["pruned"]) or any(
        proc.result["written"] or proc.result["action"] in ("started", "restarted", "stopped", "forgotten")
        for proc in procs)
    if single:
        entry = procs[0].result
        result.update((k, entry[k]) for k in ("pid", "action", "killed", "written"))
        if "health" in entry:
            result["health"] = entry["health"]
        if result["action"] == "forgotten":
            result["action"] = "none"
    else:
        result["results"] = [proc.result for proc in procs]
    if failures:
        module.fail_json(msg="; ".join(failures), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
