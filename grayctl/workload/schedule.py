"""The request schedule: when each request is meant to be sent, and of which type.

The whole sequence is a pure function of ``(seed, rate, arrival, mix, duration)`` — nothing
here reads a clock — so two runs with the same seed send the same requests at the same
offsets (DeathStarBench's scripts seed from the clock; their runs cannot be repeated).

Determinism across machines and Python versions: we use ``random.Random`` seeded with a
*string*, whose seeding (SHA-512 of the string) and ``random()`` stream (Mersenne Twister)
Python documents as reproducible across versions. NumPy's ``Generator`` makes no such
promise (NEP 19), so it is only used to vectorise arithmetic on numbers drawn here.

Two independent streams are derived from the seed, one for arrivals and one for request
types, so the i-th request's type depends only on ``(seed, mix)``: changing the rate or the
arrival process keeps the type sequence, which makes runs comparable.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np

Arrival = Literal["constant", "poisson"]
ARRIVALS: tuple[str, ...] = ("constant", "poisson")

# A schedule is held in memory as two compact arrays (9 bytes a request); beyond this we
# would rather refuse than take a lab node's memory by surprise.
MAX_REQUESTS = 50_000_000


@dataclass(frozen=True)
class Schedule:
    """Intended send offsets (ns from the run's start) and the type of each request."""

    offsets_ns: np.ndarray  # int64, non-decreasing, every value < duration
    types: np.ndarray  # uint8 index into ``type_names``
    type_names: tuple[str, ...]
    seed: int
    rate: float
    arrival: str
    duration: float

    def __len__(self) -> int:
        return int(self.offsets_ns.shape[0])

    @property
    def scheduled_rate(self) -> float:
        """Requests per second this schedule actually holds (Poisson differs from ``rate``)."""
        return len(self) / self.duration if self.duration > 0 else 0.0

    def count_before(self, offset_ns: int) -> int:
        """How many requests are scheduled strictly before ``offset_ns``."""
        return int(np.searchsorted(self.offsets_ns, offset_ns, side="left"))

    def to_digest(self) -> str:
        """SHA-256 of the sequence, for the manifest: equal digests mean equal requests."""
        h = hashlib.sha256()
        h.update("\n".join(self.type_names).encode())
        h.update(np.ascontiguousarray(self.offsets_ns, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(self.types, dtype="u1").tobytes())
        return h.hexdigest()


def _stream(seed: int, purpose: str) -> random.Random:
    return random.Random(f"grayctl.workload/{seed}/{purpose}")


def validate_mix(mix: dict[str, float]) -> None:
    """Raise ``ValueError`` unless ``mix`` is non-empty, non-negative and sums to 100."""
    if not mix:
        raise ValueError("the mix names no request type")
    if len(mix) > 255:
        raise ValueError("at most 255 request types")
    for name, pct in mix.items():
        if not isinstance(pct, (int, float)) or math.isnan(pct) or pct < 0:
            raise ValueError(f"mix[{name!r}] must be a non-negative percentage, got {pct!r}")
    total = sum(mix.values())
    if abs(total - 100.0) > 1e-6:
        raise ValueError(f"the mix must sum to 100 (percent), it sums to {total:g}")


def make_schedule(
    *, seed: int, rate: float, arrival: str, mix: dict[str, float], duration: float
) -> Schedule:
    """Build the request sequence. Pure: same arguments, same schedule.

    ``constant`` sends request i at ``i / rate``; ``poisson`` draws exponential
    inter-arrival gaps of mean ``1 / rate`` (the first request at the first gap, so a
    Poisson process observed from t = 0). Only offsets ``< duration`` are kept.
    """
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    validate_mix(mix)
    expected = rate * duration
    if expected > MAX_REQUESTS:
        raise ValueError(f"rate × duration = {expected:.0f} requests, over the {MAX_REQUESTS} limit")

    if arrival == "constant":
        n = math.ceil(expected - 1e-9)  # i / rate < duration  <=>  i < rate * duration
        # Integer nanoseconds computed from i (not by accumulating a gap) so no drift builds.
        offsets = np.floor(np.arange(n, dtype=np.float64) * (1e9 / rate)).astype(np.int64)
    else:
        rng = _stream(seed, "arrivals")
        limit = duration * 1e9
        gaps: list[float] = []
        t = 0.0
        mean_ns = 1e9 / rate
        rnd = rng.random
        log = math.log
        while True:
            # Inverse CDF of the exponential; 1 - u is in (0, 1], so log never sees 0.
            t += -log(1.0 - rnd()) * mean_ns
            if t >= limit:
                break
            gaps.append(t)
        offsets = np.floor(np.asarray(gaps, dtype=np.float64)).astype(np.int64)
        n = int(offsets.shape[0])

    names = tuple(mix)
    # Zero-weight types stay in ``names`` (so indices are stable) but are never drawn.
    cum: list[float] = []
    acc = 0.0
    for name in names:
        acc += float(mix[name])
        cum.append(acc)
    trng = _stream(seed, "types")
    draws = [trng.random() * acc for _ in range(n)]
    types = np.fromiter(
        (bisect.bisect_right(cum, u) for u in draws), dtype=np.uint8, count=n
    )
    # Guard against u * acc rounding onto the top edge.
    np.minimum(types, len(names) - 1, out=types)
    return Schedule(
        offsets_ns=offsets,
        types=types,
        type_names=names,
        seed=int(seed),
        rate=float(rate),
        arrival=arrival,
        duration=float(duration),
    )
