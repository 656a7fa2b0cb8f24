"""Prometheus text exposition (format 0.0.4), written by hand: small, fast, no dependency.

Map:
  Counter / Gauge / Histogram    labelled families; label values are passed as a tuple in
                                 ``labelnames`` order (no dict building on the hot path)
  Registry.render() -> str       the /metrics body: families, then collectors (callbacks)
  process_collector()            process_cpu_seconds_total, process_resident_memory_bytes, ...
  LATENCY_BUCKETS                1 ms .. 10 s

Recording is a dict lookup and an add; all formatting happens at scrape time (once a second),
so metrics cost the request path almost nothing.
"""

from __future__ import annotations

import math
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "Counter", "Gauge", "Histogram", "Registry", "process_collector"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[str, ...]


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _fmt(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(v) if v != int(v) or abs(v) >= 1e15 else str(int(v))


def _labels(names: tuple[str, ...], values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_esc(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labelnames = name, help_, labelnames

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help_: str, labelnames: tuple[str, ...] = ()) -> None:
        assert name.endswith("_total"), name
        super().__init__(name, help_, labelnames)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), by: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + by

    def get(self, labels: Labels = ()) -> float:
        return self.values.get(labels, 0)

    def render(self) -> list[str]:
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_fmt(v)}" for k, v in self.values.items()]


class Gauge(_Family):
    """A gauge set by the code, or read from ``fn`` at scrape time (returns {labels: value})."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, labelnames: tuple[str, ...] = (),
                 fn: Callable[[], dict[Labels, float]] | None = None, kind: str = "gauge") -> None:
        super().__init__(name, help_, labelnames)
        self.values: dict[Labels, float] = {}
        self.fn = fn
        self.kind = kind  # "counter" for a counter kept elsewhere and read at scrape time

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def render(self) -> list[str]:
        values = self.fn() if self.fn is not None else self.values
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_fmt(v)}" for k, v in values.items()]


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help_: str, labelnames: tuple[str, ...] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help_, labelnames)
        self.buckets = buckets
        self._le = [f'le="{_fmt(b)}"' for b in buckets] + ['le="+Inf"']
        # per label set: [count per bucket (non-cumulative, last = +Inf)..., sum]
        self.values: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0] * (len(self.buckets) + 1) + [0.0]
        row[bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def count(self, labels: Labels) -> int:
        row = self.values.get(labels)
        return int(sum(row[:-1])) if row else 0

    def render(self) -> list[str]:
        out = self.header()
        names = self.labelnames
        for k, row in self.values.items():
            acc = 0.0
            for le, n in zip(self._le, row):
                acc += n
                out.append(f"{self.name}_bucket{_labels(names, k, le)} {int(acc)}")
            out.append(f"{self.name}_sum{_labels(names, k)} {_fmt(row[-1])}")
            out.append(f"{self.name}_count{_labels(names, k)} {int(acc)}")
        return out


class Registry:
    def __init__(self) -> None:
        self.families: list[_Family] = []
        self.collectors: list[Callable[[], Iterable[str]]] = []

    def add(self, family: _Family) -> _Family:
        self.families.append(family)
        return family

    def counter(self, name: str, help_: str, labelnames: tuple[str, ...] = ()) -> Counter:
        return self.add(Counter(name, help_, labelnames))  # type: ignore[return-value]

    def gauge(self, name: str, help_: str, labelnames: tuple[str, ...] = (),
              fn: Callable[[], dict[Labels, float]] | None = None) -> Gauge:
        return self.add(Gauge(name, help_, labelnames, fn))  # type: ignore[return-value]

    def counter_fn(self, name: str, help_: str, labelnames: tuple[str, ...],
                   fn: Callable[[], dict[Labels, float]]) -> Gauge:
        """A counter whose value lives elsewhere (read by ``fn`` at scrape time)."""
        assert name.endswith("_total"), name
        return self.add(Gauge(name, help_, labelnames, fn, kind="counter"))  # type: ignore[return-value]

    def histogram(self, name: str, help_: str, labelnames: tuple[str, ...] = (),
                  buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        return self.add(Histogram(name, help_, labelnames, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        lines: list[str] = []
        for f in self.families:
            lines += f.render()  # type: ignore[attr-defined]
        for c in self.collectors:
            lines += c()
        return "\n".join(lines) + "\n"


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read_proc() -> tuple[float, int]:
    """(CPU seconds user+system, resident bytes) of this process from /proc; os.times() fallback."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # the command name (field 2) may contain spaces: split after its closing parenthesis
        fields = stat[stat.rindex(b")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime = fields 14, 15
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * _PAGE
        return cpu, rss
    except (OSError, ValueError, IndexError):
        t = os.times()
        return t.user + t.system, 0


def process_collector(start_time: float | None = None) -> Callable[[], list[str]]:
    """Standard process_* metrics (the names Prometheus client libraries use)."""
    start = time.time() if start_time is None else start_time

    def collect() -> list[str]:
        cpu, rss = _read_proc()
        try:
            fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            fds = -1
        return [
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
            "# TYPE process_cpu_seconds_total counter",
            f"process_cpu_seconds_total {_fmt(cpu)}",
            "# HELP process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {rss}",
            "# HELP process_open_fds Number of open file descriptors.",
            "# TYPE process_open_fds gauge",
            f"process_open_fds {fds}",
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {_fmt(start)}",
        ]

    return collect
