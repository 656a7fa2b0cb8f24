"""Exact command lines from fault parameters (grayctl.faults.tc, .spec, .backends); hostile values refused."""

from __future__ import annotations

import pytest

from grayctl.faults import backends, tc
from grayctl.faults.backends import network_actions, select_backend
from grayctl.faults.spec import FaultRefused, load_spec, node_fault_id


def _spec(**kw):
    base = {"id": "f1", "type": "network-latency", "parameters": {"delay": "200ms", "jitter": "50ms",
            "correlation": "25%", "distribution": "normal"}, "interface": "data", "peers": [], "ports": [],
            "direction": "egress", "backend": "auto", "expire_after_s": 90, "service": "svc",
            "data_iface": "data", "mgmt_iface": "mgmt"}
    base.update(kw)
    return load_spec(base)


def test_unscoped_latency_is_one_netem_root_qdisc_with_an_explicit_distribution():
    act = network_actions(_spec(), "netem", python="/py", expire_at=0, files={})
    assert act.commands == [["tc", "qdisc", "replace", "dev", "data", "root", "handle", "1:", "netem",
                             "delay", "200ms", "50ms", "25%", "distribution", "normal"]]
    assert act.revert == [["tc", "qdisc", "del", "dev", "data", "root"]]


def test_peer_and_port_scoping_uses_prio_band_3_and_u32_filters():
    act = network_actions(_spec(peers=["10.0.64.3"], ports=[8080]), "netem", python="/py", expire_at=0, files={})
    assert act.commands[0][:9] == ["tc", "qdisc", "replace", "dev", "data", "root", "handle", "1:", "prio"]
    assert act.commands[1][:8] == ["tc", "qdisc", "replace", "dev", "data", "parent", "1:3", "handle"]
    assert act.commands[2] == ["tc", "filter", "add", "dev", "data", "parent", "1:", "protocol", "ip", "prio", "1",
                               "u32", "match", "ip", "dst", "10.0.64.3/32", "match", "ip", "sport", "8080",
                               "0xffff", "flowid", "1:3"]


def test_ingress_goes_through_the_faults_own_ifb_device():
    act = network_actions(_spec(direction="ingress"), "netem", python="/py", expire_at=0, files={})
    ifb = tc.ifb_name("f1")
    assert ["ip", "link", "add", ifb, "type", "ifb"] in act.commands
    assert act.commands[-1][-6:] == ["action", "mirred", "egress", "redirect", "dev", ifb]
    assert ["ip", "link", "del", "dev", ifb] in act.revert


@pytest.mark.parametrize("ftype,params,args", [
    ("network-loss", {"percent": "5%", "correlation": "0%"}, ["loss", "random", "5%", "0%"]),
    ("network-loss", {"burst": {"p": "1%", "r": "25%"}}, ["loss", "gemodel", "1%", "25%", "100%", "0%"]),
    ("network-corruption", {"percent": "0.5%"}, ["corrupt", "0.5%", "0%"]),
    ("network-duplication", {"percent": "2%"}, ["duplicate", "2%", "0%"]),
    ("network-reorder", {"percent": "10%", "gap": 5, "delay": "10ms"},
     ["delay", "10ms", "reorder", "10%", "0%", "gap", "5"]),
    ("network-latency", {"delay": "10ms", "jitter": "2ms", "distribution": "uniform"}, ["delay", "10ms", "2ms", "0%"]),
])
def test_netem_options_per_type(ftype, params, args):
    assert tc.netem_args(ftype, params) == args


def test_bandwidth_is_tbf_on_both_backends():
    s = _spec(type="network-bandwidth", parameters={"rate": "10mbit", "burst": "32KiB", "limit": "1MiB"})
    for backend in ("netem", "fallback"):
        act = network_actions(s, backend, python="/py", expire_at=0, files={})
        assert act.commands == [["tc", "qdisc", "replace", "dev", "data", "root", "handle", "1:", "tbf", "rate",
                                 "10mbit", "burst", "32kb", "limit", "1mb"]]


def test_fallback_latency_starts_the_delayer_and_steers_with_iptables():
    act = network_actions(_spec(peers=["10.0.64.3"]), "fallback", python="/py", expire_at=100.0,
                          files={"helper_pid": "/f/p", "stats": "/f/s"})
    q = str(backends.fallback_queue("f1"))
    assert act.helper[:6] == ["/py", "-m", "grayctl.faults.node.nfqdelay", "--queue", q, "--fault-id"]
    assert ["--delay", "200ms", "--jitter", "50ms"] == act.helper[act.helper.index("--delay"):][:4]
    assert act.commands[0] == ["iptables", "-t", "mangle", "-N", "GRAYCTL_f1"]
    assert act.commands[-1] == ["iptables", "-t", "mangle", "-I", "OUTPUT", "-j", "GRAYCTL_f1"]


