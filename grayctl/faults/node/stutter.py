"""process-pause on the node: SIGSTOP/SIGCONT process groups once, or periodically (a stutter).

    python -m grayctl.faults.node.stutter --pgid PGID [--pgid ...] --at EPOCH \\
        [--pause 200ms [--every 1s]] [--stats F]

* ``--pause D`` alone: one pause of D at the start (then the processes run until ``--at``);
* ``--pause X --every Y``: stop for X at the start of every period Y until ``--at`` (a limping node);
* neither: stopped from now until ``--at`` or until this helper is told to stop.

Whatever ends it — ``--at``, SIGTERM/SIGINT/SIGHUP, an exception — every group gets SIGCONT
before exit (``finally``). A SIGKILL of this helper skips that; the fault's ``faultctl watch``
sees the helper exit (pidfd) and SIGCONTs the groups. The schedule is absolute (period k starts
at ``start + k*every``), so late wake-ups never accumulate; every stop/continue is logged in the
stats with its host time, which the benchmark compares with what clients saw.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from grayctl.faults.node.args import duration_ns, monotonic_deadline

__all__ = ["main"]


def _signal_all(pgids: list[int], sig: int, log: list[list]) -> None:
    for g in pgids:
        try:
            os.killpg(g, sig)
        except ProcessLookupError:
            pass
    log.append(["STOP" if sig == signal.SIGSTOP else "CONT", time.time_ns()])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grayctl.faults.node.stutter")
    ap.add_argument("--pgid", type=int, action="append", required=True)
    ap.add_argument("--at", type=float, required=True, help="Unix time at which every group runs again for good")
    ap.add_argument("--pause", type=duration_ns, default=None)
    ap.add_argument("--every", type=duration_ns, default=None)
    ap.add_argument("--stats", type=Path, default=None)
    args = ap.parse_args(argv)
    if any(g <= 1 for g in args.pgid):
        print("stutter: refusing process group <= 1", file=sys.stderr)
        return 2
    if args.every is not None and (args.pause is None or args.pause >= args.every):
        print("stutter: --every needs --pause shorter than it", file=sys.stderr)
        return 2
    stop: list[str] = []
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda n, _f: stop.append(signal.Signals(n).name))
    log: list[list] = []
    reason = "expired"

    at = monotonic_deadline(args.at)  # a clock step changes nothing from here on

    def sleep_until(t: float) -> bool:
        while not stop:
            left = t - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False

    try:
        start = time.monotonic()
        k = 0
        while not stop and time.monotonic() < at:
            period_start = start + k * (args.every or 0) / 1e9
            if not sleep_until(period_start):
                break
            _signal_all(args.pgid, signal.SIGSTOP, log)
            end = at if args.pause is None else min(at, period_start + args.pause / 1e9)
            sleep_until(end)
            _signal_all(args.pgid, signal.SIGCONT, log)
            if args.every is None:
                sleep_until(at)  # one pause: hold the fault (nothing stopped) until the end
                break
            k += 1
        if stop:
            reason = stop[0]
    except Exception as exc:  # noqa: BLE001 - whatever happens, the groups continue
        reason = f"error: {exc}"
    finally:
        _signal_all(args.pgid, signal.SIGCONT, log)
        if args.stats:
            tmp = args.stats.with_name(args.stats.name + ".tmp")
            tmp.write_text(json.dumps({"pgids": args.pgid, "events": log, "exit_reason": reason}) + "\n")
            os.replace(tmp, args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
