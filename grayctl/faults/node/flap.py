"""network-flap on the node: the data link goes down and up on a cycle until the fault ends.

    python -m grayctl.faults.node.flap --dev data --down 2s --up 8s --expire-at EPOCH \
        --pidfile PID --stats STATS.json

It starts with the link down (the fault acts at once), then alternates ``down`` / ``up``. At
``--expire-at``, on SIGTERM/SIGINT/SIGHUP or on any error it sets the link up before it exits,
and it writes every transition (host time, ns) to the stats file. A SIGKILLed flapper runs no
exit path: the fault's watcher (``faultctl watch``) sees it exit and reverts from the record
(``ip link set dev DEV up``), and the revert reads back that the link is up.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grayctl.faults.node.args import duration_ns, monotonic_deadline
from grayctl.faults.spec import validate_ifname

__all__ = ["main"]

MAX_EVENTS = 1000  # the stats file keeps the last transitions only (a long fault flaps for hours)


def _link(dev: str, state: str) -> dict[str, Any]:
    ns = time.time_ns()
    proc = subprocess.run(["ip", "link", "set", "dev", dev, state], capture_output=True, text=True, check=False)
    return {"state": state, "at_ns": ns, "rc": proc.returncode, "stderr": proc.stderr.strip()[-300:]}


def _write(path: Path | None, stats: dict[str, Any]) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stats, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grayctl.faults.node.flap",
                                 description="Take a link down and up on a cycle; up again on any exit.")
    ap.add_argument("--dev", required=True, help="the link (the node's data interface)")
    ap.add_argument("--down", type=duration_ns, required=True, help="how long each down lasts, e.g. 2s")
    ap.add_argument("--up", type=duration_ns, required=True, help="how long the link stays up between downs")
    ap.add_argument("--expire-at", type=float, required=True, help="bring the link up and exit at this Unix time")
    ap.add_argument("--pidfile", type=Path, default=None)
    ap.add_argument("--stats", type=Path, default=None, help="write the transitions as JSON here")
    args = ap.parse_args(argv)
    try:
        dev = validate_ifname(args.dev)
        if args.down <= 0 or args.up <= 0:
            raise ValueError("--down and --up must be longer than 0s")
    except ValueError as exc:
        print(f"flap: invalid input: {exc}", file=sys.stderr)
        return 2
    stop: list[str] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda n, _f: stop.append(signal.Signals(n).name))
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    stats: dict[str, Any] = {"dev": dev, "down_ns": args.down, "up_ns": args.up, "cycles": 0, "events": [],
                             "exit_reason": None}
    _write(args.stats, stats)
    reason = "expired"
    expire_at = monotonic_deadline(args.expire_at)  # a clock step changes nothing from here on
    try:
        state = "down"
        while True:
            event = _link(dev, state)
            stats["events"] = (stats["events"] + [event])[-MAX_EVENTS:]
            stats["cycles"] += state == "down"
            _write(args.stats, stats)
            if event["rc"] != 0:
                reason = f"ip link set {state} failed: {event['stderr']}"
                break
            until = time.monotonic() + (args.down if state == "down" else args.up) / 1e9
            while not stop and time.monotonic() < min(until, expire_at):
                select.select([wake_r], [], [], max(0.0, min(until, expire_at) - time.monotonic()))
                if stop:
                    break
            if stop:
                reason = f"signal {stop[0]}"
                break
            if time.monotonic() >= expire_at:
                break
            state = "up" if state == "down" else "down"
    finally:
        # Whatever ended the fault, the link is left up.
        final = _link(dev, "up")
        stats["events"] = (stats["events"] + [final])[-MAX_EVENTS:]
        stats["exit_reason"] = reason
        _write(args.stats, stats)
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    return 0 if final["rc"] == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
