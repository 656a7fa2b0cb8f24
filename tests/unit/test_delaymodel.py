"""Unit tests for the fallback backend's pure parts: delaymodel, steer builders, nfqdelay parsing."""

from __future__ import annotations

import argparse
import random
import statistics

import pytest

from grayctl.faults.node import steer
from grayctl.faults.node.args import duration_ns as parse_duration_ns
from grayctl.faults.node.args import percent as parse_percent
from grayctl.faults.node.delaymodel import (
    CorrelatedRandom,
    DelayModel,
    DelaySpec,
    ge_theory,
    load_dist_table,
    percent_to_u32,
    tabledist,
)
from grayctl.faults.node.nfqdelay import flow_key

MS = 1_000_000


def _samples(spec: DelaySpec, n: int = 20000, spacing_ns: int = 10**9) -> list[float]:
    model = DelayModel(spec)
    out = []
    for i in range(n):
        now = i * spacing_ns
        d = model.decide(now, flow=b"f")
        out.append((d.release_ns - now) / MS)
    return out


def test_normal_delay_has_the_configured_mean_and_stddev():
    d = _samples(DelaySpec(delay_ns=200 * MS, jitter_ns=50 * MS, distribution="normal", seed=1))
    assert statistics.mean(d) == pytest.approx(200, rel=0.01)
    assert statistics.stdev(d) == pytest.approx(50, rel=0.03)


def test_uniform_is_netem_default_kernel_shape():
    d = _samples(DelaySpec(delay_ns=100 * MS, jitter_ns=20 * MS, distribution="uniform", seed=2))
    assert min(d) >= 80 and max(d) < 120
    assert statistics.stdev(d) == pytest.approx(40 / 12**0.5, rel=0.03)


def test_generated_normal_and_pareto_tables_match_iproute2_shape(tmp_path):
    for name in ("normal", "pareto"):
        table = load_dist_table(name, dirs=[str(tmp_path)])  # empty dir: generated
        assert len(table) == 4096
        assert statistics.mean(table) / 8192 == pytest.approx(0, abs=0.05)
    with pytest.raises(FileNotFoundError):
        load_dist_table("paretonormal", dirs=[str(tmp_path)])
    assert load_dist_table("uniform") is None


def test_tabledist_follows_netem_integer_arithmetic():
    assert tabledist(1000, 0, 12345, None) == 1000
    assert tabledist(1000, 100, 0, None) == 900
    assert tabledist(1000, 100, 199, None) == 1099
    table = [8192, -8192]  # +1 and -1 sigma
    assert tabledist(10_000, 500, 0, table) == 10_500
    assert tabledist(10_000, 500, 1, table) == 9_500


def test_correlation_makes_successive_delays_dependent_like_netem():
    rng = random.Random(3)
    cr = CorrelatedRandom(75.0, rng)
    xs = [cr.next() for _ in range(20000)]
    r = statistics.correlation(xs[:-1], xs[1:])
    assert r > 0.6
    assert CorrelatedRandom(0.0, random.Random(3)).rho == 0
    assert percent_to_u32(100.0) == 2**32 - 1


def test_negative_samples_clamp_to_zero():
    d = _samples(DelaySpec(delay_ns=1 * MS, jitter_ns=10 * MS, distribution="uniform", seed=4), n=2000)
    assert min(d) == 0


def test_flow_order_never_releases_a_flow_out_of_order_but_other_flows_are_free():
    model = DelayModel(DelaySpec(delay_ns=50 * MS, jitter_ns=40 * MS, distribution="uniform", seed=5))
    last: dict[str, int] = {}
    waits = 0
    for i in range(5000):
        flow = "ab"[i % 2]
        d = model.decide(i * MS, flow=flow)
        assert d.release_ns >= last.get(flow, 0)
        last[flow] = d.release_ns
        waits += d.order_wait_ns > 0
    assert waits > 0  # packets 1 ms apart with 40 ms jitter had to wait for their flow


def test_order_none_reorders_as_netem_tfifo():
    model = DelayModel(DelaySpec(delay_ns=50 * MS, jitter_ns=40 * MS, distribution="uniform", order="none", seed=6))
    rel = [model.decide(i * MS, flow="a").release_ns for i in range(1000)]
    assert any(b < a for a, b in zip(rel, rel[1:]))


def test_loss_rate_is_the_configured_percent():
    model = DelayModel(DelaySpec(loss=5.0, seed=7))
    drops = sum(model.decide(i, flow=None).drop for i in range(40000))
    assert drops / 40000 == pytest.approx(0.05, abs=0.006)