def test_fallback_random_loss_is_an_nft_table_named_after_the_fault():
    act = network_actions(_spec(type="network-loss", parameters={"percent": "5%"}), "fallback", python="/py",
                          expire_at=0, files={})
    assert "table inet grayctl_f1" in act.nft_script and "numgen random mod 1000000 < 50000" in act.nft_script


@pytest.mark.parametrize("ftype,params", [("network-corruption", {"percent": "1%"}),
                                          ("network-duplication", {"percent": "1%"})])
def test_the_fallback_refuses_what_it_cannot_do(ftype, params):
    with pytest.raises(FaultRefused):
        select_backend(_spec(type=ftype, parameters=params), netem_available=False)


def test_fallback_burst_loss_is_the_delayers_gemodel_with_netems_argument_order_and_a_seed():
    s = _spec(type="network-loss", parameters={"burst": {"p": "1%", "r": "25%", "bad_loss": "90%"}})
    assert select_backend(s, netem_available=False) == "fallback"
    act = network_actions(s, "fallback", python="/py", expire_at=0, files={"helper_pid": "/f/p", "stats": "/f/s"})
    assert act.mechanism == "nfqueue-delayer" and act.nft_script is None
    i = act.helper.index("--gemodel")
    assert act.helper[i:i + 5] == ["--gemodel", "1%", "25%", "90%", "0%"]
    assert act.helper[-2] == "--seed" and act.helper[-1] == str(backends.helper_seed(s))
    # the same argument order as the netem backend's: loss gemodel p r 1-h 1-k
    assert tc.netem_args("network-loss", s.parameters)[2:] == act.helper[i + 1:i + 5]
    seeded = _spec(type="network-loss", parameters={"burst": {"p": "1%", "r": "25%"}}, seed=42)
    assert backends.helper_seed(seeded) == 42


@pytest.mark.parametrize("burst", [{"p": "1%"}, "1%", {"p": "1%", "r": "25%; reboot"}, {"p": "1%", "r": "125%"}])
def test_hostile_burst_parameters_are_refused(burst):
    s = _spec(type="network-loss", parameters={"burst": burst})
    with pytest.raises(ValueError):
        network_actions(s, "fallback", python="/py", expire_at=0, files={"helper_pid": "/f/p", "stats": "/f/s"})


@pytest.mark.parametrize("seed", [-1, 2**32, "7", True])
def test_a_seed_that_is_not_a_u32_is_refused(seed):
    with pytest.raises(FaultRefused):
        backends.helper_seed(_spec(seed=seed))


def test_required_netem_on_a_kernel_without_it_is_refused():
    with pytest.raises(FaultRefused, match="no sch_netem"):
        select_backend(_spec(backend="netem"), netem_available=False)
    assert select_backend(_spec(), netem_available=True) == "netem"
    assert select_backend(_spec(), netem_available=False) == "fallback"


@pytest.mark.parametrize("iface", ["mgmt", "eth0", "lo"])
def test_the_guard_refuses_anything_but_the_data_interface(iface):
    with pytest.raises(FaultRefused):
        network_actions(_spec(interface=iface), "netem", python="/py", expire_at=0, files={})


@pytest.mark.parametrize("field,value", [
    ("interface", "data; rm -rf /"), ("interface", "$(reboot)"), ("interface", "a" * 16), ("interface", "-v"),
    ("peers", ["10.0.0.1 || true"]), ("peers", ["10.0.0.1/33"]), ("peers", ["--help"]), ("ports", [0]),
    ("ports", ["80"]), ("ports", [True]), ("ports", [70000]), ("id", "F1"), ("id", "f1;x"), ("id", "-f"),
    ("backend", "shell"), ("direction", "sideways"), ("expire_after_s", -1),
])
def test_hostile_values_are_refused_before_any_command_is_built(field, value):
    with pytest.raises(ValueError):
        _spec(**{field: value})


@pytest.mark.parametrize("params", [{"delay": "200ms; reboot"}, {"delay": "-5ms"}, {"delay": "5"},
                                    {"delay": "10ms", "jitter": "2ms", "distribution": "x;y"}])
