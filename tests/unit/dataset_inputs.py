"""Real inputs for dataset and report tests: a real runtime, the real load generator, real health checks.

Built once per test module (``real_inputs(tmp)``):
  - a two-service topology (front -> db) deployed as two ``python -m grayctl.runtime`` processes;
  - three back-to-back ``python -m grayctl.workload`` runs at one rate, started with ``--start-at`` so
    they tile the timeline: warmup+baseline against ``/front/fast``; the "fault" window against
    ``/front/slow``, served by service db's other component (store latency 120 ms instead of 2 ms:
    what users see rises as it would under a network-latency fault on db); recovery against ``/front/fast`` again;
  - an observer thread polling every service's ``/health`` and ``/metrics`` every 250 ms (real
    health verdicts and real runtime gauges: queued/in-flight requests, process CPU);
  - the fault record is written as the fault roles write theirs, with the host times of the slow
    window (measured here, on this host, in UTC ns);
  - node/network-layer metrics, which need Prometheus and node exporters, are SYNTHETIC but
    plausible (CPU ratio and TCP retransmits per node), with one deliberately missing second.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grayctl.experiment import load_experiment
from grayctl.runtime.config import service_config

TOPO = """
name: dstest
application:
  components:
    front:
      endpoints:
        fast: {calls: [db.get]}
        slow: {calls: [dbslow.get]}
    db:
      store: {latency: 2ms}
      endpoints:
        get: {work: {store_ops: 1, response_size: 200B}}
    dbslow:
      store: {latency: 120ms}
      endpoints:
        get: {work: {store_ops: 1, response_size: 200B}}
  requests:
    fast: {entry: front.fast, mix: 100%}
decomposition:
  front: [front]
  db: [db, dbslow]
placement:
  front: {slots: [n1]}
  db: {slots: [n2]}
"""

EXPERIMENT = """
name: dstest-latency
description: Unit-test run, latency on db (real runtime and load generator on 127.0.0.1).
hypothesis: p99 rises during the fault while /health stays green.
topology: {topo}
workload: {{rate: 40/s, arrival: constant, seed: 7}}
schedule: {{warmup: 1s, baseline: 3s, fault: 3s, recovery: 2s}}
chaos_injection:
  type: network-latency
  target_service: db
  parameters: {{delay: 120ms}}
checks:
  - name: users-p99-bounded
    query: user_p99_seconds
    phase: fault
    tolerance: {{relative_to_baseline: <=1.5x}}
  - name: queue-small
    query: max(grayctl_queued_requests)
    phase: all
    tolerance: {{max: 5}}
  - name: promql-only
    query: 'histogram_quantile(0.99, sum by (le) (rate(grayctl_request_duration_seconds_bucket[10s])))'
    tolerance: {{max: 250ms}}