def test_reorder_with_gap_sends_at_most_one_in_gap_packets_at_once():
    model = DelayModel(DelaySpec(delay_ns=10 * MS, reorder=100.0, gap=5, seed=8))
    flags = [model.decide(i, flow=None).reordered for i in range(20)]
    assert flags == ([False] * 4 + [True]) * 4


def test_reorder_without_gap_defaults_to_gap_one_like_tc():
    model = DelayModel(DelaySpec(delay_ns=10 * MS, reorder=25.0, seed=9))
    share = sum(model.decide(i, flow=None).reordered for i in range(20000)) / 20000
    assert share == pytest.approx(0.25, abs=0.015)


@pytest.mark.parametrize("kwargs", [
    {"delay_ns": -1}, {"correlation": 101.0}, {"distribution": "cauchy"}, {"order": "random"},
    {"reorder": 10.0}, {"jitter_ns": 3 * 10**9}, {"gap": -1},
])
def test_invalid_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        DelaySpec(**kwargs)


def test_same_seed_same_decisions():
    spec = DelaySpec(delay_ns=20 * MS, jitter_ns=5 * MS, loss=10.0, seed=42)
    a = [DelayModel(spec).decide(i, None) for i in range(3)]
    assert a == [DelayModel(spec).decide(i, None) for i in range(3)]


# ------------------------------------------------------------------ nfqdelay parsing and flows

def test_durations_and_percentages_need_units():
    assert parse_duration_ns("200ms") == 200 * MS
    assert parse_duration_ns("1.5s") == 1_500 * MS
    assert parse_percent("0.5%") == 0.5
    for bad in ("200", "-5ms", "1e3ms", "5 ms"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration_ns(bad)
    for bad in ("5", "101%", "-1%"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_percent(bad)


def test_flow_key_separates_ports_and_icmp_ids():
    ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 219, 0, 1, 10, 219, 0, 2])
    udp1 = ip + bytes([0x30, 0x39, 0x23, 0x28, 0, 8, 0, 0])
    udp2 = ip + bytes([0x30, 0x3A, 0x23, 0x28, 0, 8, 0, 0])
    assert flow_key(udp1) != flow_key(udp2)
    icmp = bytearray(ip)
    icmp[9] = 1
    e1 = bytes(icmp) + bytes([8, 0, 0, 0, 0, 1, 0, 1])
    e2 = bytes(icmp) + bytes([8, 0, 0, 0, 0, 1, 0, 2])  # same id, next seq: same flow
    assert flow_key(e1) == flow_key(e2)
    assert flow_key(b"") == b""


# ------------------------------------------------------------------ steer builders

def test_queue_argvs_are_exact_and_chain_is_filled_before_the_jump():
    scope = steer.Scope.build("data", peers=["10.219.0.2"], peer_ports=[80, 443])
    argvs = steer.build_queue_argvs("f1", scope, 7)
    assert argvs[0] == ["iptables", "-t", "mangle", "-N", "GRAYCTL_f1"]
    assert argvs[1] == ["iptables", "-t", "mangle", "-A", "GRAYCTL_f1", "-o", "data", "-d", "10.219.0.2/32",
                        "-p", "tcp", "-m", "multiport", "--dports", "80,443",
                        "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"]
    assert argvs[-1] == ["iptables", "-t", "mangle", "-I", "OUTPUT", "-j", "GRAYCTL_f1"]
    assert all(a[0] == "iptables" for a in argvs)  # no IPv6 peers: no ip6tables


def test_queue_without_peers_covers_both_families_and_fail_closed_drops_bypass():
    argvs = steer.build_queue_argvs("f2", steer.Scope.build("data", direction="ingress"), 3, bypass=False)
    assert {a[0] for a in argvs} == {"iptables", "ip6tables"}
    assert ["iptables", "-t", "mangle", "-A", "GRAYCTL_f2", "-i", "data",
            "-j", "NFQUEUE", "--queue-num", "3"] in argvs
    assert ["ip6tables", "-t", "mangle", "-I", "PREROUTING", "-j", "GRAYCTL_f2"] in argvs


def test_loss_script_is_one_owned_table_replaced_atomically():
    scope = steer.Scope.build("data", peers=["10.219.0.2", "fd00::/64"])
    text = steer.build_loss_script("f3", scope, 5.0)
    assert text.splitlines()[:3] == ["add table inet grayctl_f3", "delete table inet grayctl_f3",
                                     "table inet grayctl_f3 {"]
    assert 'oifname "data" ip daddr { 10.219.0.2/32 } counter numgen random mod 1000000 < 50000 counter drop' in text
    assert 'oifname "data" ip6 daddr { fd00::/64 } counter numgen random mod 1000000 < 50000 counter drop' in text


