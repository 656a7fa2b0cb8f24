"""The service process: HTTP server, per-component worker pools, endpoint execution, lifecycle.

Map:
  WorkerPool(workers, queue)   bounded workers + bounded waiting queue; ``Shed`` when both full
  Runtime(config)              executes endpoints: CPU work, store, then the call steps;
                               in-process calls for components of this service, HTTP otherwise
  run_runtime(config, ready_file) -> int   serve until SIGTERM/SIGINT, then shut down gracefully

Request path (data address):  POST|GET /<component>/<endpoint>
  1. admission: the component's WorkerPool — a free worker, else a queue slot, else 503 now;
  2. the endpoint, in order: burn the sampled CPU time (on the loop, see work.py), ``store_ops``
     store accesses, then each call step (a ``parallel`` step gathers its calls and waits for
     all of them);
  3. 200 with ``response_size`` bytes, or 502/504 when a call failed after its retries.
The worker is held for the whole request, including time spent waiting on downstream calls —
as in a thread-per-request server (DeathStarBench's Thrift services): that is how a slow
dependency fills the pools and queues of everything upstream.

In-process calls (a component of this same service) run the callee's endpoint directly as a
function call: its own ``internal`` span and metrics, no HTTP, no timeout or retry (a function
call has neither), and no admission: the pool guards what arrives over the network, so a
gen1 monolith is admitted once at its entry like a real monolith. Errors propagate unchanged.

Runtime-realised faults (grayctl.runtime.faults, from the replica's ``fault_control`` file that the
node's fault executor writes): while one acts on a component, in-process calls into it get the
wire's semantics (the topology's per-attempt timeout, retries with backoff) and the fault's
verdict (delayed by a latency or TCP's repair of a lost packet, lost, failed, held at a paused
component's gate); requests arriving over the network into it are delayed, never answered (lost),
answered 502 (corrupted) or held the same way.

``GET /health`` answers 200 whenever the process answers at all. It does not look at pools,
queues or downstreams, deliberately: it is the naive liveness check whose disagreement with
user-visible latency and errors *is* the gray failure grayctl measures.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import sys
import time
from typing import Any

from aiohttp import web

from grayctl.runtime.calls import CallFailed, Client, DownstreamError, DownstreamTimeout, retry_wait
from grayctl.runtime.config import (
    CallSpec,
    ComponentSpec,
    EndpointSpec,
    ParallelSpec,
    RuntimeConfig,
)
from grayctl.runtime.faults import FaultBoard
from grayctl.runtime.metrics import CONTENT_TYPE, Registry, process_collector
from grayctl.runtime.spans import Tracer, parse_traceparent
from grayctl.runtime.work import PreciseSleeper, Sampler, Store, burn_cpu, derive_seed

__all__ = ["LOST_HOLD_S", "JsonLog", "Runtime", "Shed", "WorkerPool", "run_runtime"]

LOST_HOLD_S = 60.0  # a lost request arriving over the network is held unanswered this long at most


class Shed(Exception):
    """Every worker is busy and the queue is full: the request is rejected (503)."""


class WorkerPool:
    """``workers`` concurrent requests, ``queue`` more waiting in FIFO order, the rest shed.

    Not an asyncio.Semaphore: the queue must be bounded and its length observable, and a
    released worker is handed straight to the oldest waiter so that newcomers cannot overtake.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.queue = queue
        self.busy = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self.waiters)

    async def acquire(self) -> bool:
        """Take a worker; returns True if the request had to wait in the queue. Raises Shed."""
        if self.busy < self.workers and not self.waiters:
            self.busy += 1
            return False
        if len(self.waiters) >= self.queue:
            raise Shed()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut  # release() hands us its worker: busy is already counted for us
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed a worker but got cancelled: pass it on
            else:
                try:
                    self.waiters.remove(fut)
                except ValueError:  # release() already discarded it
                    pass
            raise
        return True

    def release(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.busy -= 1


class JsonLog:
    """Structured log: one JSON object per line, for events (startup, errors), not per request."""

    def __init__(self, path: str, service: str, replica: int) -> None:
        self.path = path
        self.base = {"service": service, "replica": replica}

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9 // 10**6:03d}Z",
               "level": level, "event": event, **self.base, **fields}
        line = json.dumps(rec, default=str) + "\n"
        try:
            with open(self.path, "a") as f:
                f.write(line)
        except OSError:
            sys.stderr.write(line)


_ERROR_BODY = {502: b"downstream failure\n", 503: b"overloaded: request shed\n",
               504: b"downstream timeout\n", 500: b"internal error\n"}