def test_hostile_parameters_are_refused(params):
    with pytest.raises(ValueError):
        tc.netem_args("network-latency", params)


def test_node_fault_ids_fit_iptables_and_stay_distinct():
    assert node_fault_id("f1") == "f1"
    assert node_fault_id("api-loss") == "api_loss"
    a, b = node_fault_id("a-very-long-fault-identifier-1"), node_fault_id("a-very-long-fault-identifier-2")
    assert a != b and len(a) <= 20 and len(b) <= 20


def test_stress_argv_uses_the_on_host_expiry_as_timeout():
    s = _spec(type="cpu-stress", parameters={"workers": 2, "load": "50%"})
    argv, _ = backends.stress_argv(s, timeout_s=90.2, memory_limit=None, temp_dir="/t")
    assert argv == ["stress-ng", "--timeout", "91s", "--metrics-brief", "--cpu", "2", "--cpu-load", "50"]
    m = _spec(type="memory-stress", parameters={"percent": "50%", "workers": 1})
    argv, notes = backends.stress_argv(m, timeout_s=10, memory_limit=256 << 20, temp_dir="/t")
    assert argv[-3:] == ["--vm-bytes", str(128 << 20), "--vm-keep"] and notes
    with pytest.raises(FaultRefused):
        backends.stress_argv(m, timeout_s=10, memory_limit=None, temp_dir="/t")


@pytest.mark.parametrize("validate", [tc.validate_ifname, tc.validate_fault_id])
def test_a_trailing_newline_is_not_a_name_on_either_backend(validate):
    from grayctl.faults.node import steer

    for check in (validate, getattr(steer, validate.__name__)):
        with pytest.raises(ValueError):
            check("data\n")


# ---------------------------------------------------------------------------- flow fractions

_FILES = {"helper_pid": "/f/p", "stats": "/f/s"}


def test_a_fraction_without_a_mark_slot_is_refused_and_full_fraction_needs_none():
    with pytest.raises(FaultRefused, match="slot"):
        network_actions(_spec(fraction="30%"), "fallback", python="/py", expire_at=0, files=_FILES)
    act = network_actions(_spec(fraction="100%"), "fallback", python="/py", expire_at=0, files=_FILES)
    assert act.flow_mark is None and act.nft_script is None


def test_fallback_delayer_with_a_fraction_selects_new_connections_and_steers_only_marked_ones():
    act = network_actions(_spec(fraction="30%"), "fallback", python="/py", expire_at=0, files=_FILES, flow_slot=2)
    # slot 2: decided = bit 4, selected = bit 5
    assert act.flow_mark == {"slot": 2, "fraction": 0.3, "decided": "0x10", "selected": "0x20",
                             "threshold": "300000/1000000"}
    assert ('oifname "data" ct state new ct mark & 0x10 == 0x0 numgen random mod 1000000 < 300000 '
            'ct mark set ct mark | 0x30') in act.nft_script
    assert 'iifname "data" ct state new ct mark & 0x10 == 0x0 ct mark set ct mark | 0x10' in act.nft_script
    assert "hook prerouting priority mangle - 10" in act.nft_script
    queue = [a for a in act.commands if "NFQUEUE" in a]
    assert queue and all(a[a.index("-m"):a.index("-m") + 4] == ["-m", "connmark", "--mark", "0x20/0x20"]
                         for a in queue)
    assert act.netfilter and any("flow fraction" in n for n in act.notes)


def test_fallback_nft_loss_with_a_fraction_matches_the_selected_bit():
    s = _spec(type="network-loss", parameters={"percent": "5%"}, fraction="50%", peers=["10.0.64.3"])
    act = network_actions(s, "fallback", python="/py", expire_at=0, files=_FILES, flow_slot=0)
    assert ('oifname "data" ip daddr { 10.0.64.3/32 } ct mark & 0x2 == 0x2 counter numgen random mod 1000000 < 50000 '
            'counter drop') in act.nft_script
    assert "chain select_out" in act.nft_script and "chain select_in" in act.nft_script


