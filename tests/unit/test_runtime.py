"""The service runtime's semantics, proven with real processes and sockets on 127.0.0.1 (no mocks).

One small application is deployed twice: gen3-style (one service per component, five
processes) and gen1-style (one process with every component). Timing assertions compare
ratios with generous bounds; nothing depends on exact latencies.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from grayctl.runtime.config import service_config
from grayctl.topology import Topology, load_topology

APP = """
name: {name}
application:
  components:
    front:
      endpoints:
        seq:   {{calls: [db.get, db.get]}}
        par:   {{calls: [{{parallel: [db.get, db.get]}}]}}
        chain: {{work: {{cpu: 2ms, response_size: 3KiB}}, calls: [mid.relay]}}
        slow:  {{calls: [{{call: slow.get, timeout: 150ms, retries: 2, backoff: 10ms}}]}}
    mid:
      endpoints:
        relay: {{work: {{cpu: 1ms}}, calls: [{{parallel: [db.get, db.quick]}}, db.quick]}}
    db:
      store: {{latency: 100ms}}
      endpoints:
        get:   {{work: {{store_ops: 1, response_size: 100B}}}}
        quick: {{work: {{cpu: 500us, response_size: 1KiB}}}}
    slow:
      store: {{latency: 500ms}}
      endpoints:
        get: {{work: {{store_ops: 1}}}}
    limited:
      store: {{latency: 400ms}}
      concurrency: {{workers: 1, queue: 2}}
      endpoints:
        get: {{work: {{store_ops: 1}}}}
  requests:
    chain: {{entry: front.chain, mix: 100%}}
