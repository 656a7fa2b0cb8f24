"""Cells of a sweep side by side: how the same fault moved users on each cell (e.g. each topology).

Map:
  compare_cells(index) -> DataFrame        per cell: effect sizes with 95 % CIs on user latency and
                                           errors, the gray share of fault seconds with its CI, impact classes
  render_comparison(table, title) -> str   the same as a self-contained HTML page (comparison.html)

Per cell, the complete runs' labels are pooled (every repetition's seconds): the fault seconds
(``fault_active``) against the baseline phase's seconds without a fault. User latency p99 and error
rate per second: Cliff's delta with a seeded bootstrap 95 % interval (grayctl.stats, as the impact
classes use). Gray: the share of fault seconds labelled ``gray`` with a Wilson 95 % interval.
Rows of runs that did not complete are left out and counted, never averaged in.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grayctl.stats import bootstrap_ci, cliffs_delta, magnitude

__all__ = ["compare_cells", "render_comparison"]

BOOTSTRAP_N = 400
Z95 = 1.959964


def _wilson(k: int, n: int) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    p = k / n
    d = 1 + Z95 ** 2 / n
    c = (p + Z95 ** 2 / (2 * n)) / d
    h = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _effect(base: np.ndarray, fault: np.ndarray, seed: int) -> dict[str, Any]:
    base, fault = base[np.isfinite(base)], fault[np.isfinite(fault)]
    if base.size < 2 or fault.size < 2:
        return {"delta": None, "lo": None, "hi": None, "magnitude": "n/a"}
    d = cliffs_delta(base, fault)
    lo, hi = bootstrap_ci(base, fault, seed=seed, n=BOOTSTRAP_N)
    return {"delta": round(d, 4), "lo": round(lo, 4), "hi": round(hi, 4), "magnitude": magnitude(d)}


def compare_cells(index: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """One row per cell of a sweep index (``grayctl.sweep``), from its complete runs' datasets."""
    from grayctl.dataset import load

    axes = [c for c in index.columns if c.startswith("axis:")]
    rows = []
    for k, (cell, g) in enumerate(index.groupby("cell", sort=True)):
        ok = g[g["status"] == "complete"]
        base_p99, fault_p99, base_err, fault_err, gray, fault_s = [], [], [], [], 0, 0
        impacts: list[str] = []
        for ds_path in ok["dataset"].dropna().astype(str):
            if not Path(ds_path).is_dir():
                continue
            ds = load(ds_path)
            lab = ds.labels
            base = (lab["phase"] == "baseline").to_numpy() & ~lab["fault_active"].to_numpy(dtype=bool)
            fault = lab["fault_active"].to_numpy(dtype=bool)
            has = lab["user_requests"].to_numpy() > 0
            p99, err = lab["user_p99_seconds"].to_numpy(dtype=float), lab["user_error_rate"].to_numpy(dtype=float)
            base_p99.append(p99[base & has])
            fault_p99.append(p99[fault & has])
            base_err.append(err[base & has])
            fault_err.append(err[fault & has])
            gray += int((lab["gray"].to_numpy(dtype=bool) & fault).sum())
            fault_s += int(fault.sum())
            impacts += list((ds.manifest.get("impact") or {}).values())
        cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
        lat = _effect(cat(base_p99), cat(fault_p99), seed + k)
        errs = _effect(cat(base_err), cat(fault_err), seed + k + 1000)
        lo, hi = _wilson(gray, fault_s)
        rows.append({"cell": int(cell), **{a: g.iloc[0][a] for a in axes}, "runs": len(g), "complete": len(ok),
                     "fault_seconds": fault_s,
                     "latency_p99_delta": lat["delta"], "latency_p99_ci_lo": lat["lo"], "latency_p99_ci_hi": lat["hi"],
                     "latency_p99_magnitude": lat["magnitude"],
                     "error_rate_delta": errs["delta"], "error_rate_ci_lo": errs["lo"], "error_rate_ci_hi": errs["hi"],
                     "gray_share": round(gray / fault_s, 4) if fault_s else None,
                     "gray_share_ci_lo": None if lo is None else round(lo, 4),
                     "gray_share_ci_hi": None if hi is None else round(hi, 4),
                     "impact": ",".join(f"{c}:{impacts.count(c)}" for c in sorted(set(impacts)))})
    return pd.DataFrame(rows)


def _ci(row: pd.Series, name: str) -> str:
    d, lo, hi = row.get(f"{name}_delta"), row.get(f"{name}_ci_lo"), row.get(f"{name}_ci_hi")
    if d is None or (isinstance(d, float) and math.isnan(d)):
        return "n/a"
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _cv(summary: pd.DataFrame | None, cell: Any) -> str:
    """A cell's baseline repeatability: CV of the repetitions' baseline p50 and p99 (grayctl.sweep.cell_summary)."""
    if summary is None or not len(summary):
        return "n/a"
    row = summary[summary["cell"] == cell]
    if not len(row):
        return "n/a"
    p50, p99 = row.iloc[0].get("baseline_p50_cv"), row.iloc[0].get("baseline_p99_cv")
    if p50 is None or p99 is None or pd.isna(p50) or pd.isna(p99):
        return "n/a (fewer than 2 complete runs)"
    return f"{p50 * 100:.1f} % / {p99 * 100:.1f} %"


def render_comparison(table: pd.DataFrame, title: str, summary: pd.DataFrame | None = None) -> str:
    """comparison.html: the cells side by side (effect sizes are Cliff's delta, fault vs baseline); with
    ``summary`` (grayctl.sweep.cell_summary) each cell's baseline repeatability beside them."""
    axes = [c for c in table.columns if c.startswith("axis:")]
    head = "".join(f"<th>{html.escape(a[5:])}</th>" for a in axes)
    body = []
    for _, r in table.iterrows():
        cells = "".join(f"<td>{html.escape(str(r[a]))}</td>" for a in axes)
        gray = "n/a" if r["gray_share"] is None or pd.isna(r["gray_share"]) else \
            f"{r['gray_share'] * 100:.1f} % [{r['gray_share_ci_lo'] * 100:.1f}, {r['gray_share_ci_hi'] * 100:.1f}]"
        body.append(f"<tr><td>{r['cell']}</td>{cells}<td>{r['complete']} of {r['runs']}</td>"
                    f"<td>{_ci(r, 'latency_p99')} ({html.escape(str(r['latency_p99_magnitude']))})</td>"
                    f"<td>{_ci(r, 'error_rate')}</td><td>{gray}</td><td>{html.escape(str(r['impact']))}</td>"
                    f"<td>{html.escape(_cv(summary, r['cell']))}</td></tr>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#f3f3f3}}</style></head><body>
<h1>{html.escape(title)}: the cells side by side</h1>
<p>Per cell, every complete run's seconds pooled: the fault seconds against the baseline phase's seconds
without a fault. Effect sizes are Cliff's delta of the per-second user p99 and error rate (+1: every fault
second worse than every baseline second) with a seeded bootstrap 95 % interval; gray is the share of fault
seconds labelled gray (users degraded, health checks green) with a Wilson 95 % interval; impact counts
the runs' fault-window classes; baseline CV is the coefficient of variation of the repetitions' baseline
p50 and p99 (how well the cell's runs repeat before any fault). Runs that did not complete are counted,
never pooled.</p>
<table><tr><th>cell</th>{head}<th>complete runs</th><th>user p99: delta [95 % CI]</th>
<th>errors: delta [95 % CI]</th><th>gray share of fault seconds [95 % CI]</th><th>impact</th>
<th>baseline CV p50 / p99</th></tr>
{''.join(body)}</table></body></html>
"""
