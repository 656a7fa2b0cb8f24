"""Runtime-realised faults: the control file the node executor owns, and the service runtime acting on it
at a component's boundary — real runtime processes and sockets on 127.0.0.1, real control files, the
real node executor (``faultctl apply/revert`` in-process, its ``watch`` expiry as a real process).

The application: ``front`` calls ``db`` (and ``mid``, which calls ``db``) in one process (gen1-style),
so every call into ``db`` is in-process: only the runtime can fault it.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grayctl.errors import InputError
from grayctl.experiment import load_experiment
from grayctl.faults.node import runtimectl
from grayctl.faults.node.faultctl import Store, apply_fault, revert_fault
from grayctl.lab.definition import load_lab
from grayctl.plan import build_plan
from grayctl.runtime.config import service_config
from grayctl.runtime.faults import FaultBoard, RuntimeFault, Wire
from grayctl.runtime.metrics import Registry
from grayctl.topology import load_topology
from test_runtime import fetch, free_port, sample  # tests/unit is on sys.path (rootdir-less test dir)

APP = """
name: rtf
application:
  components:
    front:
      endpoints:
        one:   {calls: [{call: db.get, timeout: 300ms, retries: 1, backoff: 10ms}]}
        chain: {calls: [{call: mid.relay, timeout: 2s}]}
    mid:
      endpoints:
        relay: {calls: [{call: db.get, timeout: 300ms, retries: 0}]}
    db:
      store: {latency: 20ms}
      endpoints:
        get: {work: {store_ops: 1, response_size: 100B}}
  requests:
    one: {entry: front.one, mix: 100%}
decomposition:
  app: [front, mid, db]
placement:
  app: {slots: [n0]}
"""


class Replica:
    """One runtime process laid out as topology_deploy lays a replica out: services/app-0/{config.json,pid,pid.cmd}."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "rtf.yaml").write_text(APP)
        topo = load_topology(tmp / "rtf.yaml")
        self.dir = tmp / "services" / "app-0"
        self.dir.mkdir(parents=True)
        self.port, self.mport = free_port(), free_port()
        placement = {"app": [{"data_ip": "127.0.0.1", "port": self.port, "mgmt_ip": "127.0.0.1",
                              "metrics_port": self.mport}]}
        cfg = service_config(topo, "app", placement, spans_path=str(self.dir / "spans.jsonl"),
                             log_path=str(self.dir / "runtime.jsonl"), seed=1)
        (self.dir / "config.json").write_text(json.dumps(cfg))
        self.argv = [sys.executable, "-m", "grayctl.runtime", "--config", str(self.dir / "config.json"),
                     "--ready-file", str(self.dir / "ready")]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        (self.dir / "pid").write_text(f"{self.proc.pid}\n")
        (self.dir / "pid.cmd").write_text("\0".join(self.argv))
        deadline = time.monotonic() + 20
        while not (self.dir / "ready").exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, "the runtime did not come up"
            time.sleep(0.05)

    def get(self, endpoint: str = "one") -> tuple[int, float]:
        status, _, took = fetch(f"http://127.0.0.1:{self.port}/front/{endpoint}")
        return status, took

    def metric(self, name: str, **labels: str) -> float:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=5) as r:
            return sample(r.read().decode(), name, **labels)

    def counter(self, fid: str, action: str | None = None) -> float:
        labels = {"fault_id": fid} | ({"action": action} if action else {})
        return self.metric("grayctl_runtime_fault_calls_total", **labels)

    def control(self, fid: str, ftype: str, parameters: dict, *, component: str | None = "db",
                peers: list[str] | None = None, lasts: float = 60.0) -> None:
        runtimectl.put_entry(self.dir, {"id": fid, "type": ftype, "component": component, "parameters": parameters,
                                        "peers": peers or [], "peer_addresses": [], "direction": "egress",
                                        "fraction": 1.0, "start_mono": time.monotonic(),
                                        "expires_mono": time.monotonic() + lasts, "seed": 7})
        time.sleep(0.4)  # the runtime polls every 150 ms

    def clear(self, fid: str) -> None:
        runtimectl.drop_entry(self.dir, fid)
        time.sleep(0.4)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def replica(tmp_path: Path) -> Iterator[Replica]:
    r = Replica(tmp_path)
    try:
        yield r
    finally:
        r.stop()


