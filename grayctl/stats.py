"""Effect sizes for baseline-vs-fault comparisons: Cliff's delta with a seeded bootstrap interval.

Map:
  cliffs_delta(a, b) -> float                 P(b > a) - P(b < a), in [-1, 1]; + means b is larger
  bootstrap_ci(a, b, seed, n, level) -> (lo, hi)   percentile interval of delta over resamples
  magnitude(delta) -> str                     Romano et al. (2006) thresholds: negligible/small/medium/large

Why Cliff's delta: per-second latency and resource series are skewed and heavy-tailed, and the
two windows differ in length; a rank-based effect size needs no normality and is bounded, so one
colour scale fits every metric. It is computed in O((n+m) log m) by sorting, so a bootstrap over
hundreds of metrics stays cheap.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "cliffs_delta", "magnitude"]


def _delta_sorted(a: np.ndarray, b_sorted: np.ndarray) -> float:
    lt = np.searchsorted(b_sorted, a, side="left")  # b < a
    le = np.searchsorted(b_sorted, a, side="right")  # b <= a
    gt = len(b_sorted) - le  # b > a
    return float((gt.sum() - lt.sum()) / (len(a) * len(b_sorted)))


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _clean(a), _clean(b)
    if a.size == 0 or b.size == 0:
        return float("nan")
    return _delta_sorted(a, np.sort(b))


def bootstrap_ci(a: np.ndarray, b: np.ndarray, *, seed: int = 0, n: int = 500,
                 level: float = 0.95) -> tuple[float, float]:
    a, b = _clean(a), _clean(b)
    if a.size < 2 or b.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ds = np.empty(n)
    for i in range(n):
        ra = a[rng.integers(0, a.size, a.size)]
        rb = np.sort(b[rng.integers(0, b.size, b.size)])
        ds[i] = _delta_sorted(ra, rb)
    q = (1 - level) / 2
    return float(np.quantile(ds, q)), float(np.quantile(ds, 1 - q))


def magnitude(delta: float) -> str:
    d = abs(delta)
    if not np.isfinite(d):
        return "n/a"
    return "negligible" if d < 0.147 else "small" if d < 0.33 else "medium" if d < 0.474 else "large"
