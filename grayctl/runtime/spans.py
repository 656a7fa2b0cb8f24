"""W3C trace context and span records: one JSON line per server, client and internal span.

Map:
  parse_traceparent(header) -> (trace_id, parent_id) | None   invalid headers start a new trace
  format_traceparent(trace_id, span_id) -> str
  Tracer(path, service, flush_every)   new_trace_id() / new_span_id(), record(...),
                                       run_flusher() (background task), flush()

Records are buffered as tuples and serialised and appended in batches every ``flush_every``
seconds (and at shutdown): writing per request would put a syscall and JSON encoding on
every request's latency. A batch is one ``write`` of whole lines, so a reader never sees a
torn line from a live process. IDs come from their own RNG, seeded from os.urandom, so that
tracing does not shift the seeded draws of the work model.
Span line format (docs/runtime.md):
  {"trace_id", "span_id", "parent_id", "service", "component", "endpoint",
   "kind": "server"|"client"|"internal", "start_ns", "end_ns", "status", "attempt",
   "error", "peer"}
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re

__all__ = ["Tracer", "format_traceparent", "parse_traceparent"]

_TP = re.compile(r"\A([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
MAX_BUFFERED = 200_000  # spans kept when the file cannot be written; older ones are dropped


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """(trace_id, parent span id) from a W3C ``traceparent`` header, or None when absent/invalid."""
    if not header:
        return None
    m = _TP.match(header.strip().lower())
    if m is None:
        return None
    version, trace_id, parent_id, _flags = m.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    if version == "00" and len(header.strip()) != 55:  # version 00 has exactly four fields
        return None
    return trace_id, parent_id


def format_traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"  # always sampled: every span is recorded


# record tuple layout (kept positional for speed)
SpanRecord = tuple[str, str, "str | None", str, str, str, int, int, int, int, "str | None", "str | None"]
_FIELDS = ("trace_id", "span_id", "parent_id", "kind", "component", "endpoint",
           "start_ns", "end_ns", "status", "attempt", "error", "peer")


class Tracer:
    def __init__(self, path: str, service: str, flush_every: float = 1.0) -> None:
        self.path = path
        self.service = service
        self.flush_every = flush_every
        self.buffer: list[SpanRecord] = []
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self._rng = random.Random(os.urandom(16))

    def new_trace_id(self) -> str:
        return f"{self._rng.getrandbits(128) or 1:032x}"

    def new_span_id(self) -> str:
        return f"{self._rng.getrandbits(64) or 1:016x}"

    def record(self, trace_id: str, span_id: str, parent_id: str | None, kind: str, component: str,
               endpoint: str, start_ns: int, end_ns: int, status: int, attempt: int = 0,
               error: str | None = None, peer: str | None = None) -> None:
        self.buffer.append((trace_id, span_id, parent_id, kind, component, endpoint, start_ns, end_ns,
                            status, attempt, error, peer))

    def flush(self) -> int:
        """Append buffered spans to the file; returns how many were written."""
        if not self.buffer:
            return 0
        batch, self.buffer = self.buffer, []
        svc = self.service
        dumps = json.dumps
        lines = []
        for rec in batch:
            d = dict(zip(_FIELDS, rec))
            d["service"] = svc
            lines.append(dumps(d, separators=(",", ":")))
        data = ("\n".join(lines) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            # Keep them for the next attempt, bounded: a full disk must not become an OOM.
            self.write_errors += 1
            total = len(batch) + len(self.buffer)
            self.buffer = (batch + self.buffer)[-MAX_BUFFERED:]
            self.dropped += max(0, total - MAX_BUFFERED)
            return 0
        self.written += len(batch)
        return len(batch)

    async def run_flusher(self) -> None:
        """Flush every ``flush_every`` seconds until cancelled (then flush once more)."""
        try:
            while True:
                await asyncio.sleep(self.flush_every)
                self.flush()
        finally:
            self.flush()