decomposition:
{decomposition}
placement:
{placement}
"""
COMPONENTS = ["front", "mid", "db", "slow", "limited"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """Running service processes of one topology, their addresses and files."""

    topology: Topology
    dir: Path
    placement: dict[str, list[dict[str, object]]]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, component: str, path: str = "") -> str:
        a = self.placement[self.topology.service_of(component)][0]
        return f"http://127.0.0.1:{a['port']}{path}"

    def metrics(self, service: str) -> str:
        a = self.placement[service][0]
        with urllib.request.urlopen(f"http://127.0.0.1:{a['metrics_port']}/metrics", timeout=5) as r:
            return r.read().decode()

    def spans(self) -> list[dict[str, object]]:
        out = []
        for p in self.dir.glob("spans-*.jsonl"):
            out += [json.loads(line) for line in p.read_text().splitlines()]
        return out

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def deploy(tmp: Path, name: str, services: dict[str, list[str]]) -> Deployment:
    tmp.mkdir(parents=True, exist_ok=True)
    decomposition = "\n".join(f"  {s}: [{', '.join(c)}]" for s, c in services.items())
    placement_yaml = "\n".join(f"  {s}: {{slots: [n{i}]}}" for i, s in enumerate(services))
    (tmp / f"{name}.yaml").write_text(APP.format(name=name, decomposition=decomposition, placement=placement_yaml))
    topo = load_topology(tmp / f"{name}.yaml")
    placement = {s: [{"data_ip": "127.0.0.1", "port": free_port(), "mgmt_ip": "127.0.0.1",
                      "metrics_port": free_port()}] for s in services}
    d = Deployment(topo, tmp, placement)  # type: ignore[arg-type]
    try:
        for s in services:
            cfg = service_config(topo, s, placement, spans_path=str(tmp / f"spans-{s}.jsonl"),  # type: ignore[arg-type]
                                 log_path=str(tmp / f"log-{s}.jsonl"), seed=1)
            cfg["span_flush"] = 0.1  # tests read spans soon after the request
            (tmp / f"{s}.json").write_text(json.dumps(cfg))
            with open(tmp / f"{s}.stderr", "wb") as err:  # the child keeps its own copy
                d.procs[s] = subprocess.Popen(
                    [sys.executable, "-m", "grayctl.runtime", "--config", str(tmp / f"{s}.json"),
                     "--ready-file", str(tmp / f"{s}.ready")],
                    stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 20
        for s in services:
            while True:
                try:
                    with urllib.request.urlopen(d.url(topo.services[s].components[0], "/health"), timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if d.procs[s].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{s} did not come up: {(tmp / f'{s}.stderr').read_text()}")
                time.sleep(0.05)
    except BaseException:
        d.stop()
        raise
    return d


@pytest.fixture(scope="module")
def gen3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = deploy(tmp_path_factory.mktemp("gen3"), "g3", {c: [c] for c in COMPONENTS})
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def gen1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = deploy(tmp_path_factory.mktemp("gen1"), "g1", {"app": COMPONENTS})
    try:
        yield d
    finally:
        d.stop()


async def _fetch(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> tuple[int, int, float]:
    t0 = time.perf_counter()
    async with session.post(url, headers=headers or {}) as r:
        body = await r.read()
        return r.status, len(body), time.perf_counter() - t0


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, int, float]:
    async def go() -> tuple[int, int, float]:
        async with aiohttp.ClientSession() as s:
            return await _fetch(s, url, headers)
    return asyncio.run(go())


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def trace_headers(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}


def spans_of(d: Deployment, trace_id: str, expect: int) -> list[dict[str, object]]:
    """The spans of one trace, waiting for the periodic flush to write them."""
    deadline = time.monotonic() + 5
    while True:
        spans = [s for s in d.spans() if s["trace_id"] == trace_id]
        if len(spans) >= expect or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


# -- tests ------------------------------------------------------------------------------

def test_health_answers_200_and_unknown_endpoints_404(gen3: Deployment) -> None:
    with urllib.request.urlopen(gen3.url("front", "/health"), timeout=2) as r:
        assert r.status == 200
    assert fetch(gen3.url("front", "/front/nope"))[0] == 404


def test_parallel_group_takes_as_long_as_its_slowest_call_not_the_sum(gen3: Deployment) -> None:
    fetch(gen3.url("front", "/front/par"))  # warm the keep-alive pools
    seq = min(fetch(gen3.url("front", "/front/seq"))[2] for _ in range(2))
    par = min(fetch(gen3.url("front", "/front/par"))[2] for _ in range(2))
    assert seq >= 0.19  # two 100 ms store calls one after the other
    assert 0.095 <= par < 0.75 * seq, (par, seq)


def test_response_has_the_configured_size_and_work_costs_real_cpu(gen3: Deployment) -> None:
    status, size, _ = fetch(gen3.url("front", "/front/chain"))
    assert (status, size) == (200, 3 * 1024)
    m = gen3.metrics("front")
    assert sample(m, "grayctl_work_cpu_seconds_total", component="front", endpoint="chain") >= 0.002


def test_timeout_is_retried_then_answered_504_and_each_attempt_reaches_the_downstream(gen3: Deployment) -> None:
    before = sample(gen3.metrics("slow"), "grayctl_requests_total", component="slow", endpoint="get")
    status, _, elapsed = fetch(gen3.url("front", "/front/slow"))
    assert status == 504
    assert 0.45 <= elapsed < 1.5  # 3 attempts x 150 ms + backoff, not the 500 ms store
    time.sleep(0.7)  # the abandoned attempts still finish downstream, and are counted then
    after = sample(gen3.metrics("slow"), "grayctl_requests_total", component="slow", endpoint="get")
    assert after - before == 3  # retries: 2 -> N+1 = 3 attempts
    front = gen3.metrics("front")
    lbl = {"peer_service": "slow", "component": "slow", "endpoint": "get"}
    assert sample(front, "grayctl_downstream_timeouts_total", **lbl) == 3
    assert sample(front, "grayctl_downstream_retries_total", **lbl) == 2
    assert sample(front, "grayctl_downstream_calls_total", outcome="timeout", **lbl) == 1
    assert sample(front, "grayctl_requests_total", component="front", endpoint="slow", status="504") == 1


def test_worker_pool_and_queue_shed_excess_requests_with_503(gen3: Deployment) -> None:
    url = gen3.url("limited", "/limited/get")
    peak_queued = 0.0

    async def go() -> list[tuple[int, int, float]]:
        nonlocal peak_queued
        async with aiohttp.ClientSession() as s:
            tasks = [asyncio.create_task(_fetch(s, url)) for _ in range(6)]
            await asyncio.sleep(0.2)  # all six have arrived; one runs, two wait, three were shed
            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(None, gen3.metrics, "limited")
            peak_queued = sample(text, "grayctl_queued_requests", component="limited")
            return await asyncio.gather(*tasks)

    results = asyncio.run(go())
    statuses = Counter(r[0] for r in results)
    assert statuses == {200: 3, 503: 3}, statuses
    assert peak_queued == 2
    shed_latency = max(r[2] for r in results if r[0] == 503)
    served_latency = max(r[2] for r in results if r[0] == 200)
    assert shed_latency < 0.3 and served_latency >= 1.1  # shed at once; the third served waited 2 x 400 ms
    m = gen3.metrics("limited")
    assert sample(m, "grayctl_rejected_requests_total", component="limited", endpoint="get") == 3
    assert sample(m, "grayctl_requests_total", component="limited", status="503") == 3
    assert sample(m, "grayctl_queue_wait_seconds_count", component="limited") == 2
    assert sample(m, "grayctl_workers", component="limited") == 1


def test_spans_of_one_request_share_a_trace_and_form_a_tree_across_processes(gen3: Deployment) -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert fetch(gen3.url("front", "/front/chain"), trace_headers(tid))[0] == 200
    # front server, client->mid, mid server, 3 clients->db and 3 db servers
    spans = spans_of(gen3, tid, 9)
    assert len(spans) == 9
    assert {s["service"] for s in spans} == {"front", "mid", "db"}
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_id"] not in by_id]
    assert [(r["kind"], r["component"], r["parent_id"]) for r in roots] == [("server", "front", "00f067aa0ba902b7")]
    for s in spans:
        if s is roots[0]:
            continue
        parent = by_id[s["parent_id"]]
        # a server span's parent is the caller's client span; a client span's parent is the
        # server span of the endpoint that made the call, in the same process
        assert (s["kind"], parent["kind"]) in {("server", "client"), ("client", "server")}
        if s["kind"] == "client":
            assert parent["service"] == s["service"]
        assert int(parent["start_ns"]) <= int(s["start_ns"]) and int(s["end_ns"]) <= int(parent["end_ns"]) + 1_000_000


def test_merged_service_calls_in_process_without_http_but_with_spans(gen1: Deployment) -> None:
    tid = "0af7651916cd43dd8448eb211c80319c"
    assert fetch(gen1.url("front", "/front/chain"), trace_headers(tid))[0] == 200
    spans = spans_of(gen1, tid, 5)
    assert sorted(s["kind"] for s in spans) == ["internal"] * 4 + ["server"]
    by_id = {s["span_id"]: s for s in spans}
    assert all(s["parent_id"] in by_id for s in spans if s["kind"] == "internal")
    m = gen1.metrics("app")
    assert "grayctl_downstream_attempts_total{" not in m  # no HTTP call was made
    assert sample(m, "grayctl_requests_total", component="mid", endpoint="relay", via="inprocess") == 1
    assert sample(m, "grayctl_requests_total", via="http") == 1


def test_gen1_and_gen3_execute_the_same_endpoints_for_the_same_request(gen1: Deployment, gen3: Deployment) -> None:
    executed = {}
    for d, tid in ((gen1, "11111111111111111111111111111111"), (gen3, "22222222222222222222222222222222")):
        status, size, _ = fetch(d.url("front", "/front/chain"), trace_headers(tid))
        assert (status, size) == (200, 3072)
        spans = spans_of(d, tid, 9 if d is gen3 else 5)
        executed[d.topology.name] = Counter((s["component"], s["endpoint"]) for s in spans
                                            if s["kind"] in ("server", "internal"))
    assert executed["g1"] == executed["g3"] == Counter(
        {("front", "chain"): 1, ("mid", "relay"): 1, ("db", "get"): 1, ("db", "quick"): 2})


SAMPLE_RE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                       r'(-?[0-9.]+(e[-+]?[0-9]+)?|[+-]Inf|NaN)$')


def test_metrics_endpoint_is_valid_prometheus_text(gen3: Deployment) -> None:
    fetch(gen3.url("front", "/front/chain"))
    text = gen3.metrics("front")
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in typed
            typed[name] = kind
            continue
        assert SAMPLE_RE.match(line), line
        name = line.split("{")[0].split(" ")[0]
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or typed.get(base) == "histogram", line
    for name, kind in typed.items():
        if kind == "counter":
            assert name.endswith("_total"), name
    # histogram buckets are cumulative and +Inf equals _count
    lbl = {"component": "front", "endpoint": "chain", "via": "http"}
    buckets = [float(m.group(2)) for m in re.finditer(
        r'grayctl_request_duration_seconds_bucket\{component="front",endpoint="chain",via="http",le="([^"]+)"\} (\S+)', text)]
    assert buckets == sorted(buckets) and len(buckets) == 14
    assert buckets[-1] == sample(text, "grayctl_request_duration_seconds_count", **lbl)
    assert sample(text, "process_cpu_seconds_total") > 0
    assert 10 * 2**20 < sample(text, "process_resident_memory_bytes") < 100 * 2**20


def test_sigterm_finishes_in_flight_requests_flushes_spans_and_exits_0(tmp_path: Path) -> None:
    d = deploy(tmp_path, "solo", {"s": COMPONENTS})
    try:
        async def go() -> tuple[int, int, float]:
            async with aiohttp.ClientSession() as s:
                task = asyncio.create_task(_fetch(s, d.url("slow", "/slow/get")))
                await asyncio.sleep(0.15)
                d.procs["s"].send_signal(signal.SIGTERM)
                return await task

        status, _, elapsed = asyncio.run(go())
        assert status == 200 and elapsed >= 0.45
        assert d.procs["s"].wait(timeout=10) == 0
        assert [s["component"] for s in d.spans()] == ["slow"]
        events = [json.loads(line)["event"] for line in (tmp_path / "log-s.jsonl").read_text().splitlines()]
        assert events == ["starting", "ready", "stopping", "stopped"]
        assert not (tmp_path / "s.ready").exists()
    finally:
        d.stop()


def test_store_waits_keep_sub_millisecond_latencies_that_loop_timers_would_round() -> None:
    import statistics

    import uvloop

    from grayctl.runtime.work import PreciseSleeper

    async def go() -> float:
        sleeper = PreciseSleeper()
        assert sleeper.precise
        xs = []
        for _ in range(100):
            t0 = time.perf_counter()
            await sleeper.sleep(0.0003)
            xs.append(time.perf_counter() - t0)
        sleeper.close()
        return statistics.median(xs)

    # uvloop alone rounds 300 us down to ~0, asyncio alone up to ~1.1 ms
    assert 0.0003 <= uvloop.run(go()) < 0.0009
