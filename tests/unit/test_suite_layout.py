"""The suite itself: test modules are imported by basename (tests/ has no packages, pytest's default
import mode), so two files of one name in different tiers stop collection of the whole run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_basename_is_unique_across_the_tiers() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for f in TESTS.rglob("*.py"):
        if f.name != "conftest.py" and "__pycache__" not in f.parts:
            where[f.name].append(str(f.relative_to(TESTS)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
