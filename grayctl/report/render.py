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

from grayctl.dataset.labels import NS, fault_windows, user_latency_ns
from grayctl.metrics import QUERIES, rate_window
from grayctl.report import plots
from grayctl.report.checks import checks_of
from grayctl.stats import bootstrap_ci, cliffs_delta, magnitude

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
    if unit == "B":
        return f"{v / 2**20:.1f} MiB"
    if unit == "/s":
        return f"{v:.4g} /s"
    return f"{v:.4g}"


def _unit_of(metric: str) -> str:
    if metric_unit_seconds(metric):
        return "s"
    if metric.endswith("_bytes"):
        return "B"
    if metric.endswith("_ratio"):
        return "%"
    return "/s" if metric.endswith("_rate") else ""


def tolerance_text(tol: Any) -> str:
    """A check's tolerance as a person writes it: ``<= 250ms``, ``>= 1.5 x baseline``."""
    if not isinstance(tol, dict) or len(tol) != 1:
        return str(tol)
    (k, v), = tol.items()
    if k == "relative_to_baseline":
        text = str(v).replace(" ", "")
        op = ">=" if text.startswith(">=") else "<="
        return f"{'≥' if op == '>=' else '≤'} {text.lstrip('<>=').rstrip('x')} × baseline"
    return f"{'≤' if k == 'max' else '≥'} {v}"


def meaningful_change(a: np.ndarray, b: np.ndarray) -> bool:
    """Worth a row: the medians differ by more than 10 % of the baseline's (or of the series' scale near 0).

    Rank statistics alone would rank a slowly growing gauge (a process's RSS: +0.2 %) first, since
    every fault second is above every baseline second; a postmortem wants changes of a size that matters.
    """
    ma, mb = float(np.median(a)), float(np.median(b))
    scale = max(abs(ma), float(np.percentile(np.abs(np.concatenate([a, b])), 90)) * 0.1, 1e-12)
    return abs(mb - ma) > 0.1 * scale


def promql_of(layer: str, metric: str, entity: str, window: str) -> str | None:
    """The PromQL that produced a ``metrics.parquet`` series (docs/metrics.md), ``$w`` filled in."""
    cands = [q for q in QUERIES if q.layer == layer and q.metric == metric]
    if len(cands) > 1:  # the user layer has a per-type and an overall ("all") form of some metrics
        cands = [q for q in cands if (not q.entity) == (entity == "all")] or cands
    return cands[0].promql.replace("$w", window) if cands else None


def _window(exp: dict[str, Any]) -> str:
    from grayctl.units import parse_duration

    try:
        step = parse_duration(str((exp.get("metrics") or {}).get("interval") or "1s")).seconds
    except ValueError:
        step = 1.0
    return rate_window(step)


# The user-level series the report computes itself from the per-request records (exact, no histogram
# buckets), and the metrics.parquet series (docs/metrics.md) that Prometheus recorded for the same thing.
USER_SERIES = {
    "p50 latency": ("requests.parquet: latency_corrected_ns - send_error_ns (user latency), p50 of the requests sent in each second",
                    ("user", "latency_p50_s", "all")),
    "p99 latency": ("requests.parquet: latency_corrected_ns - send_error_ns (user latency), p99 of the requests sent in each second",
                    ("user", "latency_p99_s", "all")),
    "error rate": ("labels.parquet: user_error_rate (failed / sent, per second)", ("user", "error_rate", "all")),
    "succeeded / s": ("requests.parquet: rows without error_kind, per second", ("user", "request_rate", "all")),
}


