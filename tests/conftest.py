"""Suite-wide: the time of each tier (tests/<tier>/) and of each slow test file, printed at the end of
every run, so the CI budget of each tier stays visible (docs: README, Tests).

scripts/test runs the test files on several workers at once (pytest-xdist), so a tier's time is two
figures: its tests' own time summed over the workers, and its span on the wall clock (its first
test's start to its last test's end). Reports reach the controlling process from every worker, so
``pytest_runtest_logreport`` sees them all with or without xdist."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

_spent: dict[str, float] = defaultdict(float)
_counts: dict[str, int] = defaultdict(int)
_span: dict[str, list[float]] = {}
_files: dict[str, float] = defaultdict(float)  # per test file, setup and teardown included
_t0 = time.time()


def _tier(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tier = _tier(report.nodeid)
    _spent[tier] += report.duration
    _files[report.nodeid.split("::")[0]] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _counts[tier] += 1
    start, stop = getattr(report, "start", None), getattr(report, "stop", None)
    if start and stop:
        span = _span.setdefault(tier, [start, stop])
        span[0], span[1] = min(span[0], start), max(span[1], stop)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _spent:
        return
    terminalreporter.section("time per tier (tests' own time, and its span on the wall clock)")
    for tier, seconds in sorted(_spent.items(), key=lambda kv: -kv[1]):
        span = _span.get(tier)
        on_wall = f"  span {(span[1] - span[0]) / 60:5.1f} min" if span else ""
        terminalreporter.write_line(f"{tier:10s} {seconds / 60:6.1f} min{on_wall}  ({_counts[tier]} tests)")
    terminalreporter.write_line(f"{'all':10s} {sum(_spent.values()) / 60:6.1f} min  "
                                f"wall {(time.time() - _t0) / 60:5.1f} min")
    terminalreporter.section("time per test file (over 1 min)")
    for path, seconds in sorted(_files.items(), key=lambda kv: -kv[1]):
        if seconds >= 60:
            terminalreporter.write_line(f"{seconds / 60:6.1f} min  {path}")
