"""The load generator's validity, carried into the dataset: the manifest's ``load`` block and its
health per second beside the labels.

Map:
  load_block(summary, allowed) -> dict                 manifest ``load``: valid, why, rates, lateness, drops
  load_per_second(summary, index) -> DataFrame         per labels second: intended, sent, dropped, late,
                                                       lateness p50/p99 (ms), generator CPU (cores), load_ok

The generator judges itself (grayctl.workload.loadgen.summarize_run: achieved rate within
``keep_up_bound.rate_pct`` of the schedule, send-error p99 within ``keep_up_bound.send_error_p99_ms``,
nothing dropped, not stopped early); this module only carries that verdict and its evidence, so a
lagging generator is never a silent "complete". A run without a generator summary has
``valid: null``: unknown is not valid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LOAD_COLUMNS", "load_block", "load_per_second"]

NS = 1_000_000_000
# name -> (summary per_second key, dtype)
LOAD_COLUMNS = {
    "load_intended": ("intended", "int32"),
    "load_sent": ("sent", "int32"),
    "load_dropped": ("dropped", "int32"),
    "load_late": ("late", "int32"),
    "load_lateness_p50_ms": ("lateness_p50_ms", "float64"),
    "load_lateness_p99_ms": ("lateness_p99_ms", "float64"),
    "load_cpu": ("cpu", "float64"),
}


def load_block(summary: dict[str, Any] | None, *, allowed: bool = False) -> dict[str, Any]:
    """The manifest's ``load``: the generator's verdict and the figures behind it."""
    if not summary:
        return {"valid": None, "reason": "no load generator summary was collected", "allowed_invalid": allowed}
    send = summary.get("send_error_ms") or {}
    return {
        "valid": bool(summary.get("valid")),
        "reason": summary.get("reason"),
        "allowed_invalid": allowed and not summary.get("valid"),
        "target_rate": summary.get("target_rate"),
        "scheduled_rate": summary.get("scheduled_rate"),
        "achieved_rate": summary.get("achieved_rate"),
        "rate_error_pct": summary.get("rate_error_pct"),
        "scheduled": (summary.get("schedule") or {}).get("scheduled"),
        "sent": summary.get("sent"),
        "dropped": summary.get("dropped", 0),
        "late": summary.get("late"),
        "send_lateness_p50_ms": send.get("p50"),
        "send_lateness_p99_ms": send.get("p99_exact", send.get("p99")),
        "keep_up_bound": summary.get("keep_up_bound"),
        "interrupted": summary.get("interrupted"),
    }


def load_per_second(summary: dict[str, Any] | None, index: pd.DatetimeIndex) -> pd.DataFrame:
    """The generator's health on the labels' seconds (``index``: UTC second starts).

    ``load_ok``: nothing dropped and the send-lateness p99 within the keep-up bound in that second;
    null where the generator reported nothing for it (no summary, or a second outside its window)."""
    n = len(index)
    out = pd.DataFrame(index=index)
    per = (summary or {}).get("per_second") or {}
    have = np.zeros(n, bool)
    pos = np.zeros(0, np.int64)
    src = np.zeros(0, np.int64)
    if per:
        secs = index.asi8 // NS - int(per["first_s"])
        m = len(per.get("intended") or [])
        have = (secs >= 0) & (secs < m)
        pos = np.flatnonzero(have)
        src = secs[have]
    for name, (key, dtype) in LOAD_COLUMNS.items():
        vals = np.array([np.nan if v is None else v for v in per.get(key) or []], dtype=np.float64)
        col = np.full(n, np.nan)
        if vals.size:
            col[pos] = vals[src]
        out[name] = pd.array(np.where(np.isnan(col), None, col).tolist(), dtype="Int32") if dtype == "int32" \
            else col
    bound = ((summary or {}).get("keep_up_bound") or {}).get("send_error_p99_ms")
    p99 = out["load_lateness_p99_ms"].to_numpy()
    ok = (out["load_dropped"].fillna(0).to_numpy() == 0) & ~(np.nan_to_num(p99, nan=0.0) > (bound or np.inf))
    out["load_ok"] = pd.array(np.where(have, ok, None).tolist(), dtype="boolean")
    return out.reset_index(drop=True)
