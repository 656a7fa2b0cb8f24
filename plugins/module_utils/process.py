# -*- coding: utf-8 -*-
"""Processes on this host, as the grayctl modules see them: argv, liveness, pid records, signals.

A pid record is ``<file>`` holding the pid and ``<file>.cmd`` holding the argv NUL-separated
(grayctl_process writes both). A recorded pid counts only while that pid still runs the recorded
command, so a pid reused by another process is never taken for ours.
Stdlib only: modules that use this run on lab nodes with the node's python3.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.grayctl.lab.plugins.module_utils.files import read_text


def cmdline(pid):
    """The process's argv, or None when it is gone or a zombie."""
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


def pid_alive(pid):
    """Whether ``pid`` runs (a zombie does not; one we may not signal does)."""
    try:
        os.kill(pid, 0)
    except OSError as err:
        if err.errno != errno.EPERM:
            return False
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def read_pid(path):
    """The positive pid written in ``path``, else None (missing, empty or not a number)."""
    text = read_text(path)
    # isdigit: '-1' or '0' must never reach os.kill (they address process groups)
    return int(text) if text and text.isdigit() and int(text) > 0 else None


def recorded(pid_file, argv=None):
    """(pid, argv) of the recorded process while it still runs the recorded command, else (None, None).

    The command is ``<pid_file>.cmd``; without one, ``argv`` is what it must run (None: any command).
    """
    pid = read_pid(pid_file)
    if pid is None:
        return None, None
    cmd = read_text(pid_file + ".cmd")
    want = cmd.split("\0") if cmd else argv
    have = cmdline(pid)
    if have is None or (want is not None and have != want):
        return None, None
    return pid, have


def signal_group(pid, sig):
    """Signal ``pid``'s process group when it leads one (a service and its children), else the pid.

    True if sent; False when the process is gone already.
    """
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        return False
    return True


def matching(fragment):
    """[(pid, command line)] of the processes whose command line contains ``fragment``, by pid.

    This module's process and its parent (the Ansible wrapper, whose arguments may hold the
    fragment) are left out.
    """
    own = (os.getpid(), os.getppid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in own:
            continue
        argv = cmdline(int(entry))
        if argv and fragment in " ".join(argv):
            found.append((int(entry), " ".join(argv)))
    return sorted(found)
