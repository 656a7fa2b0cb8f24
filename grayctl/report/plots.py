"""The report's figures, drawn with matplotlib's Agg backend and returned as inline SVG text.

Map:
  latency_throughput(per_s, windows, gray, slo_s, load) -> svg   p50/p90/p99, throughput, and the load
                                                       generator's health strip; fault windows shaded
  errors(per_s_errors, windows, gray) -> svg           errors and timeouts per second, by kind
  heatmaps(panels, windows) -> svg | None              per-service CPU / queue depth over time
  label_ribbon(labels) -> svg                          phase, fault, SLO, observer, gray per second
  service_bars(changes) -> svg                         the call-graph fallback: services by change

Colours are fixed here so every figure agrees: fault windows orange, gray seconds purple,
latency percentiles in blues, errors red.
"""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")  # no display, deterministic output
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

FAULT = "#f4a261"
GRAY = "#7b2cbf"
P50, P90, P99 = "#9ecae1", "#4292c6", "#08306b"
OK = "#2a9d8f"
ERR = "#d62828"
PHASE_COLOURS = {"warmup": "#e9ecef", "baseline": "#cfe2ff", "fault": "#ffe5d0", "recovery": "#d1e7dd"}

plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "svg.fonttype": "none", "svg.hashsalt": "grayctl"})


def to_svg(fig: plt.Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)


def _shade(ax: plt.Axes, windows: list[tuple[float, float]], gray: np.ndarray | None = None,
           t: np.ndarray | None = None) -> None:
    for i, (s, e) in enumerate(windows):
        ax.axvspan(s, e, color=FAULT, alpha=0.22, lw=0, label="fault (host-measured)" if i == 0 else None)
    if gray is not None and t is not None and gray.any():
        ymin, ymax = 0.96, 1.0
        for j, x in enumerate(t[gray]):
            ax.axvspan(x, x + 1, ymin=ymin, ymax=ymax, color=GRAY, lw=0, label="gray second" if j == 0 else None)


def latency_throughput(per_s: pd.DataFrame, windows: list[tuple[float, float]], gray: np.ndarray,
                       slo_s: float | None, load: pd.DataFrame | None = None) -> str:
    """``load``: the labels' ``load_*`` columns (one row per second, as ``per_s``), drawn as a strip
    under the throughput: the generator's send lateness p99 and its drops, seconds it fell behind in red."""
    t = per_s["t_s"].to_numpy()
    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(11, 6.8), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 2, 1.1]})
    for col, c, lab in (("p50", P50, "p50"), ("p90", P90, "p90"), ("p99", P99, "p99")):
        a1.plot(t, per_s[col] * 1000, color=c, lw=1.4 if col == "p99" else 1.0, label=lab, drawstyle="steps-post")
    if slo_s:
        a1.axhline(slo_s * 1000, color=ERR, ls="--", lw=1, label=f"SLO p99 {slo_s * 1000:.0f} ms")
    a1.set_yscale("log")
    a1.set_ylabel("latency, corrected (ms, log)")
    _shade(a1, windows, gray, t)
    a1.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)  # outside: never over data
    a1.set_title("User-facing latency percentiles per second (by intended send time)", loc="left", fontsize=10)
    a2.plot(t, per_s["sent"], color="#6c757d", lw=1, label="sent / s", drawstyle="steps-post")
    a2.plot(t, per_s["ok"], color=OK, lw=1.3, label="succeeded / s", drawstyle="steps-post")
    _shade(a2, windows)
    a2.set_ylabel("requests / s")
    a2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    a2.set_ylim(bottom=0)
    _load_strip(a3, t, load)
    a3.set_xlabel("seconds since run start")
    a3.set_xlim(t[0], t[-1] + 1)  # the run, not the fault: a fault reverted late is clipped to the run
    return to_svg(fig)


