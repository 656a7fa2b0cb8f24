"""Build report.html from a Dataset: numbers first (summary, effect sizes, checks), then figures.

Map:
  render_report(ds) -> str
  summary_sentence(...) -> str       the postmortem's first paragraph
  service_changes(ds, ...) -> Series Cliff's delta per service (spans' server latency, else metrics)
  call_graph_svg(topology_doc, changes) -> str | None   graph.to_dot coloured by change, via `dot -Tsvg`
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from importlib.resources import files
from typing import Any

import jinja2
import matplotlib
import numpy as np
import pandas as pd

from grayctl.dataset.labels import NS, fault_windows
from grayctl.report import plots
from grayctl.report.checks import evaluate_checks
from grayctl.report.stats import bootstrap_ci, cliffs_delta, magnitude

__all__ = ["render_report"]

BOOTSTRAP_N = 400
MAX_METRIC_ROWS = 14


def _ns(col: pd.Series) -> np.ndarray:
    return col.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if abs(v) < 10 else f"{v:.2f} s"
    if unit == "%":
        return f"{v * 100:.2f} %"
    return f"{v:.4g}"


def _per_second(requests: pd.DataFrame, index_ns: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latency percentiles, sent and succeeded counts; and failed counts by error kind — per second."""
    n = len(index_ns)
    base = pd.DataFrame({"p50": np.nan, "p90": np.nan, "p99": np.nan, "sent": 0, "ok": 0}, index=np.arange(n))
    if requests.empty:
        return base, pd.DataFrame(index=np.arange(n))
    sec = (_ns(requests["intended_ns"]) - index_ns[0]) // NS
    keep = (sec >= 0) & (sec < n)
    lat = requests["latency_corrected_ns"].to_numpy(dtype=float)[keep] / 1e9
    kind = requests["error_kind"].astype("string").to_numpy(dtype=object, na_value=None)[keep]
    df = pd.DataFrame({"sec": sec[keep], "lat": lat, "kind": kind})
    g = df.groupby("sec")["lat"]
    for col, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        base.loc[:, col] = g.quantile(q).reindex(base.index)
    base["sent"] = g.size().reindex(base.index, fill_value=0)
    base["ok"] = df[df["kind"].isna()].groupby("sec").size().reindex(base.index, fill_value=0)
    failed = df[df["kind"].notna()]
    per_kind = failed.groupby(["sec", "kind"]).size().unstack(fill_value=0).reindex(base.index, fill_value=0) \
        if len(failed) else pd.DataFrame(index=base.index)
    return base, per_kind


def _pick_metric(metrics: pd.DataFrame, pattern: str, exclude: str = r"\A\Z") -> tuple[str, pd.DataFrame] | None:
    """The metric name matching ``pattern`` that covers the most entities (ties: shortest name)."""
    names = pd.Series(metrics["metric"].unique()).astype(str)
    cand = names[names.str.contains(pattern, regex=True) & ~names.str.contains(exclude, regex=True)]
    if cand.empty:
        return None
    cover = {c: metrics.loc[metrics["metric"] == c, "entity"].nunique() for c in cand}
    app = set(metrics.loc[metrics["layer"] == "app", "metric"].astype(str).unique())
    # per-service (app layer) series first: the heatmap is "per service"; then coverage, then the plainer name
    best = min(cover, key=lambda c: (c not in app, -cover[c], len(c), c))
    return best, metrics[metrics["metric"] == best]


def _matrix(m: pd.DataFrame, index_ns: np.ndarray) -> pd.DataFrame:
    sec = (_ns(m["ts"]) - index_ns[0]) // NS
    keep = (sec >= 0) & (sec < len(index_ns))
    df = pd.DataFrame({"entity": m["entity"].astype(str).to_numpy()[keep], "sec": sec[keep],
                       "v": m["value"].to_numpy()[keep]})
    return df.pivot_table(index="entity", columns="sec", values="v", aggfunc="last").reindex(
        columns=np.arange(len(index_ns)))


def _windows_rel(ds: Any, start_ns: int, end_ns: int) -> list[tuple[float, float]]:
    return [((w.start_ns - start_ns) / NS, (w.end_ns - start_ns) / NS) for w in fault_windows(ds.injections, end_ns)]


