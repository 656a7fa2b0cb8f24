"""Per-second labels: phase, fault windows (host-measured), SLO violation, observer health, gray.

Map:
  second_index(start_ns, end_ns) -> DatetimeIndex     every second [floor(start), ceil(end)), UTC, ns
  fault_windows(injections, run_end_ns) -> [FaultWindow]   one window per fault id (union over nodes)
  user_latency_ns(requests) -> ndarray                  what a user waited: reply - intended send, minus
                                                       the generator's own send lateness
  user_per_second(requests, index) -> DataFrame        requests, p99 (user latency), error rate
  derive_slo(requests, slo, baseline_ns) -> dict       the thresholds used, and where they came from
  observer_per_second(observer, index) -> Series       all checks green that second (nullable)
  observer_from_metrics(long_df) -> DataFrame          observer verdicts out of the collector's long table
  forward_labels(slo_violation) -> DataFrame          breach_in_s and the 5/10/30 s lead flags
  make_labels(...) -> (labels DataFrame, slo dict)

Definitions (docs/dataset-format.md, "Labels"):
  - A row covers the second [ts, ts + 1 s). Requests are bucketed by their *intended* send time:
    the moment the user asked, which is what an open-loop workload measures from.
  - ``fault_fraction``: the part of the second inside a fault's host-measured window
    [start_ns, end_ns); ``fault_active`` = fraction > 0. So the first active second contains the
    host's start time: labels match ``injection.json`` to within one second by construction.
  - SLO, when "auto" (the default): latency threshold = max(2 x baseline p99, baseline p99 + 50 ms);
    error threshold = baseline error rate + 1 percentage point. Baseline p99 and error rate are
    pooled over every request of the baseline phase (not a median of per-second values).
  - User latency = ``latency_corrected_ns - send_error_ns``: from the moment the generator sent the
    request (its own lateness is the instrument's, not the service's) to the reply. The generator
    never waits for the system before sending (open loop; a full connection pool queues *after* the
    send and counts), so this still counts what coordinated omission would hide. Only its
    ``max_in_flight`` cap can hold a send back for the system; a run where it did is late beyond
    the keep-up bound, and so invalid (``load``). The generator's health per second is in the
    ``load_*`` columns (grayctl.dataset.load_validity); ``load_ok`` false marks a second it fell behind in.
  - ``slo_violation``: that second's p99 of user latency > latency threshold, or its error
    rate > error threshold. Seconds without requests never violate.
  - ``healthy_observed``: every health-check verdict the observer recorded in that second was
    healthy; null (unknown) when it recorded none. ``gray`` = slo_violation and healthy_observed.
  - Forward-looking (for "predict it before it happens"): ``breach_in_s`` = 0 in a violating second,
    else the seconds to the next violating one, capped at ``BREACH_CAP_S``; null when the run ends
    before either (censored: the future is unknown, not breach-free). ``breach_lead_<N>s`` = a breach
    starts within the next N seconds and this second is not in one (1 <= breach_in_s <= N); null
    when censored within N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from grayctl.dataset.load_validity import load_per_second
from grayctl.phases import phase_of_seconds, user_latency
from grayctl.units import parse_duration, parse_percent

__all__ = [
    "SLO_RULE",
    "FaultWindow",
    "derive_slo",
    "fault_windows",
    "forward_labels",
    "make_labels",
    "observer_per_second",
    "second_index",
    "user_latency_ns",
    "user_per_second",
]

NS = 1_000_000_000
SLO_RULE = ("latency: p99 > max(2 x baseline p99, baseline p99 + 50ms); "
            "errors: error rate > baseline error rate + 1 percentage point")
AUTO_LATENCY_FACTOR = 2.0
AUTO_LATENCY_FLOOR_S = 0.050  # a fast baseline (1 ms p99) should not call a 3 ms second a violation
AUTO_ERROR_MARGIN = 0.01
BREACH_CAP_S = 120
LEAD_S = (5, 10, 30)


def second_index(start_ns: int, end_ns: int) -> pd.DatetimeIndex:
    """Every whole second touching [start_ns, end_ns), as UTC ns timestamps (the row keys)."""
    first = start_ns // NS
    last = -(-end_ns // NS)  # ceil
    return pd.DatetimeIndex(pd.to_datetime(np.arange(first, max(last, first + 1), dtype=np.int64) * NS,
                                           utc=True, unit="ns"), name="ts").as_unit("ns")


@dataclass(frozen=True)
class FaultWindow:
    id: str
    type: str
    target: str
    start_ns: int
    end_ns: int
    reverted: bool  # False: no host end time; the window runs to the end of the run
    realisation: str = ""  # how it was realised on the host (grayctl.faults.realise), as injection.json says


def _fault_id(rec: dict[str, Any]) -> str:
    return str(rec.get("id") or rec.get("fault_id") or "fault")


def fault_windows(injections: list[dict[str, Any]], run_end_ns: int) -> list[FaultWindow]:
    """One window per fault id, from the host timestamps; records without a start were never applied."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for rec in injections:
        if rec.get("start_ns") is None:
            continue
        by_id.setdefault(_fault_id(rec), []).append(rec)
    out = []
    for fid, recs in by_id.items():
        ends = [r.get("end_ns") for r in recs]
        reverted = all(e is not None for e in ends)
        end = max(int(e) for e in ends if e is not None) if reverted else run_end_ns
        first = recs[0]
        out.append(FaultWindow(fid, str(first.get("type", "")),
                               str(first.get("target_service") or first.get("service") or first.get("target") or ""),
                               min(int(r["start_ns"]) for r in recs), end, reverted,
                               str(first.get("realisation") or "")))
    return sorted(out, key=lambda w: (w.start_ns, w.id))


