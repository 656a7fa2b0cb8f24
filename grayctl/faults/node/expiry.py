"""On-host expiry: the one mechanism that reverts a fault whatever else dies.

Started on the node together with the fault, in its own session (``setsid``) so that killing
the controller, the SSH connection, the helper or the helper's process group does not take it
down::

    setsid python -m grayctl.faults.node.expiry --at EPOCH --fault-id ID \\
        [--pid HELPER_PID] [--grace 2s] [--record F] [--pidfile F]

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
removed, what is left) and exits 0 when clean, 1 when something is left.

So the helper's own ``--expire-at`` and exit handler are the polite path; this process is the
guarantee. What it does not survive: its own SIGKILL or a reboot (a reboot clears netfilter
state and kills the helper anyway).
"""

from __future__ import annotations

import argparse
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

__all__ = ["wait_for_trigger", "stop_helper", "main"]


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
    p.add_argument("--pidfile", type=Path, default=None)
    return p


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
        tmp = args.record.with_name(args.record.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, args.record)
    if args.pidfile:
        args.pidfile.unlink(missing_ok=True)
    print(f"expiry: {args.fault_id}: {reason}; removed {removed or 'nothing'}; left {left or 'nothing'}",
          file=sys.stderr)
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