def _per_second(requests: pd.DataFrame, index_ns: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latency percentiles, sent and succeeded counts; and failed counts by error kind — per second."""
    n = len(index_ns)
    base = pd.DataFrame({"p50": np.nan, "p90": np.nan, "p99": np.nan, "sent": 0, "ok": 0}, index=np.arange(n))
    if requests.empty:
        return base, pd.DataFrame(index=np.arange(n))
    sec = (_ns(requests["intended_ns"]) - index_ns[0]) // NS
    keep = (sec >= 0) & (sec < n)
    lat = user_latency_ns(requests)[keep] / 1e9
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
    rows = metrics[metrics["metric"] == best]
    if best in app:  # the same name may exist per node too (system/<node>/cpu_cores): one panel, one kind of entity
        rows = rows[rows["layer"] == "app"]
    return best, rows


def _matrix(m: pd.DataFrame, index_ns: np.ndarray) -> pd.DataFrame:
    sec = (_ns(m["ts"]) - index_ns[0]) // NS
    keep = (sec >= 0) & (sec < len(index_ns))
    df = pd.DataFrame({"entity": m["entity"].astype(str).to_numpy()[keep], "sec": sec[keep],
                       "v": m["value"].to_numpy()[keep]})
    return df.pivot_table(index="entity", columns="sec", values="v", aggfunc="last").reindex(
        columns=np.arange(len(index_ns)))


def _windows_rel(ds: Any, start_ns: int, end_ns: int) -> list[tuple[float, float]]:
    """Host-measured fault windows in seconds since the run start, clipped to the run (the plots' x range)."""
    dur = (end_ns - start_ns) / NS
    out = []
    for w in fault_windows(ds.injections, end_ns):
        a, b = max(0.0, (w.start_ns - start_ns) / NS), min(dur, (w.end_ns - start_ns) / NS)
        if b > a:
            out.append((a, b))
    return out


def fault_timing(ds: Any, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """Per fault record: planned window (plan, s since start) vs host-measured, the lag of each edge
    (the revert's from its aim: applied + planned length) and how long it was held."""
    from grayctl.plan import fault_edges

    def key(x: Any) -> str:  # the fault roles write ids with "_" where the experiment may have "-"
        return re.sub(r"[^A-Za-z0-9]", "_", str(x))

    planned = {key(f.get("id")): f.get("window_s") for f in (ds.topology or {}).get("faults") or []}
    out = []
    for f in ds.injections:
        a = (int(f["start_ns"]) - start_ns) / NS if f.get("start_ns") else None
        b = (int(f["end_ns"]) - start_ns) / NS if f.get("end_ns") else None
        out.append({"id": f.get("id"), **fault_edges(planned.get(key(f.get("id"))), a, b, (end_ns - start_ns) / NS)})
    return out


def data_warnings(ds: Any, start_ns: int, end_ns: int) -> list[str]:
    """What makes this run's figures less trustworthy, said up front (a postmortem reader skips footnotes)."""
    out = []
    load = ds.manifest.get("load") or {}
    if load.get("valid") is False:
        kept = " It was kept as complete on request (--allow-invalid-load)." if load.get("allowed_invalid") else ""
        out.append(f"INVALID LOAD: the load generator fell behind its schedule ({load.get('reason')}). Its latencies "
                   f"and SLO labels include a lagging instrument; the red seconds under the latency plot are "
                   f"where.{kept}")
    elif load.get("valid") is None and "load" in ds.manifest:
        out.append(f"the load generator's validity is unknown: {load.get('reason')}.")
    dur = (end_ns - start_ns) / NS
    for t in fault_timing(ds, start_ns, end_ns):
        (ps, pe), (a, b), (la, lb) = t["planned"], t["actual"], t["lag"]
        if la is not None and abs(la) > 2:
            out.append(f"fault {t['id']} was applied {la:+.1f} s from its planned start (t={ps:g} s; "
                       f"host-measured t={a:.1f} s): the fault phase and the fault window differ.")
        if b is None:
            out.append(f"fault {t['id']} has no host-measured end: it was not reverted by the run.")
        elif lb is not None and abs(lb) > 2:
            tail = " — after the run's end, so the recovery phase never saw the system without it" if b > dur else ""
            out.append(f"fault {t['id']} was reverted {lb:+.1f} s from its aim (t={t['aim_end']:.1f} s: applied + "
                       f"the planned {pe - ps:g} s; host-measured t={b:.1f} s){tail}.")
    for f in ds.injections:
        late = (f.get("helper_stats") or {}).get("release_late_us_mean")
        if late is not None and late > 5000:
            out.append(f"fault {f.get('id')}'s delayer ({f.get('mechanism') or f.get('backend')}) released packets "
                       f"{late / 1000:.0f} ms late on average (max {(f['helper_stats'].get('release_late_us_max') or 0) / 1000:.0f} ms): "
                       "the delay users saw was larger than the one asked for.")
    slo = ds.manifest.get("slo") or {}
    err = slo.get("baseline_error_rate")
    if err is not None and err > 0.01:
        out.append(f"the baseline itself had {err * 100:.1f} % failed requests: the system was not in a steady "
                   "state before the fault (an overloaded lab host does this), so differences are against a noisy "
                   "baseline.")
    return out


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


def _dot_lines(parts: list[str]) -> str:
    """A quoted dot label with one line per part (dot's ``\\n`` escape)."""
    return '"' + "\\n".join(p.replace("\\", "\\\\").replace('"', '\\"') for p in parts) + '"'


def call_graph_svg(topology_doc: dict[str, Any], changes: pd.Series, targets: set[str] | None = None) -> str | None:
    """The run's services and the calls between them, each service filled by |delta|; None without dot.

    Service level on purpose (``grayctl topology graph`` draws every component and endpoint): at
    report width, a dozen services must stay legible. The fault's target has an orange border.
    """
    d = topology_doc.get("definition")
    if not d or shutil.which("dot") is None:
        return None
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

    def q(x: str) -> str:
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'

    cmap = matplotlib.colormaps["Reds"]
    targets = targets or set()
    lines = ["digraph services {",
             '  graph [rankdir=LR, nodesep=0.2, ranksep=0.5, fontname="Helvetica", bgcolor="transparent"];',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, color="gray55"];',
             '  edge [color="gray50", arrowsize=0.6];']
    for req in topo.requests.values():
        lines.append(f'  {q("request:" + req.name)} [shape=oval, fillcolor="khaki1", fontsize=10, '
                     f'label={_dot_lines([req.name, str(req.mix)])}];')
    for name, svc in topo.services.items():
        v = changes.get(name, float("nan"))
        fill = matplotlib.colors.to_hex(cmap(0.05 + 0.5 * abs(v))) if np.isfinite(v) else "white"
        parts = [name, f"Δ {v:+.2f}" if np.isfinite(v) else "no data"] + ([f"×{svc.replicas}"] if svc.replicas > 1 else [])
        extra = ', color="#e76f51", penwidth=3' if name in targets else ""
        lines.append(f"  {q(name)} [label={_dot_lines(parts)}, fillcolor=\"{fill}\"{extra}];")
    for req in topo.requests.values():
        lines.append(f"  {q('request:' + req.name)} -> {q(topo.service_of(req.entry.split('.', 1)[0]))};")
    edges: dict[tuple[str, str], int] = {}
    for caller, _step, call, _par in topo.calls():
        a, b = topo.service_of(caller.split(".", 1)[0]), topo.service_of(call.component)
        if a != b:
            edges[(a, b)] = edges.get((a, b), 0) + 1
    for (a, b), n in edges.items():
        lines.append(f"  {q(a)} -> {q(b)}" + (f' [label="{n} calls", fontsize=8]' if n > 1 else "") + ";")
    lines.append("}")
    try:
        svg = subprocess.run(["dot", "-Tsvg"], input="\n".join(lines).encode(), capture_output=True, timeout=60,
                             check=True).stdout.decode()
    except (subprocess.SubprocessError, OSError):
        return None
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.DOTALL)
    # scale to the page width
    return re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg style="max-width:100%;max-height:520px;height:auto"',
                  svg, count=1)


