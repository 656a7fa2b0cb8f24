"""What an endpoint costs: sampled CPU time burnt for real, and a modelled data store.

Map:
  Sampler(seed)            draws from DistSpec distributions (reproducible per process)
  burn_cpu(seconds)        busy-loops until this thread has used ``seconds`` of CPU
  Store(spec, sampler)     ``await store.access()`` sleeps one sampled access latency

CPU work runs *on the event loop thread* and blocks it, on purpose: a real Python service
doing compute in its request handler behaves exactly so — one core at most per process,
and a burst of CPU-heavy requests delays every other request of the process (including
metrics scrapes and the health check). A thread pool would not give more CPU (the GIL),
would add hand-off latency, and would hide the head-of-line blocking that makes CPU
contention a gray failure. The loop measures ``time.thread_time()``: CPU consumed by this
thread only, so time the thread is descheduled (a cpu-stress fault, a cgroup limit) does
not count and the request takes longer in wall time — again, what real compute does.

The store does not use CPU: it models a remote database/cache as a sampled wait, the
worker stays held, and a cache hit draws from ``cache_latency``. The wait uses
``PreciseSleeper``, not ``asyncio.sleep``: event-loop timers have millisecond granularity
(uvloop rounds a 200 µs sleep to ~0 and 1.5 ms to ~2 ms; the default loop rounds sub-ms
sleeps up to ~1 ms), which would erase exactly the sub-millisecond cache latencies the
topologies model. A Linux timerfd armed at the next deadline (ns resolution, absolute
CLOCK_MONOTONIC) wakes the loop on time without spinning; waits >= 50 ms, where the
rounding is < 2%, use the loop's own timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import heapq
import itertools
import math
import os
import random
import time

from grayctl.runtime.config import DistSpec, StoreSpec

__all__ = ["PreciseSleeper", "Sampler", "Store", "burn_cpu", "derive_seed"]

Z99 = 2.3263478740408408  # standard normal 99th percentile


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 64-bit seed from ``seed`` and names (Python's hash() is salted per process)."""
    h = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(h[:8], "big")


def _lognormal_params(d: DistSpec) -> tuple[float, float]:
    """(mu, sigma) of the underlying normal so that the mean (and stddev or p99) match."""
    if d.stddev is not None:
        sigma2 = math.log1p((d.stddev / d.mean) ** 2)
        return math.log(d.mean) - sigma2 / 2, math.sqrt(sigma2)
    assert d.p99 is not None
    # mean = exp(mu + s^2/2), p99 = exp(mu + Z99*s)  =>  s^2/2 - Z99*s + ln(p99/mean) = 0.
    # Take the smaller root; if p99/mean is too large for any lognormal, use the maximum spread.
    k = math.log(d.p99 / d.mean)
    disc = Z99 * Z99 - 2 * k
    sigma = Z99 - math.sqrt(disc) if disc > 0 else Z99
    return math.log(d.mean) - sigma * sigma / 2, sigma


class Sampler:
    """Draws seconds from DistSpecs with one seeded RNG (per process: reproducible draws)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._ln: dict[DistSpec, tuple[float, float]] = {}

    def sample(self, d: DistSpec) -> float:
        kind = d.dist
        if kind == "constant":
            return d.mean
        if kind == "exponential":
            return self.rng.expovariate(1.0 / d.mean) if d.mean > 0 else 0.0
        if kind == "normal":
            return max(0.0, self.rng.gauss(d.mean, d.stddev or 0.0))  # truncated: time is not negative
        params = self._ln.get(d)
        if params is None:
            params = self._ln[d] = _lognormal_params(d)
        return self.rng.lognormvariate(*params)

    def chance(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p


def burn_cpu(seconds: float) -> float:
    """Spin until this thread has consumed ``seconds`` of CPU; returns the CPU time actually used.

    Checks the clock every few hundred iterations: ``thread_time()`` is a real syscall
    (~0.3 µs), and the arithmetic between checks keeps the loop doing plain interpreter work.
    """
    if seconds <= 0:
        return 0.0
    clock = time.thread_time
    start = clock()
    end = start + seconds
    x = 0
    while clock() < end:
        for i in range(200):
            x += i * i
    return clock() - start


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_CLOCK_MONOTONIC = 1        # time.monotonic() is CLOCK_MONOTONIC on Linux
_TFD_NONBLOCK_CLOEXEC = 0o4000 | 0o2000000
_TFD_TIMER_ABSTIME = 1
COARSE_SLEEP = 0.05         # s: from here on the loop's millisecond timers are accurate enough


class PreciseSleeper:
    """Sub-millisecond ``await sleep(d)`` for one event loop, on one timerfd and a deadline heap.

    Falls back to ``asyncio.sleep`` where timerfd is unavailable (then say so: ``precise``).
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self.seq = itertools.count()
        self.armed = math.inf
        self.fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._settime = libc.timerfd_settime
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK_CLOEXEC)
            if fd >= 0:
                self.loop.add_reader(fd, self._fire)
                self.fd = fd
        except (OSError, AttributeError, NotImplementedError):
            self.fd = -1
        self.precise = self.fd >= 0

    async def sleep(self, delay: float) -> None:
        if not self.precise or delay >= COARSE_SLEEP or delay <= 0:
            await asyncio.sleep(max(delay, 0.0))
            return
        deadline = time.monotonic() + delay
        fut: asyncio.Future[None] = self.loop.create_future()
        heapq.heappush(self.heap, (deadline, next(self.seq), fut))
        if deadline < self.armed:
            self._arm(deadline)
        await fut

    def _arm(self, deadline: float) -> None:
        sec = int(deadline)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(sec, int((deadline - sec) * 1e9)))
        self._settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None)
        self.armed = deadline

    def _fire(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass
        now = time.monotonic()
        heap = self.heap
        while heap and heap[0][0] <= now:
            fut = heapq.heappop(heap)[2]
            if not fut.done():  # a cancelled sleeper stays in the heap until due
                fut.set_result(None)
        self.armed = math.inf
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.precise = False


class Store:
    """A modelled store: each access waits a sampled latency (cache hit or miss)."""

    def __init__(self, spec: StoreSpec, sampler: Sampler, sleeper: PreciseSleeper | None = None) -> None:
        self.spec = spec
        self.sampler = sampler
        self.sleep = sleeper.sleep if sleeper is not None else asyncio.sleep
        self.hits = 0
        self.misses = 0

    async def access(self) -> bool:
        """One access; returns True on a cache hit."""
        spec, s = self.spec, self.sampler
        hit = spec.cache_latency is not None and s.chance(spec.cache_hit_ratio)
        if hit:
            self.hits += 1
            delay = s.sample(spec.cache_latency)  # type: ignore[arg-type]
        else:
            self.misses += 1
            delay = s.sample(spec.latency)
        await self.sleep(delay)
        return hit