# -- the control file -----------------------------------------------------------------------

def test_control_entries_are_written_atomically_merged_per_fault_and_removed_with_the_last(tmp_path):
    runtimectl.put_entry(tmp_path, {"id": "a", "expires_mono": time.monotonic() + 5})
    runtimectl.put_entry(tmp_path, {"id": "b", "expires_mono": time.monotonic() + 5})
    path = runtimectl.control_path(tmp_path)
    assert set(runtimectl.read_entries(path)) == {"a", "b"}
    assert not list(tmp_path.glob("*.tmp"))
    assert runtimectl.drop_entry(tmp_path, "a") is True and set(runtimectl.read_entries(path)) == {"b"}
    assert runtimectl.drop_entry(tmp_path, "a") is False
    assert runtimectl.entries_of([path], "b") == [str(path)]
    runtimectl.drop_entry(tmp_path, "b")
    assert not path.exists() and runtimectl.read_entries(path) == {}


def test_a_broken_or_foreign_control_file_is_no_fault(tmp_path):
    path = runtimectl.control_path(tmp_path)
    path.write_text("{half")
    assert runtimectl.read_entries(path) == {}
    path.write_text(json.dumps({"format": "other", "faults": {"a": {}}}))
    assert runtimectl.read_entries(path) == {}


def test_entries_expire_on_the_monotonic_clock_and_one_without_an_expiry_is_not_trusted():
    now = time.monotonic()
    entries = {"live": {"expires_mono": now + 10}, "gone": {"expires_mono": now - 0.01}, "bare": {},
               "text": {"expires_mono": "soon"}}
    assert set(runtimectl.live_entries(entries, now)) == {"live"}
    assert set(runtimectl.live_entries(entries, now + 11)) == set()


def test_a_unix_deadline_becomes_the_same_instant_on_the_monotonic_clock():
    assert abs(runtimectl.mono_deadline(time.time() + 30) - (time.monotonic() + 30)) < 0.05


# -- the decisions, pure --------------------------------------------------------------------

def _fault(ftype: str, parameters: dict, **kw) -> RuntimeFault:
    return RuntimeFault.from_entry({"id": "f", "type": ftype, "component": "db", "parameters": parameters,
                                    "start_mono": time.monotonic(), "expires_mono": time.monotonic() + 60, "seed": 3,
                                    **kw})


