"""Suite-wide: the wall time of each tier (tests/<tier>/), printed at the end of every run, so the
CI budget of each tier stays visible (docs: README, Tests)."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

_spent: dict[str, float] = defaultdict(float)
_counts: dict[str, int] = defaultdict(int)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    parts = item.nodeid.split("/")
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]
    t0 = time.monotonic()
    yield
    _spent[tier] += time.monotonic() - t0
    _counts[tier] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _spent:
        return
    terminalreporter.section("wall time per tier")
    for tier, seconds in sorted(_spent.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{tier:10s} {seconds / 60:6.1f} min  ({_counts[tier]} tests)")