def _effect_rows(per_s: pd.DataFrame, labels: pd.DataFrame, metrics: pd.DataFrame, seed: int,
                 window: str = "4s") -> list[dict[str, Any]]:
    base, fault = _masks(labels)
    rows = []

    def add(name: str, v: np.ndarray, unit: str, layer: str, series: str = "", promql: str | None = None) -> None:
        a, b = v[base], v[fault]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size < 2 or b.size < 2:
            return
        d = cliffs_delta(a, b)
        lo, hi = bootstrap_ci(a, b, seed=seed, n=BOOTSTRAP_N)
        rows.append({"layer": layer, "name": name, "series": series, "promql": promql,
                     "baseline": _fmt(float(np.median(a)), unit),
                     "fault": _fmt(float(np.median(b)), unit), "delta": d, "lo": lo, "hi": hi,
                     "magnitude": magnitude(d), "sig": np.isfinite(lo) and (lo > 0 or hi < 0)})

    for name, v, unit in (("p50 latency", per_s["p50"], "s"), ("p99 latency", per_s["p99"], "s"),
                          ("error rate", labels["user_error_rate"], "%"), ("succeeded / s", per_s["ok"], "")):
        add(name, v.to_numpy(dtype=float), unit, "user", USER_SERIES[name][0])
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
            if a.size >= 2 and b.size >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0 or a[0] != b[0]) \
                    and meaningful_change(a, b):
                layer, entity, metric = col.split("/", 2)
                cand.append((abs(cliffs_delta(a, b)), col, v, layer, entity, metric))
        for _, col, v, layer, entity, metric in sorted(cand, key=lambda c: -c[0])[:MAX_METRIC_ROWS]:
            add(f"{entity} {metric}", v, _unit_of(metric), layer, col, promql_of(layer, metric, entity, window))
    return rows


