"""Assemble one run directory from plain data: the observed tables, the inputs, the fault records.

Map:
  assemble_run(run_dir, *, experiment, plan, requests_df, metrics_long_df, spans_df, observer_df,
               logs_df, injections, fingerprints, clock, versions, status, ..., writer) -> manifest dict
  phases_of(experiment_dict) -> [(phase, start_s, end_s)]

Inputs are data, not services: the run pipeline queries Prometheus (``grayctl.metrics``) and fetches
node files, then calls this; tests call it with records produced by real components. Order of
writing (see ``writer``): manifest(incomplete) -> inputs -> labels (then injection.json, with the impact classes they give) -> tables -> README -> report ->
manifest(complete). Any exception leaves the directory marked incomplete.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from grayctl.dataset.card import render_card
from grayctl.dataset.labels import NS, make_labels, user_latency_ns
from grayctl.phases import figures_by_phase
from grayctl.dataset.impact import classify_impact
from grayctl.dataset.load_validity import load_block
from grayctl.dataset.tables import make_edges, make_features, normalise_metrics, to_table, utc_ns
from grayctl.dataset.writer import DatasetWriter, utc_iso
from grayctl.units import parse_duration

__all__ = ["FILES", "assemble_run", "phases_of"]

# Every file of a complete run directory, in the order it is written (manifest.json last).
FILES = ("experiment.yaml", "topology.json", "injection.json", "labels.parquet", "metrics.parquet",
         "features.parquet", "edges.parquet", "requests.parquet", "spans.parquet", "observer.parquet", "logs.parquet",
         "README.md", "report.html")
PHASE_NAMES = ("warmup", "baseline", "fault", "recovery")


def phases_of(experiment: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(phase, start_s, end_s) from the run start, from the resolved experiment's ``schedule``."""
    out, t = [], 0.0
    for name in PHASE_NAMES:
        d = parse_duration(experiment["schedule"][name]).seconds
        out.append((name, t, t + d))
        t += d
    return out


def _as_dict(obj: Any) -> dict[str, Any] | None:
    if obj is None or isinstance(obj, dict):
        return obj
    return obj.to_dict()


def _topology_doc(experiment: Any, plan: dict[str, Any] | None, exp: dict[str, Any]) -> dict[str, Any]:
    """topology.json: the resolved topology (call graph included) and where everything was placed."""
    doc: dict[str, Any] = {"topology": exp.get("topology")}
    topo = getattr(experiment, "topology", None)
    if topo is not None and hasattr(topo, "to_dict"):
        doc["definition"] = topo.to_dict()
    elif plan and "definition" in plan:
        doc["definition"] = plan["definition"]
    if plan:
        for key in ("lab", "binding", "replicas", "faults", "phases"):
            if key in plan:
                doc[key] = plan[key]
    return doc


def _topology_name(experiment: Any, exp: dict[str, Any]) -> str | None:
    """The topology's own name (a file path in the experiment still names e.g. gen3-disaggregated)."""
    topo = getattr(experiment, "topology", None)
    if topo is not None and getattr(topo, "name", None):
        return str(topo.name)
    ref = exp.get("topology")
    return Path(str(ref)).stem if ref else None


