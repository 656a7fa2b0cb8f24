"""Table normalisation shared by assembly and export: UTC ns timestamps, stable schemas, the wide matrix.

Map:
  utc_ns(series) -> Series                  any timestamp-ish column -> datetime64[ns, UTC]
  to_table(df, time_columns) -> pa.Table    a DataFrame as Arrow with timestamps normalised
  normalise_metrics(long_df) -> DataFrame   ts, layer, entity, metric, value (sorted, typed)
  make_features(long_df, index) -> DataFrame   the wide 1 s matrix with ``<col>__missing`` masks
  feature_name(layer, entity, metric) -> str   ``app/social-graph-service/p99_seconds``
  make_edges(long_df) -> DataFrame           per second and caller -> callee service edge, what the caller saw
  EMPTY_SCHEMAS                             the columns written when a source produced nothing

Why masks and not a sentinel: a Prometheus sample can itself be NaN (``histogram_quantile`` over
zero requests), so NaN alone cannot say "no sample was scraped". ``<col>__missing`` is True exactly
where no sample existed for that second; the value there is NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["EDGE_COLUMNS", "EMPTY_SCHEMAS", "MISSING_SUFFIX", "feature_name", "make_edges", "make_features",
           "normalise_metrics",
           "to_table", "utc_ns"]

NS = 1_000_000_000
MISSING_SUFFIX = "__missing"
_TS = pa.timestamp("ns", tz="UTC")

EMPTY_SCHEMAS: dict[str, pa.Schema] = {
    "metrics": pa.schema([("ts", _TS), ("layer", pa.string()), ("entity", pa.string()), ("metric", pa.string()),
                          ("value", pa.float64())]),
    "spans": pa.schema([("trace_id", pa.string()), ("span_id", pa.string()), ("parent_id", pa.string()),
                        ("service", pa.string()), ("component", pa.string()), ("endpoint", pa.string()),
                        ("kind", pa.string()), ("start_ns", _TS), ("end_ns", _TS), ("duration_ns", pa.int64()),
                        ("status", pa.int64()), ("attempt", pa.int64()), ("error", pa.string()),
                        ("peer", pa.string())]),
    "observer": pa.schema([("ts", _TS), ("entity", pa.string()), ("check", pa.string()), ("healthy", pa.bool_()),
                           ("detail", pa.string())]),
    "edges": pa.schema([("ts", _TS), ("caller", pa.string()), ("callee", pa.string()), ("calls", pa.float64()),
                        ("errors", pa.float64()), ("timeouts", pa.float64()), ("retries", pa.float64()),
                        ("latency_p50_s", pa.float64()), ("latency_p99_s", pa.float64())]),
    "logs": pa.schema([("ts", _TS), ("node", pa.string()), ("service", pa.string()), ("level", pa.string()),
                       ("event", pa.string()), ("message", pa.string())]),
}


def utc_ns(col: pd.Series) -> pd.Series:
    """A timestamp column as datetime64[ns, UTC]. Integers are epoch ns; naive datetimes are refused.

    Refusing naive times is deliberate: a dataset that mixes time zones (GAIA's logs) cannot be
    aligned afterwards, so every producer must say UTC.
    """
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC").dt.as_unit("ns")
    if pd.api.types.is_datetime64_any_dtype(col):
        raise ValueError(f"column {col.name!r} has naive timestamps; give UTC (tz-aware or epoch ns)")
    if pd.api.types.is_integer_dtype(col) or (col.dtype == object and col.map(type).eq(int).all()):
        return pd.Series(pd.to_datetime(col.astype("int64"), unit="ns", utc=True), index=col.index,
                         name=col.name).dt.as_unit("ns")
    if pd.api.types.is_float_dtype(col) and col.isna().any():
        # nullable integer ns (e.g. end_ns of a span that never ended) arrives as float with NaN
        return pd.Series(pd.to_datetime(col.astype("Int64"), unit="ns", utc=True), index=col.index,
                         name=col.name).dt.as_unit("ns")
    raise ValueError(f"column {col.name!r} ({col.dtype}) is not a timestamp")


def to_table(df: pd.DataFrame | None, time_columns: tuple[str, ...], empty: str | None = None) -> pa.Table:
    """``df`` as an Arrow table, its time columns normalised to UTC ns; the empty schema when None/empty."""
    if df is None or (df.empty and len(df.columns) == 0):
        assert empty is not None
        return EMPTY_SCHEMAS[empty].empty_table()
    df = df.copy()
    for c in time_columns:
        if c in df.columns:
            df[c] = utc_ns(df[c])
    table = pa.Table.from_pandas(df, preserve_index=False)
    # large_string (pandas 3's default) -> string: identical in parquet, but some Spark/arrow readers
    # of the Arrow schema metadata handle plain string more widely.
    fields = [pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


# edges.parquet column <- the metric of the "edge" layer (grayctl.metrics QUERIES); rates are per second
EDGE_COLUMNS = {"calls": "calls_rate", "errors": "errors_rate", "timeouts": "timeouts_rate",
                "retries": "retries_rate", "latency_p50_s": "latency_p50_s", "latency_p99_s": "latency_p99_s"}


def make_edges(metrics: pd.DataFrame) -> pd.DataFrame | None:
    """One row per second and (caller, callee) service pair, from the caller's side of each call
    (the service runtime's downstream counters and call-duration histogram, as rates per second and
    quantiles over the query window). None when no service called another (a monolith)."""
    m = metrics[metrics["layer"] == "edge"] if not metrics.empty else metrics
    if m.empty:
        return None
    wide = m.pivot_table(index=["ts", "entity"], columns="metric", values="value", aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    for col, metric in EDGE_COLUMNS.items():
        out[col] = wide[metric].astype("float64") if metric in wide else np.nan
    out = out.reset_index()
    parts = out["entity"].astype(str).str.split("/", n=1, expand=True)
    out.insert(1, "caller", parts[0])
    out.insert(2, "callee", parts[1] if parts.shape[1] > 1 else "")
    return out.drop(columns="entity").sort_values(["caller", "callee", "ts"], kind="stable").reset_index(drop=True)


def normalise_metrics(long_df: pd.DataFrame | None) -> pd.DataFrame:
    """The long metrics table with fixed columns and dtypes, sorted by (layer, entity, metric, ts)."""
    cols = ["ts", "layer", "entity", "metric", "value"]
    if long_df is None or long_df.empty:
        return EMPTY_SCHEMAS["metrics"].empty_table().to_pandas()
    missing = [c for c in cols if c not in long_df.columns]
    if missing:
        raise ValueError(f"metrics table lacks column(s) {', '.join(missing)} (need {', '.join(cols)})")
    df = long_df[cols].copy()
    df["ts"] = utc_ns(df["ts"])
    for c in ("layer", "entity", "metric"):
        df[c] = df[c].astype("string")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    return df.sort_values(["layer", "entity", "metric", "ts"], kind="stable").reset_index(drop=True)


def feature_name(layer: str, entity: str, metric: str) -> str:
    return f"{layer}/{entity}/{metric}"


def make_features(metrics: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Wide matrix: ``ts`` + one float column per (layer, entity, metric) + a ``__missing`` mask each.

    A sample belongs to the second it falls in ([ts, ts+1s)); when a second holds several samples
    of one series the last one wins (a 1 s Prometheus step gives exactly one).
    """
    n = len(index)
    out: dict[str, object] = {"ts": index}
    if metrics.empty:
        return pd.DataFrame(out)
    names = (metrics["layer"].astype(str) + "/" + metrics["entity"].astype(str) + "/"
             + metrics["metric"].astype(str)).to_numpy()
    codes, uniq = pd.factorize(names, sort=True)
    sec = (metrics["ts"].astype("int64").to_numpy() - index.asi8[0]) // NS
    keep = (sec >= 0) & (sec < n)
    order = np.argsort(metrics["ts"].astype("int64").to_numpy()[keep], kind="stable")  # last sample wins
    r, c = sec[keep][order], codes[keep][order]
    values = np.full((n, len(uniq)), np.nan)
    present = np.zeros((n, len(uniq)), bool)
    values[r, c] = metrics["value"].to_numpy()[keep][order]
    present[r, c] = True
    frame = pd.DataFrame(values, columns=list(uniq))
    masks = pd.DataFrame(~present, columns=[f"{u}{MISSING_SUFFIX}" for u in uniq])
    return pd.concat([pd.DataFrame(out).reset_index(drop=True), frame, masks], axis=1)