def test_tc_faults_with_a_fraction_classify_egress_by_priority_set_in_nft():
    for backend, kind, cls in (("netem", "network-latency", "1:3"), ("fallback", "network-bandwidth", "1:1")):
        params = {"rate": "10mbit"} if kind == "network-bandwidth" else {"delay": "20ms"}
        s = _spec(type=kind, parameters=params, fraction="25%", peers=["10.0.64.3"], ports=[8080])
        act = network_actions(s, backend, python="/py", expire_at=0, files=_FILES, flow_slot=1)
        assert not [a for a in act.commands if a[:3] == ["tc", "filter", "add"]], act.commands
        assert act.commands[0][8] == ("prio" if backend == "netem" else "htb")
        assert (f'oifname "data" ip daddr {{ 10.0.64.3/32 }} meta l4proto {{ tcp, udp }} th sport {{ 8080 }} '
                f'ct mark & 0x8 == 0x8 meta priority set {cls}') in act.nft_script
        assert act.netfilter and act.tc_devices == ["data"]


def test_netem_ingress_with_a_fraction_restores_the_connmark_and_filters_with_fw_or_u32_mark():
    act = network_actions(_spec(direction="ingress", fraction="25%"), "netem", python="/py", expire_at=0,
                          files=_FILES, flow_slot=1)
    ifb = tc.ifb_name("f1")
    assert act.commands[-1][-9:] == ["action", "connmark", "pipe", "action", "mirred", "egress", "redirect", "dev", ifb]
    assert ["tc", "filter", "add", "dev", ifb, "parent", "1:", "protocol", "all", "prio", "1", "handle", "0x8/0x8",
            "fw", "classid", "1:3"] in act.commands
    scoped = network_actions(_spec(direction="ingress", fraction="25%", peers=["10.0.64.3"]), "netem", python="/py",
                             expire_at=0, files=_FILES, flow_slot=1)
    assert ["tc", "filter", "add", "dev", ifb, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip",
            "src", "10.0.64.3/32", "match", "mark", "0x8", "0x8", "flowid", "1:3"] in scoped.commands
    assert "meta priority" not in (scoped.nft_script or "")  # ingress only: the table only selects


@pytest.mark.parametrize("fraction", ["0%", "150%", "-5%", "30", "half", "30%; reboot"])
def test_hostile_or_empty_fractions_are_refused(fraction):
    with pytest.raises(FaultRefused):
        _spec(fraction=fraction)


def test_a_fraction_on_a_non_network_fault_is_refused_on_the_node():
    with pytest.raises(FaultRefused, match="replica nodes"):
        _spec(type="cpu-stress", parameters={}, fraction="50%")


@pytest.mark.parametrize("slot", [-1, 16, True])
def test_mark_slots_stay_within_the_32_bit_mark(slot):
    from grayctl.faults.node import steer

    with pytest.raises(ValueError):
        steer.FlowMark(slot, 0.5)


# ---------------------------------------------------------------------------- link flap

def test_flap_is_a_node_helper_cycling_the_data_link_on_both_backends_and_revert_sets_it_up():
    s = _spec(type="network-flap", parameters={"down": "2s", "up": "8s"})
    for backend in ("netem", "fallback"):
        act = network_actions(s, backend, python="/py", expire_at=100.0, files=_FILES)
        assert act.helper == ["/py", "-m", "grayctl.faults.node.flap", "--dev", "data", "--down", "2s", "--up", "8s",
                              "--expire-at", "100.000", "--pidfile", "/f/p", "--stats", "/f/s"]
        assert act.revert == [["ip", "link", "set", "dev", "data", "up"]] and not act.tc_devices
        assert act.mechanism == "link-flap" and not act.netfilter


@pytest.mark.parametrize("params", [{"down": "2s"}, {"down": "0s", "up": "1s"}, {"down": "2", "up": "8s"},
                                    {"down": "2s", "up": "8s; ip link del data"}])
def test_flap_without_both_durations_or_with_hostile_ones_is_refused(params):
    with pytest.raises(ValueError):
        network_actions(_spec(type="network-flap", parameters=params), "fallback", python="/py", expire_at=0,
                        files=_FILES)


def test_flap_refuses_a_flow_fraction_and_any_interface_but_data():
    with pytest.raises(FaultRefused, match="no flow fraction"):
        network_actions(_spec(type="network-flap", parameters={"down": "1s", "up": "1s"}, fraction="50%"),
                        "fallback", python="/py", expire_at=0, files=_FILES, flow_slot=0)
    with pytest.raises(FaultRefused):
        network_actions(_spec(type="network-flap", parameters={"down": "1s", "up": "1s"}, interface="mgmt"),
                        "fallback", python="/py", expire_at=0, files=_FILES)