def _injection_doc(injections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fault records as the hosts wrote them, plus ISO renderings of the host timestamps."""
    out = []
    for rec in injections:
        r = dict(rec)
        r.setdefault("id", r.get("fault_id"))
        for k in ("start", "end"):
            ns = r.get(f"{k}_ns")
            r[f"{k}_utc"] = utc_iso(int(ns)) if ns is not None else None
        out.append(r)
    return out


def _fingerprint_summary(fingerprints: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Per node {sha256, golden_sha256, verified, drift, fingerprint} and one hash over all nodes."""
    nodes = {}
    for node, rec in sorted(fingerprints.items()):
        nodes[node] = {k: rec.get(k) for k in ("sha256", "golden_sha256", "verified", "drift", "fingerprint")}
    combined = hashlib.sha256(json.dumps({n: v["sha256"] for n, v in nodes.items()}, sort_keys=True)
                              .encode()).hexdigest()
    return nodes, combined


def _spans_frame(spans: pd.DataFrame | None) -> pd.DataFrame | None:
    if spans is None or spans.empty:
        return None
    df = spans.copy()
    if pd.api.types.is_integer_dtype(df["start_ns"]) and pd.api.types.is_integer_dtype(df["end_ns"]):
        df["duration_ns"] = df["end_ns"] - df["start_ns"]
    else:
        df["duration_ns"] = (df["end_ns"].astype("int64") - df["start_ns"].astype("int64"))
    return df


def _versions(given: dict[str, Any]) -> dict[str, Any]:
    import pyarrow

    from grayctl import __version__
    out = {"grayctl": __version__, "python": platform.python_version(), "pandas": pd.__version__,
           "pyarrow": pyarrow.__version__}
    out.update(given or {})
    return out


def assemble_run(run_dir: str | Path, *, experiment: Any, plan: Any, requests_df: pd.DataFrame | None,
                 metrics_long_df: pd.DataFrame | None, spans_df: pd.DataFrame | None,
                 observer_df: pd.DataFrame | None, logs_df: pd.DataFrame | None,
                 injections: list[dict[str, Any]], fingerprints: dict[str, dict[str, Any]],
                 clock: dict[str, Any], versions: dict[str, Any], status: str = "complete",
                 run_id: str | None = None, seeds: dict[str, Any] | None = None,
                 report: bool = True, writer: DatasetWriter | None = None,
                 checks: list[dict[str, Any]] | None = None,
                 load: dict[str, Any] | None = None, allow_invalid_load: bool = False) -> dict[str, Any]:
    """Write the run directory; return the final manifest.

    ``checks``: the verdicts the run's Prometheus gave the experiment's checks (grayctl.checks), into
    the manifest before the report shows them; None when there are none (the report says so).

    ``writer``: the run's own writer of ``run_dir``, begun when the run started; it is begun again
    with the full manifest and finished here, and stays the run's to amend and seal (``grayctl run``
    adds its teardown and checks). Without one, a writer of its own, finished here.

    ``clock``: ``{"start_ns": run start (schedule offset 0, UTC epoch ns), "end_ns": run end (optional),
    "offsets": {node: {...}} (optional)}``. ``status``: how the run itself ended — "complete", or
    "failed" (the data is whole but the run did not go as planned; the manifest says so).
    ``load``: the load generator's summary; when it judged itself invalid the dataset's status is
    ``invalid-load`` (its latencies and SLO labels include a lagging instrument), unless
    ``allow_invalid_load`` (then ``load.allowed_invalid`` says so).
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    exp = _as_dict(experiment) or {}
    plan_d = _as_dict(plan)
    phases = phases_of(exp)
    start_ns = int(clock["start_ns"])
    end_ns = int(clock.get("end_ns") or start_ns + int(phases[-1][2] * NS))
    requests = requests_df if requests_df is not None else pd.DataFrame(
        {"intended_ns": pd.Series([], dtype="datetime64[ns, UTC]"), "latency_corrected_ns": pd.Series([], dtype="int64"),
         "error_kind": pd.Series([], dtype="string")})
    nodes, fp_hash = _fingerprint_summary(fingerprints or {})
    exp_yaml = yaml.safe_dump(exp, sort_keys=False, allow_unicode=True)
    inj = _injection_doc(injections or [])
    backends = sorted({str(r.get("backend") or r.get("backend_requested")) for r in inj
                       if r.get("backend") or r.get("backend_requested")})
    manifest: dict[str, Any] = {
        "run_id": run_id or run_dir.name,
        "run_status": status,
        "experiment": {"name": exp.get("name"), "topology": _topology_name(experiment, exp),
                       "topology_ref": exp.get("topology"),
                       "sha256": hashlib.sha256(exp_yaml.encode()).hexdigest(),
                       "source": str(getattr(experiment, "source", "") or "") or None},
        "versions": _versions(versions),
        "times": {"start_ns": start_ns, "end_ns": end_ns, "start_utc": utc_iso(start_ns), "end_utc": utc_iso(end_ns),
                  "duration_s": (end_ns - start_ns) / NS,
                  "phases": [{"phase": p, "start_s": s, "end_s": e} for p, s, e in phases]},
        "clock": {k: v for k, v in clock.items() if k not in ("start_ns", "end_ns")},
        "seeds": {"workload": (exp.get("workload") or {}).get("seed"), **(seeds or {})},
        "fault_backends": backends,
        "faults": [{"id": r.get("id"), "type": r.get("type"),
                    "target": r.get("target_service") or r.get("service") or r.get("target"),
                    "node": r.get("node"), "start_utc": r.get("start_utc"), "end_utc": r.get("end_utc"),
                    "revert_verified": r.get("revert_verified")} for r in inj],
        "baseline": {"fingerprints_sha256": fp_hash, "nodes": nodes},
        "load": load_block(load, allowed=allow_invalid_load),
        **({"checks": checks} if checks is not None else {}),
    }
    w = writer if writer is not None else DatasetWriter(run_dir, manifest)
    w.begin(manifest)

    w.write_text("experiment.yaml", exp_yaml)
    w.write_json("topology.json", _topology_doc(experiment, plan_d, exp))

    labels, slo = make_labels(run_start_ns=start_ns, run_end_ns=end_ns, phases=phases, injections=inj,
                              requests=requests, observer=observer_df, slo=exp.get("slo") or {}, load=load)
    manifest["slo"] = slo
    manifest["labels"] = _label_counts(labels)
    # the users' figures per phase, by the labels' rule (grayctl.phases): the console's closing summary
    manifest["user_by_phase"] = figures_by_phase(
        _ns_of(requests["intended_ns"]), user_latency_ns(requests), requests["error_kind"].notna().to_numpy(),
        start_ns, phases) if len(requests) else {}
    # each fault window's impact class, beside its host records, in the manifest and in its summary
    impact = classify_impact(labels, seed=int((exp.get("workload") or {}).get("seed") or 0))
    for r in inj:
        r["impact"] = impact.get(str(r.get("id") or r.get("fault_id") or "fault"))
    for f in manifest["faults"]:
        f["impact"] = (impact.get(str(f.get("id"))) or {}).get("class")
    manifest["impact"] = {fid: v["class"] for fid, v in impact.items()}
    w.write_json("injection.json", inj)
    w.write_parquet("labels.parquet", to_table(labels, ("ts",)))

    metrics = normalise_metrics(metrics_long_df)
    w.write_parquet("metrics.parquet", to_table(metrics, ("ts",)))
    features = make_features(metrics, pd.DatetimeIndex(labels["ts"]))
    w.write_parquet("features.parquet", to_table(features, ("ts",)))
    w.write_parquet("edges.parquet", to_table(make_edges(metrics), ("ts",), empty="edges"))
    # The report reads these back as the files hold them (UTC timestamps), not as they were given.
    written: dict[str, pd.DataFrame] = {}
    for name, df, tcols, empty in (("requests", requests, ("intended_ns", "actual_ns", "wire_ns"), None),
                                   ("spans", _spans_frame(spans_df), ("start_ns", "end_ns"), "spans"),
                                   ("observer", observer_df, ("ts",), "observer")):
        table = to_table(df, tcols, empty=empty)
        w.write_parquet(f"{name}.parquet", table)
        written[name] = table.to_pandas()
    w.write_parquet("logs.parquet", to_table(logs_df, ("ts",), empty="logs"))

    manifest["assembly_seconds_before_report"] = round(time.perf_counter() - t0, 3)
    w.write_text("README.md", render_card(manifest, exp))
    if report:
        from grayctl.dataset import Dataset
        from grayctl.report import render_report

        ds = Dataset.in_memory(run_dir, manifest, experiment=exp, topology=_topology_doc(experiment, plan_d, exp),
                               injections=inj, tables={"labels": labels, "metrics": metrics, **written})
        w.write_text("report.html", render_report(ds))
    manifest["assembly_seconds"] = round(time.perf_counter() - t0, 3)
    if status == "complete" and load is not None and manifest["load"]["valid"] is False \
            and not allow_invalid_load:
        status = "invalid-load"
    return w.finish(status if status in ("complete", "invalid-load") else "failed")


def _ns_of(col: pd.Series) -> Any:
    return utc_ns(col).astype("int64").to_numpy()


def _label_counts(labels: pd.DataFrame) -> dict[str, Any]:
    return {"seconds": len(labels),
            "by_phase": {str(k): int(v) for k, v in labels["phase"].value_counts(sort=False).items()},
            "fault_active": int(labels["fault_active"].sum()),
            "slo_violation": int(labels["slo_violation"].sum()),
            "healthy_observed": int(labels["healthy_observed"].fillna(False).astype(bool).sum()),
            "observer_unknown": int(labels["healthy_observed"].isna().sum()),
            "gray": int(labels["gray"].sum()),
            "gray_during_fault": int((labels["gray"] & labels["fault_active"]).sum()),
            "load_not_ok": int((labels["load_ok"] == False).sum())}  # noqa: E712 - nullable: null is unknown


