"""Every check grayctl ships (experiments/, sweeps/, the docs' examples) reads metrics that exist.

"Exist" is derived from the code that exports them, not typed here: every metric name in the string
literals of the node-side producers (the service runtime, the load generator, the exporters, the
observer), histograms with their _bucket/_sum/_count series, plus the series Prometheus itself adds
to every target. A name that is only in a check is a check that can never have data.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from grayctl.metrics import QUERIES
from grayctl.promql import metric_names
from grayctl.workload.loadgen import LiveMetrics

ROOT = Path(__file__).resolve().parents[2]
PRODUCERS = ("grayctl/runtime", "grayctl/workload/loadgen.py", "grayctl/exporters", "grayctl/observer.py")
# What Prometheus adds to every scrape target (its documentation: "Jobs and instances").
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                  "scrape_series_added"}
_EXPORTED = re.compile(r"(?<![A-Za-z0-9_])((?:grayctl|process)_[a-z0-9_*]*[a-z0-9*])")


def _literals(tree: ast.AST) -> list[str]:
    """String literals, an f-string's placeholders as '*' (a name built from parts is a pattern)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "*" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
    return out


def exported() -> tuple[set[str], set[str]]:
    """(names, patterns) the producers export."""
    names: set[str] = set()
    for p in PRODUCERS:
        path = ROOT / p
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            for text in _literals(ast.parse(f.read_text())):
                names.update(_EXPORTED.findall(text))
    names |= PROMETHEUS_OWN
    return {n for n in names if "*" not in n}, {n for n in names if "*" in n}


def known(name: str, names: set[str], patterns: set[str]) -> bool:
    base = re.sub(r"_(bucket|sum|count)\Z", "", name)
    return any(n in names or any(fnmatch.fnmatchcase(n, p) for p in patterns) for n in (name, base))


def shipped_checks() -> list[tuple[str, str, str]]:
    """(file, check name, query) of every check grayctl ships."""
    out = []
    for f in sorted([*ROOT.glob("experiments/*.yaml"), *ROOT.glob("sweeps/*.yaml")]):
        doc = yaml.safe_load(f.read_text()) or {}
        for c in doc.get("checks") or []:
            out.append((str(f.relative_to(ROOT)), c["name"], c["query"]))
    for doc in ("experiment-format.md", "fault-catalog.md"):
        for block in re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / doc).read_text(), flags=re.DOTALL):
            if block.startswith("# file: experiment"):
                for c in (yaml.safe_load(block) or {}).get("checks") or []:
                    out.append((f"docs/{doc}", c["name"], c["query"]))
    return out


def test_the_exported_list_is_what_the_producers_render():
    """The derivation sees what a producer really renders (the load generator's /metrics here)."""
    names, patterns = exported()
    rendered = set(re.findall(r"^# TYPE (\S+) ", LiveMetrics(("read",), 1.0).render(), flags=re.MULTILINE))
    assert rendered and all(known(n, names, patterns) for n in rendered), rendered - names
    assert {"grayctl_observer_healthy", "grayctl_requests_total", "grayctl_request_duration_seconds",
            "grayctl_cgroup_memory_bytes", "process_cpu_seconds_total"} <= names
    # the names the shipped checks used to name, which nothing exports (issue 15)
    for gone in ("grayctl_health_up", "grayctl_requests_failed_total", "user_p99_seconds"):
        assert not known(gone, names, patterns), gone


def test_grayctl_ships_checks():
    assert len(shipped_checks()) >= 4


@pytest.mark.parametrize(("file", "name", "query"), shipped_checks(), ids=lambda v: str(v)[:40])
def test_every_shipped_check_reads_metrics_that_exist(file: str, name: str, query: str):
    names, patterns = exported()
    used = metric_names(query)
    assert used, f"{file}: check {name}: no metric in {query!r}"
    unknown = sorted(n for n in used if not known(n, names, patterns))
    assert not unknown, f"{file}: check {name}: nothing exports {unknown} ({query})"


def test_the_collected_queries_read_grayctl_metrics_that_exist():
    """The same rule for metrics.QUERIES (node_* names come from Debian's node exporter)."""
    names, patterns = exported()
    unknown = sorted({n for q in QUERIES for n in metric_names(q.promql.replace("$w", "5s"))
                      if not n.startswith("node_") and not known(n, names, patterns)})
    assert not unknown, unknown