def _load_strip(ax: plt.Axes, t: np.ndarray, load: pd.DataFrame | None) -> None:
    ax.set_title("Load generator: send lateness p99 per second (its own lag, not the service's)", loc="left",
                 fontsize=9)
    if load is None or "load_lateness_p99_ms" not in load or load["load_ok"].isna().all():
        ax.text(0.5, 0.5, "the load generator reported no health for this run", transform=ax.transAxes,
                ha="center", va="center", color=ERR)
        ax.set_yticks([])
        return
    lat = load["load_lateness_p99_ms"].to_numpy(dtype=float)
    ax.plot(t, np.maximum(lat, 1e-3), color="#6c757d", lw=1, drawstyle="steps-post", label="send lateness p99")
    bad = (load["load_ok"] == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712 - nullable column
    for j, x in enumerate(t[bad]):
        ax.axvspan(x, x + 1, color=ERR, alpha=0.35, lw=0, label="fell behind" if j == 0 else None)
    dropped = load["load_dropped"].fillna(0).to_numpy(dtype=float)
    if dropped.any():
        ax.bar(t, dropped, width=1.0, align="edge", color=ERR, alpha=0.6, label="dropped / s")
    ax.set_yscale("log")
    ax.set_ylabel("ms (log)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def errors(per_kind: pd.DataFrame, t: np.ndarray, windows: list[tuple[float, float]], gray: np.ndarray) -> str:
    fig, ax = plt.subplots(figsize=(11, 2.6))
    bottom = np.zeros(len(t))
    palette = {"timeout": "#9d0208", "http_5xx": ERR, "connect": "#e85d04", "reset": "#f48c06",
               "http_4xx": "#faa307", "protocol": "#6a040f", "cancelled": "#adb5bd", "other": "#495057"}
    for kind in per_kind.columns:
        v = per_kind[kind].to_numpy()
        ax.bar(t, v, width=1.0, bottom=bottom, align="edge", color=palette.get(kind, "#495057"), label=kind, lw=0)
        bottom += v
    if per_kind.empty or not bottom.any():
        ax.text(0.5, 0.5, "no errors or timeouts in this run", transform=ax.transAxes, ha="center", color="#495057")
    _shade(ax, windows, gray, t)
    ax.set_ylabel("failed requests / s")
    ax.set_xlabel("seconds since run start")
    ax.set_title("Errors and timeouts per second, by kind", loc="left", fontsize=10)
    # outside on the right, as on the latency figure: never over the bars or the gray ticks
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_xlim(t[0], t[-1] + 1)
    return to_svg(fig)


def heatmaps(panels: list[tuple[str, pd.DataFrame]], t: np.ndarray, windows: list[tuple[float, float]]) -> str | None:
    """Each panel: (title, frame indexed by entity with one column per second)."""
    panels = [(title, f) for title, f in panels if not f.empty]
    if not panels:
        return None
    heights = [max(1.2, 0.28 * len(f)) + 0.6 for _, f in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights)), sharex=True,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, f) in zip(axes[:, 0], panels):
        im = ax.imshow(f.to_numpy(dtype=float), aspect="auto", interpolation="nearest", cmap="magma_r",
                       extent=(t[0], t[-1] + 1, len(f), 0))
        ax.set_yticks(np.arange(len(f)) + 0.5, f.index, fontsize=8)
        for s, e in windows:
            ax.axvline(s, color=FAULT, lw=2)
            ax.axvline(e, color=FAULT, lw=2, ls="--")
        ax.set_xlim(t[0], t[-1] + 1)
        ax.set_title(title, loc="left", fontsize=10)
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.03)
    axes[-1, 0].set_xlabel("seconds since run start (orange lines: fault start, dashed: end)")
    return to_svg(fig)


def label_ribbon(labels: pd.DataFrame) -> str:
    t = labels["t_s"].to_numpy()
    rows = [
        ("phase", [PHASE_COLOURS.get(str(p), "#fff") for p in labels["phase"]]),
        ("fault active", [FAULT if x else "#f8f9fa" for x in labels["fault_active"]]),
        ("SLO violated (users)", [ERR if x else "#f8f9fa" for x in labels["slo_violation"]]),
        ("health checks green", ["#2a9d8f" if x is True else ("#dee2e6" if x is pd.NA or x is None else ERR)
                                 for x in labels["healthy_observed"].astype(object)]),
        ("GRAY", [GRAY if x else "#f8f9fa" for x in labels["gray"]]),
    ]
    from matplotlib.colors import to_rgb

    # One RGB image (rows x seconds): thousands of bar patches would make a slow, heavy SVG.
    lut: dict[str, tuple[float, float, float]] = {}
    img = np.array([[lut.setdefault(c, to_rgb(c)) for c in colours] for _, colours in rows])
    fig, ax = plt.subplots(figsize=(11, 1.9))
    ax.imshow(img, aspect="auto", interpolation="nearest", extent=(t[0], t[-1] + 1, len(rows), 0))
    for y in range(1, len(rows)):
        ax.axhline(y, color="white", lw=2)
    ax.set_yticks(np.arange(len(rows)) + 0.5, [r[0] for r in rows], fontsize=8)
    ax.set_xlim(t[0], t[-1] + 1)
    ax.set_xlabel("seconds since run start (grey in the health row: the observer said nothing that second)")
    ax.spines["left"].set_visible(False)
    return to_svg(fig)


def service_bars(changes: pd.Series) -> str:
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(changes) + 1))
    colours = [plt.get_cmap("Reds")(0.15 + 0.85 * abs(v)) for v in changes.to_numpy()]
    ax.barh(changes.index, changes.to_numpy(), color=colours)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Cliff's delta of the service's latency/CPU, fault vs baseline")
    ax.invert_yaxis()
    return to_svg(fig)
