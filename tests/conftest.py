"""Suite-wide: the wall time of each tier (tests/<tier>/) and of each slow test file, printed at the end
of every run, so the CI budget of each tier stays visible (docs: README, Tests)."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

_spent: dict[str, float] = defaultdict(float)
_counts: dict[str, int] = defaultdict(int)
_files: dict[str, float] = defaultdict(float)  # per test file, setup and teardown included


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    parts = item.nodeid.split("/")
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]
    t0 = time.monotonic()
    yield
    spent = time.monotonic() - t0
    _spent[tier] += spent
    _counts[tier] += 1
    _files[item.nodeid.split("::")[0]] += spent


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _spent:
        return
    terminalreporter.section("wall time per tier")
    for tier, seconds in sorted(_spent.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{tier:10s} {seconds / 60:6.1f} min  ({_counts[tier]} tests)")
    terminalreporter.section("wall time per test file (over 1 min)")
    for path, seconds in sorted(_files.items(), key=lambda kv: -kv[1]):
        if seconds >= 60:
            terminalreporter.write_line(f"{seconds / 60:6.1f} min  {path}")
