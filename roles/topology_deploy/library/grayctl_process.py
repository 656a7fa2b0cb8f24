#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Supervise one long-running grayctl process on a node without an init system's help.

Shared by the topology_deploy and workload roles (roles/workload/library links here).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grayctl_process
short_description: Start, stop or await one detached process recorded by a pid file in its own directory
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
options:
  name: {description: Label used in messages., type: str, required: true}
  dir:
    description:
      - The process directory (pid file, fingerprint, stdio logs). Must exist unless O(dir_mode) is given.
    type: path
    required: true
  dir_mode:
    description:
      - With C(started), create O(dir) (and missing parents) with this mode first, so a role needs no
        separate directory task (each task is an SSH round trip and a module start per host).
    type: str
  files:
    description:
      - With C(started), files to write into O(dir) before the start, C({name: content}); a mapping or
        list content is written as JSON. A file is rewritten only when its content differs, and the
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
      - With C(started), after the start (or when it already runs) GET this URL until it answers 200,
        within O(ready_timeout) seconds; fails with the last answer otherwise. Saves a separate uri task.
    type: str
  ready_timeout: {description: Seconds to wait for O(ready_file)., type: float, default: 30}
  settle: {description: Without O(ready_file), seconds the process must survive after its start., type: float, default: 0.5}
  stop_timeout: {description: Seconds between SIGTERM and SIGKILL., type: float, default: 10}
  wait_timeout: {description: Seconds C(finished) waits for the process to exit., type: float, default: 60}
author: grayctl
"""

EXAMPLES = r"""
- name: Start a service replica
  grayctl_process:
    name: text-service-0
    dir: /var/lib/grayctl/services/text-service-0
    argv: [/usr/bin/python3, -m, grayctl.runtime, --config, config.json, --ready-file, ready]
    fingerprint: "{{ config | to_json | hash('sha1') }}"
    ready_file: /var/lib/grayctl/services/text-service-0/ready
