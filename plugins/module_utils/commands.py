# -*- coding: utf-8 -*-
"""The host's tools, found and run as argv lists (never a shell), for the grayctl lab modules.

Tools are looked up in the sbin and bin directories first: Ansible may run a module with a PATH
that lacks /usr/sbin (ip, tc, sshd live there).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

TOOL_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")


class CommandFailed(Exception):
    """A command exited non-zero; the message names it and ends with its error output."""


def tool(name):
    """The path of the executable ``name``, or None when this host has none."""
    for d in TOOL_DIRS:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def run(argv, stdin=None, check=True):
    """Run ``argv`` (never a shell); (rc, stdout, stderr). CommandFailed on a non-zero exit if ``check``."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise CommandFailed("%s failed (exit %d): %s" % (" ".join(argv[:6]), proc.returncode,
                                                         (proc.stderr or proc.stdout).strip()[-800:]))
    return proc.returncode, proc.stdout, proc.stderr


def run_all(jobs, check=True):
    """Run independent commands in parallel: jobs = [(argv, stdin)], results in order."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
        futures = [pool.submit(run, argv, stdin, check) for argv, stdin in jobs]
        return [f.result() for f in futures]
