"""grayctl.metrics: chunking math, and a real Prometheus scraping a real grayctl exporter on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grayctl.exporters import Exposition
from grayctl.exporters.cgroup import CgroupPaths, collect as collect_cgroup, parse_pressure
from grayctl.exporters.qdisc import parse_tc_json, to_exposition
from grayctl.metrics import MAX_POINTS, chunk_windows, collect_run_metrics, query_range_chunked
from localnet import free_port, wait_http  # tests/unit is on sys.path (rootdir-less test dir)


def test_chunks_cover_the_grid_once_and_stay_under_the_limit():
    w = chunk_windows(1000.0, 1000.0 + 25_000, 1.0)
    assert w[0][0] == 1000.0 and w[-1][1] == 26_000.0
    points = [round((e - s) / 1.0) + 1 for s, e in w]
    assert sum(points) == 25_001 and max(points) < MAX_POINTS
    assert all(b[0] - a[1] == 1.0 for a, b in zip(w, w[1:]))  # contiguous, no point twice


def test_a_short_window_is_one_chunk_and_bad_steps_are_refused():
    assert chunk_windows(0, 10, 1.0) == [(0.0, 10.0)]
    assert chunk_windows(0, 10, 3.0, max_points=2) == [(0.0, 3.0), (6.0, 9.0)]
    with pytest.raises(ValueError):
        chunk_windows(0, 10, 0)
    with pytest.raises(ValueError):
        chunk_windows(10, 0, 1)


def test_cgroup_exporter_reads_v1_and_v2_files(tmp_path):
    v2, cpu, mem = tmp_path / "unified", tmp_path / "cpu", tmp_path / "memory"
    for d in (v2, cpu, mem):
        d.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (v2 / "cpu.pressure").write_text("some avg10=12.50 avg60=1.00 avg300=0.00 total=3000000\n"
                                     "full avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n")
    (v2 / "cgroup.procs").write_text("1\n2\n")
    (cpu / "cpu.stat").write_text("nr_periods 10\nnr_throttled 4\nthrottled_time 2000000000\n")
    (cpu / "cpu.cfs_quota_us").write_text("50000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (mem / "memory.usage_in_bytes").write_text("1048576\n")
    (mem / "memory.limit_in_bytes").write_text("268435456\n")
    (mem / "memory.failcnt").write_text("3\n")
    text = collect_cgroup(CgroupPaths(str(v2), str(cpu), None, str(mem)))
    for line in ("grayctl_cgroup_cpu_usage_seconds_total 2.5", "grayctl_cgroup_cpu_throttled_periods_total 4",
                 "grayctl_cgroup_cpu_throttled_seconds_total 2", "grayctl_cgroup_cpu_limit_cores 0.5",
                 "grayctl_cgroup_memory_bytes 1048576", "grayctl_cgroup_memory_limit_bytes 268435456",
                 "grayctl_cgroup_memory_failcnt_total 3", "grayctl_cgroup_processes 2",
                 'grayctl_cgroup_pressure_stall_seconds_total{resource="cpu",kind="some"} 3',
                 'grayctl_cgroup_pressure_avg10_ratio{resource="cpu",kind="some"} 0.125'):
        assert line in text.splitlines(), line
    assert parse_pressure("some avg10=1.00 total=5\n")["some"]["total"] == 5.0


def test_qdisc_exporter_labels_handle_and_parent():
    q = parse_tc_json(json.dumps([
        {"kind": "prio", "handle": "1:", "dev": "data", "root": True, "bytes": 10, "packets": 1, "drops": 0,
         "overlimits": 0, "requeues": 0, "backlog": 0, "qlen": 0},
        {"kind": "netem", "handle": "10:", "parent": "1:1", "dev": "data", "bytes": 5, "packets": 1, "drops": 7,
         "overlimits": 0, "requeues": 0, "backlog": 300, "qlen": 2}]))
    text = to_exposition(q)
    assert 'grayctl_qdisc_drops_total{iface="data",kind="netem",handle="10:",parent="1:1"} 7' in text
    assert 'grayctl_qdisc_backlog_bytes{iface="data",kind="prio",handle="1:",parent="root"} 0' in text
    exp = Exposition()
    exp.add("x", "gauge", "h", 1.5, {"a": 'q"\\'})
    assert 'x{a="q\\"\\\\"} 1.5' in exp.render()




@pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("tc"), reason="needs prometheus and tc")
def test_real_prometheus_scraping_the_qdisc_exporter_gives_contiguous_chunked_data(tmp_path):
    exp_port, prom_port = free_port(), free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "grayctl.exporters", "--listen", f"127.0.0.1:{exp_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""
global: {{scrape_interval: 1s, scrape_timeout: 800ms}}
scrape_configs:
  - job_name: qdisc
    metrics_path: /metrics/qdisc
    static_configs: [{{targets: ["127.0.0.1:{exp_port}"], labels: {{layer: network, node: local}}}}]
""")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{prom_port}"
    try:
        wait_http(f"http://127.0.0.1:{exp_port}/metrics/qdisc")
        wait_http(url + "/-/ready")
        t0 = time.time()
        deadline = t0 + 30
        series = []
        while time.time() < deadline:  # service discovery applies targets ~5 s after start
            end = time.time()
            series = query_range_chunked(url, 'grayctl_qdisc_up{job="qdisc"}', end - 6, end, 1.0)
            if series and len(series[0]["values"]) >= 6:
                break
            time.sleep(1)
        end = time.time()
        # 1 s step with 3 points per chunk: several chunks, merged into one contiguous series
        series = query_range_chunked(url, 'grayctl_qdisc_up{job="qdisc"}', end - 7, end, 1.0, max_points=3)
        assert len(series) == 1
        ts = [float(v[0]) for v in series[0]["values"]]
        assert len(ts) >= 6 and all(abs(b - a - 1.0) < 1e-6 for a, b in zip(ts, ts[1:])), ts
        df = collect_run_metrics(url, end - 7, end, 1.0, {"qdisc_up": "grayctl_qdisc_up"})
        assert set(df.columns) == {"ts", "layer", "entity", "metric", "value"}
        assert str(df["ts"].dt.tz) == "UTC"
        extra = df[df["layer"] == "extra"]
        assert not extra.empty and (extra["value"] == 1).all()
        assert "node=local" in extra["entity"].iloc[0]
    finally:
        for p in (prom, exporter):
            p.terminate()
        for p in (prom, exporter):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
