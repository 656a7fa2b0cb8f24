"""Export a run directory to other layouts: RCAEval's case layout, plain CSV, or a parquet copy.

Map:
  export_dataset(path, fmt, out_dir) -> Path    fmt: rcaeval | csv | parquet; refuses an unverified run
  to_rcaeval(ds, out_dir) -> Path               <out>/<system>/<service>_<fault>/<n>/
  rcaeval_fault_name(type) -> str               grayctl fault type -> RCAEval's short name
  to_csv(ds, out_dir), to_parquet(path, out_dir)

RCAEval layout (RE1/RE2 as distributed; its loaders read these names):
  metrics.csv     ``time`` (epoch seconds, int) + one column per series named ``<entity>_<metric>``,
                  the metric's underscores made hyphens (RCAEval splits a column at the first ``_`` to
                  get the service, e.g. ``social-graph-service_p99-seconds``). Node series keep the node
                  name as entity. Colliding names across layers get the layer: ``<entity>_<layer>-<metric>``.
  data.csv        the same table (RE1's name), a hard link when the filesystem allows
  inject_time.txt the first fault's host-measured start, epoch seconds (int)
  logs.csv        time, timestamp (ns), container_name, message, level, req_path, error
  traces.csv      time, traceID, spanID, serviceName, methodName, operationName, startTimeMillis,
                  startTime (µs), duration (µs), statusCode, parentSpanID
grayctl extras that RCAEval ignores: injection.json (with the fault *end*, which RCAEval lacks),
labels.csv (per-second labels, incl. gray), and case.json (root cause service/indicator, run id).
``<system>`` is the topology name; ``<n>`` is the next free integer (1, 2, ...), like RCAEval's repeats.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from grayctl.dataset import Dataset, load
from grayctl.dataset.tables import MISSING_SUFFIX
from grayctl.dataset.verify import verify_dataset
from grayctl.errors import DatasetError
from grayctl.faults.catalog import CATALOG

__all__ = ["FORMATS", "export_dataset", "rcaeval_fault_name", "to_csv", "to_parquet", "to_rcaeval"]

FORMATS = ("rcaeval", "csv", "parquet")
NS = 1_000_000_000


def rcaeval_fault_name(fault_type: str) -> str:
    """RCAEval's name of a fault type (cpu, mem, disk, delay, loss, socket, ...: the catalog's
    ``export["rcaeval"]``); a type the catalog does not name keeps grayctl's name unhyphenated."""
    ft = CATALOG.get(fault_type)
    if ft is not None and "rcaeval" in ft.export:
        return ft.export["rcaeval"]
    return fault_type.replace("-", "").replace("_", "")


def _epoch_s(col: pd.Series) -> np.ndarray:
    return col.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy() // NS


def rcaeval_metrics(ds: Dataset) -> pd.DataFrame:
    f = ds.features
    cols = [c for c in f.columns if c != "ts" and not c.endswith(MISSING_SUFFIX)]
    parts = [c.split("/", 2) for c in cols]
    short = [f"{e}_{m.replace('_', '-')}" for _, e, m in parts]
    dup = {s for s in short if short.count(s) > 1}
    names = [f"{e}_{layer}-{m.replace('_', '-')}" if s in dup else s for (layer, e, m), s in zip(parts, short)]
    out = pd.DataFrame({"time": _epoch_s(f["ts"])})
    return pd.concat([out, f[cols].set_axis(names, axis=1)], axis=1)


def _next_case(base: Path) -> Path:
    n = 1
    while (base / str(n)).exists():
        n += 1
    return base / str(n)


