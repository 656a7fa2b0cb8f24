"""The experiment's steady-state checks, evaluated by the run's own Prometheus while it is up.

Map:
  ensure_checks_parse(url, experiment)   one instant query per check (/api/v1/query) as soon as the run's
                                         Prometheus is up: InputError naming file:line and checks[i].query
                                         for a query it refuses (bad_data), before any fault is applied
  evaluate_checks(url, checks, t0, end, phases, step) -> [row]   one range query per check over the run
                                         window; per phase the mean of its samples, then the verdict
  phase_means(series, t0, phases) -> ({phase: mean | None}, why)   the aggregation (pure)
  judge(tolerance, value, baseline) -> (verdict, value, why)       the tolerance logic (pure)
  not_evaluated(checks, why) -> [row]    rows for checks that never reached Prometheus
  VERDICTS, failing(rows)                what fails a run: a fail_run check with any verdict but pass

The value of a check in a phase is the mean, over the phase's seconds (the step's grid from t0; a
sample at offset ``s`` belongs to the phase with ``start_s <= s < end_s``, the run's last second to
the last phase; ``all`` is every sample of the run), of the query's range result. A query that
returns several series is reduced to the worst one at each step: ``max`` across series (checks are
guards, and the row's ``why`` says so); write the aggregation into the query to choose another.
``relative_to_baseline`` compares the phase's mean with the baseline phase's mean.

Verdicts: ``pass``, ``fail``, ``no data`` (no sample in the phase, or in the baseline for a ratio:
never a pass) and ``not evaluated`` (Prometheus refused the query or could not be reached, or the
ratio is undefined: a baseline mean of 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from grayctl.errors import InputError, Problem
from grayctl.experiment import Check, Experiment, Tolerance
from grayctl.metrics import MetricsError, query_instant, query_range_chunked
from grayctl.source import format_path, load_yaml_document

__all__ = ["VERDICTS", "ensure_checks_parse", "evaluate_checks", "failing", "judge", "not_evaluated",
           "phase_means"]

VERDICTS = ("pass", "fail", "no data", "not evaluated")
# The range query's grid starts at t0 rounded to the millisecond (and Prometheus answers in ms): a
# sample at a phase's first second may sit up to 1 ms before it, and belongs to it.
_GRID_EPS_S = 0.002
Phases = Sequence[tuple[str, float, float]]


def _row(c: Check) -> dict[str, Any]:
    return {"name": c.name, "query": c.query, "phase": c.phase, "tolerance": c.tolerance.to_dict(),
            "fail_run": c.fail_run, "value": None, "baseline": None, "verdict": "not evaluated", "why": "",
            "series": 0, "samples": 0, "phases": {}}


def not_evaluated(checks: Iterable[Check], why: str) -> list[dict[str, Any]]:
    out = []
    for c in checks:
        row = _row(c)
        row["why"] = why
        out.append(row)
    return out


def failing(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``fail_run`` checks that did not pass: a fail, no data, or not evaluated all fail the run."""
    return [c for c in rows if c.get("fail_run") and c.get("verdict") != "pass"]


# -- the live syntax check ------------------------------------------------------------------------

def _position(exp: Experiment, path: tuple[str | int, ...]) -> tuple[int | None, int | None]:
    if exp.source is None:
        return None, None
    try:
        _, positions = load_yaml_document(exp.source)
    except (InputError, OSError):
        return None, None
    pos = positions.value(path)
    return pos if pos else (None, None)


def ensure_checks_parse(url: str, exp: Experiment, *, timeout: float = 10.0) -> None:
    """Every check's query as an instant query to the live Prometheus. A query it refuses as
    ``bad_data`` (it cannot parse it, or its type cannot be evaluated over a range) is an
    InputError naming the file, line and ``checks[i].query``: the run stops before any fault.
    An unreachable Prometheus is left to the metrics step, which reports it."""
    problems = []
    for i, c in enumerate(exp.checks):  # a validated experiment holds every check of its file, in order
        path = ("checks", i, "query")
        why = None
        try:
            data = query_instant(url, c.query, timeout=timeout)
        except MetricsError as err:
            if err.error_type != "bad_data":
                continue
            why = f"Prometheus refused the query: {err.error}"
        else:
            if data.get("resultType") not in ("vector", "scalar"):
                why = (f"the query gives a {data.get('resultType')}, which has no value per second "
                       "(a range vector needs a function such as rate() around it)")
        if why:
            line, col = _position(exp, path)
            problems.append(Problem(why, file=str(exp.source) if exp.source else None, line=line, column=col,
                                    path=format_path(path), expected="a PromQL expression giving a vector or scalar"))
    if problems:
        raise InputError(problems, hint="fix the query; `grayctl validate` checks its syntax with promtool")


