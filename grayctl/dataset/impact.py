"""Impact per fault window: did users notice, and did the health checks?

Map:
  classify_impact(labels, seed) -> {fault_id: impact}     one impact per fault id in the labels
  IMPACT_CLASSES                                          none | gray | visible | unobserved

A fault's window is the seconds whose ``fault_ids`` name it (host-measured, grayctl.dataset.labels);
its matched baseline is the baseline phase's seconds with no fault active. Per user SLI (p99 of user
latency, error rate), Cliff's delta of the window's seconds against the baseline's, with a seeded
bootstrap 95 % interval (grayctl.stats).

  degraded   the interval's lower bound is above ``MIN_EFFECT`` (at least a small effect, Romano
             et al. 2006, with 95 % confidence) for either SLI — or the SLO is breached in a second
             of the window (``slo_violation``)
  none       not degraded: users saw no difference (so the window holds no ``gray`` second either:
             a gray second is a violating one)
  visible    degraded, and the observer's health checks failed in at least one second of it
  gray       degraded while every health-check verdict in the window was healthy (differential
             observability, Huang et al. HotOS '17)
  unobserved degraded, but the observer recorded no verdict in the window: gray or visible is unknown

Recent RCA-benchmark work found that only a minority of injections move user-facing SLIs at all; a
class per window says which ones did, so nobody learns from a fault that did nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from grayctl.stats import bootstrap_ci, cliffs_delta, magnitude

__all__ = ["IMPACT_CLASSES", "MIN_EFFECT", "classify_impact"]

IMPACT_CLASSES = ("none", "gray", "visible", "unobserved")
MIN_EFFECT = 0.147  # Cliff's delta: "small" and up
BOOTSTRAP_N = 400
MIN_SECONDS = 3  # fewer seconds on either side: no effect size, only the SLO speaks


def _sli(name: str, base: np.ndarray, win: np.ndarray, seed: int) -> dict[str, Any]:
    base, win = base[np.isfinite(base)], win[np.isfinite(win)]
    out: dict[str, Any] = {"baseline_seconds": int(base.size), "window_seconds": int(win.size),
                           "baseline_median": float(np.median(base)) if base.size else None,
                           "window_median": float(np.median(win)) if win.size else None}
    if base.size < MIN_SECONDS or win.size < MIN_SECONDS:
        return out | {"delta": None, "ci": None, "magnitude": "n/a", "degraded": False,
                      "why": f"{name}: too few seconds for an effect size ({base.size} baseline, {win.size} window)"}
    d = cliffs_delta(base, win)
    lo, hi = bootstrap_ci(base, win, seed=seed, n=BOOTSTRAP_N)
    degraded = bool(np.isfinite(lo) and lo > MIN_EFFECT)
    return out | {"delta": round(d, 4), "ci": [round(lo, 4), round(hi, 4)], "magnitude": magnitude(d),
                  "degraded": degraded}


def classify_impact(labels: pd.DataFrame, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The impact class of every fault id in ``labels`` and the evidence behind it."""
    ids = labels["fault_ids"].fillna("").astype(str).str.split(",")
    names = sorted({x for row in ids for x in row if x})
    base = (labels["phase"] == "baseline").to_numpy() & ~labels["fault_active"].to_numpy(dtype=bool)
    has = labels["user_requests"].to_numpy() > 0
    p99 = labels["user_p99_seconds"].to_numpy(dtype=float)
    err = labels["user_error_rate"].to_numpy(dtype=float)
    viol = labels["slo_violation"].to_numpy(dtype=bool)
    gray = labels["gray"].to_numpy(dtype=bool)
    healthy = labels["healthy_observed"]
    out: dict[str, dict[str, Any]] = {}
    for k, fid in enumerate(names):
        win = ids.apply(lambda row, fid=fid: fid in row).to_numpy(dtype=bool)
        b, w = base & has, win & has
        slis = {"latency_p99": _sli("latency p99", p99[b], p99[w], seed + k),
                "error_rate": _sli("error rate", err[b], err[w], seed + k + 1000)}
        breached = int((viol & win).sum())
        unhealthy = int((healthy[win] == False).sum())  # noqa: E712 - nullable: null is unknown
        observed = int(healthy[win].notna().sum())
        degraded = breached > 0 or any(s["degraded"] for s in slis.values())
        cls = "none" if not degraded else "visible" if unhealthy else "gray" if observed else "unobserved"
        why = []
        if breached:
            why.append(f"SLO breached in {breached} of {int(win.sum())} s")
        why += [f"{n.replace('_', ' ')} Cliff's delta {s['delta']:+.2f} (95 % CI {s['ci'][0]:+.2f}..{s['ci'][1]:+.2f})"
                for n, s in slis.items() if s["degraded"]]
        if not degraded:
            why.append("no SLO breach and no user SLI worse than baseline with 95 % confidence")
        elif cls == "visible":
            why.append(f"health checks failed in {unhealthy} s")
        elif cls == "gray":
            why.append(f"health checks green in all {observed} observed s")
        else:
            why.append("no health-check verdict in the window")
        out[fid] = {"class": cls, "seconds": int(win.sum()), "slo_breach_seconds": breached,
                    "gray_seconds": int((gray & win).sum()), "unhealthy_seconds": unhealthy,
                    "observed_seconds": observed, "slis": slis, "why": "; ".join(why)}
    return out
