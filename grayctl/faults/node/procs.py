"""The processes of a fault on the node: found by /proc, tracked by pidfd, stopped and verified gone.

Only processes a fault started (its helper's group and descendants) or the replicas topology_deploy
recorded are ever signalled; the node's shared cgroup never is.

Map:
  alive(pid, argv) / proc_state / cmdline     is this pid still the process we started?
  spawn(argv, log) -> pid                     a detached helper in its own session
  fault_processes(leader, argv)               a fault's live processes: group + descendants
  stop_group(pgid, grace, argv)               SIGCONT, SIGTERM, SIGKILL, each bounded; what is left
  service_dirs / service_process              a service's replicas as topology_deploy records them
  restart_service(target)                     re-exec a replica's recorded command line
  memory_limit()                              the node cgroup's memory limit (memory-stress percent)
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Tracked", "alive", "cmdline", "descendants", "fault_processes", "group_members", "memory_limit",
           "proc_state", "restart_service", "service_dirs", "service_process", "spawn", "stop_group"]


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0") if raw else None


def proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int | None, argv: list[str] | None = None) -> bool:
    if not pid:
        return False
    cmd = cmdline(pid)
    if cmd is None or proc_state(pid) in (None, "Z", "X"):
        return False
    return argv is None or cmd == argv


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid and proc_state(int(entry)) not in ("Z", "X", None):
                    out.append(int(entry))
            except OSError:
                continue
    return out


def spawn(argv: list[str], log: Path) -> int:
    """Start ``argv`` detached (own session, stdio to ``log``) and return its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                close_fds=True)
    return proc.pid


def descendants(root: int) -> list[int]:
    """Live descendants of ``root`` (by parent pid), whatever process group or session they moved to."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def fault_processes(leader: int, argv: list[str] | None = None) -> list[int]:
    """Every live process of a fault: the leader's group plus, while the leader still runs ``argv``,
    its descendants (children that left the group are found too; a reused pid is not walked).

    Only processes the fault started are found this way (its own group, its own children), never
    the node's other processes: the node's cgroup is shared and is never signalled as a whole.
    """
    found = group_members(leader)
    if alive(leader, argv):
        found += descendants(leader) + [leader]
    return sorted(set(found))


class Tracked:
    """pidfds of the fault's processes: signals reach exactly them (no PID reuse), and a pidfd
    turns readable when its process has exited — a zombie counts as gone (it runs nothing)."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}

    def add(self, pids: list[int]) -> None:
        for pid in pids:
            if pid not in self.fds and pid > 1 and pid != os.getpid():
                try:
                    self.fds[pid] = os.pidfd_open(pid)
                except OSError:
                    pass

    def live(self) -> list[int]:
        if not self.fds:
            return []
        done, _, _ = select.select(list(self.fds.values()), [], [], 0)
        return sorted(pid for pid, fd in self.fds.items() if fd not in done)

    def signal(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                signal.pidfd_send_signal(self.fds[pid], sig)
            except (ProcessLookupError, KeyError):
                pass

    def wait(self, leader: int, argv: list[str] | None, timeout: float) -> list[int]:
        end = time.monotonic() + timeout
        while True:
            self.add(fault_processes(leader, argv))  # children forked meanwhile are tracked too
            live = self.live()
            if not live or time.monotonic() >= end:
                return live
            time.sleep(0.05)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def stop_group(pgid: int, grace: float = 3.0, argv: list[str] | None = None) -> dict[str, Any]:
    """Stop a fault's processes (leader ``pgid``, its group, its descendants) and verify none is left.

    SIGCONT all (a stopped process cannot act on SIGTERM), SIGTERM the leader alone first so that
    it stops and reaps its own workers (stress-ng does: no orphans left for PID 1 to reap late),
    then SIGTERM whatever is left, then SIGKILL; each wait is bounded. ``left`` lists live pids
    after all that (empty = stopped).
    """
    tracked = Tracked()
    try:
        tracked.add(fault_processes(pgid, argv))
        pids = tracked.live()
        if not pids:
            return {"result": "not running", "pids": [], "left": []}
        tracked.signal(pids, signal.SIGCONT)
        tracked.signal([p for p in pids if p == pgid] or pids, signal.SIGTERM)
        live = tracked.wait(pgid, argv, grace)
        result = "terminated"
        if live:
            tracked.signal(live, signal.SIGTERM)
            tracked.signal(live, signal.SIGCONT)
            live = tracked.wait(pgid, argv, 1.0)
        if live:
            result = "killed"
            tracked.signal(live, signal.SIGKILL)
            live = tracked.wait(pgid, argv, 5.0)
        return {"result": result, "pids": sorted(tracked.fds), "left": live}
    finally:
        tracked.close()


# ---------------------------------------------------------------------------- replicas (topology_deploy's records)

def service_dirs(services_dir: Path, service: str) -> list[Path]:
    """The replica directories of ``service`` on this node: ``<service>-<n>`` (topology_deploy)."""
    if not services_dir.is_dir():
        return []
    pat = re.compile(rf"\A{re.escape(service)}-\d+\Z")
    return sorted(d for d in services_dir.iterdir() if d.is_dir() and pat.match(d.name))


def service_process(d: Path) -> dict[str, Any] | None:
    """pid and argv recorded by topology_deploy's grayctl_process, if that process still runs it."""
    try:
        pid = int((d / "pid").read_text().strip())
        argv = (d / "pid.cmd").read_text().split("\0")
    except (OSError, ValueError):
        return None
    return {"dir": str(d), "pid": pid, "argv": argv, "running": alive(pid, argv)}


def restart_service(t: dict[str, Any]) -> dict[str, Any]:
    """Re-exec the recorded command line, the way grayctl_process starts it (setsid, cwd, logs)."""
    d = Path(t["dir"])
    (d / "ready").unlink(missing_ok=True)
    with open(d / "stdout.log", "ab") as out, open(d / "stderr.log", "ab") as err:
        proc = subprocess.Popen(t["argv"], cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, close_fds=True)
    (d / "pid").write_text(f"{proc.pid}\n")
    ns = time.time_ns()
    utc = datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")
    return {"dir": str(d), "pid": proc.pid, "restarted_ns": ns, "restarted_utc": utc}


def own_cgroups() -> list[tuple[str, str, str]]:
    """This process's cgroups as /proc/self/cgroup lists them: (hierarchy id, controllers, path); none if unreadable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    return [(hid, ctrls, path) for hid, ctrls, path in (line.split(":", 2) for line in lines)]


def memory_limit() -> int | None:
    """The memory limit of this process's cgroup (the node's): v2 memory.max, else v1 limit_in_bytes."""
    for hid, ctrls, path in own_cgroups():
        candidates = []
        if hid == "0":
            candidates += [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.max",
                           Path("/sys/fs/cgroup/unified") / path.lstrip("/") / "memory.max"]
        if "memory" in ctrls.split(","):
            candidates.append(Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.limit_in_bytes")
        for c in candidates:
            try:
                text = c.read_text().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < 1 << 60:
                return int(text)
    return None
