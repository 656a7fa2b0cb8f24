"""The shipped Grafana dashboard: valid PromQL (Prometheus's own parser), metrics grayctl exports, fault annotations."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "grayctl-run.json"


def _exprs(dash: dict) -> list[str]:
    out = [a["expr"] for a in dash["annotations"]["list"]]
    for p in dash["panels"]:
        out += [t["expr"] for t in p.get("targets", [])]
    return out


def test_every_query_names_metrics_grayctl_exports() -> None:
    dash = json.loads(DASHBOARD.read_text())
    source = "\n".join(p.read_text() for p in (ROOT / "grayctl").rglob("*.py"))
    for expr in _exprs(dash):
        for name in re.findall(r"\bgrayctl_[a-z0-9_]+", expr):
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert f'"{family}' in source or f"'{family}" in source or f" {family}" in source, (name, expr)


def test_the_fault_windows_are_annotations_from_the_fault_series() -> None:
    dash = json.loads(DASHBOARD.read_text())
    (ann,) = dash["annotations"]["list"]
    assert ann["expr"] == "grayctl_fault_active == 1" and "{{type}}" in ann["titleFormat"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"grayctl:dashboard_{i}", "expr": e.replace("$__rate_interval", "4s")}
        for i, e in enumerate(_exprs(dash))]}]}
    f = tmp_path / "rules.yml"
    f.write_text(yaml.safe_dump(rules))
    check = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