def to_rcaeval(ds: Dataset, out_dir: str | Path) -> Path:
    inj = [r for r in ds.injections if r.get("start_ns") is not None]
    if not inj:
        raise DatasetError("this run has no applied fault (no host start time in injection.json): "
                           "RCAEval cases need an injection time")
    first = min(inj, key=lambda r: r["start_ns"])
    service = str(first.get("target_service") or first.get("service") or first.get("target"))
    system = Path(str(ds.manifest["experiment"].get("topology") or "grayctl")).name
    case = _next_case(Path(out_dir) / system / f"{service}_{rcaeval_fault_name(str(first.get('type')))}")
    case.mkdir(parents=True)
    rcaeval_metrics(ds).to_csv(case / "metrics.csv", index=False)
    try:
        os.link(case / "metrics.csv", case / "data.csv")
    except OSError:
        shutil.copyfile(case / "metrics.csv", case / "data.csv")
    (case / "inject_time.txt").write_text(f"{int(first['start_ns']) // NS}\n")

    logs = ds.logs
    ts_ns = logs["ts"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64") if len(logs) else pd.Series([], "int64")
    pd.DataFrame({
        "time": ts_ns // NS, "timestamp": ts_ns,
        "container_name": logs.get("service", pd.Series([""] * len(logs))).astype("string"),
        "message": logs.get("message", pd.Series([""] * len(logs))).astype("string"),
        "level": logs.get("level", pd.Series([""] * len(logs))).astype("string"),
        "req_path": "", "error": logs.get("error", pd.Series([""] * len(logs))),
    }).to_csv(case / "logs.csv", index=False)

    sp = ds.spans
    st = sp["start_ns"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64") if len(sp) else pd.Series([], "int64")
    pd.DataFrame({
        "time": st // NS, "traceID": sp.get("trace_id"), "spanID": sp.get("span_id"),
        "serviceName": sp.get("service"), "methodName": sp.get("endpoint"),
        "operationName": (sp["component"].astype(str) + "." + sp["endpoint"].astype(str)) if len(sp) else [],
        "startTimeMillis": st // 1_000_000, "startTime": st // 1000,
        "duration": (sp["duration_ns"] // 1000) if len(sp) else [],
        "statusCode": sp.get("status"), "parentSpanID": sp.get("parent_id"),
    }).to_csv(case / "traces.csv", index=False)

    lab = ds.labels.copy()
    lab.insert(0, "time", _epoch_s(lab["ts"]))
    lab.drop(columns=["ts"]).to_csv(case / "labels.csv", index=False)
    (case / "injection.json").write_text(json.dumps(ds.injections, indent=1, default=str) + "\n")
    (case / "case.json").write_text(json.dumps({
        "run_id": ds.run_id, "system": system, "root_cause_service": service,
        "fault": rcaeval_fault_name(str(first.get("type"))), "grayctl_fault_type": first.get("type"),
        "inject_time": int(first["start_ns"]) // NS,
        "fault_end_time": (int(first["end_ns"]) // NS) if first.get("end_ns") is not None else None,
    }, indent=1) + "\n")
    return case


def to_csv(ds: Dataset, out_dir: str | Path) -> Path:
    """Every table as ``<name>.csv`` (timestamps ISO 8601 UTC) plus the JSON/YAML documents as they are."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from grayctl.dataset import TABLES
    for name in TABLES:
        ds.table(name).to_csv(out / f"{name}.csv", index=False)
    for doc in ("manifest.json", "experiment.yaml", "topology.json", "injection.json", "README.md"):
        if (ds.path / doc).is_file():
            shutil.copyfile(ds.path / doc, out / doc)
    return out


def to_parquet(path: Path, out_dir: str | Path) -> Path:
    """A byte-for-byte copy of the run directory (it verifies at the destination too)."""
    dest = Path(out_dir) / path.name if Path(out_dir).exists() else Path(out_dir)
    shutil.copytree(path, dest)
    return dest


def export_dataset(path: str | Path, fmt: str, out_dir: str | Path) -> Path:
    """Verify the run, then export it; DatasetError when it does not verify or ``fmt`` is unknown."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    problems = verify_dataset(path)
    if problems:
        raise DatasetError(f"{path} does not verify ({len(problems)} problem(s)): " + "; ".join(problems[:3]),
                           hint=f"grayctl dataset verify {path}")
    ds = load(path)
    if fmt == "rcaeval":
        return to_rcaeval(ds, out_dir)
    if fmt == "csv":
        return to_csv(ds, out_dir)
    return to_parquet(Path(path), out_dir)
