"""``python -m grayctl.exporters`` -- the grayctl node exporter: cgroup, qdisc and fault metrics of one node.

    python -m grayctl.exporters --listen 10.213.0.2:9302 --cgroup /sys/fs/cgroup/unified/grayctl/local/node01

Paths: ``/metrics/cgroup`` (layer system), ``/metrics/qdisc`` (layer network, with ``grayctl_fault_active``
from ``--fault-dir``: grayctl.exporters.faults), ``/metrics`` (all).
Runs until SIGTERM/SIGINT; prints one ``{"event": "ready", ...}`` line and writes ``--ready-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from grayctl.exporters import cgroup, faults, parse_listen, qdisc, serve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grayctl.exporters", description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT (the node's management address)")
    ap.add_argument("--cgroup", default="", help="the node's cgroup2 directory (empty: no cgroup metrics)")
    ap.add_argument("--cpu-cgroup", default=None, help="v1 cpu directory (default: found from --cgroup)")
    ap.add_argument("--cpuacct-cgroup", default=None, help="v1 cpuacct directory (default: found)")
    ap.add_argument("--memory-cgroup", default=None, help="v1 memory directory (default: found)")
    ap.add_argument("--tc", default="tc", help="tc binary")
    ap.add_argument("--fault-dir", default=None, help="the node's fault records (grayctl_fault_active)")
    ap.add_argument("--ready-file", default=None)
    args = ap.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cgroup.ensure_cgroup_view(args.cgroup or None)  # before any thread exists (unshare needs that)
    paths = cgroup.CgroupPaths.discover(args.cgroup or None, cpu=args.cpu_cgroup, cpuacct=args.cpuacct_cgroup,
                                        memory=args.memory_cgroup)


    async def qdisc_metrics() -> str:
        # tc is a subprocess: run it off the loop so a slow fork never delays the cgroup path.
        text = await asyncio.get_running_loop().run_in_executor(None, qdisc.collect, args.tc)
        return text + faults.collect(args.fault_dir)

    async def both() -> str:
        return cgroup.collect(paths) + await qdisc_metrics()

    routes = {"/metrics/cgroup": lambda: cgroup.collect(paths), "/metrics/qdisc": qdisc_metrics,
              "/metrics": both}
    try:
        asyncio.run(serve(host, port, routes, ready_file=args.ready_file, name="grayctl-exporters"))
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
