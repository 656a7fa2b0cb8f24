"""The load generator's config: the JSON contract of docs/workload.md, validated at the edge.

``to_config`` / ``load_config`` turn a mapping or file into a ``WorkloadConfig`` (plain, frozen
data); every problem is reported at once as an ``InputError`` (exit 2) naming file and field.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grayctl.errors import InputError, Problem
from grayctl.workload.schedule import ARRIVALS

__all__ = ["METHODS", "Target", "KeepUpBound", "WorkloadConfig", "to_config", "load_config", "split_listen"]

METHODS = ("GET", "POST")


@dataclass(frozen=True)
class Target:
    method: str
    url: str
    body_size: int = 0


@dataclass(frozen=True)
class KeepUpBound:
    """How far the generator may miss its schedule before the run is declared invalid."""

    rate_pct: float = 1.0
    send_error_p99_ms: float = 1.0


@dataclass(frozen=True)
class WorkloadConfig:
    targets: dict[str, Target]
    mix: dict[str, float]
    rate: float
    duration: float
    arrival: str = "constant"
    seed: int = 1
    start_at: float | None = None
    timeout: float = 10.0
    max_in_flight: int = 10_000
    connections: int = 64
    records_path: str | None = None
    summary_path: str | None = None
    metrics_listen: str | None = None
    keep_up_bound: KeepUpBound = field(default_factory=KeepUpBound)

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": {k: vars(t).copy() for k, t in self.targets.items()},
            "mix": dict(self.mix),
            "rate": self.rate,
            "arrival": self.arrival,
            "seed": self.seed,
            "duration": self.duration,
            "start_at": self.start_at,
            "timeout": self.timeout,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
            "records_path": self.records_path,
            "summary_path": self.summary_path,
            "metrics_listen": self.metrics_listen,
            "keep_up_bound": vars(self.keep_up_bound).copy(),
        }


_FIELDS = {
    "targets", "mix", "rate", "arrival", "seed", "duration", "start_at", "timeout",
    "max_in_flight", "connections", "records_path", "summary_path", "metrics_listen",
    "keep_up_bound",
}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def to_config(raw: dict[str, Any], *, file: str | None = None) -> WorkloadConfig:
    """Validate a config mapping into a ``WorkloadConfig``; every problem at once."""
    problems: list[Problem] = []

    def bad(path: str, message: str, expected: str | None = None, suggestion: str | None = None) -> None:
        problems.append(Problem(message, file=file, path=path, expected=expected, suggestion=suggestion))

    if not isinstance(raw, dict):
        raise InputError(Problem("the workload config must be a JSON object", file=file))
    for key in raw:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, sorted(_FIELDS), n=1)
            bad(key, "unknown field", suggestion=close[0] if close else None)

    targets: dict[str, Target] = {}
    raw_targets = raw.get("targets")
    if not isinstance(raw_targets, dict) or not raw_targets:
        bad("targets", "required: a map of request type to {method, url, body_size}")
    else:
        for name, t in raw_targets.items():
            p = f"targets.{name}"
            if not isinstance(t, dict):
                bad(p, "must be an object with method, url, body_size")
                continue
            for key in t:
                if key not in ("method", "url", "body_size"):
                    bad(f"{p}.{key}", "unknown field", expected="method, url, body_size")
            method = str(t.get("method", "GET")).upper()
            if method not in METHODS:
                bad(f"{p}.method", f"unsupported method {t.get('method')!r}", expected=" or ".join(METHODS))
            url = t.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                bad(f"{p}.url", f"not an http(s) URL: {url!r}")
            body = t.get("body_size", 0)
            if not isinstance(body, int) or isinstance(body, bool) or body < 0:
                bad(f"{p}.body_size", f"must be a non-negative integer, got {body!r}")
                body = 0
            targets[name] = Target(method, str(url), body)

    mix = raw.get("mix")
    if mix is None and len(targets) == 1:
        mix = {next(iter(targets)): 100.0}  # one target needs no mix
    if mix is None and not targets:
        mix = {}  # the missing targets are already reported; no second message
    elif not isinstance(mix, dict) or not mix:
        bad("mix", "required when there is more than one target: request type -> percent")
        mix = {}
    else:
        for name, pct in mix.items():
            if targets and name not in targets:
                close = difflib.get_close_matches(name, list(targets), n=1)
                bad(f"mix.{name}", "names no target", suggestion=close[0] if close else None)
            if not _num(pct) or pct < 0:
                bad(f"mix.{name}", f"must be a non-negative percentage, got {pct!r}")
        if all(_num(v) for v in mix.values()):
            total = float(sum(mix.values()))
            if abs(total - 100.0) > 1e-6:
                bad("mix", f"percentages sum to {total:g}", expected="100")

    def positive(key: str, default: Any = None, integer: bool = False) -> Any:
        v = raw.get(key, default)
        if v is None or not _num(v) or v <= 0 or (integer and not isinstance(v, int)):
            kind = "a positive integer" if integer else "a positive number"
            bad(key, f"must be {kind}, got {v!r}")
            return default if default is not None else 1
        return v

    rate = float(positive("rate"))
    duration = float(positive("duration"))
    timeout = float(positive("timeout", 10.0))
    max_in_flight = int(positive("max_in_flight", 10_000, integer=True))
    connections = int(positive("connections", 64, integer=True))
    arrival = raw.get("arrival", "constant")
    if arrival not in ARRIVALS:
        bad("arrival", f"unknown arrival process {arrival!r}", expected=" or ".join(ARRIVALS))
    seed = raw.get("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        bad("seed", f"must be an integer, got {seed!r}")
        seed = 1
    start_at = raw.get("start_at")
    if start_at is not None and not _num(start_at):
        bad("start_at", f"must be UTC epoch seconds, got {start_at!r}")
        start_at = None
    for key in ("records_path", "summary_path"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            bad(key, f"must be a file path or null, got {v!r}")
    records_path = raw.get("records_path")
    if isinstance(records_path, str) and not records_path.endswith((".parquet", ".jsonl", ".json", ".ndjson")):
        bad("records_path", "unknown format", expected="a .parquet or .jsonl file")
    listen = raw.get("metrics_listen")
    if listen is not None:
        try:
            split_listen(listen)
        except ValueError as e:
            bad("metrics_listen", str(e), expected="HOST:PORT, e.g. 10.213.0.14:9102")
    kub = raw.get("keep_up_bound", {})
    bound = KeepUpBound()
    if not isinstance(kub, dict):
        bad("keep_up_bound", "must be an object", expected="{rate_pct, send_error_p99_ms}")
    else:
        for key in kub:
            if key not in ("rate_pct", "send_error_p99_ms"):
                bad(f"keep_up_bound.{key}", "unknown field", expected="rate_pct, send_error_p99_ms")
        rp = kub.get("rate_pct", 1.0)
        sp = kub.get("send_error_p99_ms", 1.0)
        if not _num(rp) or rp < 0:
            bad("keep_up_bound.rate_pct", f"must be a non-negative number, got {rp!r}")
        elif not _num(sp) or sp < 0:
            bad("keep_up_bound.send_error_p99_ms", f"must be a non-negative number, got {sp!r}")
        else:
            bound = KeepUpBound(float(rp), float(sp))
    if problems:
        raise InputError(problems)
    return WorkloadConfig(
        targets=targets,
        mix={k: float(v) for k, v in mix.items()},
        rate=rate,
        duration=duration,
        arrival=arrival,
        seed=seed,
        start_at=float(start_at) if start_at is not None else None,
        timeout=timeout,
        max_in_flight=max_in_flight,
        connections=connections,
        records_path=records_path,
        summary_path=raw.get("summary_path"),
        metrics_listen=listen,
        keep_up_bound=bound,
    )


def load_config(path: str | Path) -> WorkloadConfig:
    """Read and validate a JSON workload config file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(Problem("no such file", file=str(path))) from None
    except json.JSONDecodeError as e:
        raise InputError(Problem(f"not valid JSON: {e.msg}", file=str(path), line=e.lineno, column=e.colno)) from None
    return to_config(raw, file=str(path))


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = str(listen).rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not HOST:PORT: {listen!r}")
    return host.strip("[]"), int(port)
