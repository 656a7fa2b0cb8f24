"""The observer layer: what a platform's failure detector sees, naive on purpose.

``python -m grayctl.observer --config observer.json`` runs on the monitor node. Every ``interval``
seconds it probes each service replica like a kubelet liveness probe -- ``GET /health`` with a
``timeout`` (1 s), healthy = a 2xx status within it -- and each node with a TCP connect (sshd), and
exposes the verdicts on ``/metrics``. Gray failure is exactly where users see a violation while this
says healthy, so it must stay this simple: no latency thresholds, no retries, no payload checks.

Config (JSON; the monitor role renders it)::

    {"listen": "10.213.0.14:9303", "interval": 1.0, "timeout": 1.0,
     "replicas": [{"service": "text-service", "replica": "0", "node": "node01",
                   "url": "http://10.213.64.2:8101/health"}],
     "nodes": [{"node": "node01", "host": "10.213.0.2", "port": 22}]}

Metrics: ``grayctl_observer_healthy{service,replica,node}``, ``grayctl_observer_probe_duration_seconds``,
``grayctl_observer_probes_total{...,result}``, ``grayctl_observer_node_up{node}``,
``grayctl_observer_node_probe_duration_seconds{node}`` (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from grayctl.exporters import Exposition, parse_listen, serve

__all__ = ["Observer", "probe_http", "probe_tcp", "main"]


async def probe_http(url: str, timeout: float) -> tuple[str, float]:
    """One GET; result ok | http_error | timeout | error, and the seconds it took."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    t0 = time.monotonic()

    async def go() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: grayctl-observer\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            bits = status_line.split()
            code = int(bits[1]) if len(bits) >= 2 and bits[1].isdigit() else 0
            await reader.read()  # drain the body; the probe ends when the server closes
            return "ok" if 200 <= code < 300 else "http_error"
        finally:
            writer.close()

    try:
        result = await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        result = "timeout"
    except (OSError, ValueError):
        result = "error"
    return result, time.monotonic() - t0


async def probe_tcp(host: str, port: int, timeout: float) -> tuple[bool, float]:
    t0 = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.close()
        ok = True
    except (OSError, asyncio.TimeoutError):
        ok = False
    return ok, time.monotonic() - t0


@dataclass
class Observer:
    replicas: list[dict[str, str]]
    nodes: list[dict[str, object]]
    interval: float = 1.0
    timeout: float = 1.0
    healthy: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)
    counts: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    node_up: dict[str, tuple[int, float]] = field(default_factory=dict)

    async def _replica(self, r: dict[str, str]) -> None:
        key = (str(r["service"]), str(r["replica"]), str(r["node"]))
        result, took = await probe_http(str(r["url"]), self.timeout)
        self.healthy[key] = (1 if result == "ok" else 0, took)
        self.counts[key + (result,)] = self.counts.get(key + (result,), 0) + 1

    async def _node(self, n: dict[str, object]) -> None:
        ok, took = await probe_tcp(str(n["host"]), int(n.get("port", 22)), self.timeout)  # type: ignore[arg-type]
        self.node_up[str(n["node"])] = (1 if ok else 0, took)

    async def run(self) -> None:
        """Probe everything once per interval, on a fixed grid (a slow probe never shifts the grid)."""
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while True:
            for r in self.replicas:
                loop.create_task(self._replica(r))
            for n in self.nodes:
                loop.create_task(self._node(n))
            nxt += self.interval
            delay = nxt - loop.time()
            if delay < 0:  # fell behind (CPU starvation): skip ahead, never burst
                nxt = loop.time() + self.interval
                delay = self.interval
            await asyncio.sleep(delay)

    def render(self) -> str:
        exp = Exposition()
        exp.add("grayctl_observer_info", "gauge", "Probe settings.", 1,
                {"interval": f"{self.interval:g}", "timeout": f"{self.timeout:g}"})
        for (svc, rep, node), (ok, took) in sorted(self.healthy.items()):
            labels = {"service": svc, "replica": rep, "node": node}
            exp.add("grayctl_observer_healthy", "gauge", "1 when the last /health probe got a 2xx in time.", ok, labels)
            exp.add("grayctl_observer_probe_duration_seconds", "gauge", "Duration of the last /health probe.",
                    took, labels)
        for (svc, rep, node, result), count in sorted(self.counts.items()):
            exp.add("grayctl_observer_probes_total", "counter", "Health probes by result.", count,
                    {"service": svc, "replica": rep, "node": node, "result": result})
        for node, (ok, took) in sorted(self.node_up.items()):
            exp.add("grayctl_observer_node_up", "gauge", "1 when the node accepted a TCP connection.", ok,
                    {"node": node})
            exp.add("grayctl_observer_node_probe_duration_seconds", "gauge", "Duration of the last node probe.",
                    took, {"node": node})
        return exp.render()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grayctl.observer", description="naive health-check observer")
    ap.add_argument("--config", required=True)
    ap.add_argument("--ready-file", default=None)
    args = ap.parse_args(argv)
    try:
        with open(args.config) as fh:
            cfg = json.load(fh)
        host, port = parse_listen(str(cfg["listen"]))
        obs = Observer(list(cfg.get("replicas", [])), list(cfg.get("nodes", [])),
                       float(cfg.get("interval", 1.0)), float(cfg.get("timeout", 1.0)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: bad observer config {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(host, port, {"/metrics": obs.render}, ready_file=args.ready_file,
                          name="grayctl-observer", background=obs.run))
    except OSError as exc:
        print(f"error: cannot listen on {cfg['listen']}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