def test_partition_both_ways_has_egress_and_ingress_chains():
    text = steer.build_partition_script("f4", steer.Scope.build("data", peers=["10.219.0.2"]), "both")
    assert "hook output" in text and "hook input" in text
    assert 'oifname "data" ip daddr { 10.219.0.2/32 } counter drop' in text
    assert 'iifname "data" ip saddr { 10.219.0.2/32 } counter drop' in text
    one_way = steer.build_partition_script("f4", steer.Scope.build("data"), "ingress")
    assert "hook output" not in one_way and 'iifname "data" counter drop' in one_way


@pytest.mark.parametrize("call", [
    lambda: steer.Scope.build('data"; flush ruleset; "'),
    lambda: steer.Scope.build("data", peers=["10.219.0.1/24"]),  # host bits set
    lambda: steer.Scope.build("data", peers=["10.219.0.2 } accept {"]),
    lambda: steer.Scope.build("data", peer_ports=[0]),
    lambda: steer.Scope.build("data", peer_ports=[True]),
    lambda: steer.Scope.build("data", peer_ports=list(range(1, 17))),
    lambda: steer.Scope.build("data", direction="sideways"),
    lambda: steer.build_queue_argvs("Bad-ID", steer.Scope.build("data"), 1),
    lambda: steer.build_queue_argvs("f5", steer.Scope.build("data"), 70000),
    lambda: steer.build_loss_script("f5", steer.Scope.build("data"), 0),
    lambda: steer.build_partition_script("f5", steer.Scope.build("data"), "up"),
    lambda: steer.iptables_chain_name("a" * 21),
    lambda: steer.revert_fault("x; rm -rf /"),
])
def test_hostile_values_are_refused_before_anything_runs(call):
    with pytest.raises(steer.SteerError):
        call()


# ---------------------------------------------------------------------------- Gilbert-Elliott


def _loss_runs(spec: DelaySpec, n: int) -> tuple[float, float]:
    model = DelayModel(spec)
    drops = [model.decide(i * MS).drop for i in range(n)]
    runs, cur = [], 0
    for d in drops:
        if d:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return sum(drops) / n, statistics.mean(runs)


@pytest.mark.parametrize("ge", [(1.0, 25.0, 100.0, 0.0), (5.0, 30.0, 80.0, 1.0), (10.0, 50.0, 100.0, 2.0)])
def test_gilbert_elliott_loss_rate_and_burst_length_match_the_chains_theory(ge):
    loss, burst = _loss_runs(DelaySpec(gemodel=ge, seed=11), 200_000)
    th = ge_theory(*ge)
    # 200k packets with bursts: a few percent of relative error is many standard errors wide
    # of a fixed-seed draw; the point is the model, not the bound.
    assert loss == pytest.approx(th["loss"], rel=0.06)
    assert burst == pytest.approx(th["mean_burst"], rel=0.06)


def test_gilbert_elliott_theory_special_cases():
    assert ge_theory(1, 25) == pytest.approx({"loss": 1 / 26, "mean_burst": 4.0, "pi_bad": 1 / 26})
    assert ge_theory(0, 0, 100, 0)["loss"] == 0 and ge_theory(0, 0, 100, 0)["mean_burst"] == 0
    assert ge_theory(0, 0, 100, 10)["mean_burst"] == pytest.approx(1 / 0.9)  # random loss: geometric runs


def test_gilbert_elliott_is_reproducible_for_a_seed_and_bursty_unlike_random_loss():
    m1, m2 = (DelayModel(DelaySpec(gemodel=(1, 25, 100, 0), seed=5)) for _ in range(2))
    assert [m1.decide(i).drop for i in range(5000)] == [m2.decide(i).drop for i in range(5000)]
    _, ge_burst = _loss_runs(DelaySpec(gemodel=(1, 25, 100, 0), seed=5), 50_000)
    _, random_burst = _loss_runs(DelaySpec(loss=1 / 26 * 100, seed=5), 50_000)
    assert ge_burst > 3 * random_burst


@pytest.mark.parametrize("kw", [{"gemodel": (1, 25, 100)}, {"gemodel": (1, 25, 101, 0)}, {"gemodel": (1, 25, 100, 0),
                                                                                          "loss": 5.0}])
def test_bad_gilbert_elliott_specs_are_refused(kw):
    with pytest.raises(ValueError):
        DelaySpec(**kw)
