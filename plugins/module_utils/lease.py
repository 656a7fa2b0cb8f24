# -*- coding: utf-8 -*-
"""Leases: what a run starts on a node ends by itself when the run's controller is gone.

A fault has its on-host expiry; the deployed topology (replicas, exporters, Prometheus, the load
generator) gets a lease. grayctl_process, given ``lease`` seconds, writes one entry per process
into the node's lease directory (``<state dir>/.lease``): the process's run directory and a
deadline on this boot's monotonic clock (a stepped wall clock moves neither). One watchdog per
node (started detached when none runs; an flock on ``watchdog.lock`` keeps it single) waits for
the deadlines: an expired entry's process group gets SIGTERM, then SIGKILL, its run directory is
removed, then the entry. With no entry left the watchdog exits, and when the last ones ran out
(the run is gone: none was released) it empties the state directory first (the run's other files,
e.g. Prometheus' config beside its run directory), so it ends empty, as the golden baseline declares. A stop releases its
entries; the collect step renews every entry (``renew``), so a slow collect is not cut short.
Stdlib only: modules that use this run on lab nodes with the node's python3.

Map:
  grant(lease_dir, run_dir, seconds)    write or move the entry of one process's run directory
  release(lease_dir, run_dir)           drop it (the process was stopped)
  renew(lease_dir, seconds)             every entry's deadline to now + seconds
  ensure_watchdog(lease_dir, python)    start the watchdog unless one holds the lock
  stop_watchdog_if_idle(lease_dir)      no entry left: the watchdog goes now, with the directory
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time

from ansible_collections.grayctl.lab.plugins.module_utils.files import read_text, write_atomic

LOCK = "watchdog.lock"
PID = "watchdog.pid"

# The watchdog, run as ``python -c WATCHDOG <lease_dir>``: stdlib only and self-contained, since the
# module's own files do not exist on the node outside the module's run. It checks a recorded pid
# the way process.recorded does (the pid still runs the recorded argv), so a reused pid is spared.
WATCHDOG = r"""
import fcntl, json, os, shutil, signal, sys, time
d = sys.argv[1]
lock = open(os.path.join(d, "watchdog.lock"), "a")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(0)  # one watchdog per node
with open(os.path.join(d, "watchdog.pid.tmp"), "w") as fh:
    fh.write("%d\n" % os.getpid())
os.replace(os.path.join(d, "watchdog.pid.tmp"), os.path.join(d, "watchdog.pid"))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
top = os.path.dirname(os.path.abspath(d))

def argv_of(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            raw = fh.read()
        with open("/proc/%d/stat" % pid) as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return None
    except (OSError, IndexError):
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]

def recorded(run_dir):
    try:
        pid = int(open(os.path.join(run_dir, "pid")).read().strip())
        want = open(os.path.join(run_dir, "pid.cmd")).read().split("\0")
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and argv_of(pid) == want else None

def end(run_dir):
    pid = recorded(run_dir)
    if pid is not None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
            except OSError:
                break
            t = time.monotonic()
            while time.monotonic() - t < wait and argv_of(pid) is not None:
                time.sleep(0.05)
            if argv_of(pid) is None:
                break
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = os.path.dirname(os.path.abspath(run_dir))
    while parent.startswith(top + os.sep):  # empty parents below the state directory go too
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)

boot = open("/proc/sys/kernel/random/boot_id").read().strip()
expired = False
while True:
    try:
        names = [n for n in os.listdir(d) if n.endswith(".json")]
    except OSError:
        sys.exit(0)  # the directory went (a reset): nothing left to watch
    if not names:
        if expired:  # the run is gone (its last lease ran out, none was released): its state goes too
            for n in os.listdir(top):
                if os.path.join(top, n) != os.path.abspath(d):
                    p = os.path.join(top, n)
                    shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        for n in ("watchdog.pid", "watchdog.lock"):
            try:
                os.unlink(os.path.join(d, n))
            except OSError:
                pass
        try:
            os.rmdir(d)
        except OSError:
            pass
        sys.exit(0)
    now, soonest = time.monotonic(), 1.0
    for n in names:
        p = os.path.join(d, n)
        try:
            e = json.load(open(p))
        except (OSError, ValueError):
            continue
        left = e["deadline"] - now if e.get("boot") == boot else 0.0
        if left <= 0:
            expired = True
            end(e["dir"])
            try:
                os.unlink(p)
            except OSError:
                pass
        else:
            soonest = min(soonest, left)
    time.sleep(max(0.05, soonest))
"""


def boot_id():
    return read_text("/proc/sys/kernel/random/boot_id") or ""


def entry_path(lease_dir, run_dir):
    return os.path.join(lease_dir, hashlib.sha1(os.path.normpath(run_dir).encode("utf-8")).hexdigest()[:16] + ".json")


def grant(lease_dir, run_dir, seconds):
    """The process in ``run_dir`` ends ``seconds`` from now unless renewed or released."""
    if not os.path.isdir(lease_dir):
        os.makedirs(lease_dir, 0o700)
    write_atomic(entry_path(lease_dir, run_dir), json.dumps(
        {"dir": os.path.normpath(run_dir), "deadline": time.monotonic() + float(seconds), "boot": boot_id(),
         "granted_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, sort_keys=True) + "\n")


def release(lease_dir, run_dir):
    try:
        os.unlink(entry_path(lease_dir, run_dir))
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise


def renew(lease_dir, seconds):
    """Every entry's deadline to now + ``seconds``; how many were renewed."""
    n = 0
    for name in sorted(os.listdir(lease_dir)) if os.path.isdir(lease_dir) else []:
        if not name.endswith(".json"):
            continue
        path = os.path.join(lease_dir, name)
        try:
            entry = json.loads(read_text(path) or "")
        except ValueError:
            continue
        entry["deadline"] = time.monotonic() + float(seconds)
        write_atomic(path, json.dumps(entry, sort_keys=True) + "\n")
        n += 1
    return n


def _held(lease_dir):
    """Whether a live watchdog holds the lock (probing takes the lock for a moment when none does)."""
    try:
        fh = open(os.path.join(lease_dir, LOCK), "a")
    except (OSError, IOError):
        return False
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (OSError, IOError):
        return True
    finally:
        fh.close()  # closing drops a lock this probe took
    return False


def ensure_watchdog(lease_dir, python):
    """Start the node's watchdog, detached, unless one runs; True when one was started."""
    if _held(lease_dir):
        return False
    subprocess.Popen([python, "-I", "-S", "-c", WATCHDOG, lease_dir], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    return True


def stop_watchdog_if_idle(lease_dir):
    """With no entry left, end the watchdog now and remove the lease directory (a teardown's verify
    must not find it, nor the watchdog, a poll interval later)."""
    if not os.path.isdir(lease_dir) or any(n.endswith(".json") for n in os.listdir(lease_dir)):
        return False
    pid_text = read_text(os.path.join(lease_dir, PID))
    if pid_text and pid_text.isdigit() and _held(lease_dir):
        try:
            os.kill(int(pid_text), signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + 5.0
        while _held(lease_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
    for name in (PID, LOCK, PID + ".tmp"):
        try:
            os.unlink(os.path.join(lease_dir, name))
        except OSError:
            pass
    try:
        os.rmdir(lease_dir)
    except OSError:
        return False
    return True