def _masks(labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    fault = labels["fault_active"].to_numpy(dtype=bool)
    base = (labels["phase"] == "baseline").to_numpy(dtype=bool) & ~fault
    return base, fault


def _spans_table(ds: Any) -> pd.DataFrame:
    try:
        return ds.spans
    except FileNotFoundError:
        return pd.DataFrame()


def service_changes(ds: Any, start_ns: int, end_ns: int, services: list[str]) -> tuple[pd.Series, str]:
    """Cliff's delta per service, fault vs baseline: server-span durations, else a latency/CPU metric."""
    phases = {p["phase"]: (p["start_s"], p["end_s"]) for p in ds.manifest["times"]["phases"]}
    b0, b1 = (start_ns + int(x * NS) for x in phases.get("baseline", (0, 0)))
    wins = fault_windows(ds.injections, end_ns)
    out: dict[str, float] = {}
    source = ""
    spans = _spans_table(ds)
    if not spans.empty:
        source = "server-span duration"
        sp = spans[spans["kind"] == "server"]
        st = _ns(sp["start_ns"])
        dur = sp["duration_ns"].to_numpy(dtype=float)
        in_fault = np.zeros(len(sp), bool)
        for w in wins:
            in_fault |= (st >= w.start_ns) & (st < w.end_ns)
        in_base = (st >= b0) & (st < b1) & ~in_fault
        svc = sp["service"].astype(str).to_numpy()
        for s in services:
            m = svc == s
            if m.any():
                out[s] = cliffs_delta(dur[m & in_base], dur[m & in_fault])
    if not out and not ds.metrics.empty:
        pick = _pick_metric(ds.metrics, r"p99|latency|duration") or _pick_metric(ds.metrics, r"cpu")
        if pick:
            name, m = pick
            source = f"metric {name}"
            lab = ds.labels
            base, fault = _masks(lab)
            mat = _matrix(m, lab["ts"].astype("int64").to_numpy())
            for s in services:
                if s in mat.index:
                    v = mat.loc[s].to_numpy(dtype=float)
                    out[s] = cliffs_delta(v[base], v[fault])
    return pd.Series(out, dtype=float).reindex(services), source


def call_graph_svg(topology_doc: dict[str, Any], changes: pd.Series) -> str | None:
    """graph.to_dot of the run's topology with each service cluster filled by |delta|; None without dot."""
    d = topology_doc.get("definition")
    if not d or shutil.which("dot") is None:
        return None
    from grayctl.graph import to_dot
    from grayctl.topology import validate_topology

    try:
        topo = validate_topology({
            "name": d["name"], "description": d.get("description", ""), "application": d["application"],
            "decomposition": {n: s["components"] for n, s in d["services"].items()},
            "placement": {n: {"slots": s["slots"], **({"replicas": s["replicas"]}
                                                      if s["replicas"] != len(s["slots"]) else {})}
                          for n, s in d["services"].items()}}, {}, "topology.json")
    except Exception:  # noqa: BLE001 - an unreadable definition only costs the drawing
        return None
    dot = to_dot(topo)
    cmap = matplotlib.colormaps["Reds"]
    for svc, v in changes.items():
        if not np.isfinite(v):
            continue
        colour = matplotlib.colors.to_hex(cmap(0.05 + 0.5 * abs(v)))  # capped: the tables' text stays readable
        label = f"Δ {v:+.2f}"
        pat = re.compile(r'(subgraph "cluster_' + re.escape(svc) + r'" \{\n    label=")([^"]*)(";\n    style="rounded,filled"; '
                         r'fillcolor=")gray96(")')
        dot = pat.sub(lambda m, c=colour, lab=label: m.group(1) + m.group(2) + "\\n" + lab + m.group(3) + c + m.group(4), dot)
    try:
        svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, timeout=60, check=True).stdout.decode()
    except (subprocess.SubprocessError, OSError):
        return None
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.DOTALL)
    # scale to the page width
    return re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg style="max-width:100%;max-height:480px;height:auto"',
                  svg, count=1)


