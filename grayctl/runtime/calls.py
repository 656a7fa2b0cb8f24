"""Calls to other services: keep-alive pools, replica load balancing, timeouts, retries, backoff.

Map:
  CallFailed / DownstreamError (502) / DownstreamTimeout (504)   what a failed call raises
  Downstream(service, urls, ...)   one aiohttp.ClientSession (keep-alive pool) per service,
                                   round-robin over replicas, refused replicas held off
  Client(config, tracer, registry, rng)   ``await client.call(spec, trace_id, parent_span)``
                                   runs one logical call: attempts, backoff, spans, metrics

Semantics (docs/runtime.md):
- ``timeout`` bounds one attempt, from sending to the whole response body being read.
- An attempt fails on a timeout, a connection error or a 5xx answer (503 shed included:
  retrying a shedding service is what real clients do, and how retries amplify overload).
  A 4xx is a bug in the config, not a transient: it fails at once, no retry.
- Attempt n+1 waits ``min(cap, backoff * 2**(n-1))`` with equal jitter (half fixed, half
  uniform), so retries spread out but never come back immediately.
- After the last attempt the call raises DownstreamTimeout (504) if that attempt timed out,
  else DownstreamError (502). The attempt counts as started when the request is issued:
  a timed-out attempt may still be executing downstream (as with any real RPC).
- Round-robin over replicas; a replica that refused a connection (or could not be reached)
  is skipped for ``refused_holdoff`` seconds unless every replica is held off.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp

from grayctl.runtime.config import CallSpec, RuntimeConfig
from grayctl.runtime.metrics import Registry
from grayctl.runtime.spans import Tracer, format_traceparent

__all__ = ["CallFailed", "Client", "Downstream", "DownstreamError", "DownstreamTimeout", "retry_wait"]


def retry_wait(cap: float, backoff: float, attempt: int, rng: random.Random) -> float:
    """Seconds before attempt ``attempt`` (>= 1): ``min(cap, backoff * 2**(attempt-1))``, equal jitter."""
    delay = min(cap, backoff * (2 ** (attempt - 1)))
    return delay / 2 + rng.uniform(0, delay / 2)


class CallFailed(Exception):
    """A call failed after its retries; ``status`` is the HTTP status the caller answers with."""

    status = 502

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class DownstreamError(CallFailed):
    status = 502


class DownstreamTimeout(CallFailed):
    status = 504


class Downstream:
    """One downstream service: its replicas and one keep-alive connection pool."""

    def __init__(self, service: str, urls: tuple[str, ...], pool_size: int, holdoff: float) -> None:
        self.service = service
        self.urls = urls
        self.holdoff = holdoff
        self._next = 0
        self._held_until = [0.0] * len(urls)
        # One session per downstream service, as a real RPC client keeps one channel per
        # service; limit = 0 means no cap (concurrency is already bounded by our workers).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool_size, limit_per_host=0, keepalive_timeout=30,
                                           use_dns_cache=False),
            timeout=aiohttp.ClientTimeout(total=None),  # the per-attempt timeout is ours
            auto_decompress=False, trust_env=False, skip_auto_headers=("User-Agent",),
        )

    def pick(self) -> int:
        """Next replica index, round-robin, skipping held-off replicas while any other is usable."""
        n = len(self.urls)
        now = time.monotonic()
        for i in range(n):
            idx = (self._next + i) % n
            if self._held_until[idx] <= now:
                self._next = idx + 1
                return idx
        idx = self._next % n
        self._next = idx + 1
        return idx

    def hold_off(self, idx: int) -> None:
        self._held_until[idx] = time.monotonic() + self.holdoff

    async def close(self) -> None:
        await self.session.close()


class Client:
    """Issues remote calls for one service process."""

    def __init__(self, config: RuntimeConfig, tracer: Tracer, registry: Registry, rng: random.Random) -> None:
        self.cfg = config
        self.tracer = tracer
        self.rng = rng  # backoff jitter
        self.downstreams = {s: Downstream(s, urls, config.pool_size, config.refused_holdoff)
                            for s, urls in config.downstreams.items()}
        lbl = ("peer_service", "component", "endpoint")
        self.m_attempts = registry.counter(
            "grayctl_downstream_attempts_total", "Downstream call attempts by outcome "
            "(ok, http_4xx, http_5xx, timeout, connect_error, error).", lbl + ("outcome",))
        self.m_calls = registry.counter(
            "grayctl_downstream_calls_total", "Downstream calls (after retries) by outcome (ok, error, timeout).",
            lbl + ("outcome",))
        self.m_retries = registry.counter("grayctl_downstream_retries_total", "Downstream call retries issued.", lbl)
        self.m_timeouts = registry.counter("grayctl_downstream_timeouts_total", "Downstream call attempts that timed out.", lbl)
        self.m_errors = registry.counter(
            "grayctl_downstream_errors_total", "Downstream call attempts that failed other than by timeout "
            "(5xx, 4xx, connection errors).", lbl)
        self.m_duration = registry.histogram(
            "grayctl_downstream_call_duration_seconds", "Duration of downstream calls including retries and backoff.", lbl)
        self.m_attempt_duration = registry.histogram(
            "grayctl_downstream_attempt_duration_seconds", "Duration of single downstream call attempts.", lbl)

    async def call(self, spec: CallSpec, trace_id: str, parent_span: str) -> None:
        """One logical call with retries; raises CallFailed when every attempt failed."""
        ds = self.downstreams[spec.service]  # type: ignore[index]
        lbl = (ds.service, spec.component, spec.endpoint)
        path = f"/{spec.component}/{spec.endpoint}"
        t0 = time.perf_counter()
        outcome = "error"
        detail = ""
        for attempt in range(spec.retries + 1):
            if attempt:
                self.m_retries.inc(lbl)
                await asyncio.sleep(retry_wait(self.cfg.backoff_cap, spec.backoff, attempt, self.rng))
            idx = ds.pick()
            url = ds.urls[idx] + path
            span_id = self.tracer.new_span_id()
            headers = {"traceparent": format_traceparent(trace_id, span_id)}
            start_ns = time.time_ns()
            a0 = time.perf_counter()
            status = 0
            try:
                async with asyncio.timeout(spec.timeout):
                    async with ds.session.post(url, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                if status < 400:
                    outcome = "ok"
                else:
                    outcome = "http_5xx" if status >= 500 else "http_4xx"
                    detail = f"{ds.service} answered {status} for {spec.target}"
            except TimeoutError:
                outcome = "timeout"
                detail = f"{spec.target} on {ds.service} timed out after {spec.timeout:g}s"
            except aiohttp.ClientConnectorError as err:
                outcome = "connect_error"
                detail = f"cannot connect to {ds.service} at {ds.urls[idx]}: {err.os_error or err}"
                ds.hold_off(idx)
            except (aiohttp.ClientError, OSError) as err:
                outcome = "error"
                detail = f"{spec.target} on {ds.service}: {type(err).__name__}: {err}"
            self.m_attempt_duration.observe(lbl, time.perf_counter() - a0)
            self.m_attempts.inc(lbl + (outcome,))
            self.tracer.record(trace_id, span_id, parent_span, "client", spec.component, spec.endpoint,
                               start_ns, time.time_ns(), status, attempt,
                               None if outcome == "ok" else outcome, ds.urls[idx])
            if outcome == "ok":
                break
            if outcome == "timeout":
                self.m_timeouts.inc(lbl)
            else:
                self.m_errors.inc(lbl)
            if outcome == "http_4xx":
                break
        self.m_duration.observe(lbl, time.perf_counter() - t0)
        final = "ok" if outcome == "ok" else ("timeout" if outcome == "timeout" else "error")
        self.m_calls.inc(lbl + (final,))
        if final == "timeout":
            raise DownstreamTimeout(detail)
        if final == "error":
            raise DownstreamError(detail)

    async def close(self) -> None:
        for ds in self.downstreams.values():
            await ds.close()