"""

RETURN = r"""
pid: {description: Pid of the running process (null when stopped)., type: int, returned: always}
action: {description: "What was done: none, done, started, restarted, stopped, finished.", type: str, returned: always}
killed: {description: Whether SIGKILL was needed to stop it., type: bool, returned: always}
written: {description: Directories created and files written before the start., type: list, returned: always}
health: {description: The last answer of O(health_url) (status code or error)., type: raw, returned: when health_url is set}
"""

import hashlib
import json
import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            raw = fh.read()
        with open("/proc/%d/stat" % pid) as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IOError, IndexError):
        return None
    if state in ("Z", "X"):
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (OSError, IOError):
        return None


def _healthy(module, url, timeout):
    """GET ``url`` until it answers 200 or ``timeout`` seconds pass; (ok, last status or error)."""
    deadline = time.time() + timeout
    last = "no answer"
    while True:
        try:
            resp = open_url(url, method="GET", timeout=min(5.0, max(0.5, deadline - time.time())),
                            validate_certs=False, use_proxy=False)
            last = resp.getcode()
            if last == 200:
                return True, last
        except Exception as exc:  # noqa: BLE001 - connection refused while it starts, HTTP errors
            last = str(exc)
        if time.time() >= deadline:
            return False, last
        time.sleep(0.1)


def _read_raw(path):
    try:
        with open(path) as fh:
            return fh.read()
    except (OSError, IOError):
        return None


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.rename(tmp, path)


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
    def __init__(self, module):
        p = module.params
        self.m = module
        self.dir = p["dir"]
        self.argv = p["argv"]
        self.pidfile = os.path.join(self.dir, "pid")
        self.fpfile = os.path.join(self.dir, "fingerprint")
        self.stdout = os.path.join(self.dir, "stdout.log")
        self.stderr = os.path.join(self.dir, "stderr.log")

    def recorded(self):
        """The recorded pid if that process still runs the recorded command, else None."""
        text = _read(self.pidfile)
        if not text or not text.isdigit():
            return None
        pid = int(text)
        cmd = _cmdline(pid)
        if cmd is None:
            return None
        recorded_cmd = _read(self.pidfile + ".cmd")
        want = recorded_cmd.split("\0") if recorded_cmd else self.argv
        return pid if cmd == want else None

    def alive(self, pid, argv):
        return _cmdline(pid) == argv

    def start(self):
        p = self.m.params
        for path in p["clear"] + ([p["ready_file"]] if p["ready_file"] else []):
            _remove(path)
        out = open(self.stdout, "ab")
        err = open(self.stderr, "ab")
        try:
            proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    close_fds=True, start_new_session=True)
        except OSError as exc:
            self.m.fail_json(msg="%s: cannot start %s: %s" % (p["name"], self.argv[0], exc))
        finally:
            out.close()
            err.close()
        _write(self.pidfile + ".cmd", "\0".join(self.argv))
        _write(self.pidfile, "%d\n" % proc.pid)
        _write(self.fpfile, p["fingerprint"] + "\n")
        deadline = time.time() + (p["ready_timeout"] if p["ready_file"] else p["settle"])
        while True:
            code = proc.poll()
            if code is not None:
                self.m.fail_json(msg="%s exited with %d during startup; stderr: %s"
                                 % (p["name"], code, _tail(self.stderr)), pid=proc.pid)
            if p["ready_file"] and os.path.exists(p["ready_file"]):
                return proc.pid
            if time.time() >= deadline:
                if not p["ready_file"]:
                    return proc.pid
                self.stop(proc.pid, self.argv)
                self.m.fail_json(msg="%s not ready after %gs (stopped it); stderr: %s"
                                 % (p["name"], p["ready_timeout"], _tail(self.stderr)))
            time.sleep(0.05)

    def _signal(self, pid, sig):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except OSError:
            pass

    def stop(self, pid, argv):
        """SIGTERM, then SIGKILL after stop_timeout; True when SIGKILL was needed."""
        killed = False
        self._signal(pid, signal.SIGTERM)
        deadline = time.time() + self.m.params["stop_timeout"]
        while self.alive(pid, argv) and time.time() < deadline:
            time.sleep(0.05)
        if self.alive(pid, argv):
            killed = True
            self._signal(pid, signal.SIGKILL)
            deadline = time.time() + 5.0
            while self.alive(pid, argv) and time.time() < deadline:
                time.sleep(0.05)
            if self.alive(pid, argv):
                self.m.fail_json(msg="%s (pid %d) survived SIGKILL" % (self.m.params["name"], pid))
        return killed

    def forget(self):
        for path in (self.pidfile, self.pidfile + ".cmd", self.fpfile):
            _remove(path)


def _check_health(module, result):
    p = module.params
    if not p["health_url"] or module.check_mode:
        return
    ok, last = _healthy(module, p["health_url"], p["ready_timeout"])
    result["health"] = last
    if not ok:
        module.fail_json(msg="%s: %s did not answer 200 within %gs (last: %s)"
                         % (p["name"], p["health_url"], p["ready_timeout"], last), **result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            dir=dict(type="path", required=True),
            state=dict(type="str", choices=["started", "stopped", "finished"], default="started"),
            argv=dict(type="list", elements="str", default=[]),
            fingerprint=dict(type="str", default=""),
            clear=dict(type="list", elements="path", default=[]),
            ready_file=dict(type="path"),
            done_file=dict(type="path"),
            dir_mode=dict(type="str"),
            files=dict(type="dict", default={}),
            health_url=dict(type="str"),
            ready_timeout=dict(type="float", default=30.0),
            settle=dict(type="float", default=0.5),
            stop_timeout=dict(type="float", default=10.0),
            wait_timeout=dict(type="float", default=60.0),
        ),
        required_if=[("state", "started", ("argv",))],
        supports_check_mode=True,
    )
    p = module.params
    files = dict((str(k), _content(v)) for k, v in (p["files"] or {}).items())
    for name in files:
        if not name or "/" in name or name in (".", ".."):
            module.fail_json(msg="%s: files: %r is not a plain file name" % (p["name"], name))
    if files:
        # The files' contents count as part of the fingerprint: a changed config restarts the process.
        digest = hashlib.sha1(json.dumps(sorted(files.items())).encode("utf-8")).hexdigest()
        p["fingerprint"] = "%s/files:%s" % (p["fingerprint"], digest)
    wrote = []
    if p["state"] == "started" and not module.check_mode:
        if p["dir_mode"]:
            try:
                mode = int(p["dir_mode"], 8)
            except ValueError:
                module.fail_json(msg="%s: dir_mode %r is not an octal mode" % (p["name"], p["dir_mode"]))
            if _makedirs(p["dir"], mode):
                wrote.append(p["dir"])
        for name, text in sorted(files.items()):
            path = os.path.join(p["dir"], name)
            if _read_raw(path) != text:
                _write(path, text)
                wrote.append(path)
    proc = Process(module)
    pid = proc.recorded()
    recorded_cmd = (_read(proc.pidfile + ".cmd") or "").split("\0")
    result = dict(changed=bool(wrote), pid=pid, action="none", killed=False, written=wrote)

    if p["state"] == "stopped":
        if pid is None:
            if os.path.exists(proc.pidfile):
                result["changed"] = True  # a stale record to drop
                if not module.check_mode:
                    proc.forget()
            result["pid"] = None
            module.exit_json(**result)
        result.update(changed=True, action="stopped", pid=None)
        if not module.check_mode:
            result["killed"] = proc.stop(pid, recorded_cmd)
            proc.forget()
        module.exit_json(**result)

    if p["state"] == "finished":
        deadline = time.time() + p["wait_timeout"]
        while pid is not None and proc.alive(pid, recorded_cmd):
            if time.time() >= deadline:
                module.fail_json(msg="%s (pid %d) still running after %gs" % (p["name"], pid, p["wait_timeout"]),
                                 pid=pid)
            time.sleep(0.1)
        result.update(action="finished", pid=None)
        module.exit_json(**result)

    # started
    if (pid is None and p["done_file"] and os.path.exists(p["done_file"])
            and recorded_cmd == p["argv"] and (_read(proc.fpfile) or "") == p["fingerprint"]):
        result["action"] = "done"
        module.exit_json(**result)
    if pid is not None and recorded_cmd == p["argv"] and (_read(proc.fpfile) or "") == p["fingerprint"]:
        _check_health(module, result)
        module.exit_json(**result)
    result["changed"] = True
    result["action"] = "restarted" if pid is not None else "started"
    if module.check_mode:
        module.exit_json(**result)
    if pid is not None:
        result["killed"] = proc.stop(pid, recorded_cmd)
        proc.forget()
    result["pid"] = proc.start()
    _check_health(module, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