def _effect_rows(per_s: pd.DataFrame, labels: pd.DataFrame, metrics: pd.DataFrame, seed: int) -> list[dict[str, Any]]:
    base, fault = _masks(labels)
    rows = []

    def add(name: str, v: np.ndarray, unit: str, layer: str) -> None:
        a, b = v[base], v[fault]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size < 2 or b.size < 2:
            return
        d = cliffs_delta(a, b)
        lo, hi = bootstrap_ci(a, b, seed=seed, n=BOOTSTRAP_N)
        rows.append({"layer": layer, "name": name, "baseline": _fmt(float(np.median(a)), unit),
                     "fault": _fmt(float(np.median(b)), unit), "delta": d, "lo": lo, "hi": hi,
                     "magnitude": magnitude(d), "sig": np.isfinite(lo) and (lo > 0 or hi < 0)})

    add("p50 latency", per_s["p50"].to_numpy(dtype=float), "s", "user")
    add("p99 latency", per_s["p99"].to_numpy(dtype=float), "s", "user")
    add("error rate", labels["user_error_rate"].to_numpy(dtype=float), "%", "user")
    add("succeeded / s", per_s["ok"].to_numpy(dtype=float), "", "user")
    if not metrics.empty:
        from grayctl.dataset.tables import MISSING_SUFFIX, make_features

        wide = make_features(metrics, pd.DatetimeIndex(labels["ts"]))  # one vectorised pivot, not a loop
        cand = []
        for col in wide.columns:
            if col == "ts" or col.endswith(MISSING_SUFFIX):
                continue
            v = wide[col].to_numpy(dtype=float)
            a, b = v[base], v[fault]
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            if a.size >= 2 and b.size >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0 or a[0] != b[0]):
                layer, entity, metric = col.split("/", 2)
                cand.append((abs(cliffs_delta(a, b)), f"{entity} {metric}", v, layer))
        for _, name, v, layer in sorted(cand, key=lambda c: -c[0])[:MAX_METRIC_ROWS]:
            add(name, v, "s" if metric_unit_seconds(name) else "", layer)
    return rows


def metric_unit_seconds(name: str) -> bool:
    return name.endswith("_seconds") and "total" not in name


