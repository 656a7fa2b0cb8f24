"""The open-loop generator against a real HTTP server on loopback (no mocks).

The server is a separate process (aiohttp) with endpoints that answer quickly, slowly,
with 500s, after a delay, and one that blocks its own event loop to show coordinated
omission. Assertions use generous bounds: this machine is shared and noisy, so we check
counts and orderings, not tight timings.
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
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import uvloop

from grayctl.errors import InputError
from grayctl.workload.config import to_config
from grayctl.workload.loadgen import RunResult, run_workload
from grayctl.workload.schedule import make_schedule

SERVER = r'''
import asyncio, socket, sys, time
from aiohttp import web

hits = {"stall": 0}
stamps = []

async def fast(request):
    return web.Response(body=b"ok")

async def slow(request):
    await asyncio.sleep(0.2)
    return web.Response(body=b"slow")

async def delay(request):
    await asyncio.sleep(0.5)
    return web.Response(body=b"late")

async def err(request):
    return web.Response(status=500, body=b"broken")

async def stall(request):
    hits["stall"] += 1
    if hits["stall"] == 10:
        time.sleep(0.5)  # blocks the whole event loop, like a GC pause or a stuck thread
    return web.Response(body=b"ok")

async def stamp(request):
    stamps.append(time.time_ns())  # when the request reached the server, on the wall clock
    return web.Response(body=b"ok")
async def stamps_(request):
    return web.json_response(stamps)
async def main():
    app = web.Application()
    for path, h in (("/fast", fast), ("/slow", slow), ("/delay", delay), ("/err", err), ("/stall", stall),
                    ("/stamp", stamp), ("/stamps", stamps_)):
        app.router.add_route("*", path, h)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock, backlog=1024).start()
    print(sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''


class Server:
    def __init__(self, tmp: Path) -> None:
        script = tmp / "server.py"
        script.write_text(SERVER)
        self.proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), "test server did not start"
        self.base = f"http://127.0.0.1:{int(line)}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("srv"))
    yield s
    s.close()


@pytest.fixture
def fresh_server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(targets: dict[str, str], **kw) -> dict:
    raw = {
        "targets": {n: {"method": "GET", "url": u, "body_size": 0} for n, u in targets.items()},
        "mix": {n: 100.0 / len(targets) for n in targets},
        "rate": 50.0,
        "duration": 1.0,
        "arrival": "constant",
        "seed": 1,
        "timeout": 2.0,
    }
    raw.update(kw)
    return raw


def run(raw: dict) -> RunResult:
    return uvloop.run(run_workload(to_config(raw), log=lambda _m: None))


def test_every_scheduled_request_is_recorded_once(server, tmp_path):
    path = tmp_path / "requests.parquet"
    raw = config(
        {"fast": server.url("/fast"), "post": server.url("/fast")},
        mix={"fast": 70.0, "post": 30.0},
        arrival="poisson",
        rate=100.0,
        records_path=str(path),
    )
    raw["targets"]["post"].update(method="POST", body_size=128)
    result = run(raw)
    sched = make_schedule(seed=1, rate=100.0, arrival="poisson", mix={"fast": 70.0, "post": 30.0}, duration=1.0)
    t = pq.read_table(path).to_pandas()
    assert len(t) == len(sched) == result.summary["sent"]
    assert t["seq"].tolist() == list(range(len(sched)))
    assert t["type"].astype(str).tolist() == [sched.type_names[i] for i in sched.types]
    intended = t["intended_ns"].astype("int64").to_numpy()
    assert np.array_equal(intended - intended[0], sched.offsets_ns - sched.offsets_ns[0])
    assert (t["status"] == 200).all() and t["error_kind"].isna().all()
    assert (t["send_error_ns"] >= 0).all()
    assert (t["actual_ns"] >= t["intended_ns"]).all()
    assert (t["latency_corrected_ns"] >= t["latency_uncorrected_ns"]).all()
    assert set(t["response_bytes"]) == {2}
    s = result.summary
    assert s["schedule"]["sha256"] == sched.to_digest()
    assert s["by_type"]["post"]["sent"] == int((sched.types == 1).sum())
    assert {"p50", "p90", "p99", "p99.9", "max"} <= set(s["latency_ms"]["corrected"])


def test_records_can_be_written_as_json_lines(server, tmp_path):
    path = tmp_path / "requests.jsonl"
    run(config({"fast": server.url("/fast")}, rate=20.0, records_path=str(path)))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 20
    assert rows[0]["seq"] == 0 and rows[0]["error_kind"] is None and rows[0]["status"] == 200
    assert rows[1]["intended_ns"] - rows[0]["intended_ns"] == 50_000_000


def test_stays_open_loop_when_every_response_is_delayed(server):
    # 500 ms per response at 50 req/s for 2 s: a closed-loop client would send a handful.
    result = run(config({"delay": server.url("/delay")}, rate=50.0, duration=2.0))
    c = result.records.columns()
    assert result.summary["sent"] == 100 == len(result.schedule)
    assert result.summary["status"] == {"200": 100}
    # Open loop: ~25 requests were launched before the first response came back.
    assert int((c["actual"] < c["actual"][0] + (c["latency_uncorrected"][0])).sum()) >= 15
    assert np.median(c["latency_corrected"]) >= 450e6


def test_coordinated_omission_is_corrected_behind_a_server_stall(fresh_server):
    # Two pooled connections, like wrk's one request in flight per connection: while the
    # server's loop is stalled for 500 ms the rest queue in the client; measured from the
    # send they look fast, measured from when they were meant to go they do not.
    result = run(config({"stall": fresh_server.url("/stall")}, rate=50.0, duration=2.0, connections=2))
    c = result.records.columns()
    assert result.summary["sent"] == 100
    hidden = c["latency_corrected"] - c["latency_uncorrected"]
    assert int((hidden > 100e6).sum()) >= 5
    assert c["latency_corrected"].max() >= 400e6
    s = result.summary["latency_ms"]
    assert s["corrected"]["p90"] > s["uncorrected"]["p90"]


def test_error_kinds_are_recorded(server, tmp_path):
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/"
        raw = config(
            {"slow": server.url("/slow"), "err": server.url("/err"), "refused": refused, "missing": server.url("/nope")},
            rate=40.0,
            duration=0.5,
            # under the slow path's 0.2 s, with room for a quick answer on a machine the other test
            # workers keep busy (0.05 s timed out the 5xx answers there)
            timeout=0.15,
            records_path=str(tmp_path / "r.parquet"),
        )
        result = run(raw)
    by = result.summary["by_type"]
    assert set(by["slow"]["errors"]) == {"timeout"}
    assert set(by["err"]["errors"]) == {"http_5xx"}
    assert set(by["refused"]["errors"]) == {"connect"}
    assert set(by["missing"]["errors"]) == {"http_4xx"}
    t = pq.read_table(tmp_path / "r.parquet").to_pandas()
    assert set(t.loc[t["type"] == "refused", "status"]) == {0}
    assert set(t.loc[t["type"] == "err", "status"]) == {500}
    # Errors are the system's behaviour, not the generator's failure.
    assert result.summary["sent"] == 20


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$')


def check_exposition(text: str) -> dict[str, str]:
    """A strict-enough check of Prometheus text format 0.0.4; returns family -> type."""
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        float(m.group(4))  # the value parses (+Inf/NaN included)
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample {name} has no TYPE"
        if types[family] == "counter":
            assert name.endswith("_total")
    return types


async def _scrape_during_run(raw: dict, port: int) -> tuple[RunResult, str, str]:
    task = asyncio.ensure_future(run_workload(to_config(raw), log=lambda _m: None))
    await asyncio.sleep(0.6)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
            ctype = r.headers["Content-Type"]
            text = await r.text()
    return await task, ctype, text


def test_prometheus_endpoint_exposes_valid_metrics(server):
    port = free_port()
    raw = config(
        {"fast": server.url("/fast"), "err": server.url("/err")},
        rate=50.0,
        duration=1.0,
        metrics_listen=f"127.0.0.1:{port}",
    )
    result, ctype, text = uvloop.run(_scrape_during_run(raw, port))
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
    types = check_exposition(text)
    assert types["grayctl_workload_target_rate"] == "gauge"
    assert types["grayctl_workload_requests_total"] == "counter"
    assert types["grayctl_workload_errors_total"] == "counter"
    assert types["grayctl_workload_request_duration_seconds"] == "histogram"
    assert types["grayctl_workload_send_lag_seconds"] == "histogram"
    assert types["grayctl_workload_in_flight"] == "gauge"
    assert 'grayctl_workload_requests_total{type="err",status="500"}' in text
    assert 'grayctl_workload_errors_total{type="err",kind="http_5xx"}' in text
    assert "grayctl_workload_target_rate 50.0" in text
    # Histogram buckets are cumulative and end at +Inf == _count.
    buckets = [int(v) for v in re.findall(r'grayctl_workload_request_duration_seconds_bucket\{type="fast",le="[^"]+"\} (\d+)', text)]
    count = int(re.search(r'grayctl_workload_request_duration_seconds_count\{type="fast"\} (\d+)', text).group(1))
    assert buckets == sorted(buckets) and buckets[-1] == count > 0
    assert result.summary["metrics_listen"] == f"127.0.0.1:{port}"
    # t=0 of the schedule, which grayctl run's timeline reads instead of estimating it
    assert types["grayctl_workload_start_time_seconds"] == "gauge"
    anchor = float(re.search(r"^grayctl_workload_start_time_seconds (\S+)$", text, re.M).group(1))
    assert abs(anchor - result.summary["started_at"]) < 0.05


def test_run_is_invalid_when_in_flight_cap_makes_the_schedule_impossible(server):
    # One request in flight, each taking 200 ms: 5 req/s at most, 20 asked for.
    result = run(config({"slow": server.url("/slow")}, rate=20.0, duration=0.5, max_in_flight=1))
    s = result.summary
    assert s["valid"] is False
    assert "achieved rate" in s["reason"] and "send-error p99" in s["reason"]
    assert s["sent"] == 10  # late, but every request still went out and was recorded
    assert s["achieved_rate"] < 10


def test_run_is_invalid_when_the_rate_is_beyond_the_machine(server):
    result = run(config({"fast": server.url("/fast")}, rate=200_000.0, duration=0.01, connections=16))
    assert result.summary["valid"] is False
    assert "send-error p99" in result.summary["reason"]


def test_bad_config_is_refused_with_every_problem():
    with pytest.raises(InputError) as e:
        to_config({"targets": {"a": {"url": "ftp://x"}}, "mix": {"b": 50}, "rate": -1, "duraton": 1})
    text = e.value.render()
    for needle in ("targets.a.url", "mix.b", "rate", "duraton", "duration"):
        assert needle in text


def test_sigterm_stops_sending_and_still_writes_records(server, tmp_path):
    records = tmp_path / "r.parquet"
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "grayctl.workload", "--url", server.url("/slow"), "--rate", "50",
         "--duration", "30", "--records", str(records), "--summary", str(summary)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert "scheduled" in proc.stderr.readline()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 130
    s = json.loads(out)
    assert s == json.loads(summary.read_text())
    assert s["valid"] is False and s["interrupted"] == "SIGTERM" and s["complete"] is False
    t = pq.read_table(records)
    assert 20 <= t.num_rows == s["sent"] < 1500
    # In-flight requests (200 ms each) were waited for, not cut off.
    assert "cancelled" not in s["errors"]


def test_start_at_anchors_the_schedule_on_the_wall_clock(fresh_server):
    # a generous lead: under load the generator's set-up alone can take a few hundred ms
    start = round(time.time() + 1.5, 1)
    result = run(config({"stamp": fresh_server.url("/stamp")}, rate=20.0, duration=0.5, start_at=start))
    assert result.records.epoch_ns == int(round(start * 1e9))
    # When the requests really went out: the server's own wall clock saw every one of them, none
    # before the start, and spread over the window (10 sends 50 ms apart), not bunched at its end.
    with urllib.request.urlopen(fresh_server.url("/stamps"), timeout=5) as resp:
        seen = (np.array(json.loads(resp.read())) - int(start * 1e9)) / 1e9
    assert len(seen) == 10 == result.summary["sent"]
    assert seen.min() >= 0 and seen.min() < 0.25
    assert 0.3 < seen.max() - seen.min() < 0.7
    # and the records' send times agree with what the server saw, to within the loopback's hop
    actual = (result.records.columns()["actual"]) / 1e9
    assert np.all(np.abs(np.sort(seen) - actual) < 0.1)


def test_a_generator_far_behind_drops_what_it_could_not_send_in_time_and_says_so(server):
    # One request in flight, 200 ms each: 5/s at most, 40/s asked for over 1 s. A request still
    # unlaunched 0.5 s (the timeout) after the window is dropped: the generator ends, records kept.
    result = run(config({"slow": server.url("/slow")}, rate=40.0, duration=1.0, timeout=0.5, max_in_flight=1))
    s = result.summary
    assert s["valid"] is False and "dropped" in s["reason"]
    assert s["dropped"] > 0 and s["sent"] + s["dropped"] == s["schedule"]["scheduled"] == 40
    assert result.records.launched == s["sent"]
    ps = s["per_second"]
    assert sum(ps["intended"]) == 40 and sum(ps["sent"]) == s["sent"] and sum(ps["dropped"]) == s["dropped"]
    assert sum(ps["late"]) == s["late"] > 0


def test_health_per_second_adds_up_to_the_run(server):
    result = run(config({"fast": server.url("/fast")}, rate=50.0, duration=2.0))
    s = result.summary
    ps = s["per_second"]
    assert s["dropped"] == 0 and sum(ps["dropped"]) == 0
    assert 2 <= len(ps["intended"]) <= 3 and sum(ps["intended"]) == sum(ps["sent"]) == s["sent"] == 100
    assert ps["first_s"] == result.records.epoch_ns // 1_000_000_000
    assert all(v is None or v >= 0 for v in ps["lateness_p99_ms"])
    # the generator did spend CPU, and at most a core's worth in any second (one thread)
    assert sum(ps["cpu"]) > 0 and max(ps["cpu"]) <= 1.2


def test_the_phase_figures_served_during_a_run_are_the_datasets_own(server, tmp_path):
    # Phases of a 6 s run; /phases is read once the baseline ended and its requests were answered
    # (polled: on a loaded machine replies can lag), while the fault phase still runs.
    from grayctl.dataset.labels import user_latency_ns
    from grayctl.phases import figures_by_phase

    port = free_port()
    # whole-second phases: a UTC second belongs to the phase holding its midpoint (the labels' rule)
    phases = [("warmup", 0.0, 1.0), ("baseline", 1.0, 3.0), ("fault", 3.0, 6.0)]
    raw = config({"fast": server.url("/fast"), "err": server.url("/err")}, rate=40.0, duration=6.0,
                 metrics_listen=f"127.0.0.1:{port}", records_path=str(tmp_path / "r.parquet"))
    query = "&".join(f"phase={n}:{a:g}:{b:g}" for n, a, b in phases)

    async def go():
        task = asyncio.ensure_future(run_workload(to_config(raw), log=lambda _m: None))
        await asyncio.sleep(3.3)  # the baseline's seconds have ended
        async with aiohttp.ClientSession() as s:
            for _ in range(20):  # until their fast replies are in, well before the run's end at 6 s
                async with s.get(f"http://127.0.0.1:{port}/phases?{query}") as r:
                    live = await r.json()
                if live["baseline"]["pending"] == 0:
                    break
                await asyncio.sleep(0.1)
            async with s.get(f"http://127.0.0.1:{port}/phases?phase=bad") as r:
                bad = r.status
        return await task, live, bad

    result, live, bad = uvloop.run(go())
    assert bad == 400
    req = pd.read_parquet(tmp_path / "r.parquet")
    t0 = round(result.summary["started_at"] * 1_000_000_000)  # the dataset's run start
    truth = figures_by_phase(req["intended_ns"].astype("int64").to_numpy(), user_latency_ns(req),
                             req["error_kind"].notna().to_numpy(), t0, phases)
    b = live["baseline"]
    assert b["pending"] == 0 and b["requests"] == truth["baseline"]["requests"] > 30
    assert b["p99_s"] == truth["baseline"]["p99_s"] and b["error_rate"] == truth["baseline"]["error_rate"] > 0
    # the fault phase is still running: what is not answered yet, sent or not, is pending
    assert live["fault"]["requests"] + live["fault"]["pending"] == truth["fault"]["requests"]
    assert live["fault"]["pending"] > 0
