"""report.html: renders from a dataset of real records, is self-contained, and renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grayctl.dataset
from grayctl.dataset.assemble import assemble_run
from grayctl.report import render_report

sys.path.insert(0, str(Path(__file__).parent))
from dataset_inputs import real_inputs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inputs = real_inputs(tmp_path_factory.mktemp("real"))
    d = tmp_path_factory.mktemp("runs") / "run-r"
    assemble_run(d, **inputs, status="complete")
    return d


def test_report_is_self_contained_and_says_what_happened(run: Path) -> None:
    html = (run / "report.html").read_text()
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html)
    assert not [r for r in refs if r.startswith(("http://", "https://", "//"))], refs
    assert "<script" not in html and "@import" not in html
    assert "gray failure" in html and "p99 latency rose from" in html
    assert html.count("<svg") >= 4  # latency, errors, labels ribbon, call graph / heatmaps
    assert "Cliff" in html and "not evaluated" in html  # PromQL-only check reported honestly


def test_report_renders_again_from_the_files(run: Path) -> None:
    html = render_report(grayctl.dataset.load(run))
    assert "gray failure" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_headless_chromium_renders_the_report(run: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1400,4000",
         (run / "report.html").as_uri()], check=False, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert png.is_file() and png.stat().st_size > 50_000  # a blank page is a few KB


def test_the_report_names_its_series_as_the_dataset_and_docs_metrics_do(run: Path) -> None:
    html = (run / "report.html").read_text()
    assert "Series in this report" in html
    assert "user/all/latency_p99_s" in html and "grayctl_workload_request_duration_seconds_bucket" in html


def test_tolerances_read_as_written_and_tiny_drifts_are_not_changes() -> None:
    import numpy as np

    from grayctl.report.render import meaningful_change, tolerance_text

    assert tolerance_text({"relative_to_baseline": ">= 1.5x"}) == "≥ 1.5 × baseline"
    assert tolerance_text({"max": "250ms"}) == "≤ 250ms"
    rss = np.linspace(44.0e6, 44.1e6, 20)  # a growing gauge: every fault second above every baseline one
    assert not meaningful_change(rss[:10], rss[10:])
    assert meaningful_change(np.full(10, 0.002), np.full(10, 0.2))
