"""PromQL as grayctl checks it: syntax by Prometheus's own parser, and the metric names a query reads.

Map:
  syntax_errors(queries) -> ({index: QueryError}, unchecked)   the queries through ``promtool check rules``
                          (each one a recording rule of a temporary rules file); ``unchecked`` says why
                          nothing was checked (no promtool on PATH, or it could not run), else None
  metric_names(query) -> {name}   the metric names a query selects (a tokenizer: for tests and lists)

Why promtool and not a parser of our own: a PromQL grammar written twice drifts from the one that
evaluates the query. promtool (Debian's ``prometheus`` package, next to the Prometheus the lab runs)
is that grammar. The live Prometheus of a run re-checks every query right after it starts
(grayctl.checks.ensure_checks_parse), so a machine without promtool still refuses a bad query
before any fault is applied.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PROMTOOL", "QueryError", "metric_names", "syntax_errors"]

PROMTOOL = "promtool"
_RULE_PREFIX = "grayctl_query_"
# promtool 2.x: 'FILE: 5:15: group "g", rule 1, "grayctl_query_0": could not parse expression: 1:16: parse error: ...'
_ERROR_RE = re.compile(r'"' + _RULE_PREFIX + r'(\d+)": (?:could not parse expression: )?(.*)$')
_POS_RE = re.compile(r"\A(\d+):(\d+): parse error: (.*)\Z")


@dataclass(frozen=True)
class QueryError:
    """What Prometheus's parser said of one query; ``line``/``column``: where in the query (1-based)."""

    message: str
    line: int | None = None
    column: int | None = None


def syntax_errors(queries: Sequence[str], *, promtool: str | None = None,
                  timeout: float = 30.0) -> tuple[dict[int, QueryError], str | None]:
    """Check ``queries`` with Prometheus's parser; ``({index: QueryError}, None)``, or ``({}, why)`` when
    they could not be checked. One promtool run for all of them (~50 ms)."""
    if not queries:
        return {}, None
    exe = promtool or shutil.which(PROMTOOL)
    if exe is None:
        return {}, (f"{PROMTOOL} is not installed, so PromQL syntax was not checked here "
                    "(apt-get install prometheus); the run's Prometheus checks it before any fault")
    return _check(tuple(queries), exe, timeout)


@functools.lru_cache(maxsize=128)  # validation runs again on every override and repetition
def _check(queries: tuple[str, ...], exe: str, timeout: float) -> tuple[dict[int, QueryError], str | None]:
    import subprocess
    import tempfile
    from pathlib import Path

    import yaml

    rules = [{"record": f"{_RULE_PREFIX}{i}", "expr": q} for i, q in enumerate(queries)]
    with tempfile.TemporaryDirectory(prefix="grayctl-promql-") as d:
        path = Path(d) / "queries.rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "grayctl", "rules": rules}]}))
        try:
            proc = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return {}, f"{exe} could not run ({err}), so PromQL syntax was not checked here"
    errors: dict[int, QueryError] = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        m = _ERROR_RE.search(line)
        if m and int(m.group(1)) < len(queries):
            errors.setdefault(int(m.group(1)), _message(m.group(2).strip()))
    if proc.returncode != 0 and not errors:
        tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
        return {}, f"{exe} check rules failed without naming a query ({tail}), so PromQL syntax was not checked"
    return errors, None


def _message(text: str) -> QueryError:
    m = _POS_RE.match(text)
    if m:
        line, col, what = m.groups()
        return QueryError(f"not valid PromQL: {what} (at {line}:{col} of the query; Prometheus's parser, promtool)",
                          int(line), int(col))
    return QueryError(f"not valid PromQL: {text} (Prometheus's parser, promtool)")


# -- metric names -------------------------------------------------------------------------------

_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                       "and", "or", "unless", "inf", "nan", "atan2", "start", "end"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")  # label matchers: their names are labels, not metrics
_BRACKETS = re.compile(r"\[[^\[\]]*\]")  # ranges and subqueries: durations
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(query: str) -> set[str]:
    """The metric names ``query`` selects: identifiers that are not functions, keywords, label names
    or durations, plus ``__name__="..."`` matchers. A tokenizer, so a query must parse first."""
    names = set(re.findall(r'__name__\s*=\s*"([A-Za-z_:][A-Za-z0-9_:]*)"', query))
    q = _STRING.sub('""', query)
    q = _BRACES.sub("", q)
    q = _BRACKETS.sub("", q)
    q = _GROUPING.sub("", q)
    for m in _NAME.finditer(q):
        name, call = m.group(1), m.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names
