"""On-host expiry: the one mechanism that reverts a fault whatever else dies.

Started on the node together with the fault, in its own session (``setsid``) so that killing
the controller, the SSH connection, the helper or the helper's process group does not take it
down::

    setsid python -m grayctl.faults.node.expiry --at EPOCH --fault-id ID \\
        [--pid HELPER_PID] [--grace 2s] [--record F] [--fault-record F] [--pidfile F]

It waits for the first of:

  * ``--at`` (the fault window's end plus a margin, Unix time, converted once at start to the
    monotonic clock so a step of the node's clock changes nothing) -> "expired":
    the helper (if any) gets SIGTERM, then SIGKILL after ``--grace``;
  * the helper exiting for any reason, SIGKILL included -> "helper-exited" (watched through a
    pidfd, so there is no polling delay and no PID-reuse race);
  * SIGTERM/SIGINT/SIGHUP to this process -> "cancelled" (the controller's normal revert).

Then, in every case, it removes everything named after the fault id (``steer.revert_fault``:
nft table ``inet grayctl_<id>``, iptables chain ``GRAYCTL_<id>``), reads the kernel state back
to verify (``steer.fault_leftovers``), writes a JSON record (reason, host UTC times, what was
removed, what is left) and exits 0 when clean, 1 when something is left. When it ended the fault
itself (expired, helper-exited) it also closes the fault's own record (``--fault-record``, faultctl's
``<id>.json``: reverted or revert-failed, ``end_reason: expiry:<reason>``), so the record never says
``active`` for a fault that is gone; on "cancelled" the faultctl revert that signalled it does that.

So the helper's own ``--expire-at`` and exit handler are the polite path; this process is the
guarantee. What it does not survive: its own SIGKILL or a reboot (a reboot clears netfilter
state and kills the helper anyway).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from grayctl.faults.node import steer
from grayctl.faults.node.args import duration_ns, monotonic_deadline

__all__ = ["close_fault_record", "wait_for_trigger", "stop_helper", "main"]

LOCK_WAIT_S = 5.0  # for faultctl's directory lock; a revert holding it longer closes the record itself


def _utc(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc).isoformat(timespec="milliseconds")


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None  # already gone


def wait_for_trigger(deadline: float, pidfd: int | None, wake_r: int, stop: list[str]) -> str:
    """Block until ``deadline`` (``time.monotonic()``), helper exit or a signal; return the reason."""
    while True:
        if stop:
            return stop[0]
        left = deadline - time.monotonic()
        if left <= 0:
            return "expired"
        fds = [wake_r] + ([pidfd] if pidfd is not None else [])
        # Wake at least every second to check the signal list.
        ready, _, _ = select.select(fds, [], [], min(left, 1.0))
        if pidfd is not None and pidfd in ready:
            return "helper-exited"
        if wake_r in ready:
            try:
                os.read(wake_r, 64)
            except BlockingIOError:
                pass


def stop_helper(pid: int, pidfd: int | None, grace: float) -> str:
    """SIGTERM (the helper flushes and reverts), then SIGKILL after ``grace`` seconds."""
    if pidfd is None:
        return "not running"
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    ready, _, _ = select.select([pidfd], [], [], grace)
    if ready:
        return "terminated"
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        return "terminated"
    select.select([pidfd], [], [], 5.0)
    return "killed"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grayctl.faults.node.expiry",
                                description="Revert a fault at a deadline or when its helper dies.")
    p.add_argument("--at", type=float, required=True, help="Unix time at which the fault must be gone")
    p.add_argument("--fault-id", required=True)
    p.add_argument("--pid", type=int, default=None, help="the fault's helper process to watch")
    p.add_argument("--grace", type=duration_ns, default=2_000_000_000,
                   help="between SIGTERM and SIGKILL of the helper at expiry")
    p.add_argument("--record", type=Path, default=None, help="write what happened as JSON here")
    p.add_argument("--fault-record", type=Path, default=None,
                   help="faultctl's record of the fault: closed when this expiry ended the fault")
    p.add_argument("--pidfile", type=Path, default=None)
    return p


def _write_atomic(path: Path, data: dict) -> None:
    """``data`` as JSON at ``path``, whole or not at all (a reader never sees half a record)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def close_fault_record(path: Path, outcome: dict, *, pid: int | None = None) -> bool:
    """Mark the fault's record (faultctl's ``<id>.json``) ended by this expiry, under faultctl's lock
    on its directory: only while it is ``active`` and names this process (``pid``) as its expiry, so a
    newer apply's record is never touched. True when it was closed."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        end = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    return False  # a revert holds it: it closes the record
                time.sleep(0.05)
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if rec.get("status") != "active" or (rec.get("expiry") or {}).get("pid") != (pid or os.getpid()):
            return False
        stats = path.with_name(path.name[: -len(".json")] + ".stats.json")
        try:
            helper_stats = json.loads(stats.read_text())
        except (OSError, ValueError):
            helper_stats = None
        rec.update(status="reverted" if outcome["clean"] else "revert-failed", end_ns=time.time_ns(),
                   end_utc=outcome["reverted_utc"], end_reason=f"expiry:{outcome['reason']}",
                   leftovers=outcome["left"], revert_verified=outcome["clean"], helper_stats=helper_stats,
                   expiry_record=outcome)
        _write_atomic(path, rec)
        return True
    finally:
        os.close(fd)  # closing releases the lock


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        steer.validate_fault_id(args.fault_id)
    except steer.SteerError as exc:
        print(f"expiry: invalid input: {exc}", file=sys.stderr)
        return 2
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    started = _utc()
    deadline = monotonic_deadline(args.at)  # a clock step from here on changes nothing
    pidfd = _open_pidfd(args.pid) if args.pid else None
    stop: list[str] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda n, _f: stop.append("cancelled"))
    reason = "helper-exited" if (args.pid and pidfd is None) else wait_for_trigger(deadline, pidfd, wake_r, stop)
    triggered = _utc()
    helper = stop_helper(args.pid, pidfd, args.grace / 1e9) if reason != "helper-exited" else "exited"
    removed: list[str] = []
    left: list[str] = []
    for _attempt in range(5):  # a concurrent nft transaction can make one attempt fail
        removed += steer.revert_fault(args.fault_id)
        left = steer.fault_leftovers(args.fault_id)
        if not left:
            break
        time.sleep(0.2)
    record = {"fault_id": args.fault_id, "reason": reason, "helper": helper, "started_utc": started,
              "triggered_utc": triggered, "reverted_utc": _utc(), "deadline_utc": _utc(args.at),
              "removed": removed, "left": left, "clean": not left}
    if args.record:
        _write_atomic(args.record, record)
    if args.fault_record and reason != "cancelled":
        close_fault_record(args.fault_record, record)
    if args.pidfile:
        args.pidfile.unlink(missing_ok=True)
    print(f"expiry: {args.fault_id}: {reason}; removed {removed or 'nothing'}; left {left or 'nothing'}",
          file=sys.stderr)
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
