"""Per-request records: in-memory columns while running, parquet or JSON lines at the end.

One row per request the generator launched (every scheduled request, unless the run was
stopped early). Columns are pre-allocated ``array.array``s indexed by the request's sequence
number: a store is one C-level write (cheap on the hot path, ~45 bytes a request, so 10^6
requests fit in ~45 MB), and at the end they become Arrow arrays without copying.

Record schema (see docs/workload.md):

=========================  ==========================  =========================================
column                     type                        meaning
=========================  ==========================  =========================================
seq                        int64                       index in the schedule
type                       string (dictionary)         request type (a key of the mix)
intended_ns                timestamp[ns, UTC]          when the schedule said to send it
actual_ns                  timestamp[ns, UTC]          when the generator handed it to the client
wire_ns                    timestamp[ns, UTC], null    when its headers were written on a connection
send_error_ns              int64                       actual - intended (generator lateness)
latency_corrected_ns       int64                       done - intended (coordinated-omission free)
latency_uncorrected_ns     int64                       done - wire (or - actual if never written)
status                     int16                       HTTP status, 0 when there was no response
response_bytes             int64                       body bytes received
error_kind                 string (dictionary), null   null when OK, else one of ERROR_KINDS
=========================  ==========================  =========================================
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hdrh.histogram import HdrHistogram

from grayctl.workload.schedule import Schedule

# Index 0 means "no error"; the order is part of nothing external (files store names).
ERROR_KINDS: tuple[str | None, ...] = (
    None,
    "timeout",
    "connect",
    "reset",
    "protocol",
    "http_4xx",
    "http_5xx",
    "cancelled",  # still in flight when a stopped run's grace period ended
    "other",
)
KIND_INDEX: dict[str | None, int] = {k: i for i, k in enumerate(ERROR_KINDS)}

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)
# HdrHistogram range: 1 µs .. 1 h at 3 significant digits (0.1 % value error).
_HDR_LOW_US, _HDR_HIGH_US, _HDR_DIGITS = 1, 3_600_000_000, 3


def _zeros(code: str, n: int) -> array:
    return array(code, bytes(array(code).itemsize * n))


class RequestRecords:
    """Column buffers for ``len(schedule)`` requests; rows are filled by sequence number."""

    def __init__(self, schedule: Schedule, epoch_ns: int) -> None:
        n = len(schedule)
        self.schedule = schedule
        self.epoch_ns = epoch_ns  # UTC epoch ns of schedule offset 0
        self.launched = 0  # rows [0, launched) are meaningful: launch happens in seq order
        self.actual = _zeros("q", n)  # offset ns
        self.wire = _zeros("q", n)  # offset ns; -1 = never written
        self.done = _zeros("q", n)  # offset ns
        self.status = _zeros("h", n)
        self.nbytes = _zeros("q", n)
        self.kind = _zeros("B", n)

    # -- conversion ----------------------------------------------------------------------

    def _np(self, buf: array, dtype: str) -> np.ndarray:
        return np.frombuffer(buf, dtype=dtype)[: self.launched]

    def columns(self) -> dict[str, np.ndarray]:
        """Numpy views (offsets in ns from the run's start) of the launched rows."""
        m = self.launched
        intended = self.schedule.offsets_ns[:m]
        actual = self._np(self.actual, "i8")
        wire = self._np(self.wire, "i8")
        done = self._np(self.done, "i8")
        sent_at = np.where(wire >= 0, wire, actual)
        return {
            "seq": np.arange(m, dtype=np.int64),
            "type_index": self.schedule.types[:m],
            "intended": intended,
            "actual": actual,
            "wire": wire,
            "send_error": actual - intended,
            "latency_corrected": done - intended,
            "latency_uncorrected": done - sent_at,
            "status": self._np(self.status, "i2"),
            "response_bytes": self._np(self.nbytes, "i8"),
            "kind_index": self._np(self.kind, "u1"),
        }

    def to_table(self) -> pa.Table:
        c = self.columns()
        ts = pa.timestamp("ns", tz="UTC")
        e = self.epoch_ns
        names = pa.array(list(self.schedule.type_names), pa.string())
        kinds = pa.array([k or "" for k in ERROR_KINDS], pa.string())
        # Index 0 is "no error": masked, so it is a null error_kind in the file.
        kind_idx = pa.array(c["kind_index"].astype(np.int8), mask=c["kind_index"] == 0)
        return pa.table(
            {
                "seq": pa.array(c["seq"]),
                "type": pa.DictionaryArray.from_arrays(pa.array(c["type_index"].astype(np.int8)), names),
                "intended_ns": pa.array(c["intended"] + e, ts),
                "actual_ns": pa.array(c["actual"] + e, ts),
                "wire_ns": pa.array(c["wire"] + e, ts, mask=c["wire"] < 0),
                "send_error_ns": pa.array(c["send_error"]),
                "latency_corrected_ns": pa.array(c["latency_corrected"]),
                "latency_uncorrected_ns": pa.array(c["latency_uncorrected"]),
                "status": pa.array(c["status"]),
                "response_bytes": pa.array(c["response_bytes"]),
                "error_kind": pa.DictionaryArray.from_arrays(kind_idx, kinds),
            }
        )

    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Rows as plain dicts with epoch-ns integers (the JSON-lines form)."""
        c = self.columns()
        e = self.epoch_ns
        names = self.schedule.type_names
        for i in range(self.launched):
            w = int(c["wire"][i])
            yield {
                "seq": i,
                "type": names[int(c["type_index"][i])],
                "intended_ns": int(c["intended"][i]) + e,
                "actual_ns": int(c["actual"][i]) + e,
                "wire_ns": w + e if w >= 0 else None,
                "send_error_ns": int(c["send_error"][i]),
                "latency_corrected_ns": int(c["latency_corrected"][i]),
                "latency_uncorrected_ns": int(c["latency_uncorrected"][i]),
                "status": int(c["status"][i]),
                "response_bytes": int(c["response_bytes"][i]),
                "error_kind": ERROR_KINDS[int(c["kind_index"][i])],
            }


def write_records(records: RequestRecords, path: str | Path) -> Path:
    """Write the records as parquet (``.parquet``) or JSON lines (``.jsonl``/``.json``).

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        with tmp.open("w") as f:
            for row in records.iter_dicts():
                f.write(json.dumps(row, separators=(",", ":")))
                f.write("\n")
    else:
        pq.write_table(records.to_table(), tmp, compression="zstd")
    tmp.replace(path)
    return path


# -- summaries -----------------------------------------------------------------------------


def _hdr(values_ns: np.ndarray) -> HdrHistogram:
    h = HdrHistogram(_HDR_LOW_US, _HDR_HIGH_US, _HDR_DIGITS)
    if values_ns.size:
        us = np.clip(np.rint(values_ns / 1000.0), _HDR_LOW_US, _HDR_HIGH_US).astype(np.int64)
        # Record each distinct value once with its count: same histogram, far fewer calls.
        vals, counts = np.unique(us, return_counts=True)
        for v, k in zip(vals.tolist(), counts.tolist()):
            h.record_value(v, k)
    return h


def summarize_latency(values_ns: np.ndarray) -> dict[str, float | int]:
    """HdrHistogram summary in milliseconds: count, mean, p50/p90/p99/p99.9, max."""
    h = _hdr(values_ns)
    n = h.get_total_count()
    out: dict[str, float | int] = {"count": int(n)}
    if n == 0:
        return out
    # The mean is exact from the values (hdrh's get_mean_value walks every bucket: slow).
    out["mean"] = round(float(np.mean(values_ns)) / 1e6, 3)
    for label, p in PERCENTILES:
        out[label] = round(h.get_value_at_percentile(p) / 1000.0, 3)
    out["max"] = round(h.get_max_value() / 1000.0, 3)
    return out
