"""``python -m grayctl.runtime --config FILE.json [--ready-file PATH] [--fault-control PATH]``: run one service process.

Runtime-realised faults come through ``--fault-control`` (default: ``fault_control`` beside the
config, the replica's directory on the nodes; grayctl.faults.node.runtimectl writes it).

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 for an invalid config, 3 when the
addresses cannot be bound. On startup it prints one JSON line ``{"event": "ready", ...}`` to
stdout (and writes it to ``--ready-file``, atomically) once both sockets listen.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from grayctl.runtime.config import RuntimeConfigError, load_runtime_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grayctl.runtime",
                                description="Run one service of a grayctl topology from its runtime config.")
    p.add_argument("--config", required=True, help="runtime config JSON (see docs/runtime.md)")
    p.add_argument("--ready-file", help="written (JSON) once listening; removed on a clean stop")
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    p.add_argument("--fault-control", help="fault control file to poll (default: fault_control beside --config)")
    args = p.parse_args(argv)
    try:
        cfg = load_runtime_config(args.config)
    except RuntimeConfigError as err:
        sys.stderr.write(err.render() + "\n")
        return err.exit_code
    from grayctl.runtime.server import (
        run_runtime,  # aiohttp import only once the config is good
    )

    from pathlib import Path

    from grayctl.faults.node.runtimectl import control_path

    control = args.fault_control or str(control_path(Path(args.config).resolve().parent))
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:  # the plain loop works, just slower
            pass
        else:
            return uvloop.run(run_runtime(cfg, args.ready_file, control))
    return asyncio.run(run_runtime(cfg, args.ready_file, control))


if __name__ == "__main__":
    sys.exit(main())