def test_latency_samples_follow_delay_and_jitter_with_netems_model():
    f = _fault("network-latency", {"delay": "200ms", "jitter": "50ms"})
    assert f.model is not None
    xs = [f.model.sample_delay_ns() / 1e9 for _ in range(4000)]
    mean = sum(xs) / len(xs)
    sd = (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5
    assert abs(mean - 0.2) < 0.005 and abs(sd - 0.05) < 0.005


def _verdicts(*drops: bool):
    seq = iter(drops)
    return lambda: next(seq)


def test_a_lost_packet_costs_the_call_tcps_repair_as_linux_times_it():
    srtt, rto = Wire.SRTT_S, Wire.SRTT_S + Wire.RTO_MIN_S
    assert Wire.repair_s(64, _verdicts(False)) == 0.0
    # a lone segment lost: the probe would wait 2 srtt + the minimum RTO, so the RTO fires first
    assert Wire.repair_s(64, _verdicts(True, False)) == pytest.approx(rto)
    # the last of six (8 KiB): the tail-loss probe after 2 srtt + 2 jiffies
    assert Wire.repair_s(8192, _verdicts(*[False] * 5, True, False)) == pytest.approx(2 * srtt + Wire.JIFFIES_2_S)
    # an earlier one: fast retransmit once the later segments are acknowledged
    assert Wire.repair_s(8192, _verdicts(True, *[False] * 5, False)) == pytest.approx(2.25 * srtt)
    # its retransmission lost too: the retransmission timer, then backed off
    assert Wire.repair_s(64, _verdicts(True, True, True, False)) == pytest.approx(rto + rto + 2 * rto)
    assert Wire.repair_s(64, lambda: True) == math.inf  # every retransmission lost: the call is lost


def test_loss_on_the_board_delays_the_share_of_calls_a_packet_loss_hits_and_loses_only_what_tcp_cannot_repair(
        tmp_path):
    board = FaultBoard(tmp_path / "fault_control", Registry())
    board.faults = {"f": _fault("network-loss", {"percent": "2%"})}
    verdicts = [board.decide("db", size=8192) for _ in range(20000)]
    hit = [v for v in verdicts if v.acts]
    # six segments each lost with 2 %: 1 - 0.98**6 = 11.4 % of the answers need a repair
    assert 0.10 < len(hit) / len(verdicts) < 0.13, len(hit)
    assert not any(v.lost for v in verdicts) and all(v.before_s == 0 and v.after_s > 0 for v in hit)
    assert sum(v.after_s >= Wire.RTO_MIN_S for v in hit) < 0.05 * len(hit)  # backoffs are rare at 2 %
    board.faults = {"f": _fault("network-loss", {"percent": "100%"})}
    assert board.decide("db", size=64).lost


def test_bandwidth_lets_the_burst_through_then_queues_at_the_rate_and_drops_past_the_limit():
    f = _fault("network-bandwidth", {"rate": "80kbit", "burst": "2KiB", "limit": "4KiB"})  # 10 kB/s
    now = time.monotonic()
    f.refilled = now
    assert f.bandwidth_wait(1024, now) == 0.0 and f.bandwidth_wait(1024, now) == 0.0  # the burst
    assert f.bandwidth_wait(1000, now) == pytest.approx(0.1)  # 1000 B queued at 10 kB/s
    assert f.bandwidth_wait(3000, now) == pytest.approx(0.4)
    assert f.bandwidth_wait(1000, now) is None  # 4000 B queued already: past the limit


def test_pause_stutter_and_one_pause_say_how_long_the_gate_stays_shut():
    start = time.monotonic()
    st = _fault("process-pause", {"stutter": {"pause": "100ms", "every": "1s"}}, start_mono=start)
    assert st.pause_left(start + 0.03) == pytest.approx(0.07) and st.pause_left(start + 0.5) == 0.0
    assert st.pause_left(start + 1.05) == pytest.approx(0.05)
    one = _fault("process-pause", {"duration": "2s"}, start_mono=start)
    assert one.pause_left(start + 0.5) == pytest.approx(1.5) and one.pause_left(start + 2.5) == 0.0


def test_partition_with_peers_matches_only_calls_from_those_callers():
    f = _fault("network-partition", {"peers": ["mid"]}, peers=["mid"], peer_addresses=["10.0.0.9"])
    assert f.matches("db", "mid", "app", None) and not f.matches("db", "front", "app", None)
    assert f.matches("db", None, None, "10.0.0.9") and not f.matches("db", None, None, "10.0.0.8")
    assert not f.matches("other", "mid", "app", None)


def test_a_board_without_a_control_file_has_no_faults_and_counts_nothing(tmp_path):
    board = FaultBoard(tmp_path / "fault_control", Registry())
    board.poll()
    assert board.faults == {} and not board.decide("db").acts


# -- the runtime acting on it (real process) ----------------------------------------------------

def test_latency_delays_each_in_process_call_into_the_component_and_stops_at_revert(replica):
    base = min(replica.get()[1] for _ in range(3))
    replica.control("lat", "network-latency", {"delay": "150ms"})
    status, took = replica.get()
    assert status == 200 and took > base + 0.13, (base, took)
    assert replica.counter("lat", "delayed") == 1
    replica.clear("lat")
    status, took = replica.get()
    assert status == 200 and took < base + 0.1 and replica.counter("lat") == 1


def test_a_lost_call_runs_the_callers_timeout_and_retry_then_fails_504(replica):
    replica.control("loss", "network-loss", {"percent": "100%"})
    status, took = replica.get()
    # timeout 300 ms, one retry: both attempts lost, the caller's client gives up as on the wire
    assert status == 504 and took >= 0.6, took
    assert replica.counter("loss", "lost") == 2


def test_partition_with_peers_cuts_only_calls_from_those_peers(replica):
    replica.control("part", "network-partition", {"peers": ["mid"]}, peers=["mid"])
    assert replica.get("one")[0] == 200  # front -> db: not a peer
    assert replica.get("chain")[0] == 504  # front -> mid -> db: mid is cut off from db
    assert replica.counter("part", "lost") == 1


def test_corruption_fails_the_call_and_the_caller_retries(replica):
    replica.control("cor", "network-corruption", {"percent": "100%"})
    status, _ = replica.get()
    assert status == 502 and replica.counter("cor", "failed") == 2  # the attempt and its retry


def test_pause_stops_the_components_workers_until_the_pause_ends(replica):
    replica.control("pz", "process-pause", {"duration": "1200ms"}, component="db")
    t0 = time.monotonic()
    status, took = replica.get("chain")  # mid -> db waits at db's gate past its 300 ms timeout
    assert status == 504 and replica.counter("pz", "paused") >= 1
    time.sleep(max(0.0, 1.3 - (time.monotonic() - t0)))
    assert replica.get("chain")[0] == 200  # the pause is over: db takes work again


def test_the_runtime_stops_faulting_by_the_entrys_own_expiry_with_the_file_still_there(replica):
    replica.control("exp", "network-latency", {"delay": "150ms"}, lasts=1.0)
    assert replica.get()[1] > 0.13
    assert replica.metric("grayctl_runtime_faults_active", fault_id="exp") == 1
    time.sleep(1.0)
    assert replica.metric("grayctl_runtime_faults_active", fault_id="exp") == 0
    n = replica.counter("exp")
    took = [replica.get()[1] for _ in range(3)]
    assert runtimectl.control_path(replica.dir).exists()  # nobody removed it: the runtime ended it itself
    assert max(took) < 0.13 and replica.counter("exp") == n


def test_faultctl_applies_a_runtime_fault_verifies_its_effect_and_reverts_it(replica, tmp_path):
    store = Store(tmp_path / "faults")
    store.root.mkdir()
    raw = {"id": "rtlat", "type": "network-latency", "family": "network", "parameters": {"delay": "50ms"},
           "service": "app", "target_service": "db", "expire_after_s": 60, "effect": "require",
           "realisation": "runtime: in-process calls into db in service app on n0", "widened": False,
           "runtime": {"component": "db", "peers": [], "peer_addresses": []}, "interface": "data",
           "data_iface": "data", "direction": "egress", "backend": "auto", "python": sys.executable,
           "services_dir": str(tmp_path / "services")}
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            replica.get()

    t = threading.Thread(target=load)
    t.start()
    try:
        out = apply_fault(store, raw)
    finally:
        stop.set()
        t.join()
    rec = out["record"]
    assert rec["status"] == "active" and rec["backend"] == "runtime"
    assert rec["effect"]["verified"] is True and rec["effect"]["evidence"]["after"] > rec["effect"]["evidence"]["before"]
    assert rec["realisation"].startswith("runtime: in-process calls into db in service app on ")
    assert "rtlat" in runtimectl.read_entries(runtimectl.control_path(replica.dir))
    back = revert_fault(store, "rtlat")
    assert back["clean"] and not runtimectl.control_path(replica.dir).exists()
    assert store.read("rtlat")["revert_verified"] is True


def test_faultctl_refuses_a_runtime_fault_with_no_running_replica(tmp_path):
    from grayctl.faults.spec import FaultRefused
    store = Store(tmp_path / "faults")
    store.root.mkdir()
    raw = {"id": "nobody", "type": "process-pause", "family": "process", "parameters": {}, "service": "app",
           "expire_after_s": 60, "runtime": {"component": "db"}, "python": sys.executable,
           "services_dir": str(tmp_path / "services")}
    with pytest.raises(FaultRefused, match="no running replica"):
        apply_fault(store, raw)


# -- validate and plan ----------------------------------------------------------------------

def _exp(tmp_path: Path, topology: str, ftype: str, params: str, scope: str = "") -> Path:
    p = tmp_path / "x.yaml"
    p.write_text(f"topology: {topology}\nchaos_injection:\n  type: {ftype}\n  target_service: social-graph-service\n"
                 f"  parameters: {params}\n" + (f"  scope: {scope}\n" if scope else ""))
    return p


@pytest.mark.parametrize("topology", ["gen1-monolith", "gen2-coarse"])
def test_the_seed_fault_is_realised_by_the_runtime_on_gen1_and_gen2(tmp_path, topology):
    plan = build_plan(load_experiment(_exp(tmp_path, topology, "network-latency", "{delay: 200ms, jitter: 50ms}")),
                      load_lab("local"))
    (ft,) = plan.faults
    assert ft.runtime == {"component": "social-graph-service", "in_process": True, "peers": [], "peer_addresses": []}
    assert ft.realisation == f"runtime: in-process calls into social-graph-service in service {ft.service} on " \
                             f"{','.join(ft.nodes)}"
    spec = next(s for s in plan.steps if s.name.startswith("inject:")).extravars["fault_spec"]
    assert spec["runtime"]["component"] == "social-graph-service" and spec["realisation"] == ft.realisation
    assert plan.to_dict()["faults"][0]["realised_by"] == "runtime"


def test_realise_runtime_on_a_gen3_service_is_recorded_and_peers_carry_their_addresses(tmp_path):
    plan = build_plan(load_experiment(_exp(tmp_path, "gen3-disaggregated", "network-partition",
                                           "{peers: [home-timeline-service]}", "{realise: runtime}")),
                      load_lab("local"))
    (ft,) = plan.faults
    assert ft.runtime["peers"] == ["home-timeline-service"] and len(ft.runtime["peer_addresses"]) >= 1
    assert ft.realisation.startswith("runtime: calls into social-graph-service in service "
                                     "social-graph-service on ") and ft.realisation.endswith(", from home-timeline-service")
    assert ft.runtime["in_process"] is False


@pytest.mark.parametrize(("ftype", "params", "scope", "field", "words"), [
    ("cpu-stress", "{}", "", "target_service", "the service runtime cannot realise it either"),
    ("process-kill", "{}", "{realise: runtime}", "scope.realise", "cannot be realised by the service runtime"),
    ("network-latency", "{delay: 10ms}", "{realise: runtime, widen: process}", "scope.realise", "contradict"),
    ("network-latency", "{delay: 10ms}", "{realise: host}", "scope.realise", "a host realisation is not faithful"),
])
def test_what_the_runtime_cannot_realise_is_refused_at_validate_with_file_line_and_field(
        tmp_path, ftype, params, scope, field, words):
    with pytest.raises(InputError) as err:
        load_experiment(_exp(tmp_path, "gen1-monolith", ftype, params, scope))
    text = err.value.render()
    assert err.value.exit_code == 2 and "x.yaml:" in text and field in text and words in text, text


def test_realise_takes_only_host_or_runtime(tmp_path):
    with pytest.raises(InputError) as err:
        load_experiment(_exp(tmp_path, "gen3-disaggregated", "network-latency", "{delay: 10ms}", "{realise: kernel}"))
    assert "realise" in err.value.render()