def _ns(col: pd.Series) -> np.ndarray:
    """A timestamp (or int ns) column as int64 epoch ns."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy() if col.dt.tz is not None \
            else col.dt.as_unit("ns").astype("int64").to_numpy()
    return col.to_numpy(dtype=np.int64)


def _is_error(requests: pd.DataFrame) -> np.ndarray:
    return requests["error_kind"].notna().to_numpy()


def user_latency_ns(requests: pd.DataFrame) -> np.ndarray:
    """Per request, what its user waited (float ns): corrected latency less the generator's own send
    lateness (see the module's definitions). Every figure of user latency (labels, report, sweeps)
    is this one."""
    return user_latency(requests["latency_corrected_ns"].to_numpy(),
                        requests["send_error_ns"].to_numpy() if "send_error_ns" in requests else None)


def user_per_second(requests: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Per second of ``index``: request count, p99 of user latency (s), error rate (0..1)."""
    first = int(index[0].value)
    n = len(index)
    if requests.empty:
        return pd.DataFrame({"user_requests": np.zeros(n, np.int32), "user_p99_seconds": np.nan,
                             "user_error_rate": np.nan}, index=index)
    sec = (_ns(requests["intended_ns"]) - first) // NS
    keep = (sec >= 0) & (sec < n)
    df = pd.DataFrame({"sec": sec[keep],
                       "lat": user_latency_ns(requests)[keep] / 1e9,
                       "err": _is_error(requests)[keep]})
    g = df.groupby("sec")
    counts = np.zeros(n, np.int32)
    p99 = np.full(n, np.nan)
    err = np.full(n, np.nan)
    c = g.size()
    counts[c.index.to_numpy()] = c.to_numpy()
    q = g["lat"].quantile(0.99)
    p99[q.index.to_numpy()] = q.to_numpy()
    e = g["err"].mean()
    err[e.index.to_numpy()] = e.to_numpy()
    return pd.DataFrame({"user_requests": counts, "user_p99_seconds": p99, "user_error_rate": err}, index=index)


def derive_slo(requests: pd.DataFrame, slo: dict[str, Any], baseline_ns: tuple[int, int]) -> dict[str, Any]:
    """The SLO thresholds: the experiment's when given, else derived from the baseline phase."""
    t = _ns(requests["intended_ns"]) if not requests.empty else np.zeros(0, np.int64)
    base = requests[(t >= baseline_ns[0]) & (t < baseline_ns[1])] if not requests.empty else requests
    n = len(base)
    b_p99 = float(np.percentile(user_latency_ns(base) / 1e9, 99)) if n else None
    b_err = float(_is_error(base).mean()) if n else None
    out: dict[str, Any] = {"rule": SLO_RULE, "baseline_requests": n,
                           "baseline_p99_seconds": b_p99, "baseline_error_rate": b_err}
    lat = slo.get("latency_p99", "auto")
    if lat not in (None, "auto"):
        out["latency_p99_seconds"], out["latency_source"] = parse_duration(lat).seconds, "experiment"
    elif b_p99 is not None:
        out["latency_p99_seconds"] = max(AUTO_LATENCY_FACTOR * b_p99, b_p99 + AUTO_LATENCY_FLOOR_S)
        out["latency_source"] = "auto (baseline)"
    else:
        out["latency_p99_seconds"], out["latency_source"] = None, "unavailable (no baseline requests)"
    er = slo.get("error_rate", "auto")
    if er not in (None, "auto"):
        out["error_rate"], out["error_source"] = parse_percent(er).value / 100.0, "experiment"
    elif b_err is not None:
        out["error_rate"], out["error_source"] = b_err + AUTO_ERROR_MARGIN, "auto (baseline)"
    else:
        out["error_rate"], out["error_source"] = None, "unavailable (no baseline requests)"
    return out


def observer_per_second(observer: pd.DataFrame | None, index: pd.DatetimeIndex) -> pd.Series:
    """True when every verdict recorded in that second was healthy, False if any was not, else null."""
    out = pd.Series(pd.NA, index=index, dtype="boolean", name="healthy_observed")
    if observer is None or observer.empty:
        return out
    first = int(index[0].value)
    sec = (_ns(observer["ts"]) - first) // NS
    keep = (sec >= 0) & (sec < len(index))
    allgood = pd.Series(observer["healthy"].to_numpy(dtype=bool)[keep]).groupby(sec[keep]).all()
    vals = out.to_numpy(dtype=object)
    vals[allgood.index.to_numpy()] = allgood.to_numpy()
    return pd.Series(vals, index=index, dtype="boolean", name="healthy_observed")


OBSERVER_VERDICTS = ("healthy", "node_up")  # docs/metrics.md: layer "observer", 0/1 per entity per second


def observer_from_metrics(long_df: pd.DataFrame) -> pd.DataFrame:
    """The observer table (ts, entity, check, healthy, detail) from ``collect_run_metrics``' long frame.

    The observer exports its verdicts to Prometheus (``healthy`` per service/replica, ``node_up``
    per node); a value >= 0.5 is a green verdict. ``target_up`` (Prometheus' own scrape health) is
    not a health check of the system and is left out.
    """
    m = long_df[(long_df["layer"] == "observer") & long_df["metric"].isin(OBSERVER_VERDICTS)]
    return pd.DataFrame({"ts": m["ts"].to_numpy(), "entity": m["entity"].astype(str).to_numpy(),
                         "check": m["metric"].astype(str).to_numpy(),
                         "healthy": (m["value"].to_numpy(dtype=float) >= 0.5), "detail": ""})


def _phase_labels(index: pd.DatetimeIndex, run_start_ns: int, phases: list[tuple[str, float, float]]) -> np.ndarray:
    """Phase of each second by its midpoint; before the first / after the last phase: clipped to it
    (grayctl.phases: the rule the console and the manifest's user_by_phase use too)."""
    return phase_of_seconds(index.asi8, run_start_ns, phases)


def forward_labels(slo_violation: np.ndarray) -> pd.DataFrame:
    """``breach_in_s`` and the lead flags (see the module's definitions) from the per-second SLO verdicts."""
    v = np.asarray(slo_violation, dtype=bool)
    n = len(v)
    nxt = np.full(n, -1, np.int64)  # index of the next violating second at or after i; -1 when none
    last = -1
    for i in range(n - 1, -1, -1):
        if v[i]:
            last = i
        nxt[i] = last
    idx = np.arange(n)
    dist = np.where(nxt >= 0, nxt - idx, BREACH_CAP_S)
    # no breach ahead: known breach-free up to the cap only if the run goes on that long
    censored = (nxt < 0) & (n - 1 - idx < BREACH_CAP_S)
    breach_in = np.minimum(dist, BREACH_CAP_S)
    out = {"breach_in_s": pd.array(np.where(censored, None, breach_in).tolist(), dtype="Int16")}
    for lead in LEAD_S:
        flag = (breach_in >= 1) & (breach_in <= lead)
        unknown = (nxt < 0) & (n - 1 - idx < lead)
        out[f"breach_lead_{lead}s"] = pd.array(np.where(unknown, None, flag).tolist(), dtype="boolean")
    return pd.DataFrame(out)


def make_labels(*, run_start_ns: int, run_end_ns: int, phases: list[tuple[str, float, float]],
                injections: list[dict[str, Any]], requests: pd.DataFrame, observer: pd.DataFrame | None,
                slo: dict[str, Any], load: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The labels table (one row per second of the run) and the SLO thresholds it used.

    ``load``: the generator's summary (its ``per_second`` health becomes the ``load_*`` columns)."""
    index = second_index(run_start_ns, run_end_ns)
    starts = index.asi8
    n = len(index)
    windows = fault_windows(injections, run_end_ns)
    frac = np.zeros(n)
    ids: list[list[str]] = [[] for _ in range(n)]
    types: list[list[str]] = [[] for _ in range(n)]
    targets: list[list[str]] = [[] for _ in range(n)]
    hows: list[list[str]] = [[] for _ in range(n)]
    for w in windows:
        ov = np.clip(np.minimum(starts + NS, w.end_ns) - np.maximum(starts, w.start_ns), 0, NS) / NS
        frac = np.maximum(frac, ov)
        for i in np.flatnonzero(ov > 0):
            ids[i].append(w.id)
            types[i].append(w.type)
            if w.target not in targets[i]:
                targets[i].append(w.target)
            hows[i].append(w.realisation)

    base = next(((s, e) for p, s, e in phases if p == "baseline"), (0.0, 0.0))
    slo_info = derive_slo(requests, slo, (run_start_ns + int(base[0] * NS), run_start_ns + int(base[1] * NS)))
    user = user_per_second(requests, index)
    lat_thr, err_thr = slo_info["latency_p99_seconds"], slo_info["error_rate"]
    has = user["user_requests"].to_numpy() > 0
    lat_v = has & (user["user_p99_seconds"].to_numpy() > lat_thr) if lat_thr is not None else np.zeros(n, bool)
    err_v = has & (user["user_error_rate"].to_numpy() > err_thr) if err_thr is not None else np.zeros(n, bool)
    slo_v = lat_v | err_v
    healthy = observer_per_second(observer, index)

    labels = pd.DataFrame({
        "ts": index,
        "t_s": (starts - run_start_ns) / NS,  # float: the first row may start before the run (e.g. -0.44)
        "phase": pd.array(_phase_labels(index, run_start_ns, phases), dtype="string"),
        "fault_active": frac > 0,
        "fault_fraction": frac.astype(np.float32),
        "fault_ids": pd.array([",".join(x) for x in ids], dtype="string"),
        "fault_types": pd.array([",".join(x) for x in types], dtype="string"),
        "fault_targets": pd.array([",".join(x) for x in targets], dtype="string"),
        # one per fault id, in fault_ids' order; "; " since a realisation string holds commas
        "fault_realisations": pd.array(["; ".join(x) for x in hows], dtype="string"),
        "user_requests": user["user_requests"].to_numpy(),
        "user_p99_seconds": user["user_p99_seconds"].to_numpy(),
        "user_error_rate": user["user_error_rate"].to_numpy(),
        "slo_latency_violation": lat_v,
        "slo_error_violation": err_v,
        "slo_violation": slo_v,
        "healthy_observed": healthy.to_numpy(),
        "gray": slo_v & healthy.fillna(False).to_numpy(dtype=bool),
    })
    labels["healthy_observed"] = labels["healthy_observed"].astype("boolean")
    labels = pd.concat([labels, forward_labels(slo_v), load_per_second(load, index)], axis=1)
    slo_info["fault_windows"] = [w.__dict__ for w in windows]
    return labels, slo_info