"""
RATE = 40.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gauges(text: str, names: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if m and m.group(1) in names:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


class Observer(threading.Thread):
    """Polls /health and /metrics of each service (what a failure detector and a scraper would see)."""

    def __init__(self, services: dict[str, dict[str, int]]) -> None:
        super().__init__(daemon=True)
        self.services = services
        self.stop = threading.Event()
        self.health: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for svc, ports in self.services.items():
                ts = time.time_ns()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{ports['port']}/health", timeout=1) as r:
                        ok = r.status == 200
                except OSError:
                    ok = False
                self.health.append({"ts": ts, "entity": svc, "check": "http-health", "healthy": ok, "detail": ""})
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics_port']}/metrics", timeout=1) as r:
                        g = _gauges(r.read().decode(), ("grayctl_queued_requests", "grayctl_inflight_requests",
                                                        "process_cpu_seconds_total"))
                except OSError:
                    g = {}
                for name, v in g.items():
                    self.metrics.append({"ts": ts, "layer": "app", "entity": svc, "metric": name, "value": v})
            self.stop.wait(0.25)


def _loadgen(url: str, start_at: float, duration: float, records: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "grayctl.workload", "--url", url, "--rate", str(RATE),
                             "--duration", str(duration), "--arrival", "constant", "--seed", "7",
                             "--start-at", f"{start_at:.3f}", "--timeout", "2", "--records", str(records)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _synthetic_node_metrics(start_ns: int, seconds: int, fault: tuple[float, float]) -> pd.DataFrame:
    """SYNTHETIC node/network layers (Prometheus + node exporter are not available in a unit test)."""
    rng = np.random.default_rng(3)
    rows = []
    t0 = start_ns // 1_000_000_000 * 1_000_000_000
    for s in range(seconds):
        ts = t0 + s * 1_000_000_000
        in_fault = fault[0] <= s < fault[1]
        for node in ("n1", "n2"):
            if node == "n2" and s == 2:
                continue  # a scrape that failed: must show up as missing, not vanish
            rows.append({"ts": ts, "layer": "system", "entity": node, "metric": "cpu_usage_ratio",
                         "value": 0.2 + 0.02 * rng.standard_normal() + (0.1 if in_fault and node == "n1" else 0)})
            rows.append({"ts": ts, "layer": "network", "entity": node, "metric": "tcp_retransmits_per_second",
                         "value": float(rng.poisson(0.5))})
    return pd.DataFrame(rows)


def real_inputs(tmp: Path) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "dstest.yaml").write_text(TOPO)
    (tmp / "exp.yaml").write_text(EXPERIMENT.format(topo=tmp / "dstest.yaml"))
    exp = load_experiment(tmp / "exp.yaml")
    topo = exp.topology
    placement = {s: [{"data_ip": "127.0.0.1", "port": free_port(), "mgmt_ip": "127.0.0.1",
                      "metrics_port": free_port()}] for s in topo.services}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for s in topo.services:
            cfg = service_config(topo, s, placement, spans_path=str(tmp / f"spans-{s}.jsonl"),
                                 log_path=str(tmp / f"log-{s}.jsonl"), seed=1)
            cfg["span_flush"] = 0.2
            (tmp / f"{s}.json").write_text(json.dumps(cfg))
            procs[s] = subprocess.Popen([sys.executable, "-m", "grayctl.runtime", "--config", str(tmp / f"{s}.json"),
                                         "--ready-file", str(tmp / f"{s}.ready")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not all((tmp / f"{s}.ready").exists() for s in procs):
            assert time.monotonic() < deadline, "runtime did not start"
            time.sleep(0.05)
        obs = Observer({s: placement[s][0] for s in procs})
        obs.start()
        front = f"http://127.0.0.1:{placement['front'][0]['port']}"
        sched = exp.schedule
        w, b, f, r = (sched.warmup.seconds, sched.baseline.seconds, sched.fault.seconds, sched.recovery.seconds)
        # room for three interpreters to start on a loaded machine: the generator refuses a start in the past
        start = time.time() + 12.0
        gens = [_loadgen(front + "/front/fast", start, w + b, tmp / "r1.parquet"),
                _loadgen(front + "/front/slow", start + w + b, f, tmp / "r2.parquet"),
                _loadgen(front + "/front/fast", start + w + b + f, r, tmp / "r3.parquet")]
        for g in gens:
            _, err = g.communicate(timeout=60)
            assert (tmp / "r1.parquet").parent.exists() and g.returncode in (0, 4), err.decode()[-2000:]
        time.sleep(0.5)
        obs.stop.set()
        obs.join(5)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=10)
    parts = [pd.read_parquet(tmp / f"r{i}.parquet") for i in (1, 2, 3)]
    requests = pd.concat(parts, ignore_index=True)
    requests["seq"] = np.arange(len(requests))
    start_ns = int(start * 1e9)
    # host-measured fault window: when the slow phase's first and last requests were intended
    slow = parts[1]
    f_start = int(slow["intended_ns"].astype("int64").min())
    f_end = int(start_ns + (w + b + f) * 1e9)
    injection = {"fault_id": "f1", "id": "f1", "type": "network-latency", "service": "db", "target_service": "db",
                 "node": "n2", "interface": "data", "ports": [placement["db"][0]["port"]], "backend": "test-endpoint-swap",
                 "parameters": {"delay": "120ms"}, "commands": [{"argv": ["(test) switch load to /front/slow"], "rc": 0}],
                 "start_ns": f_start, "end_ns": f_end, "revert_verified": True}
    spans = []
    for p in tmp.glob("spans-*.jsonl"):
        spans += [json.loads(line) for line in p.read_text().splitlines() if line]
    logs = []
    for p in tmp.glob("log-*.jsonl"):
        for line in p.read_text().splitlines():
            d = json.loads(line)
            logs.append({"ts": pd.Timestamp(d["ts"]).tz_convert("UTC").value,  # runtime logs ISO 8601 UTC
                         "node": "n1" if "front" in p.name else "n2", "service": p.stem[4:],
                         "level": str(d.get("level", "info")), "event": str(d.get("event", "")),
                         "message": line})
    total = int(sched.total_s)
    fault_s = ((f_start - start_ns) / 1e9, (f_end - start_ns) / 1e9)
    app = pd.DataFrame(obs.metrics)
    # the CPU counter as a rate, as a PromQL rate() would give it
    cpu = app[app["metric"] == "process_cpu_seconds_total"].sort_values(["entity", "ts"]).copy()
    dt = cpu.groupby("entity")["ts"].diff() / 1e9
    cpu["value"] = cpu.groupby("entity")["value"].diff() / dt
    cpu["metric"] = "cpu_seconds_per_second"
    app = pd.concat([app[app["metric"] != "process_cpu_seconds_total"], cpu.dropna()], ignore_index=True)
    metrics = pd.concat([app, _synthetic_node_metrics(start_ns, total + 1, fault_s)], ignore_index=True)
    fingerprints = {n: {"host": n, "sha256": f"{i:064x}", "golden_sha256": f"{i:064x}", "verified": True,
                        "drift": [], "fingerprint": {"schema": 1, "hostname": n}} for i, n in enumerate(("n1", "n2"), 1)}
    return {"experiment": exp, "plan": {"binding": {"n1": "n1", "n2": "n2"},
                                        "replicas": [{"service": s, **placement[s][0]} for s in placement]},
            "requests_df": requests, "metrics_long_df": metrics, "spans_df": pd.DataFrame(spans),
            "observer_df": pd.DataFrame(obs.health), "logs_df": pd.DataFrame(logs), "injections": [injection],
            "fingerprints": fingerprints,
            "clock": {"start_ns": start_ns, "end_ns": start_ns + int(sched.total_s * 1e9),
                      "offsets": {"n1": {"start_ns": 0, "end_ns": 0}, "n2": {"start_ns": 0, "end_ns": 0}}},
            "versions": {"test": "unit"}}
