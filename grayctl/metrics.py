"""Controller side of metric collection: range queries against the run's Prometheus, and the long table.

- ``chunk_windows(start, end, step)``   split [start, end] so no query exceeds ``MAX_POINTS`` per series.
- ``query_range_chunked(url, query, start, end, step)``  run those chunks, merge the series.
- ``query_instant(url, query, at)``    one instant query (the run's checks are parsed by it first).
- ``QUERIES``                           the documented PromQL per layer (docs/metrics.md).
- ``collect_run_metrics(url, start, end, step, extra_queries)``  -> long DataFrame
  ``ts`` (UTC), ``layer``, ``entity``, ``metric``, ``value``.

Plain HTTP (urllib) with explicit ``start``/``end`` on every query; no global defaults computed at
import time (prometheus-api-client's pitfall). Queries run concurrently on a small thread pool.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from grayctl.errors import GrayctlError

__all__ = ["MAX_POINTS", "QUERIES", "MetricsError", "Query", "chunk_windows", "collect_run_metrics", "query_instant",
           "query_range_chunked", "rate_window"]

MAX_POINTS = 11_000          # Prometheus refuses more points per series in one range query
CHUNK_POINTS = 10_000        # what we ask for, leaving a margin
COLUMNS = ["ts", "layer", "entity", "metric", "value"]


class MetricsError(GrayctlError):
    """Prometheus could not be queried (unreachable, or it rejected a query).

    ``error_type``: Prometheus's ``errorType`` when it answered (``bad_data`` for a query it cannot
    parse), None when it could not be reached."""

    def __init__(self, message: str, *, hint: str | None = None, error_type: str | None = None,
                 error: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.error_type = error_type
        self.error = error


def _ts(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def chunk_windows(start: float | datetime, end: float | datetime, step: float,
                  max_points: int = CHUNK_POINTS) -> list[tuple[float, float]]:
    """Consecutive [s, e] windows on the grid start + k*step covering [start, end], each with at most
    ``max_points`` points (both ends inclusive), and no point in two windows."""
    s, e = _ts(start), _ts(end)
    if step <= 0:
        raise ValueError("step must be positive")
    if e < s:
        raise ValueError("end before start")
    if max_points < 1:
        raise ValueError("max_points must be >= 1")
    total = int(math.floor((e - s) / step + 1e-9)) + 1  # points on the grid
    out = []
    i = 0
    while i < total:
        n = min(max_points, total - i)
        out.append((s + i * step, s + (i + n - 1) * step))
        i += n
    return out


def _get(url: str, params: Mapping[str, str], timeout: float, api: str = "query_range") -> dict[str, Any]:
    full = url.rstrip("/") + "/api/v1/" + api
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(full, data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read())
        except ValueError:
            raise MetricsError(f"Prometheus at {url} answered HTTP {exc.code} to {params['query']!r}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MetricsError(f"cannot query Prometheus at {url}: {exc}") from exc
    if doc.get("status") != "success":
        raise MetricsError(f"Prometheus rejected {params['query']!r}: {doc.get('errorType')}: {doc.get('error')}",
                           error_type=doc.get("errorType"), error=doc.get("error"))
    return doc["data"]


def query_instant(url: str, query: str, at: float | datetime | None = None, *, timeout: float = 30.0) -> dict[str, Any]:
    """One instant query (``/api/v1/query``); the API's ``data``: ``{"resultType": ..., "result": ...}``.
    MetricsError (with ``error_type``) when Prometheus refuses it or cannot be reached."""
    params = {"query": query}
    if at is not None:
        params["time"] = f"{_ts(at):.3f}"
    return _get(url, params, timeout, api="query")


def query_range_chunked(url: str, query: str, start: float | datetime, end: float | datetime, step: float,
                        *, max_points: int = CHUNK_POINTS, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Range query over [start, end] in chunks; returns ``[{"metric": {...}, "values": [[ts, "v"], ...]}]``
    with each series' values in time order across chunks (the API's own shape)."""
    merged: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s, e in chunk_windows(start, end, step, max_points):
        data = _get(url, {"query": query, "start": f"{s:.3f}", "end": f"{e:.3f}", "step": f"{step:g}"}, timeout)
        if data.get("resultType") != "matrix":
            raise MetricsError(f"{query!r} returned a {data.get('resultType')}, not a matrix")
        for series in data["result"]:
            key = tuple(sorted(series["metric"].items()))
            slot = merged.setdefault(key, {"metric": series["metric"], "values": []})
            slot["values"].extend(series["values"])
    return list(merged.values())


@dataclass(frozen=True)
class Query:
    layer: str
    metric: str
    promql: str            # may contain $w (the rate window)
    entity: tuple[str, ...] = ()   # labels joined with "/" -> entity; () -> "all"


def _q(layer: str, metric: str, promql: str, *entity: str) -> Query:
    return Query(layer, metric, promql, tuple(entity))


def _hq(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}le) (rate({metric}[$w])))"


