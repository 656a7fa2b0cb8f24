"""Node-side Prometheus exporters of grayctl, and the tiny HTTP server they share.

Map:
- ``grayctl.exporters.cgroup``  per-node resource accounting read from the node's cgroup (CPU usage and
  throttling, memory, PSI) at scrape time.
- ``grayctl.exporters.qdisc``   per-qdisc counters from ``tc -s -j qdisc show`` in the node's netns.
- ``python -m grayctl.exporters``  one process serving both: ``/metrics/cgroup``, ``/metrics/qdisc`` and
  ``/metrics`` (both together). One process per node keeps the footprint inside the node's cgroup small
  (stdlib only, no aiohttp: ~25 MiB RSS).
- this module: ``Exposition`` (text format 0.0.4 writer) and ``serve`` (an asyncio HTTP/1.1 server that
  answers GET for a few paths, used by the exporters and by ``grayctl.observer``).

Metric names and their sources are listed in docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["Exposition", "parse_listen", "serve", "write_ready_file"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Collects samples grouped by metric family and renders Prometheus text format 0.0.4."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: float,
            labels: Mapping[str, str] | None = None) -> None:
        fam = self._families.setdefault(name, (kind, help_text, []))
        lbl = ""
        if labels:
            lbl = "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"
        fam[2].append(f"{name}{lbl} {_fmt(value)}")

    def render(self) -> str:
        out: list[str] = []
        for name, (kind, help_text, samples) in self._families.items():
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)
        return "\n".join(out) + "\n"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def write_ready_file(path: str | None, info: dict[str, object]) -> None:
    if not path:
        return
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, path)


Route = Callable[[], "str | asyncio.Future[str]"]


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  routes: Mapping[str, Callable[[], object]]) -> None:
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                    ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            if len(parts) != 3:
                return
            method, target, version = parts
            keep_alive = version == "HTTP/1.1" and not any(
                h.lower().startswith("connection:") and "close" in h.lower() for h in lines[1:])
            path = target.split("?", 1)[0]
            route = routes.get(path)
            if method not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"method not allowed\n", "text/plain"
            elif route is None:
                status, body, ctype = "404 Not Found", b"not found\n", "text/plain"
            else:
                try:
                    result = route()
                    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                        result = await result
                    status, body, ctype = "200 OK", str(result).encode(), CONTENT_TYPE
                except Exception as exc:  # an exporter bug must not kill the server
                    status, body, ctype = "500 Internal Server Error", f"{exc!r}\n".encode(), "text/plain"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode())
            if method == "GET":
                writer.write(body)
            await writer.drain()
            if not keep_alive:
                return
    finally:
        writer.close()


async def serve(host: str, port: int, routes: Mapping[str, Callable[[], object]], *,
                ready_file: str | None = None, name: str = "exporter",
                background: Callable[[], object] | None = None) -> None:
    """Serve ``routes`` (path -> callable returning the body, or a coroutine) until SIGTERM/SIGINT."""
    server = await asyncio.start_server(lambda r, w: _handle(r, w, routes), host, port)
    bound = server.sockets[0].getsockname()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(background()) if background else None  # type: ignore[arg-type]
    info = {"event": "ready", "name": name, "pid": os.getpid(), "listen": f"{bound[0]}:{bound[1]}"}
    print(json.dumps(info), flush=True)
    write_ready_file(ready_file, info)
    try:
        await stop.wait()
    finally:
        if task:
            task.cancel()
        server.close()
        await server.wait_closed()
        if ready_file:
            try:
                os.unlink(ready_file)
            except FileNotFoundError:
                pass