def metric_unit_seconds(name: str) -> bool:
    """Series in seconds (docs/metrics.md names them ``*_s`` or ``*_seconds``), shown in ms."""
    return (name.endswith("_seconds") and "total" not in name) or (name.endswith("_s") and not name.endswith("_per_s"))


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
    lat = user_latency_ns(req) / 1e9 if not req.empty else np.zeros(0)
    fs = labels["ts"].astype("int64").to_numpy()[fault]
    in_fault = np.isin(t // NS * NS, fs)
    p99_f = float(np.percentile(lat[in_fault], 99)) if in_fault.any() else float("nan")
    p99_b = slo.get("baseline_p99_seconds")
    start_ns, end_ns = int(m["times"]["start_ns"]), int(m["times"]["end_ns"])
    nf = int(fault.sum())
    dur = sum(b - a for a, b in _windows_rel(ds, start_ns, end_ns))  # inside the run window
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
        "latency": plots.latency_throughput(per_s, windows, gray, slo.get("latency_p99_seconds"),
                                            labels.filter(like="load_")),
        "errors": plots.errors(per_kind, t, windows, gray),
        "ribbon": plots.label_ribbon(labels),
    }
    metrics = ds.metrics
    window = _window(ds.experiment or {})
    panels, heat_series = [], []
    for title, pat, excl in (("CPU", r"cpu", r"throttl|info"), ("Queue depth", r"queue|queued", r"capacity|wait")):
        pick = _pick_metric(metrics, pat, excl) if not metrics.empty else None
        if pick:
            name, mm = pick
            layer = str(mm["layer"].iloc[0])
            per = "service" if layer == "app" else "entity"
            panels.append((f"{title} per {per} — {layer}/<{per}>/{name}", _matrix(mm, index_ns)))
            heat_series.append((f"heatmap: {title.lower()}", f"{layer}/<{per}>/{name}",
                                promql_of(layer, name, "", window)))
    figs["heatmap"] = plots.heatmaps(panels, t, windows)

    topo = ds.topology or {}
    services = list((topo.get("definition") or {}).get("services", {}))
    spans = _spans_table(ds)
    if not services and not spans.empty:
        services = sorted(spans["service"].astype(str).unique())
    changes, change_source = service_changes(ds, start_ns, end_ns, services)
    targets = {str(f.get("target_service") or f.get("service")) for f in ds.injections}
    graph = call_graph_svg(topo, changes, targets) if len(changes) else None
    figs["graph"] = graph or (plots.service_bars(changes.dropna()) if changes.notna().any() else None)

    head, para = summary_sentence(ds, per_s, labels)
    effects = _effect_rows(per_s, labels, metrics, seed, window)
    glossary = [
        ("latency plot: p50, p90, p99", "requests.parquet: latency_corrected_ns - send_error_ns by intended_ns second",
         "user/all/latency_p99_s = " + (promql_of("user", "latency_p99_s", "all", window) or "")),
        ("latency plot: sent / s, succeeded / s", "requests.parquet: rows per intended_ns second (without error_kind)",
         "user/<type>/sent_rate, user/<type>/request_rate = " + (promql_of("user", "request_rate", "x", window) or "")),
        ("errors plot", "requests.parquet: error_kind per second",
         "user/all/error_rate = " + (promql_of("user", "error_rate", "all", window) or "")),
        ("labels ribbon", "labels.parquet: phase, fault_active, slo_violation, healthy_observed, gray",
         "healthy_observed from observer/<service>/<replica>/healthy = "
         + (promql_of("observer", "healthy", "x", window) or "")),
        *heat_series,
    ]
    seen: set[str] = set()
    for r in effects:
        if not r["promql"]:
            continue
        layer, _, metric = r["series"].split("/", 2)
        generic = f"{layer}/<{'service' if layer == 'app' else 'entity'}>/{metric}"
        if generic not in seen:
            seen.add(generic)
            glossary.append(("table rows", generic, r["promql"]))
    checks = checks_of(ds)
    env = jinja2.Environment(loader=jinja2.FunctionLoader(
        lambda name: files("grayctl.report").joinpath("templates", name).read_text()),
        autoescape=jinja2.select_autoescape(default=True))
    return env.get_template("report.html.j2").render(
        m=m, exp=ds.experiment or {}, head=head, para=para, figs=figs, effects=effects, glossary=glossary, window=window,
        warnings=data_warnings(ds, start_ns, end_ns), timing={t["id"]: t for t in fault_timing(ds, start_ns, end_ns)},
        tolerance_text=tolerance_text,
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