def summary_sentence(ds: Any, per_s: pd.DataFrame, labels: pd.DataFrame) -> tuple[str, str]:
    """(headline, paragraph): p99 baseline -> fault, the fault, health-check agreement, the verdict."""
    m = ds.manifest
    slo = m.get("slo") or {}
    faults = m.get("faults") or []
    _, fault = _masks(labels)
    req = ds.requests
    fault_desc = " + ".join(f"{f['type']} fault on {f['target']}" for f in faults) or "no fault"
    if not fault.any():
        return (f"{m['experiment']['name']}: {fault_desc}",
                "No fault was active during this run according to the host records (injection.json).")
    t = _ns(req["intended_ns"]) if not req.empty else np.zeros(0, np.int64)
    lat = req["latency_corrected_ns"].to_numpy(dtype=float) / 1e9 if not req.empty else np.zeros(0)
    fs = labels["ts"].astype("int64").to_numpy()[fault]
    in_fault = np.isin(t // NS * NS, fs)
    p99_f = float(np.percentile(lat[in_fault], 99)) if in_fault.any() else float("nan")
    p99_b = slo.get("baseline_p99_seconds")
    wins = fault_windows(ds.injections, int(m["times"]["end_ns"]))
    nf = int(fault.sum())
    dur = sum(w.end_ns - w.start_ns for w in wins) / NS
    healthy_f = int(labels.loc[fault, "healthy_observed"].fillna(False).astype(bool).sum())
    viol_f = int(labels.loc[fault, "slo_violation"].sum())
    gray_f = int((labels["gray"] & labels["fault_active"]).sum())
    gray = int(labels["gray"].sum())
    err_b = slo.get("baseline_error_rate")
    err_f = float(labels.loc[fault, "user_error_rate"].mean())
    verdict = ("→ <b>gray failure</b>: users saw the SLO violated while every health check said healthy"
               if gray_f else ("→ not gray: the health checks noticed" if viol_f else
                               "→ no user-visible SLO violation"))
    para = (f"p99 latency rose from <b>{_fmt(p99_b, 's')}</b> (baseline) to <b>{_fmt(p99_f, 's')}</b> during the "
            f"{dur:.0f} s {html.escape(fault_desc)}; error rate {_fmt(err_b, '%')} → {_fmt(err_f, '%')}. "
            f"Users saw the SLO violated in {viol_f} of the {nf} seconds it touched; the health checks stayed green for "
            f"{healthy_f} s of them. {gray_f} gray second(s) during the fault ({gray} in the whole run) {verdict}.")
    gray_word = "gray failure" if gray_f else "no gray failure"
    head = f"{m['experiment']['name']}: {fault_desc} — {gray_word} ({gray_f} s)"
    return head, para


def render_report(ds: Any) -> str:
    m = ds.manifest
    labels = ds.labels
    start_ns, end_ns = int(m["times"]["start_ns"]), int(m["times"]["end_ns"])
    index_ns = labels["ts"].astype("int64").to_numpy()
    t = labels["t_s"].to_numpy()
    per_s, per_kind = _per_second(ds.requests, index_ns)
    per_s["t_s"] = t
    gray = labels["gray"].to_numpy(dtype=bool)
    windows = _windows_rel(ds, start_ns, end_ns)
    slo = m.get("slo") or {}
    seed = int((m.get("seeds") or {}).get("workload") or 0)

    figs: dict[str, str | None] = {
        "latency": plots.latency_throughput(per_s, windows, gray, slo.get("latency_p99_seconds")),
        "errors": plots.errors(per_kind, t, windows, gray),
        "ribbon": plots.label_ribbon(labels),
    }
    metrics = ds.metrics
    panels = []
    for title, pat, excl in (("CPU", r"cpu", r"throttl|info"), ("Queue depth", r"queue|queued", r"capacity|wait")):
        pick = _pick_metric(metrics, pat, excl) if not metrics.empty else None
        if pick:
            name, mm = pick
            panels.append((f"{title} per entity — {name}", _matrix(mm, index_ns)))
    figs["heatmap"] = plots.heatmaps(panels, t, windows)

    topo = ds.topology or {}
    services = list((topo.get("definition") or {}).get("services", {}))
    spans = _spans_table(ds)
    if not services and not spans.empty:
        services = sorted(spans["service"].astype(str).unique())
    changes, change_source = service_changes(ds, start_ns, end_ns, services)
    graph = call_graph_svg(topo, changes) if len(changes) else None
    figs["graph"] = graph or (plots.service_bars(changes.dropna()) if changes.notna().any() else None)

    head, para = summary_sentence(ds, per_s, labels)
    checks = evaluate_checks(list((ds.experiment or {}).get("checks") or []), labels, metrics)
    env = jinja2.Environment(loader=jinja2.FunctionLoader(
        lambda name: files("grayctl.report").joinpath("templates", name).read_text()),
        autoescape=jinja2.select_autoescape(default=True))
    return env.get_template("report.html.j2").render(
        m=m, exp=ds.experiment or {}, head=head, para=para, figs=figs, effects=_effect_rows(per_s, labels, metrics, seed),
        checks=checks, injections=ds.injections, slo=slo, fmt=_fmt, change_source=change_source,
        changes=[(s, v) for s, v in changes.items()], graph_is_dot=graph is not None,
        gray_spans=_spans_of(labels), bootstrap_n=BOOTSTRAP_N, seed=seed)


def _spans_of(labels: pd.DataFrame) -> list[tuple[float, float, str, int]]:
    """Runs of consecutive gray seconds: (from s, to s since run start, UTC of the first, seconds)."""
    g = labels["gray"].to_numpy(dtype=bool)
    t = labels["t_s"].to_numpy(dtype=float)
    ts = labels["ts"]
    out, i = [], 0
    while i < len(g):
        if g[i]:
            j = i
            while j + 1 < len(g) and g[j + 1]:
                j += 1
            out.append((float(t[i]), float(t[j]) + 1, ts.iloc[i].strftime("%H:%M:%S"), j - i + 1))
            i = j + 1
        else:
            i += 1
    return out
