"""The experiment's steady-state checks as the report shows them: the verdicts of the run's Prometheus.

Map:
  checks_of(dataset) -> [dict(name, query, phase, tolerance, verdict, value, why, fail_run)]

A check's ``query`` is PromQL, and Prometheus is its only evaluator: ``grayctl run`` evaluates every
check against the run's live Prometheus right after the metrics step, before the teardown removes it
(grayctl.checks), and the verdicts travel in the manifest (``checks``). A dataset holds per-second
series under grayctl's own names, not Prometheus's, so the report never re-evaluates a query on them;
a dataset without verdicts (assembled outside a run) says so for each check.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NO_VERDICT", "checks_of"]

NO_VERDICT = ("not evaluated: checks are evaluated by `grayctl run` against the run's Prometheus, "
              "and this dataset holds no verdicts")


def checks_of(ds: Any) -> list[dict[str, Any]]:
    """The manifest's verdicts, else one ``not evaluated`` row per check of the experiment."""
    stored = (ds.manifest or {}).get("checks")
    if stored:
        return [dict(c) for c in stored]
    return [{"name": c.get("name"), "query": c.get("query"), "phase": c.get("phase", "all"),
             "tolerance": c.get("tolerance"), "fail_run": c.get("fail_run", False), "value": None,
             "verdict": "not evaluated", "why": NO_VERDICT}
            for c in (ds.experiment or {}).get("checks") or []]