class Runtime:
    """Everything one service process executes. Build inside a running event loop."""

    def __init__(self, config: RuntimeConfig, log: JsonLog, control_path: str | None = None) -> None:
        self.cfg = config
        self.log = log
        self.sampler = Sampler(derive_seed(config.seed, config.service, config.replica, "work"))
        self.tracer = Tracer(config.spans_path, config.service, config.span_flush)
        self.registry = r = Registry()
        self.client = Client(config, self.tracer, r,
                             random.Random(derive_seed(config.seed, config.service, config.replica, "jitter")))
        self.components = config.components
        self.pools = {n: WorkerPool(c.workers, c.queue) for n, c in config.components.items()}
        self.sleeper = PreciseSleeper()
        self.stores = {n: Store(c.store, self.sampler, self.sleeper) for n, c in config.components.items() if c.store}
        self.bodies: dict[int, bytes] = {}
        for comp in config.components.values():
            for ep in comp.endpoints.values():
                self.bodies.setdefault(ep.response_size, b"x" * ep.response_size)
        self.unhandled_errors = 0

        ep_lbl = ("component", "endpoint")
        self.m_requests = r.counter(
            "grayctl_requests_total", "Endpoint executions by status; via=http for requests received over "
            "the network, via=inprocess for in-process calls.", ep_lbl + ("via", "status"))
        self.m_duration = r.histogram(
            "grayctl_request_duration_seconds", "Endpoint latency as served (queueing included for via=http).",
            ep_lbl + ("via",))
        self.m_queue_wait = r.histogram(
            "grayctl_queue_wait_seconds", "Time requests spent queued for a worker (only those that waited).",
            ("component",))
        self.m_rejected = r.counter(
            "grayctl_rejected_requests_total", "Requests shed with 503 because workers and queue were full.", ep_lbl)
        self.m_cpu = r.counter("grayctl_work_cpu_seconds_total", "CPU time burnt by modelled endpoint work.", ep_lbl)
        self.m_store = r.counter("grayctl_store_accesses_total", "Modelled store accesses by result (hit, miss).",
                                 ("component", "result"))
        pools = self.pools
        r.gauge("grayctl_inflight_requests", "Requests holding a worker, per component.", ("component",),
                fn=lambda: {(n,): p.busy for n, p in pools.items()})
        r.gauge("grayctl_queued_requests", "Requests waiting for a worker, per component.", ("component",),
                fn=lambda: {(n,): p.queued for n, p in pools.items()})
        r.gauge("grayctl_workers", "Worker pool size, per component.", ("component",),
                fn=lambda: {(n,): p.workers for n, p in pools.items()})
        r.gauge("grayctl_queue_capacity", "Queue slots, per component.", ("component",),
                fn=lambda: {(n,): p.queue for n, p in pools.items()})
        r.gauge("grayctl_worker_saturation_ratio", "Busy workers / workers, per component.", ("component",),
                fn=lambda: {(n,): p.busy / p.workers for n, p in pools.items()})
        tr = self.tracer
        r.gauge("grayctl_spans_buffered", "Spans waiting to be written.", fn=lambda: {(): len(tr.buffer)})
        r.counter_fn("grayctl_spans_written_total", "Spans written to the span file.", (), lambda: {(): tr.written})
        r.counter_fn("grayctl_spans_dropped_total", "Spans dropped because the span file could not be written.",
                     (), lambda: {(): tr.dropped})
        r.gauge("grayctl_runtime_info", "Constant 1, labelled with what this process runs.",
                ("topology", "service", "replica"),
                fn=lambda: {(config.topology, config.service, str(config.replica)): 1})
        r.collectors.append(process_collector())
        self.faults = FaultBoard(control_path, r, log)

    # -- execution ---------------------------------------------------------------------
    async def execute(self, comp: ComponentSpec, ep: EndpointSpec, trace_id: str, span_id: str) -> None:
        """Run one endpoint: CPU work, store accesses, then the call steps. Raises CallFailed."""
        cpu = self.sampler.sample(ep.cpu)
        if cpu > 0:
            self.m_cpu.inc((comp.name, ep.name), burn_cpu(cpu))
        if ep.store_ops:
            store = self.stores[comp.name]
            for _ in range(ep.store_ops):
                hit = await store.access()
                self.m_store.inc((comp.name, "hit" if hit else "miss"))
        for step in ep.steps:
            if isinstance(step, ParallelSpec):
                results = await asyncio.gather(*(self.call(c, trace_id, span_id, comp.name) for c in step.calls),
                                               return_exceptions=True)
                # wait for every branch (like a real fan-out), then fail with the first failure
                for res in results:
                    if isinstance(res, BaseException):
                        raise res
            else:
                await self.call(step, trace_id, span_id, comp.name)

    async def call(self, spec: CallSpec, trace_id: str, parent_span: str, caller: str | None = None) -> None:
        if spec.service is not None:
            await self.client.call(spec, trace_id, parent_span)
            return
        if self.faults.faults and self.faults.any_for(spec.component):
            await self._call_faulted(spec, trace_id, parent_span, caller)
            return
        await self._inprocess(spec, trace_id, parent_span)

    async def _call_faulted(self, spec: CallSpec, trace_id: str, parent_span: str, caller: str | None) -> None:
        """An in-process call into a component a runtime fault acts on: the wire's semantics (per-attempt
        timeout, retries with the client's backoff, as grayctl.runtime.calls), the fault's verdict."""
        board = self.faults
        ep = self.components[spec.component].endpoints[spec.endpoint]
        who: dict[str, Any] = {"caller": caller, "caller_service": self.cfg.service}
        outcome, detail = "error", ""
        for attempt in range(spec.retries + 1):
            if attempt:
                await asyncio.sleep(retry_wait(self.cfg.backoff_cap, spec.backoff, attempt, self.client.rng))
            verdict = board.decide(spec.component, size=ep.response_size, **who)
            try:
                async with asyncio.timeout(spec.timeout):
                    await board.wait_gate(spec.component, **who)
                    if verdict.before_s > 0:
                        await self.sleeper.sleep(verdict.before_s)
                    if verdict.lost:
                        await asyncio.Event().wait()  # never answered: the attempt's timeout ends it
                    if verdict.failed:
                        outcome, detail = "error", f"{spec.target} (in-process) failed: corrupted by a runtime fault"
                    else:
                        await self._inprocess(spec, trace_id, parent_span)
                        if verdict.after_s > 0:
                            await self.sleeper.sleep(verdict.after_s)
                        outcome = "ok"
            except TimeoutError:
                outcome, detail = "timeout", f"{spec.target} (in-process) timed out after {spec.timeout:g}s"
            except CallFailed as err:
                outcome, detail = "error", err.detail
            if outcome == "ok":
                return
        if outcome == "timeout":
            raise DownstreamTimeout(detail)
        raise DownstreamError(detail)

    async def _arrival_faults(self, request: web.Request, comp: ComponentSpec,
                              ep: EndpointSpec) -> tuple[int | None, float]:
        """Runtime faults on a request arriving over the network: (status to answer at once or None, delay
        after the endpoint). A lost request is never answered: held until its caller gives up."""
        who: dict[str, Any] = {"remote": request.remote}
        verdict = self.faults.decide(comp.name, size=ep.response_size, **who)
        if verdict.before_s > 0:
            await self.sleeper.sleep(verdict.before_s)
        if verdict.lost:
            end = time.monotonic() + LOST_HOLD_S
            while time.monotonic() < end:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await asyncio.sleep(0.05)
            return 504, 0.0
        if verdict.failed:
            return 502, 0.0
        await self.faults.wait_gate(comp.name, **who)
        return None, verdict.after_s

    async def _inprocess(self, spec: CallSpec, trace_id: str, parent_span: str) -> None:
        # In-process: a function call with its own span (kind=internal) and metrics.
        comp = self.components[spec.component]
        ep = comp.endpoints[spec.endpoint]
        span_id = self.tracer.new_span_id()
        start_ns = time.time_ns()
        t0 = time.perf_counter()
        status = 200
        try:
            await self.execute(comp, ep, trace_id, span_id)
        except CallFailed as err:
            status = err.status
            raise
        finally:
            lbl = (comp.name, ep.name)
            self.m_duration.observe(lbl + ("inprocess",), time.perf_counter() - t0)
            self.m_requests.inc(lbl + ("inprocess", str(status)))
            self.tracer.record(trace_id, span_id, parent_span, "internal", comp.name, ep.name,
                               start_ns, time.time_ns(), status)

    # -- HTTP ----------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        start_ns = time.time_ns()
        t0 = time.perf_counter()
        info = request.match_info
        comp = self.components.get(info["component"])
        ep = comp.endpoints.get(info["endpoint"]) if comp is not None else None
        if comp is None or ep is None:
            return web.Response(status=404, text=f"no endpoint {info['component']}.{info['endpoint']} here\n")
        if request.body_exists:
            await request.read()  # drain a request body so the connection stays reusable
        parent = parse_traceparent(request.headers.get("traceparent"))
        trace_id, parent_id = parent if parent else (self.tracer.new_trace_id(), None)
        span_id = self.tracer.new_span_id()
        lbl = (comp.name, ep.name)
        pool = self.pools[comp.name]
        status = 200
        after = 0.0
        if self.faults.faults and self.faults.any_for(comp.name):
            early, after = await self._arrival_faults(request, comp, ep)
            if early is not None:
                self.m_requests.inc(lbl + ("http", "faulted"))
                return web.Response(status=early, body=_ERROR_BODY[early], content_type="text/plain")
        try:
            queued = await pool.acquire()
        except Shed:
            status = 503
            self.m_rejected.inc(lbl)
        else:
            if queued:
                self.m_queue_wait.observe((comp.name,), time.perf_counter() - t0)
            try:
                await self.execute(comp, ep, trace_id, span_id)
            except CallFailed as err:
                status = err.status
            except Exception as err:  # noqa: BLE001 -- a bug: answer 500, log it, keep serving
                status = 500
                self.unhandled_errors += 1
                if self.unhandled_errors <= 20:
                    self.log("unhandled_error", "error", component=comp.name, endpoint=ep.name,
                             error=f"{type(err).__name__}: {err}")
            finally:
                pool.release()
        if after > 0:
            await self.sleeper.sleep(after)
        self.m_requests.inc(lbl + ("http", str(status)))
        self.m_duration.observe(lbl + ("http",), time.perf_counter() - t0)
        self.tracer.record(trace_id, span_id, parent_id, "server", comp.name, ep.name,
                           start_ns, time.time_ns(), status)
        if status == 200:
            return web.Response(body=self.bodies[ep.response_size], content_type="application/octet-stream")
        return web.Response(status=status, body=_ERROR_BODY[status], content_type="text/plain")

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")  # deliberately naive: see the module docstring

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    def data_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_route("GET", "/{component}/{endpoint}", self.handle)
        app.router.add_route("POST", "/{component}/{endpoint}", self.handle)
        return app

    def metrics_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        return app


