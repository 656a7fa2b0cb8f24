"""Command line of the load generator: ``python -m grayctl.workload --config FILE.json``.

Flags override fields of the config file (or make a config without one). The JSON summary
goes to stdout; progress lines to stderr. Exit codes: 0 valid run; 2 bad config; 4 run
invalid (could not keep to the schedule: the summary says why); 130 stopped by
SIGTERM/SIGINT (records and summary still written).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import uvloop

from grayctl.errors import GrayctlError, InputError, Interrupted, Problem
from grayctl.workload.config import to_config
from grayctl.workload.loadgen import RunInvalid, run_workload


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise InputError(Problem(f"{flag} {v!r}: expected NAME=VALUE", path=flag))
        out[name] = rest
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m grayctl.workload",
        description="Open-loop HTTP load generator (see docs/workload.md).",
    )
    p.add_argument("--config", help="JSON workload config (the contract in docs/workload.md)")
    p.add_argument("--url", help="shorthand for one GET target named 'default'")
    p.add_argument("--target", action="append", metavar="NAME=URL", help="a GET target (repeatable)")
    p.add_argument("--mix", action="append", metavar="NAME=PERCENT", help="share of a type (repeatable)")
    p.add_argument("--rate", type=float, help="requests per second")
    p.add_argument("--duration", type=float, help="seconds")
    p.add_argument("--arrival", choices=("constant", "poisson"))
    p.add_argument("--seed", type=int)
    p.add_argument("--start-at", type=float, help="UTC epoch seconds to start on")
    p.add_argument("--timeout", type=float, help="seconds per request")
    p.add_argument("--max-in-flight", type=int)
    p.add_argument("--connections", type=int, help="keep-alive connection pool size")
    p.add_argument("--records", help="records file (.parquet or .jsonl)")
    p.add_argument("--summary", help="also write the JSON summary here")
    p.add_argument("--metrics-listen", help="HOST:PORT for the Prometheus endpoint")
    p.add_argument("--rate-bound-pct", type=float, help="keep_up_bound.rate_pct")
    p.add_argument("--send-error-bound-ms", type=float, help="keep_up_bound.send_error_p99_ms")
    return p


def _raw_config(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    raw: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config) as f:
                raw = json.load(f)
        except OSError as e:
            raise InputError(Problem(e.strerror or "cannot read", file=args.config)) from None
        except json.JSONDecodeError as e:
            raise InputError(Problem(f"not valid JSON: {e.msg}", file=args.config, line=e.lineno, column=e.colno)) from None
    targets = {"default": args.url} if args.url else {}
    targets.update(_pairs(args.target, "--target"))
    if targets:
        raw["targets"] = {n: {"method": "GET", "url": u, "body_size": 0} for n, u in targets.items()}
        if not args.mix and len(targets) == 1:
            raw.pop("mix", None)  # one flag target replaces the file's: its mix no longer applies
    if args.mix:
        try:
            raw["mix"] = {n: float(v) for n, v in _pairs(args.mix, "--mix").items()}
        except ValueError:
            raise InputError(Problem("--mix percentages must be numbers", path="--mix")) from None
    simple = {
        "rate": args.rate, "duration": args.duration, "arrival": args.arrival, "seed": args.seed,
        "start_at": args.start_at, "timeout": args.timeout, "max_in_flight": args.max_in_flight,
        "connections": args.connections, "records_path": args.records, "summary_path": args.summary,
        "metrics_listen": args.metrics_listen,
    }
    raw.update({k: v for k, v in simple.items() if v is not None})
    bound = dict(raw.get("keep_up_bound") or {})
    if args.rate_bound_pct is not None:
        bound["rate_pct"] = args.rate_bound_pct
    if args.send_error_bound_ms is not None:
        bound["send_error_p99_ms"] = args.send_error_bound_ms
    if bound:
        raw["keep_up_bound"] = bound
    return raw, args.config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        raw, file = _raw_config(args)
        cfg = to_config(raw, file=file)
        result = uvloop.run(run_workload(cfg, handle_signals=True))
        print(json.dumps(result.summary, indent=2), flush=True)
        s = result.summary
        if s["interrupted"]:
            raise Interrupted(s["reason"])
        if not s["valid"]:
            raise RunInvalid(s["reason"], hint="lower the rate, or run the generator on a less loaded node")
    except GrayctlError as e:
        print(e.render(), file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
