"""PromQL syntax through Prometheus's own parser (the real promtool), through the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grayctl.promql import metric_names, syntax_errors

ROOT = Path(__file__).resolve().parents[2]
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="needs promtool (apt-get install prometheus)")

EXPERIMENT = """\
topology: three-tier
metrics:
  extra:
    fine_extra: 'sum(rate(grayctl_workload_requests_total[5s]))'
checks:
  - name: fine
    query: 'max(grayctl_observer_healthy)'
    tolerance: {{min: 1}}
  - name: broken
    query: {query}
    tolerance: {{max: 5}}
"""


def _grayctl(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "grayctl", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=False)


@needs_promtool
def test_validate_refuses_a_query_prometheus_cannot_parse_naming_file_line_and_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(EXPERIMENT.format(query="'sum(rate(grayctl_workload_requests_total[10s])'"))
    proc = _grayctl("validate", str(f))
    assert proc.returncode == 2, proc.stderr
    assert f"{f}:10:12: checks[1].query: not valid PromQL: unclosed left parenthesis" in proc.stderr, proc.stderr
    assert "checks[0]" not in proc.stderr and "Traceback" not in proc.stderr


@needs_promtool
def test_plan_refuses_it_too_before_it_needs_a_lab(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(EXPERIMENT.format(query="'rate(grayctl_workload_requests_total)'"))
    proc = _grayctl("plan", str(f), "--lab", str(tmp_path / "no-such-lab.yml"))
    assert proc.returncode == 2, proc.stderr
    assert "checks[1].query: not valid PromQL: expected type range vector in call to function" in proc.stderr


@needs_promtool
def test_an_extra_metric_query_is_checked_as_well(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(EXPERIMENT.format(query="up").replace("[5s]))'", "[5s])) +'"))
    proc = _grayctl("validate", str(f))
    assert proc.returncode == 2
    assert f"{f}:4:17: metrics.extra.fine_extra: not valid PromQL: unexpected end of input" in proc.stderr, proc.stderr


@needs_promtool
def test_valid_queries_pass_with_no_warning(tmp_path):
    f = tmp_path / "good.yaml"
    f.write_text(EXPERIMENT.format(query="'sum by (type) (rate(grayctl_workload_errors_total[10s]))'"))
    proc = _grayctl("validate", str(f))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ok  {f}" and "warning" not in proc.stderr


def test_without_promtool_validate_says_the_syntax_was_not_checked(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(EXPERIMENT.format(query="'sum(('"))
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = _grayctl("validate", str(f), path=str(empty))
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {f}: promtool is not installed, so PromQL syntax was not checked" in proc.stderr


@needs_promtool
def test_every_bad_query_of_a_batch_is_named_and_only_those_and_no_rules_file_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        errors, unchecked = syntax_errors(["up", "sum(", "x{a=}", 'rate(y[1m])', "1 +", "tmpdir-probe"])
    finally:
        tempfile.tempdir = None
    assert unchecked is None
    assert sorted(errors) == [1, 2, 4], errors
    assert all(e.message.startswith("not valid PromQL: ") for e in errors.values())
    assert list(tmp_path.iterdir()) == []  # the temporary rules file and its directory are gone


def test_metric_names_are_the_selected_series_not_functions_labels_or_durations():
    q = ('histogram_quantile(0.99, sum by (le, type) (rate(grayctl_workload_request_duration_seconds_bucket'
         '{type="read-home-timeline", job=~"a|b"}[10s] offset 1m))) / on(type) group_left '
         'clamp_min(grayctl_workload_in_flight, 1e-9) > bool 0 and {__name__="up"}')
    assert metric_names(q) == {"grayctl_workload_request_duration_seconds_bucket", "grayctl_workload_in_flight",
                               "up"}
    assert metric_names("min(grayctl_health_up)") == {"grayctl_health_up"}


@needs_promtool
def test_a_query_in_a_literal_block_is_pointed_at_the_line_of_the_file_where_the_parser_stopped(tmp_path):
    f = tmp_path / "block.yaml"
    f.write_text(EXPERIMENT.format(query="|\n      sum by (type) (\n        rate(grayctl_workload_requests_total)\n"
                                         "      )"))
    proc = _grayctl("validate", str(f))
    assert proc.returncode == 2, proc.stderr
    # line 12 of the file is the query's line 2; column 14 is where the argument of rate() starts
    assert f"{f}:12:14: checks[1].query: not valid PromQL: expected type range vector" in proc.stderr, proc.stderr
