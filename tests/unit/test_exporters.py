"""The node exporter's fault series, from a real ``python -m grayctl.exporters`` process over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from localnet import free_port  # tests/unit is on sys.path (rootdir-less test dir)


def test_fault_records_become_grayctl_fault_active_while_in_force(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    base = {"type": "network-latency", "service": "social-graph-service", "target_service": "social-graph-service",
            "realisation": "host: delayer egress on node12 data"}
    (faults / "f1.json").write_text(json.dumps({**base, "fault_id": "f1", "status": "active", "start_ns": 1, "end_ns": None}))
    (faults / "f2.json").write_text(json.dumps({**base, "fault_id": "f2", "status": "reverted", "start_ns": 1, "end_ns": 2}))
    (faults / "f3.json").write_text(json.dumps({**base, "fault_id": "f3", "status": "scheduled", "start_ns": None}))
    (faults / "f1.stats.json").write_text("{}")  # a helper file, not a record
    port = free_port()
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "grayctl.exporters", "--listen", f"127.0.0.1:{port}",
                             "--fault-dir", str(faults), "--ready-file", str(ready)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "exporter not ready"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/qdisc", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [x for x in text.splitlines() if x.startswith("grayctl_fault_active{")]
    assert len(lines) == 2, text
    assert any('fault_id="f1"' in x and x.endswith(" 1") for x in lines)
    assert any('fault_id="f2"' in x and x.endswith(" 0") for x in lines)
    assert all('target="social-graph-service"' in x and 'realisation="host: delayer egress on node12 data"' in x
               for x in lines)
    if shutil.which("promtool"):  # Prometheus's own parser of the exposition format
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert "error" not in (check.stdout + check.stderr).lower(), check.stdout + check.stderr
    else:
        pytest.skip("promtool (Debian prometheus) not installed")