QUERIES: tuple[Query, ...] = (
    # -- user: the load generator ------------------------------------------------------------------
    _q("user", "request_rate", "sum by (type) (rate(grayctl_workload_requests_total[$w]))", "type"),
    _q("user", "error_rate", "sum by (type) (rate(grayctl_workload_errors_total[$w]))", "type"),
    _q("user", "sent_rate", "sum by (type) (rate(grayctl_workload_requests_sent_total[$w]))", "type"),
    _q("user", "latency_p50_s", _hq(0.5, "grayctl_workload_request_duration_seconds_bucket", "type, "), "type"),
    _q("user", "latency_p90_s", _hq(0.9, "grayctl_workload_request_duration_seconds_bucket", "type, "), "type"),
    _q("user", "latency_p99_s", _hq(0.99, "grayctl_workload_request_duration_seconds_bucket", "type, "), "type"),
    _q("user", "request_rate", "sum(rate(grayctl_workload_requests_total[$w]))"),
    _q("user", "error_rate", "sum(rate(grayctl_workload_errors_total[$w]))"),
    _q("user", "latency_p50_s", _hq(0.5, "grayctl_workload_request_duration_seconds_bucket", "")),
    _q("user", "latency_p99_s", _hq(0.99, "grayctl_workload_request_duration_seconds_bucket", "")),
    _q("user", "in_flight", "sum(grayctl_workload_in_flight)"),
    # -- app: the service runtime -----------------------------------------------------------------
    _q("app", "request_rate", 'sum by (service) (rate(grayctl_requests_total{via="http"}[$w]))', "service"),
    _q("app", "error_rate", 'sum by (service) (rate(grayctl_requests_total{via="http",status=~"5.."}[$w]))',
       "service"),
    _q("app", "rejected_rate", "sum by (service) (rate(grayctl_rejected_requests_total[$w]))", "service"),
    _q("app", "latency_p50_s", _hq(0.5, 'grayctl_request_duration_seconds_bucket{via="http"}', "service, "),
       "service"),
    _q("app", "latency_p99_s", _hq(0.99, 'grayctl_request_duration_seconds_bucket{via="http"}', "service, "),
       "service"),
    _q("app", "inflight", "sum by (service) (grayctl_inflight_requests)", "service"),
    _q("app", "queued", "sum by (service) (grayctl_queued_requests)", "service"),
    _q("app", "saturation", "max by (service) (grayctl_worker_saturation_ratio)", "service"),
    _q("app", "retry_rate", "sum by (service) (rate(grayctl_downstream_retries_total[$w]))", "service"),
    _q("app", "timeout_rate", "sum by (service) (rate(grayctl_downstream_timeouts_total[$w]))", "service"),
    _q("app", "downstream_error_rate", "sum by (service) (rate(grayctl_downstream_errors_total[$w]))", "service"),
    _q("app", "cpu_cores", 'sum by (service) (rate(process_cpu_seconds_total{job="service"}[$w]))', "service"),
    _q("app", "rss_bytes", 'sum by (service) (process_resident_memory_bytes{job="service"})', "service"),
    # per replica: peer cohorts (a gray failure of one replica shows against its peers)
    _q("replica", "request_rate", 'sum by (service, replica) (rate(grayctl_requests_total{via="http"}[$w]))',
       "service", "replica"),
    _q("replica", "error_rate", 'sum by (service, replica) (rate(grayctl_requests_total{via="http",status=~"5.."}[$w]))',
       "service", "replica"),
    _q("replica", "latency_p99_s", _hq(0.99, 'grayctl_request_duration_seconds_bucket{via="http"}', "service, replica, "),
       "service", "replica"),
    _q("replica", "cpu_cores", 'sum by (service, replica) (rate(process_cpu_seconds_total{job="service"}[$w]))',
       "service", "replica"),
    # -- edge: each caller -> callee service pair as the caller saw it (the runtime's client side) ----
    _q("edge", "calls_rate", "sum by (service, peer_service) (rate(grayctl_downstream_calls_total[$w]))",
       "service", "peer_service"),
    _q("edge", "errors_rate", 'sum by (service, peer_service) (rate(grayctl_downstream_calls_total{outcome!="ok"}[$w]))',
       "service", "peer_service"),
    _q("edge", "timeouts_rate", "sum by (service, peer_service) (rate(grayctl_downstream_timeouts_total[$w]))",
       "service", "peer_service"),
    _q("edge", "retries_rate", "sum by (service, peer_service) (rate(grayctl_downstream_retries_total[$w]))",
       "service", "peer_service"),
    _q("edge", "latency_p50_s", _hq(0.5, "grayctl_downstream_call_duration_seconds_bucket", "service, peer_service, "),
       "service", "peer_service"),
    _q("edge", "latency_p99_s", _hq(0.99, "grayctl_downstream_call_duration_seconds_bucket", "service, peer_service, "),
       "service", "peer_service"),
    # -- system: the nodes' cgroups ---------------------------------------------------------------
    _q("system", "cpu_cores", "rate(grayctl_cgroup_cpu_usage_seconds_total[$w])", "node"),
    _q("system", "cpu_throttled_ratio", "rate(grayctl_cgroup_cpu_throttled_periods_total[$w]) / "
       "clamp_min(rate(grayctl_cgroup_cpu_periods_total[$w]), 1e-9)", "node"),
    _q("system", "cpu_throttled_s_per_s", "rate(grayctl_cgroup_cpu_throttled_seconds_total[$w])", "node"),
    _q("system", "memory_bytes", "grayctl_cgroup_memory_bytes", "node"),
    _q("system", "memory_limit_ratio", "grayctl_cgroup_memory_bytes / grayctl_cgroup_memory_limit_bytes", "node"),
    _q("system", "memory_failcnt_rate", "rate(grayctl_cgroup_memory_failcnt_total[$w])", "node"),
    *(_q("system", f"psi_{res}_{kind}",
         f'rate(grayctl_cgroup_pressure_stall_seconds_total{{resource="{res}",kind="{kind}"}}[$w])', "node")
      for res in ("cpu", "memory", "io") for kind in ("some", "full")),
    # -- network: qdiscs, TCP, interfaces ---------------------------------------------------------
    _q("network", "qdisc_drop_rate", "sum by (node, iface) (rate(grayctl_qdisc_drops_total[$w]))", "node", "iface"),
    _q("network", "qdisc_overlimit_rate", "sum by (node, iface) (rate(grayctl_qdisc_overlimits_total[$w]))",
       "node", "iface"),
    _q("network", "qdisc_backlog_bytes", "sum by (node, iface) (grayctl_qdisc_backlog_bytes)", "node", "iface"),
    _q("network", "tcp_retrans_rate", "rate(node_netstat_Tcp_RetransSegs[$w])", "node"),
    _q("network", "tcp_timeout_rate", "rate(node_netstat_TcpExt_TCPTimeouts[$w])", "node"),
    _q("network", "rx_bytes_rate", 'rate(node_network_receive_bytes_total{device!="lo"}[$w])', "node", "device"),
    _q("network", "tx_bytes_rate", 'rate(node_network_transmit_bytes_total{device!="lo"}[$w])', "node", "device"),
    _q("network", "rx_drop_rate", 'rate(node_network_receive_drop_total{device!="lo"}[$w])', "node", "device"),
    _q("network", "tx_drop_rate", 'rate(node_network_transmit_drop_total{device!="lo"}[$w])', "node", "device"),
    # -- observer: what the failure detector says -------------------------------------------------
    _q("observer", "healthy", "min by (service, replica) (grayctl_observer_healthy)", "service", "replica"),
    _q("observer", "probe_latency_s", "max by (service, replica) (grayctl_observer_probe_duration_seconds)",
       "service", "replica"),
    _q("observer", "node_up", "max by (node) (grayctl_observer_node_up)", "node"),
    _q("observer", "target_up", "up", "job", "node", "service", "replica"),
)