def _summary(cfg: RuntimeConfig) -> dict[str, Any]:
    return {
        "topology": cfg.topology,
        "components": {n: {"endpoints": list(c.endpoints), "workers": c.workers, "queue": c.queue,
                           "store": c.store is not None} for n, c in cfg.components.items()},
        "downstreams": {s: list(u) for s, u in cfg.downstreams.items()},
        "listen": f"{cfg.listen_ip}:{cfg.port}", "metrics": f"{cfg.metrics_ip}:{cfg.metrics_port}",
        "spans_path": cfg.spans_path, "seed": cfg.seed,
    }


async def run_runtime(cfg: RuntimeConfig, ready_file: str | None = None, control_path: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code. ``control_path``: the fault control
    file to poll (grayctl.faults.node.runtimectl; beside the config on the nodes)."""
    log = JsonLog(cfg.log_path, cfg.service, cfg.replica)
    rt = Runtime(cfg, log, control_path)
    log("starting", pid=os.getpid(), python=sys.version.split()[0],
        loop=type(asyncio.get_running_loop()).__module__, precise_sleep=rt.sleeper.precise, config=_summary(cfg))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # access_log=None: per-request logging would cost more than the modelled work.
    data = web.AppRunner(rt.data_app(), access_log=None, shutdown_timeout=cfg.shutdown_timeout)
    mgmt = web.AppRunner(rt.metrics_app(), access_log=None, shutdown_timeout=1.0)
    await data.setup()
    await mgmt.setup()
    try:
        await web.TCPSite(mgmt, cfg.metrics_ip, cfg.metrics_port, backlog=1024).start()
        await web.TCPSite(data, cfg.listen_ip, cfg.port, backlog=1024).start()
    except OSError as err:
        log("bind_failed", "error", error=str(err))
        sys.stderr.write(f"grayctl.runtime: cannot listen: {err}\n")
        await data.cleanup()
        await mgmt.cleanup()
        await rt.client.close()
        return 3
    flusher = asyncio.create_task(rt.tracer.run_flusher())
    poller = asyncio.create_task(rt.faults.run_poller())
    ready = {"event": "ready", "service": cfg.service, "replica": cfg.replica, "pid": os.getpid(),
             "listen": f"{cfg.listen_ip}:{cfg.port}", "metrics": f"{cfg.metrics_ip}:{cfg.metrics_port}"}
    log("ready", listen=ready["listen"], metrics=ready["metrics"])
    if ready_file:
        tmp = f"{ready_file}.tmp"
        with open(tmp, "w") as f:  # noqa: ASYNC230 -- once, before serving
            json.dump(ready, f)
        os.replace(tmp, ready_file)  # atomic: a waiter never reads a half-written file
    print(json.dumps(ready), flush=True)

    await stop.wait()
    t0 = time.monotonic()
    inflight = sum(p.busy + p.queued for p in rt.pools.values())
    log("stopping", inflight=inflight)
    # Stop accepting, let in-flight requests finish (bounded by shutdown_timeout), then
    # close metrics, downstream pools, and flush spans last so no span is lost.
    await data.cleanup()
    await mgmt.cleanup()
    await rt.client.close()
    for task in (flusher, poller):
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    rt.tracer.flush()
    rt.sleeper.close()
    if ready_file:
        try:
            os.unlink(ready_file)
        except OSError:
            pass
    log("stopped", seconds=round(time.monotonic() - t0, 3), spans_written=rt.tracer.written,
        spans_dropped=rt.tracer.dropped)
    return 0
