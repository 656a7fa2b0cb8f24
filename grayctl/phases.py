"""Which phase a request belongs to, and the users' figures per phase — one rule for everyone.

Map:
  phase_of_seconds(sec_start_ns, run_start_ns, phases) -> names   a UTC second's phase, by its midpoint
  figures_by_phase(intended_ns, latency_ns, error, run_start_ns, phases) -> {phase: figures}
  user_latency(corrected_ns, send_error_ns) -> ndarray   reply - actual send (float ns)

A request belongs to the phase of the UTC second its *intended* send time falls in, and a second to
the phase holding its midpoint (clipped to the first / last phase) — the dataset's labels
(grayctl.dataset.labels), the manifest's ``user_by_phase``, the console's phase lines (from the load
generator's ``/phases``) and the closing summary all use this module, so they agree to the request.
Latency is user latency (grayctl.dataset.labels.user_latency_ns: reply - actual send). numpy only: the
load generator imports it on the client node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["figures_by_phase", "phase_of_seconds", "user_latency"]

NS = 1_000_000_000
Phases = Sequence[tuple[str, float, float]]  # (name, start_s, end_s) from the run start


def user_latency(corrected_ns: np.ndarray, send_error_ns: np.ndarray | None) -> np.ndarray:
    """What a user waited (float ns): corrected latency less the generator's own send lateness."""
    lat = np.asarray(corrected_ns, dtype=np.float64)
    if send_error_ns is None:
        return lat
    return lat - np.clip(np.asarray(send_error_ns, dtype=np.float64), 0, None)


def phase_of_seconds(sec_start_ns: np.ndarray, run_start_ns: int, phases: Phases) -> np.ndarray:
    """Phase name of each second (its start in UTC epoch ns), by the second's midpoint."""
    mid_s = (np.asarray(sec_start_ns, dtype=np.int64) - run_start_ns) / NS + 0.5
    names = np.array([p for p, _, _ in phases], dtype=object)
    ends = np.array([e for _, _, e in phases], dtype=float)
    i = np.searchsorted(ends, mid_s, side="right")
    return names[np.clip(i, 0, len(names) - 1)]


def figures_by_phase(intended_ns: np.ndarray, latency_ns: np.ndarray, error: np.ndarray, run_start_ns: int,
                     phases: Phases) -> dict[str, dict[str, Any]]:
    """Per phase: ``requests``, ``p50_s``, ``p99_s`` (numpy's linear percentiles of user latency, errors
    included), ``error_rate`` — over the requests given (the answered ones)."""
    intended = np.asarray(intended_ns, dtype=np.int64)
    lat = np.asarray(latency_ns, dtype=np.float64)
    err = np.asarray(error, dtype=bool)
    ph = phase_of_seconds(intended // NS * NS, run_start_ns, phases) if intended.size else np.array([], object)
    out: dict[str, dict[str, Any]] = {}
    for name, _, _ in phases:
        sel = ph == name
        n = int(sel.sum())
        p50, p99 = (np.percentile(lat[sel], [50, 99]) / NS).tolist() if n else (None, None)
        out[name] = {"requests": n, "p50_s": p50, "p99_s": p99,
                     "error_rate": float(err[sel].mean()) if n else None}
    return out
