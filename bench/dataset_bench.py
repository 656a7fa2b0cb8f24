"""Dataset assembly at realistic scale: a 10-minute run, 12 services, built synthetically.

    python bench/dataset_bench.py [--write-docs]

Sizes (per run): 600 s at 1 s; 12 services x 30 app metrics + 12 nodes x 20 system/network metrics
(600 series -> 360k long rows, a 600 x 1200 feature matrix with masks); 50 req/s -> 30k requests;
6 spans per request -> 180k spans; observer 12 entities x 1/s. Timings are wall-clock on this
machine (shared, noisy); sizes are what lands on disk (parquet, zstd).
With --write-docs the results replace the section between the dataset-bench markers of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import describe, write_section

from grayctl.dataset.assemble import assemble_run

NS = 1_000_000_000
DURATION = 600
SERVICES = [f"svc-{i:02d}" for i in range(12)]
NODES = [f"node{i}" for i in range(1, 13)]
RATE = 50


def experiment() -> dict:
    return {"name": "bench", "description": "synthetic 10-minute run", "hypothesis": "", "lab": "local",
            "topology": "bench-12", "workload": {"rate": "50/s", "arrival": "poisson", "mix": {}, "seed": 1,
                                                 "connections": 32},
            "schedule": {"warmup": "60s", "baseline": "240s", "fault": "120s", "recovery": "180s"},
            "chaos_injections": [], "metrics": {"interval": "1s", "extra": {}}, "repetitions": 1,
            "slo": {"latency_p99": "auto", "error_rate": "auto"}, "checks": []}


def inputs(start_ns: int) -> dict:
    rng = np.random.default_rng(1)
    f0, f1 = start_ns + 300 * NS, start_ns + 420 * NS
    secs = np.arange(DURATION)
    ts = start_ns // NS * NS + secs * NS
    rows = []
    for svc in SERVICES:
        for k in range(30):
            v = rng.gamma(2.0, 1.0, DURATION) * (1 + (svc == "svc-07") * ((ts >= f0) & (ts < f1)))
            rows.append(pd.DataFrame({"ts": ts, "layer": "app", "entity": svc, "metric": f"metric_{k:02d}_seconds",
                                      "value": v}))
    for node in NODES:
        for k in range(20):
            rows.append(pd.DataFrame({"ts": ts, "layer": "system" if k < 12 else "network", "entity": node,
                                      "metric": f"node_metric_{k:02d}", "value": rng.random(DURATION)}))
    metrics = pd.concat(rows, ignore_index=True)
    metrics["ts"] = pd.to_datetime(metrics["ts"], unit="ns", utc=True)
    n = RATE * DURATION
    intended = start_ns + np.sort(rng.uniform(0, DURATION, n)) * NS
    lat = rng.lognormal(np.log(0.01), 0.5, n) * 1e9
    lat[(intended >= f0) & (intended < f1)] += 0.2e9
    requests = pd.DataFrame({
        "seq": np.arange(n), "type": pd.Categorical(rng.choice(["read-home", "read-user", "compose"], n)),
        "intended_ns": pd.to_datetime(intended.astype("int64"), unit="ns", utc=True),
        "actual_ns": pd.to_datetime(intended.astype("int64") + 50_000, unit="ns", utc=True),
        "latency_corrected_ns": lat.astype("int64"), "latency_uncorrected_ns": lat.astype("int64") - 50_000,
        "status": np.full(n, 200, np.int16), "response_bytes": np.full(n, 1024),
        "error_kind": pd.Series([None] * n, dtype="string")})
    m = n * 6
    st = np.repeat(intended.astype("int64"), 6) + rng.integers(0, 5_000_000, m)
    spans = pd.DataFrame({
        "trace_id": [f"{i:032x}" for i in np.repeat(np.arange(n), 6)],
        "span_id": [f"{i:016x}" for i in range(m)], "parent_id": None,
        "service": rng.choice(SERVICES, m), "component": "c", "endpoint": "get",
        "kind": rng.choice(["server", "client"], m), "start_ns": st, "end_ns": st + rng.integers(1e5, 5e7, m),
        "status": 200, "attempt": 0, "error": None, "peer": None})
    obs = pd.DataFrame({"ts": np.repeat(ts, len(SERVICES)) + 200_000_000, "entity": np.tile(SERVICES, DURATION),
                        "check": "http-health", "healthy": True, "detail": ""})
    logs = pd.DataFrame({"ts": ts[::10], "node": "node1", "service": "svc-00", "level": "info",
                         "event": "tick", "message": "{}"})
    inj = [{"id": "f1", "type": "network-latency", "target_service": "svc-07", "node": "node8", "backend": "netem",
            "start_ns": int(f0), "end_ns": int(f1), "revert_verified": True}]
    fps = {n_: {"sha256": "0" * 64, "verified": True} for n_ in NODES}
    return {"experiment": experiment(), "plan": None, "requests_df": requests, "metrics_long_df": metrics,
            "spans_df": spans, "observer_df": obs, "logs_df": logs, "injections": inj, "fingerprints": fps,
            "clock": {"start_ns": start_ns, "end_ns": start_ns + DURATION * NS}, "versions": {}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    start_ns = 1_700_000_000_300_000_000
    data = inputs(start_ns)
    times, no_report, sizes = [], [], {}
    for _ in range(args.repeat):
        d = Path(tempfile.mkdtemp()) / "run"
        t = time.perf_counter()
        man = assemble_run(d, **data, status="complete")
        times.append(time.perf_counter() - t)
        no_report.append(man["assembly_seconds_before_report"])
        sizes = {k: v["bytes"] for k, v in man["files"].items()}
        shutil.rmtree(d.parent)
    total = sum(sizes.values())
    per_min_svc = total / (DURATION / 60) / len(SERVICES)
    lines = [
        f"Machine: {describe(pandas=pd.__version__)}.",
        "",
        (f"Synthetic 10-minute run (`python bench/dataset_bench.py`): {len(SERVICES)} services x 30 metrics + "
         f"{len(NODES)} nodes x 20 metrics = {len(data['metrics_long_df']):,} long metric rows; "
         f"{len(data['requests_df']):,} requests (50/s); {len(data['spans_df']):,} spans; "
         f"{len(data['observer_df']):,} observer verdicts."),
        "",
        "| measure | value |",
        "|---|---|",
        (f"| assembly, all files incl. report (median of {args.repeat}) | {np.median(times):.2f} s "
         f"(min {min(times):.2f}, max {max(times):.2f}) |"),
        f"| of which data files (before README + report) | {np.median(no_report):.2f} s |",
        f"| dataset size | {total / 2**20:.1f} MiB |",
        f"| size per minute per service | {per_min_svc / 2**10:.0f} KiB |",
        "",
        "| file | bytes |",
        "|---|---|",
        *[f"| `{k}` | {v:,} |" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])],
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_section("dataset-bench", text)

if __name__ == "__main__":
    main()