# -- evaluation -----------------------------------------------------------------------------------

def phase_means(series: Sequence[dict[str, Any]], t0: float, phases: Phases) -> tuple[dict[str, float | None], str]:
    """Per phase (and ``all``), the mean over its steps of the max across ``series`` (the API's
    ``[{"metric": {...}, "values": [[ts, "v"], ...]}]``); None for a phase without a finite sample."""
    worst: dict[float, float] = {}
    for s in series:
        for ts, v in s.get("values") or []:
            x = float(v)
            if math.isnan(x):  # e.g. a quantile of an empty histogram: no value that second
                continue
            t = round(float(ts), 3)
            worst[t] = max(worst.get(t, -math.inf), x)
    total = phases[-1][2] if phases else 0.0
    acc: dict[str, list[float]] = {p: [] for p, _, _ in phases}
    acc["all"] = []
    eps = _GRID_EPS_S
    for t, x in worst.items():
        off = t - t0
        if off < -eps or off > total + eps:
            continue
        acc["all"].append(x)
        for j, (p, a, b) in enumerate(phases):
            if a - eps <= off < b - eps or (j == len(phases) - 1 and off >= a - eps):
                acc[p].append(x)
                break
    means = {p: (math.fsum(v) / len(v) if v else None) for p, v in acc.items()}
    n = len(series)
    why = (f"max across {n} series at each step, then the phase mean" if n > 1 else
           "the phase mean of 1 series" if n == 1 else "the query returned no series")
    return means, why


def judge(tol: Tolerance, value: float | None, baseline: float | None) -> tuple[str, float | None, str]:
    """The verdict of one check: ``(verdict, value compared, why)``. No value is never a pass."""
    if value is None:
        return "no data", None, "no sample in the phase"
    if tol.kind == "max":
        return ("pass" if value <= tol.value else "fail"), value, f"mean {value:.4g} vs max {tol.value:g}"
    if tol.kind == "min":
        return ("pass" if value >= tol.value else "fail"), value, f"mean {value:.4g} vs min {tol.value:g}"
    if baseline is None:
        return "no data", None, "no sample in the baseline phase to compare with"
    if baseline == 0:
        return "not evaluated", None, f"the baseline mean is 0: no ratio to it (phase mean {value:.4g})"
    ratio = value / baseline
    ok = ratio <= tol.value if tol.op == "<=" else ratio >= tol.value
    return ("pass" if ok else "fail"), ratio, (f"ratio {ratio:.4g} (mean {value:.4g} / baseline mean "
                                                f"{baseline:.4g}) vs {tol.op}{tol.value:g}x")


def evaluate_checks(url: str, checks: Sequence[Check], *, t0: float, end: float, phases: Phases,
                    step: float = 1.0, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Each check as one range query over [t0, end] at ``step`` against the run's Prometheus, judged
    on its phase. Never raises for a query: a refusal or an unreachable Prometheus is the row's
    ``not evaluated`` with Prometheus's words."""
    rows = []
    for c in checks:
        row = _row(c)
        try:
            series = query_range_chunked(url, c.query, t0, max(end, t0), step, timeout=timeout)
        except MetricsError as err:
            row["why"] = err.message
            rows.append(row)
            continue
        means, how = phase_means(series, t0, phases)
        row["series"] = len(series)
        row["samples"] = sum(len(s.get("values") or []) for s in series)
        row["phases"] = means
        verdict, value, why = judge(c.tolerance, means.get(c.phase), means.get("baseline"))
        row.update(verdict=verdict, value=value, baseline=means.get("baseline")
                   if c.tolerance.kind == "relative_to_baseline" else None, why=f"{why}; {how}")
        rows.append(row)
    return rows
