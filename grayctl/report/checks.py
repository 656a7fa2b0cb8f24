"""Evaluate an experiment's steady-state checks on the dataset, where a check maps to a series we hold.

Map:
  evaluate_checks(checks, labels, metrics, phases) -> [dict(name, query, phase, tolerance, verdict, value, why)]

A check's ``query`` is PromQL written for Prometheus. Here it is evaluated only when it names a
series of the dataset exactly — a ``layer/entity/metric`` feature column, a bare metric name, an
aggregation ``min|max|avg|sum(<metric>)`` of one, or a user-level label column (``user_p99_seconds``,
``user_error_rate``, ``user_requests``). Anything else is reported "not evaluated" rather than
guessed at. The value of a check in a phase is the mean over that phase's seconds of the
per-second series (aggregated across entities by the query's function; ``max`` when bare: the
worst entity, since checks are guards).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from grayctl.units import parse_duration, parse_percent

__all__ = ["evaluate_checks"]

_AGG = re.compile(r"\A\s*(min|max|avg|sum)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*\)\s*\Z")
_USER = ("user_p99_seconds", "user_error_rate", "user_requests")
_REL = re.compile(r"\A(<=|>=)?\s*([0-9.]+)x\Z")


def _bound(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    s = str(v).strip()
    for parse, conv in ((parse_duration, lambda d: d.seconds), (parse_percent, lambda p: p.value / 100.0)):
        try:
            return float(conv(parse(s)))
        except ValueError:
            pass
    return float(s)


def _series(query: str, labels: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.Series | None, str]:
    q = query.strip()
    if q in _USER:
        return pd.Series(labels[q].to_numpy(dtype=float), index=labels["ts"]), f"labels.{q}"
    if metrics.empty:
        return None, "no metrics in this dataset"
    if q.count("/") == 2:
        layer, entity, metric = q.split("/")
        m = metrics[(metrics["layer"] == layer) & (metrics["entity"] == entity) & (metrics["metric"] == metric)]
        return (m.set_index("ts")["value"], q) if len(m) else (None, f"no series {q}")
    agg, name = "max", q
    mm = _AGG.match(q)
    if mm:
        agg, name = mm.group(1), mm.group(2)
    elif not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", q):
        return None, "PromQL expression: evaluate it against the run's Prometheus"
    m = metrics[metrics["metric"] == name]
    if m.empty:
        return None, f"no metric {name!r} in this dataset"
    sec = m["ts"].dt.floor("s")
    func = {"avg": "mean"}.get(agg, agg)
    return m.groupby(sec)["value"].agg(func), f"{agg} over {m['entity'].nunique()} entities of {name}"


def _phase_mean(s: pd.Series, labels: pd.DataFrame, phase: str) -> float:
    ts = labels["ts"] if phase == "all" else labels.loc[labels["phase"] == phase, "ts"]
    v = s.reindex(pd.DatetimeIndex(ts)).to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def evaluate_checks(checks: list[dict[str, Any]], labels: pd.DataFrame, metrics: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for c in checks:
        row = {"name": c.get("name"), "query": c.get("query"), "phase": c.get("phase", "all"),
               "tolerance": c.get("tolerance"), "fail_run": c.get("fail_run", False), "value": None,
               "verdict": "not evaluated", "why": ""}
        s, why = _series(str(c.get("query", "")), labels, metrics)
        row["why"] = why
        if s is not None:
            tol = c.get("tolerance") or {}
            value = _phase_mean(s, labels, row["phase"])
            row["value"] = value
            try:
                if "max" in tol:
                    ok = value <= _bound(tol["max"])
                elif "min" in tol:
                    ok = value >= _bound(tol["min"])
                else:
                    m = _REL.match(str(tol.get("relative_to_baseline", "")).replace(" ", ""))
                    base = _phase_mean(s, labels, "baseline")
                    ratio = value / base if base else float("nan")
                    row["value"], row["why"] = ratio, why + f" (ratio to baseline mean {base:.4g})"
                    ok = ratio <= float(m.group(2)) if (m and m.group(1) != ">=") else ratio >= float(m.group(2))
                row["verdict"] = "no data" if not np.isfinite(row["value"]) else ("pass" if ok else "fail")
            except (ValueError, AttributeError, TypeError) as e:
                row["verdict"], row["why"] = "not evaluated", f"tolerance not understood: {e}"
        out.append(row)
    return out
