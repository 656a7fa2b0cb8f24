"""Live user-level figures of a running experiment, read from its Prometheus every couple of seconds.

Map:
  LiveFigures                     achieved rate, p50/p99 (s), error ratio; None where Prometheus has no answer
  read_live_figures(url) -> LiveFigures | None   four instant queries over the last few seconds
  LivePoller(url, on_figures)     a daemon thread calling read_live_figures every ``interval`` s

Only the console display uses this: it is an observer, and a slow or absent Prometheus never
delays the run (short timeouts; failures give None and the display shows "-").
"""

from __future__ import annotations

import json
import math
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LiveFigures", "LivePoller", "read_live_figures"]

# The load generator's own metrics (docs/metrics.md, user layer); a 5 s window at 1 s scrapes.
WINDOW = "5s"
_RATE = f"sum(rate(grayctl_workload_requests_total[{WINDOW}]))"
_ERR = f"sum(rate(grayctl_workload_errors_total[{WINDOW}])) / clamp_min({_RATE}, 1e-9)"
_Q = "histogram_quantile({q}, sum by (le) (rate(grayctl_workload_request_duration_seconds_bucket[" + WINDOW + "])))"


@dataclass(frozen=True)
class LiveFigures:
    rate: float | None
    p50_s: float | None
    p99_s: float | None
    error_ratio: float | None


def _instant(url: str, query: str, timeout: float) -> float | None:
    full = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(full, timeout=timeout) as resp:
            doc = json.loads(resp.read())
        result = doc["data"]["result"]
        value = float(result[0]["value"][1]) if result else None
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def read_live_figures(url: str, *, timeout: float = 1.0) -> LiveFigures | None:
    """The last few seconds as users saw them; None when Prometheus does not answer at all."""
    rate = _instant(url, _RATE, timeout)
    if rate is None:
        return None
    return LiveFigures(rate, _instant(url, _Q.format(q=0.5), timeout), _instant(url, _Q.format(q=0.99), timeout),
                       _instant(url, _ERR, timeout) or 0.0)  # no error series yet: none counted


class LivePoller:
    """Calls ``on_figures(read_live_figures(url))`` every ``interval`` seconds until ``stop()``."""

    def __init__(self, url: str, on_figures: Callable[[LiveFigures | None], None], interval: float = 2.0) -> None:
        self.url, self.on_figures, self.interval = url, on_figures, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="grayctl-live", daemon=True)

    def start(self) -> LivePoller:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.on_figures(read_live_figures(self.url))

    def stop(self) -> None:
        self._stop.set()
