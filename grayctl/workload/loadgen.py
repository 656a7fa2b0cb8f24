"""The open-loop load generator: live metrics, the run, and its verdict (its config: ``config.py``).

Map of this module:

- ``LiveMetrics`` — Prometheus counters/histograms updated on the hot path, rendered as
  text exposition format by a tiny aiohttp handler on ``metrics_listen``.
- ``run_workload`` — sends the schedule (``schedule.make_schedule``) open-loop: request i is
  launched at its intended time whether or not earlier ones have answered; if the
  generator cannot launch on time it launches late and the lateness is recorded.
- ``summarize_run`` — target vs achieved rate, send-error p99, HdrHistogram latency
  summaries, and the validity verdict (``valid: false`` with the reason, never hidden).

Time base: the run has one anchor pair ``(epoch_ns, mono_ns)`` taken together; every
instant is measured with ``time.perf_counter_ns`` (monotonic, sub-µs) as an offset from
``mono_ns`` and reported as ``epoch_ns + offset``. Offsets therefore never jump with NTP,
and intended times are exact multiples of the schedule, not re-read wall clocks.
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import gc
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from grayctl.errors import InputError, Problem, StepFailed
from grayctl.phases import figures_by_phase, phase_of_seconds, user_latency
from grayctl.workload.config import WorkloadConfig, split_listen
from grayctl.workload.records import (
    ERROR_KINDS,
    KIND_INDEX,
    RequestRecords,
    summarize_latency,
    write_records,
)
from grayctl.workload.schedule import Schedule, make_schedule

# -- live metrics --------------------------------------------------------------------------

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last = +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        # bisect_left finds the first bound >= v, i.e. the smallest "le" bucket holding v.
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v
        self.count += 1

    def render(self, name: str, labels: str, out: list[str]) -> None:
        sep = "," if labels else ""
        acc = 0
        for b, c in zip(self.bounds, self.counts):
            acc += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {acc}')
        acc += self.counts[-1]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {acc}')
        brace = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{brace} {self.sum!r}")
        out.append(f"{name}_count{brace} {self.count}")


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class LiveMetrics:
    """Counters kept on the hot path as plain ints; rendered only when scraped."""

    def __init__(self, type_names: tuple[str, ...], target_rate: float) -> None:
        self.type_names = type_names
        self.target_rate = target_rate
        self.scheduled_rate = target_rate
        self.sent = [0] * len(type_names)
        self.responses: dict[tuple[int, int], int] = {}
        self.errors: dict[tuple[int, int], int] = {}
        self.duration = [_Histogram(DURATION_BUCKETS) for _ in type_names]
        self.lag = _Histogram(LAG_BUCKETS)
        self.in_flight = 0
        self.start_time: float | None = None  # epoch s of offset 0 of the schedule, once anchored

    def render(self) -> str:
        out: list[str] = []
        names = [_label(n) for n in self.type_names]
        out += [
            "# HELP grayctl_workload_target_rate Requests per second the generator was asked to send.",
            "# TYPE grayctl_workload_target_rate gauge",
            f"grayctl_workload_target_rate {self.target_rate!r}",
            "# HELP grayctl_workload_scheduled_rate Requests per second in this run's schedule (Poisson differs from the target).",
            "# TYPE grayctl_workload_scheduled_rate gauge",
            f"grayctl_workload_scheduled_rate {self.scheduled_rate!r}",
            "# HELP grayctl_workload_requests_sent_total Requests launched; rate() of this is the achieved rate.",
            "# TYPE grayctl_workload_requests_sent_total counter",
        ]
        out += [f'grayctl_workload_requests_sent_total{{type="{n}"}} {c}' for n, c in zip(names, self.sent)]
        out += [
            "# HELP grayctl_workload_requests_total Requests finished, by type and HTTP status (none = no response).",
            "# TYPE grayctl_workload_requests_total counter",
        ]
        for (t, status), c in sorted(self.responses.items()):
            s = str(status) if status else "none"
            out.append(f'grayctl_workload_requests_total{{type="{names[t]}",status="{s}"}} {c}')
        out += [
            "# HELP grayctl_workload_errors_total Requests that failed, by type and error kind.",
            "# TYPE grayctl_workload_errors_total counter",
        ]
        for (t, k), c in sorted(self.errors.items()):
            out.append(f'grayctl_workload_errors_total{{type="{names[t]}",kind="{ERROR_KINDS[k]}"}} {c}')
        out += [
            "# HELP grayctl_workload_request_duration_seconds Latency from the intended send time (coordinated-omission corrected).",
            "# TYPE grayctl_workload_request_duration_seconds histogram",
        ]
        for n, h in zip(names, self.duration):
            h.render("grayctl_workload_request_duration_seconds", f'type="{n}"', out)
        out += [
            "# HELP grayctl_workload_send_lag_seconds How late each request was launched against its intended time.",
            "# TYPE grayctl_workload_send_lag_seconds histogram",
        ]
        self.lag.render("grayctl_workload_send_lag_seconds", "", out)
        out += [
            "# HELP grayctl_workload_in_flight Requests sent and not yet answered.",
            "# TYPE grayctl_workload_in_flight gauge",
            f"grayctl_workload_in_flight {self.in_flight}",
        ]
        if self.start_time is not None:  # t=0 of the run: grayctl run's timeline reads it right after the start
            out += ["# HELP grayctl_workload_start_time_seconds When offset 0 of the schedule was (UTC epoch seconds).",
                    "# TYPE grayctl_workload_start_time_seconds gauge",
                    f"grayctl_workload_start_time_seconds {self.start_time!r}"]
        return "\n".join(out) + "\n"


async def _start_metrics_server(metrics: LiveMetrics, listen: str,
                                phases: Callable[[int, list[tuple[str, float, float]]], dict[str, Any]] | None = None,
                                ) -> tuple[web.AppRunner, str]:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def handle_phases(request: web.Request) -> web.Response:
        # /phases?phase=warmup:0:10&phase=baseline:10:40 ... (the console's phase lines); t0_ns: the run's
        # start, by default this run's own t0 as the dataset computes it
        try:
            t0 = int(request.query["t0_ns"]) if "t0_ns" in request.query else -1
            spec = [(n, float(a), float(b)) for n, a, b in (p.split(":") for p in request.query.getall("phase"))]
        except (KeyError, ValueError) as e:
            return web.json_response({"error": f"expected t0_ns and phase=name:start_s:end_s ({e})"}, status=400)
        return web.json_response(phases(t0, spec) if phases else {})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    app.router.add_get("/phases", handle_phases)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # port 0 = any free port; we report the one we got
    bound = sock.getsockname()
    await web.SockSite(runner, sock).start()
    return runner, f"{host}:{bound[1]}"


# -- the run -------------------------------------------------------------------------------

# uvloop timers tick in whole milliseconds (libuv), so an asyncio sleep wakes up to ~1 ms
# late. On Linux the dispatcher instead arms a timerfd (an hrtimer on CLOCK_MONOTONIC, the
# clock perf_counter_ns reads) at the next request's absolute time and lets the event loop
# wake on it: sub-millisecond without burning a core. Elsewhere it sleeps until SPIN_NS
# before the instant and then yields to the loop (sleep(0) still polls sockets) until then.
SPIN_NS = 2_000_000


class _PreciseTimer:
    """Wake an asyncio loop at an absolute CLOCK_MONOTONIC instant, via Linux timerfd."""

    _CLOCK_MONOTONIC, _TFD_NONBLOCK, _TFD_CLOEXEC, _TFD_TIMER_ABSTIME = 1, 0o4000, 0o2000000, 1

    class _Itimerspec(ctypes.Structure):  # struct itimerspec: two struct timespec {sec, nsec}
        _fields_ = [("it_interval", ctypes.c_long * 2), ("it_value", ctypes.c_long * 2)]

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(self._CLOCK_MONOTONIC, self._TFD_NONBLOCK | self._TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._loop = loop
        self._spec = self._Itimerspec()
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(self.fd, self._fired)

    @classmethod
    def create(cls, loop: asyncio.AbstractEventLoop) -> _PreciseTimer | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            return cls(loop)
        except (OSError, AttributeError):
            return None

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def sleep_until(self, monotonic_ns: int) -> None:
        self._spec.it_value[0] = monotonic_ns // 1_000_000_000
        self._spec.it_value[1] = monotonic_ns % 1_000_000_000
        self._waiter = self._loop.create_future()
        if self._libc.timerfd_settime(self.fd, self._TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        await self._waiter

    def close(self) -> None:
        self._loop.remove_reader(self.fd)
        os.close(self.fd)


# When behind, launch at most this many requests before letting the loop run I/O once.
BURST = 64


@dataclass
class RunResult:
    summary: dict[str, Any]
    schedule: Schedule
    records: RequestRecords

    @property
    def valid(self) -> bool:
        return bool(self.summary["valid"])


class _Generator:
    """State of one run; the hot path lives in ``_dispatch`` and ``_request``."""

    def __init__(self, cfg: WorkloadConfig, schedule: Schedule, stop: asyncio.Event, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.schedule = schedule
        self.stop = stop
        self.log = log
        self.metrics = LiveMetrics(schedule.type_names, cfg.rate)
        self.metrics.scheduled_rate = schedule.scheduled_rate
        self.in_flight = 0
        self.slot_free = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.mono0 = 0
        self.records: RequestRecords | None = None
        self.stopped_at_ns: int | None = None
        # A request still unlaunched ``timeout`` after the window is dropped, never sent: its user would
        # have given up, and a generator far behind must still end (and write its records) on time.
        self.launch_deadline_ns = int((cfg.duration + cfg.timeout) * 1e9)
        self.dropped = 0
        self.cpu_samples: list[tuple[int, int]] = []  # (offset ns, this process's CPU ns), about once a second
        # Plain lists: indexing one is several times cheaper than a numpy array element.
        self.offsets = schedule.offsets_ns.tolist()
        self.types = schedule.types.tolist()
        # Per type: (method, url, body) resolved once, not per request.
        self.plan = [
            (cfg.targets[n].method, cfg.targets[n].url, b"x" * cfg.targets[n].body_size or None)
            for n in schedule.type_names
        ]

    def now(self) -> int:
        return time.perf_counter_ns() - self.mono0

    def phase_figures(self, t0_ns: int, phases: list[tuple[str, float, float]]) -> dict[str, Any]:
        """The users' figures per phase so far, as the dataset will count them (grayctl.phases), over the
        answered requests; ``pending`` per phase says how many of its scheduled requests are not answered yet."""
        rec = self.records
        if rec is None:
            return {}
        if t0_ns < 0:  # the dataset's run start: round(started_at * 1e9), started_at = epoch_ns / 1e9
            t0_ns = round(rec.epoch_ns / 1e9 * 1_000_000_000)
        m = rec.launched
        c = rec.columns()
        answered = np.frombuffer(rec.done, dtype="i8")[:m] != 0
        intended = c["intended"] + rec.epoch_ns
        out = figures_by_phase(intended[answered], user_latency(c["latency_corrected"], c["send_error"])[answered],
                               c["kind_index"][answered] != 0, t0_ns, phases)
        # pending: scheduled in the phase and not answered yet, launched or not (a phase's last second
        # may run past the phase's end: its midpoint decides)
        every = self.schedule.offsets_ns + rec.epoch_ns
        ph = phase_of_seconds(every // 1_000_000_000 * 1_000_000_000, t0_ns, phases)
        for name in out:
            out[name]["pending"] = int((ph == name).sum()) - out[name]["requests"]
        return out

    async def _dispatch(self) -> None:
        offsets = self.offsets
        n = len(offsets)
        clock = time.perf_counter_ns
        mono0 = self.mono0
        sleep = asyncio.sleep
        cap = self.cfg.max_in_flight
        spawn = self._spawn
        timer = _PreciseTimer.create(asyncio.get_running_loop())
        i = 0
        burst = 0
        deadline = self.launch_deadline_ns
        try:
            while i < n:
                now = clock() - mono0
                if now > deadline:
                    self.dropped = n - i
                    self.log(f"{self.dropped} requests not launched by {deadline / 1e9:g} s: dropped (the generator fell behind)")
                    return
                due = offsets[i]
                if now < due:
                    burst = 0
                    if timer is not None:
                        await timer.sleep_until(mono0 + due)
                    else:
                        wait = due - now
                        await sleep((wait - SPIN_NS) / 1e9 if wait > SPIN_NS else 0)
                    continue
                if self.in_flight >= cap:
                    # Open loop with a safety cap: we do not drop, we wait and launch late,
                    # and the lateness shows in send_error (and so in the verdict).
                    self.slot_free.clear()
                    await self.slot_free.wait()
                    continue
                spawn(i)
                i += 1
                burst += 1
                if burst >= BURST:
                    burst = 0
                    await sleep(0)
        finally:
            if timer is not None:
                timer.close()

    async def _sample_cpu(self) -> None:
        """This process's CPU time at each whole second of the run: the generator's own load, per second."""
        clock, cpu = time.perf_counter_ns, time.process_time_ns
        while True:
            now = clock() - self.mono0
            self.cpu_samples.append((now, cpu()))
            await asyncio.sleep((1_000_000_000 - now % 1_000_000_000) / 1e9)

    def _spawn(self, i: int) -> None:
        self.in_flight += 1
        self.metrics.in_flight = self.in_flight
        assert self.records is not None
        self.records.launched = i + 1
        task = asyncio.get_running_loop().create_task(self._request(i))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _request(self, i: int) -> None:
        rec = self.records
        assert rec is not None
        t = self.types[i]
        method, url, body = self.plan[t]
        ctx = SimpleNamespace(wire=-1)
        actual = time.perf_counter_ns() - self.mono0
        rec.actual[i] = actual
        m = self.metrics
        m.sent[t] += 1
        m.lag.observe((actual - self.offsets[i]) / 1e9)
        status = 0
        nbytes = 0
        kind = 0
        try:
            async with self.session.request(
                method, url, data=body, allow_redirects=False, trace_request_ctx=ctx
            ) as resp:
                data = await resp.read()
                status = resp.status
                nbytes = len(data)
            if status >= 500:
                kind = KIND_INDEX["http_5xx"]
            elif status >= 400:
                kind = KIND_INDEX["http_4xx"]
        except asyncio.CancelledError:
            kind = KIND_INDEX["cancelled"]
        except TimeoutError:  # asyncio's (an alias since 3.11) and aiohttp's Server/Connection/SocketTimeoutError
            kind = KIND_INDEX["timeout"]
        except aiohttp.ClientConnectorError:
            kind = KIND_INDEX["connect"]
        except (aiohttp.ServerDisconnectedError, ConnectionResetError, BrokenPipeError):
            kind = KIND_INDEX["reset"]
        except aiohttp.ClientOSError as e:
            kind = KIND_INDEX["reset" if e.errno in (104, 32) else "other"]
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError):
            kind = KIND_INDEX["protocol"]
        except Exception:  # noqa: BLE001 - any other failure is still a recorded outcome
            kind = KIND_INDEX["other"]
        done = time.perf_counter_ns() - self.mono0
        rec.done[i] = done
        rec.wire[i] = ctx.wire
        rec.status[i] = status
        rec.nbytes[i] = nbytes
        rec.kind[i] = kind
        key = (t, status)
        m.responses[key] = m.responses.get(key, 0) + 1
        if kind:
            ek = (t, kind)
            m.errors[ek] = m.errors.get(ek, 0) + 1
        m.duration[t].observe((done - self.offsets[i]) / 1e9)
        self.in_flight -= 1
        m.in_flight = self.in_flight
        if self.in_flight < self.cfg.max_in_flight:
            self.slot_free.set()

    async def _on_headers_sent(self, _session: Any, ctx: SimpleNamespace, _params: Any) -> None:
        ctx.trace_request_ctx.wire = time.perf_counter_ns() - self.mono0

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(self._on_headers_sent)
        connector = aiohttp.TCPConnector(limit=cfg.connections, limit_per_host=0, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=cfg.timeout),
            trace_configs=[trace],
            cookie_jar=aiohttp.DummyCookieJar(),  # no cookie bookkeeping per request
            auto_decompress=False,
        )
        metrics_runner = None
        metrics_at = None
        try:
            if cfg.metrics_listen:
                metrics_runner, metrics_at = await _start_metrics_server(self.metrics, cfg.metrics_listen,
                                                                         self.phase_figures)
                self.log(f"metrics on http://{metrics_at}/metrics")
            # Pay one-off costs before the clock starts: the IDNA codec aiohttp imports on its
            # first request (~5 ms), and a full collection, after which everything setup
            # allocated is frozen out of the collector's way for the run.
            import encodings.idna  # noqa: F401

            self.records = RequestRecords(self.schedule, 0)  # epoch set at the anchor

            gc.collect()
            gc.freeze()
            # Anchor the time base. With start_at we sleep to just before the boundary and
            # define the boundary itself as offset 0; the dispatcher's spin does the rest.
            if cfg.start_at is not None:
                start_ns = int(round(cfg.start_at * 1e9))
                lead = start_ns - time.time_ns()
                if lead < 0:
                    raise InputError(
                        Problem(f"start_at is {-lead / 1e9:.3f} s in the past", path="start_at"),
                        hint="the controller must give the generator time to start",
                    )
                epoch0 = start_ns
                self.mono0 = time.perf_counter_ns() + (start_ns - time.time_ns())
            else:
                epoch0 = time.time_ns()
                self.mono0 = time.perf_counter_ns()
            self.records.epoch_ns = epoch0
            self.metrics.start_time = epoch0 / 1e9
            started = epoch0 / 1e9  # the schedule's t=0 on the wall clock: the run's t0 everywhere (dataset, console)
            dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
            sampler = asyncio.get_running_loop().create_task(self._sample_cpu())
            stopper = asyncio.get_running_loop().create_task(self.stop.wait())
            await asyncio.wait({dispatcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not dispatcher.done():
                self.stopped_at_ns = self.now()
                dispatcher.cancel()
                self.log(f"stopping: no new requests; waiting up to {cfg.timeout:g} s for {self.in_flight} in flight")
            stopper.cancel()
            await asyncio.gather(dispatcher, stopper, return_exceptions=True)
            if self.tasks:
                # Each request ends by itself within ``timeout``; the margin covers the
                # last timer tick. Whatever is left after that is cancelled and recorded.
                _, pending = await asyncio.wait(set(self.tasks), timeout=cfg.timeout + 1.0)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
            sampler.cancel()
            self.cpu_samples.append((self.now(), time.process_time_ns()))
            ended = time.time()
        finally:
            gc.unfreeze()
            await self.session.close()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
        return {"started_at": started, "ended_at": ended, "metrics_listen": metrics_at}


async def run_workload(
    cfg: WorkloadConfig,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one workload to the end (or until ``stop`` is set); write records; judge it.

    With ``handle_signals`` SIGTERM and SIGINT set ``stop``: no new requests, in-flight ones
    get up to ``timeout``, and the records and summary are still written.
    """
    log = log or (lambda msg: print(f"grayctl.workload: {msg}", file=sys.stderr, flush=True))
    schedule = make_schedule(
        seed=cfg.seed, rate=cfg.rate, arrival=cfg.arrival, mix=cfg.mix, duration=cfg.duration
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    received: list[str] = []
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            def on_signal(sig: signal.Signals = sig) -> None:
                received.append(sig.name)
                stop.set()
            loop.add_signal_handler(sig, on_signal)
            signals.append(sig)
    gen = _Generator(cfg, schedule, stop, log)
    log(
        f"{len(schedule)} requests scheduled over {cfg.duration:g} s "
        f"({cfg.arrival}, target {cfg.rate:g}/s, seed {cfg.seed})"
    )
    try:
        times = await gen.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    assert gen.records is not None
    interrupted = received[0] if received else ("stop" if gen.stopped_at_ns is not None else None)
    summary = summarize_run(cfg, schedule, gen.records, stopped_at_ns=gen.stopped_at_ns, interrupted=interrupted,
                            dropped=gen.dropped, cpu_samples=gen.cpu_samples)
    summary.update(times)
    if cfg.records_path:
        write_records(gen.records, cfg.records_path)
        summary["records_path"] = cfg.records_path
    if cfg.summary_path:
        p = Path(cfg.summary_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(summary, indent=2) + "\n")
    return RunResult(summary, schedule, gen.records)


# -- the verdict ---------------------------------------------------------------------------


def summarize_run(
    cfg: WorkloadConfig,
    schedule: Schedule,
    records: RequestRecords,
    *,
    stopped_at_ns: int | None = None,
    interrupted: str | None = None,
    dropped: int = 0,
    cpu_samples: list[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """Target vs achieved rate, send error, latency summaries, the generator's health per second, and
    the validity verdict.

    Achieved rate = requests sent / the span they took, where the span is the schedule's
    window (``duration``, or up to the stop) or, if the generator was still launching
    after it, up to the last launch. It is compared with the rate *the schedule holds* in
    that window (for Poisson the draw's own rate, so sampling noise is not a failure).
    """
    c = records.columns()
    sent = records.launched
    window_ns = int(cfg.duration * 1e9) if stopped_at_ns is None else max(1, stopped_at_ns)
    expected = len(schedule) if stopped_at_ns is None else schedule.count_before(window_ns + 1)
    last_actual = int(c["actual"].max()) if sent else 0
    span_ns = max(window_ns, last_actual)
    expected_rate = expected / (window_ns / 1e9)
    achieved_rate = sent / (span_ns / 1e9)
    rate_error_pct = (achieved_rate - expected_rate) / expected_rate * 100.0 if expected_rate else 0.0
    send_err = c["send_error"]
    # Exact percentile (not HdrHistogram) because the verdict depends on it.
    send_p99_ms = float(np.percentile(send_err, 99)) / 1e6 if sent else 0.0

    reasons: list[str] = []
    b = cfg.keep_up_bound
    if abs(rate_error_pct) > b.rate_pct:
        reasons.append(
            f"achieved rate {achieved_rate:.2f}/s is {rate_error_pct:+.2f}% off the scheduled "
            f"{expected_rate:.2f}/s (bound ±{b.rate_pct:g}%)"
        )
    if send_p99_ms > b.send_error_p99_ms:
        reasons.append(f"send-error p99 {send_p99_ms:.3f} ms exceeds the {b.send_error_p99_ms:g} ms bound")
    if dropped:
        reasons.append(f"{dropped} scheduled requests dropped: still unlaunched {cfg.timeout:g} s after the window")
    if interrupted:
        reasons.append(f"stopped early ({interrupted}) after {window_ns / 1e9:.3f} s: {sent} of {len(schedule)} scheduled requests sent")

    names = schedule.type_names
    kinds = c["kind_index"]
    status = c["status"]
    errors = {ERROR_KINDS[k]: int(v) for k, v in zip(*np.unique(kinds, return_counts=True)) if k}
    statuses = {str(int(k)) if k else "none": int(v) for k, v in zip(*np.unique(status, return_counts=True))}
    by_type: dict[str, Any] = {}
    for ti, name in enumerate(names):
        sel = c["type_index"] == ti
        tk = kinds[sel]
        by_type[name] = {
            "sent": int(sel.sum()),
            "errors": {ERROR_KINDS[k]: int(v) for k, v in zip(*np.unique(tk, return_counts=True)) if k},
            "latency_ms": {
                "corrected": summarize_latency(c["latency_corrected"][sel]),
                "uncorrected": summarize_latency(c["latency_uncorrected"][sel]),
            },
        }
    return {
        "valid": not reasons,
        "reason": "; ".join(reasons) or None,
        "complete": interrupted is None,
        "interrupted": interrupted,
        "schedule": {
            "seed": schedule.seed,
            "arrival": schedule.arrival,
            "rate": schedule.rate,
            "duration": schedule.duration,
            "scheduled": len(schedule),
            "sha256": schedule.to_digest(),
        },
        "target_rate": cfg.rate,
        "scheduled_rate": round(expected_rate, 4),
        "achieved_rate": round(achieved_rate, 4),
        "rate_error_pct": round(rate_error_pct, 4),
        "sent": sent,
        "dropped": dropped,
        "late": int((send_err > b.send_error_p99_ms * 1e6).sum()),
        "send_error_ms": summarize_latency(send_err) | {"p99_exact": round(send_p99_ms, 4)},
        "per_second": health_per_second(cfg, schedule, records, cpu_samples or [], stopped_at_ns),
        "latency_ms": {
            "corrected": summarize_latency(c["latency_corrected"]),
            "uncorrected": summarize_latency(c["latency_uncorrected"]),
        },
        "errors": errors,
        "status": statuses,
        "by_type": by_type,
        "keep_up_bound": vars(cfg.keep_up_bound).copy(),
        "pid": os.getpid(),
    }


def health_per_second(cfg: WorkloadConfig, schedule: Schedule, records: RequestRecords,
                      cpu_samples: list[tuple[int, int]], stopped_at_ns: int | None = None) -> dict[str, Any]:
    """The generator's health per UTC second of intended send time (the labels' seconds).

    ``intended`` counts the schedule's requests of the second (up to a stop), ``sent`` those launched,
    ``dropped`` the rest; ``late`` those sent later than the keep-up bound's send error; lateness
    p50/p99 (ms) over the sent ones; ``cpu`` the generator's CPU in that second, in cores (from
    samples of its CPU time about once a second, each interval's share by overlap).
    """
    epoch = records.epoch_ns
    offsets = schedule.offsets_ns
    if stopped_at_ns is not None:
        offsets = offsets[: schedule.count_before(stopped_at_ns + 1)]
    end_ns = int(cfg.duration * 1e9) if stopped_at_ns is None else stopped_at_ns
    first = epoch // 1_000_000_000
    n = max(1, -(-(epoch + end_ns) // 1_000_000_000) - first)
    sec_all = (epoch + offsets) // 1_000_000_000 - first
    intended = np.bincount(sec_all, minlength=n)[:n]
    m = min(records.launched, len(offsets))
    c = records.columns()
    err = c["send_error"][:m]
    sec = sec_all[:m]
    sent = np.bincount(sec, minlength=n)[:n]
    late = np.bincount(sec, weights=err > cfg.keep_up_bound.send_error_p99_ms * 1e6, minlength=n)[:n]
    p50 = np.full(n, np.nan)
    p99 = np.full(n, np.nan)
    if m:
        bounds = np.searchsorted(sec, np.arange(n + 1))  # sec is sorted: the schedule is
        for k in np.flatnonzero(sent):
            e = err[bounds[k]:bounds[k + 1]]
            p50[k], p99[k] = np.percentile(e, [50, 99]) / 1e6
    cpu = np.zeros(n)
    for (t0, c0), (t1, c1) in zip(cpu_samples, cpu_samples[1:]):
        if t1 <= t0:
            continue
        a, b = (epoch + t0) / 1e9 - first, (epoch + t1) / 1e9 - first
        for k in range(max(0, int(a)), min(n, int(np.ceil(b)))):
            cpu[k] += (c1 - c0) / 1e9 * (min(b, k + 1) - max(a, k)) / (b - a)

    def col(a: np.ndarray, nd: int = 3) -> list[Any]:
        return [None if np.isnan(v) else round(float(v), nd) for v in a]

    return {
        "first_s": int(first),
        "intended": intended.astype(int).tolist(),
        "sent": sent.astype(int).tolist(),
        "dropped": (intended - sent).astype(int).tolist(),
        "late": late.astype(int).tolist(),
        "lateness_p50_ms": col(p50),
        "lateness_p99_ms": col(p99),
        "cpu": col(cpu),
    }


class RunInvalid(StepFailed):
    """The generator could not keep to its schedule: its latencies do not mean what they say."""

    title = "workload run invalid"
