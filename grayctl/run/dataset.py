"""The run's dataset, through its one writer: begun before anything touches the lab, assembled from
what was collected, amended with the run's late facts and sealed at the end.

Map:
  begin_dataset(r)        runs/<run-id>/ with an ``incomplete`` manifest; raw/plan.json
  assemble(r, status)     the dataset + report from the collected records (grayctl.dataset.assemble),
                          with the checks' verdicts (evaluated against Prometheus before: grayctl.checks)
  close_dataset(r, ...)   the run's own fields (teardown, checks, how it ended, the baseline policy)
                          through ``writer.amend``, then ``writer.seal()``: nothing is written after
  read_node_files(root)   spans and structured logs fetched from the nodes, as frames

Nothing here writes manifest.json itself: the writer (grayctl.dataset.writer) does.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from grayctl.dataset.assemble import assemble_run
from grayctl.dataset.labels import observer_from_metrics
from grayctl.dataset.load_validity import load_block
from grayctl.dataset.writer import DatasetWriter
from grayctl.injection import load_records, to_injection_json
from grayctl.run.context import Run

__all__ = ["assemble", "begin_dataset", "close_dataset", "read_node_files"]

NS = 1_000_000_000


def begin_dataset(r: Run) -> None:
    """The dataset directory with an ``incomplete`` manifest, before anything touches the lab."""
    r.rec.records_dir.mkdir(parents=True, exist_ok=True)
    r.raw.mkdir(parents=True, exist_ok=True)
    # The run's one writer of its dataset: the assembly finishes it, close_dataset amends and seals it.
    r.writer = DatasetWriter(r.rec.run_dir, {
        "run_id": r.rec.run_id, "run_status": "running",
        "experiment": {"name": r.exp.name, "topology": r.exp.topology.name,
                       "source": str(r.exp.source) if r.exp.source else None},
        "times": {"start_utc": None, "duration_s": r.plan.duration_s},
        "records": str(r.rec.records_dir),
    })
    r.writer.begin()
    (r.raw / "plan.json").write_text(json.dumps(r.plan.to_dict(), indent=1, default=str))


def assemble(r: Run, status: str) -> None:
    start_ns = round(r.start_s() * NS)
    end_ns = round((r.run_end_s or time.time()) * NS)
    end_ns = min(end_ns, start_ns + int(r.plan.duration_s * NS)) if status == "complete" else end_ns
    requests = pd.read_parquet(r.requests_path) if r.requests_path else None
    metrics = r.metrics_df
    observer = observer_from_metrics(metrics) if metrics is not None and len(metrics) else None
    injections = to_injection_json(load_records(r.raw / "faults"), status)["faults"]
    spans, logs = read_node_files(r.raw / "nodes")
    offsets = r.clock.get("start") or {}
    # Deferred: loaded by the steps' playbooks long before; importing the run costs no ansible-runner.
    import ansible_runner

    r.emit("step_start", step="assemble", phase="collect", why="dataset + report")
    t = time.monotonic()
    assemble_run(
        r.rec.run_dir, experiment=r.exp, plan=r.plan, requests_df=requests, metrics_long_df=metrics,
        spans_df=spans, observer_df=observer, logs_df=logs, injections=injections,
        fingerprints=r.fingerprints,
        clock={"start_ns": start_ns, "end_ns": end_ns, "offsets": offsets,
               "offsets_end": r.clock.get("end") or {}},
        versions={"ansible-runner": getattr(ansible_runner, "__version__", None) or _dist("ansible-runner"),
                  "ansible-core": _dist("ansible-core")},
        status="complete" if status == "complete" else "failed", run_id=r.rec.run_id,
        seeds={"workload": r.exp.workload.seed}, writer=r.writer, checks=r.rec.checks or None,
        load=r.summary, allow_invalid_load=r.allow_invalid_load)
    r.rec.load = r.writer.written.get("load")
    r.rec.dataset = r.rec.run_dir
    r.rec.report = r.rec.run_dir / "report.html"
    secs = round(time.monotonic() - t, 2)
    r.rec.steps.append({"name": "assemble", "phase": "collect", "seconds": secs, "ok": True})
    r.emit("step_end", step="assemble", phase="collect", seconds=secs)


def close_dataset(r: Run, status: str) -> None:
    """The run's own fields into the manifest, then seal it: nothing is written into the dataset after.

    ``baseline`` gets the drift policy and, per node and check, what was accepted (golden vs seen);
    the per-node fingerprints are already there (assemble)."""
    rec = r.rec
    assert r.writer is not None
    r.writer.amend(teardown={"keep": r.keep, "path": rec.teardown_path, "verify_clean": rec.verify_clean,
                             "steps": rec.steps, "cleanup": rec.cleanup},
                   checks=rec.checks,
                   run_status=status,
                   # interrupted, or a node lost on the way: what was collected is not the whole run
                   **({"status": "incomplete"} if status == "incomplete" or r.lost_nodes else {}),
                   **({"lost_nodes": sorted(r.lost_nodes)} if r.lost_nodes else {}),
                   **({"load": load_block(r.summary, allowed=r.allow_invalid_load)} if r.rec.load is None else {}),
                   **({"error": rec.error} if rec.error else {}))
    baseline = r.writer.written.get("baseline") or {}
    baseline.update(drift_policy="accept" if r.accept_drift else "refuse",
                    drift_accepted=r.drift_accepted,
                    # "reused": the previous run's end reset and verify, moments before (steps.FRESH_S);
                    # "verified": a verify found every node at its golden baseline, no reset needed
                    reset=rec.reimage,
                    reset_by=r.fresh_from.run_id if rec.reimage == "reused" and r.fresh_from else None)
    r.writer.amend(baseline=baseline)
    r.writer.seal()  # the dataset is done; run.json is the run's own record, outside it


def _dist(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def read_node_files(root: Path) -> tuple[Any, Any]:
    """Spans and structured logs fetched from the nodes: ``<root>/<node>/<service>-<replica>/*.jsonl``."""
    spans: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    for p in sorted(root.glob("*/*/spans.jsonl")):
        for line in p.read_text(errors="replace").splitlines():
            try:
                spans.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill: the rest of the file is whole
    for p in sorted(root.glob("*/*/runtime.jsonl")):
        node = p.parent.parent.name
        for line in p.read_text(errors="replace").splitlines():
            try:
                d = json.loads(line)
                ts = pd.Timestamp(d["ts"]).tz_convert("UTC").value
            except (ValueError, KeyError, TypeError):
                continue
            logs.append({"ts": ts, "node": node, "service": str(d.get("service", p.parent.name)),
                         "level": str(d.get("level", "info")), "event": str(d.get("event", "")), "message": line})
    spans_df = pd.DataFrame(spans) if spans else None
    if spans_df is not None:
        for c in ("start_ns", "end_ns"):
            if c in spans_df:
                spans_df[c] = pd.to_numeric(spans_df[c], errors="coerce").astype("Int64")
        spans_df = spans_df.dropna(subset=["start_ns", "end_ns"]).astype({"start_ns": "int64", "end_ns": "int64"})
    logs_df = pd.DataFrame(logs) if logs else None
    return spans_df, logs_df