def rate_window(step: float, scrape_interval: float = 1.0) -> str:
    """The ``$w`` of the queries: at least 4 scrapes, so every window holds >= 3 samples despite jitter."""
    return f"{max(4 * step, 4 * scrape_interval):g}s"


def _entity(labels: Mapping[str, str], names: Sequence[str]) -> str:
    if not names:
        return "all"
    return "/".join(labels.get(n, "") for n in names).strip("/") or "all"


def collect_run_metrics(url: str, start: float | datetime, end: float | datetime, step: float = 1.0,
                        extra_queries: Mapping[str, str] | None = None, *, scrape_interval: float = 1.0,
                        queries: Sequence[Query] = QUERIES, workers: int = 8):
    """Every query of ``queries`` (plus ``extra_queries`` in layer ``extra``) over [start, end] at ``step``,
    as a long DataFrame ``ts`` (UTC), ``layer``, ``entity``, ``metric``, ``value``. Rows are sorted by
    (layer, metric, entity, ts); NaN results (e.g. a quantile of an empty histogram) are dropped, so a
    missing sample is a missing row."""
    import pandas as pd

    w = rate_window(step, scrape_interval)
    todo = list(queries) + [Query("extra", name, promql, ("*",)) for name, promql in (extra_queries or {}).items()]

    def one(q: Query) -> tuple[Query, list[dict[str, Any]]]:
        return q, query_range_chunked(url, q.promql.replace("$w", w), start, end, step)

    frames = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for q, result in pool.map(one, todo):
            for series in result:
                if not series["values"]:
                    continue
                labels = series["metric"]
                if q.entity == ("*",):
                    ent = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "all"
                else:
                    ent = _entity(labels, q.entity)
                ts, vals = zip(*series["values"])
                frames.append(pd.DataFrame({"ts": ts, "value": vals, "layer": q.layer, "entity": ent,
                                            "metric": q.metric}))
    if not frames:
        df = pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in COLUMNS})
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
        return df
    df = pd.concat(frames, ignore_index=True)
    df["ts"] = pd.to_datetime(df["ts"].astype("float64"), unit="s", utc=True).dt.round("ms")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    df = df[df["value"].notna()]
    df = df[COLUMNS].sort_values(["layer", "metric", "entity", "ts"], kind="stable").reset_index(drop=True)
    return df
