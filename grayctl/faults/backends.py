"""One resolved fault on one node -> what exactly to run there, per backend. Pure: argv lists only.

Turns a ``Spec`` (grayctl.faults.spec) into ``Actions``: the argv lists to run, the detached
helper to start, the nft script to load, the argv lists that revert — or ``FaultRefused``.
Nothing here runs; the node-side executor (grayctl.faults.node.faultctl) does. Parameters come
resolved (``spec.values``: parsed, catalog defaults filled); which backend can realise a type
is the catalog's ``backends``/``refused``.

Map:
  select_backend(spec, netem_available) -> str  auto -> netem | fallback; refuse impossible ones
  network_actions(spec, backend, ...)           network-* faults (``flow_slot``: flow fractions,
                                                a conntrack-mark slot chosen by the node)
  helper_seed(spec)                             the delayer's recorded --seed
  stress_argv(spec, ...)                        cpu-, memory-, disk-io-stress (stress-ng)
  fallback_queue(fault_id)                      the NFQUEUE number of a fault (from its id)

What each backend does per type is the table in docs/fault-backends.md.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grayctl.faults import tc
from grayctl.faults.node import steer
from grayctl.faults.spec import FaultRefused, Spec, ensure_interface_allowed, need, plain_path, validate_fault_id

__all__ = ["Actions", "fallback_queue", "helper_seed", "network_actions", "select_backend", "stress_argv"]


@dataclass
class Actions:
    """What applies one fault. ``helper`` starts first (detached), then ``commands``, then ``nft_script``."""

    backend: str
    mechanism: str
    commands: list[list[str]] = field(default_factory=list)
    helper: list[str] | None = None
    nft_script: str | None = None
    revert: list[list[str]] = field(default_factory=list)
    netfilter: bool = False  # nft table / iptables chain named after the fault id
    tc_devices: list[str] = field(default_factory=list)  # devices whose fault qdiscs revert removes
    ifb: str | None = None
    notes: list[str] = field(default_factory=list)
    flow_mark: dict[str, Any] | None = None  # flow fractions: steer.FlowMark.to_dict()


def select_backend(spec: Spec, netem_available: bool) -> str:
    """``auto`` picks netem where the kernel has it; a required backend that cannot work is refused."""
    if spec.backend == "netem" and not netem_available:
        raise FaultRefused(f"fault {spec.fault_id} requires backend netem, but this kernel has no sch_netem "
                           f"(probe: adding a netem qdisc to a throwaway ifb device failed)")
    backend = "netem" if (spec.backend == "netem" or (spec.backend == "auto" and netem_available)) else "fallback"
    why = spec.fault_type.refused.get(backend)
    if why:
        raise FaultRefused(f"{spec.type}: {why}")
    return backend


def helper_seed(spec: Spec) -> int:
    """The delayer's random seed: the spec's ``seed`` when given, else one derived from the fault id.

    Recorded in the helper's argv (so in injection.json): the same fault replays the same
    sequence of random decisions for the same sequence of packets.
    """
    seed = spec.raw.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise FaultRefused(f"seed {seed!r} must be an integer 0..4294967295")
        return seed
    return int(hashlib.sha1(f"seed:{spec.fault_id}".encode()).hexdigest()[:8], 16)


def fallback_queue(fault_id: str) -> int:
    """A stable NFQUEUE number per fault id, away from 0 (the number everything else defaults to)."""
    return 1000 + int(hashlib.sha1(validate_fault_id(fault_id).encode()).hexdigest()[:8], 16) % 60000


def _steer_argvs(fault_id: str, spec: Spec, queue: int, mark: steer.FlowMark | None = None) -> list[list[str]]:
    """Queue steering for egress, ingress or both: one chain, rules for each direction, one jump per hook."""
    out: list[list[str]] = []
    directions = ("egress", "ingress") if spec.direction == "both" else (spec.direction,)
    created: set[str] = set()
    for d in directions:
        scope = steer.Scope.build(spec.interface or "", d, spec.peers, (), spec.ports)
        for argv in steer.build_queue_argvs(fault_id, scope, queue, connmark=mark.selected if mark else None):
            key = f"{argv[0]} {argv[3]}"
            if argv[3] == "-N":
                if key in created:
                    continue
                created.add(key)
            out.append(argv)
    # Jumps last, after every chain is filled, so no packet meets a half-built chain.
    return [a for a in out if a[3] != "-I"] + [a for a in out if a[3] == "-I"]


def _nft_loss_or_partition(spec: Spec, drop: str, directions: tuple[str, ...],
                           mark: steer.FlowMark | None = None) -> str:
    chains = {}
    ct = f" {mark.match()}" if mark else ""
    for d in directions:
        scope = steer.Scope.build(spec.interface or "", d, spec.peers, (), spec.ports)
        chains[d] = [f"{m}{ct} {drop}" for m in steer._nft_matches(scope, d)]
    return steer._nft_table(spec.fault_id, chains, _select(spec, mark))


def _select(spec: Spec, mark: steer.FlowMark | None) -> dict[str, tuple[str, list[str]]] | None:
    return steer.build_flow_select(spec.interface or "", mark) if mark else None


def _flow_mark(spec: Spec, flow_slot: int | None) -> steer.FlowMark | None:
    if spec.fraction >= 1:
        return None
    if flow_slot is None:
        raise FaultRefused(f"fault {spec.fault_id}: a flow fraction needs a free conntrack-mark slot on the node")
    return steer.FlowMark(flow_slot, spec.fraction)


def _tc_priority_script(spec: Spec, mark: steer.FlowMark, kind: str) -> str | None:
    """Flow fractions on tc faults, egress: selected packets in scope get the fault class's priority."""
    if "egress" not in (("egress", "ingress") if spec.direction == "both" else (spec.direction,)):
        return steer._nft_table(spec.fault_id, {}, _select(spec, mark))
    scope = steer.Scope.build(spec.interface or "", "egress", spec.peers, (), spec.ports)
    rules = [f"{m} {mark.match()} meta priority set {tc.FRACTION_CLASS[kind]}"
             for m in steer._nft_matches(scope, "egress")]
    return steer._nft_table(spec.fault_id, {"egress": rules}, _select(spec, mark))


_FRACTION_NOTE = ("flow fraction: each new connection on the data interface is selected with probability "
                  "{f:g} % when it starts (conntrack mark bit {sel} of slot {slot}); only selected connections "
                  "are affected; their conntrack entries are deleted at revert so no mark outlives the fault")


def network_actions(spec: Spec, backend: str, *, python: str, expire_at: float, files: Mapping[str, str],
                    flow_slot: int | None = None) -> Actions:
    """The exact commands of a network fault on ``backend`` (``files``: helper pid/stats paths).

    ``flow_slot``: the node's free conntrack-mark slot, needed when ``spec.fraction`` < 1.
    """
    iface = ensure_interface_allowed(spec)
    mark = _flow_mark(spec, flow_slot)
    act = _network_actions(spec, backend, iface, mark, python=python, expire_at=expire_at, files=files)
    if mark:
        act.flow_mark = mark.to_dict()
        act.netfilter = True
        act.notes.append(_FRACTION_NOTE.format(f=100 * spec.fraction, sel=hex(mark.selected), slot=mark.slot))
    return act


def _pct(value: Any) -> str:
    return f"{value.value:g}%"


def _network_actions(spec: Spec, backend: str, iface: str, mark: steer.FlowMark | None, *, python: str,
                     expire_at: float, files: Mapping[str, str]) -> Actions:
    v = spec.values
    fid = spec.fault_id
    directions = ("egress", "ingress") if spec.direction == "both" else (spec.direction,)
    if spec.type == "network-partition":
        pdirs = ("egress", "ingress") if v["direction"] == "both" else (v["direction"],)
        script = _nft_loss_or_partition(spec, "counter drop", pdirs, mark)
        return Actions(backend, "nft-partition", nft_script=script, netfilter=True,
                       notes=["partition is nft drop on both backends (netem has no partition)"])
    if spec.type == "network-flap":
        if mark:
            raise FaultRefused("network-flap takes the whole link down: it has no flow fraction")
        helper = [python, "-m", "grayctl.faults.node.flap", "--dev", iface, "--down", v["down"].to_tc(), "--up",
                  v["up"].to_tc(), "--expire-at", f"{expire_at:.3f}", "--pidfile", files["helper_pid"],
                  "--stats", files["stats"]]
        return Actions(backend, "link-flap", helper=helper, revert=[["ip", "link", "set", "dev", iface, "up"]],
                       notes=["flap is ip link set down/up by a node-side helper on both backends (no qdisc); "
                              "the helper sets the link up on any exit"])
    tscope = tc.TcScope.build(iface, spec.direction, spec.peers, spec.ports, mark.selected if mark else None)
    if spec.type == "network-bandwidth":
        args = (tc.bandwidth_tbf_args(v), tc.bandwidth_class_args(v), v["limit"].to_tc())
        return Actions(backend, "htb" if tscope.scoped else "tbf", commands=tc.build_apply(fid, tscope, "bandwidth", args),
                       revert=tc.build_revert(fid, tscope), tc_devices=[iface],
                       ifb=tc.ifb_name(fid) if "ingress" in tscope.directions else None,
                       nft_script=_tc_priority_script(spec, mark, "bandwidth") if mark else None,
                       netfilter=bool(mark), notes=["bandwidth is a tc token bucket on both backends"])
    if backend == "netem":
        return Actions(backend, "netem", commands=tc.build_apply(fid, tscope, "netem", tc.netem_args(spec.type, v)),
                       revert=tc.build_revert(fid, tscope), tc_devices=[iface],
                       ifb=tc.ifb_name(fid) if "ingress" in tscope.directions else None,
                       nft_script=_tc_priority_script(spec, mark, "netem") if mark else None, netfilter=bool(mark))
    # fallback
    corr = v.get("correlation")
    if spec.type == "network-loss" and corr.value == 0 and not v["burst"]:
        threshold = round(need(v, "percent").value / 100 * steer.LOSS_RESOLUTION)
        # counter before the random test too: the effect check sees the scope's packets reach the rule
        # even when a low rate drops none in its 2 s (steer.build_loss_script)
        rule = f"counter numgen random mod {steer.LOSS_RESOLUTION} < {threshold} counter drop"
        script = _nft_loss_or_partition(spec, rule, directions, mark)
        return Actions(backend, "nft-loss", nft_script=script, netfilter=True)
    queue = fallback_queue(fid)
    helper = [python, "-m", "grayctl.faults.node.nfqdelay", "--queue", str(queue), "--fault-id", fid,
              "--expire-at", f"{expire_at:.3f}", "--pidfile", files["helper_pid"], "--stats", files["stats"]]
    if spec.type == "network-latency":
        helper += ["--delay", v["delay"].to_tc(), "--jitter", v["jitter"].to_tc(), "--correlation", _pct(corr),
                   "--distribution", v["distribution"]]
    elif spec.type == "network-reorder":
        helper += ["--delay", v["delay"].to_tc(), "--reorder", _pct(v["percent"]), "--reorder-correlation",
                   _pct(corr), "--gap", str(v["gap"])]
    elif spec.type == "network-loss" and v["burst"]:
        helper += ["--gemodel", *(_pct(v["burst"][k]) for k in ("p", "r", "bad_loss", "good_loss"))]
    elif spec.type == "network-loss":
        helper += ["--loss", _pct(need(v, "percent")), "--loss-correlation", _pct(corr)]
    else:
        raise FaultRefused(f"{spec.type}: no fallback implementation")
    helper += ["--seed", str(helper_seed(spec))]
    return Actions(backend, "nfqueue-delayer", helper=helper, commands=_steer_argvs(fid, spec, queue, mark),
                   nft_script=steer._nft_table(fid, {}, _select(spec, mark)) if mark else None, netfilter=True)


def stress_argv(spec: Spec, *, timeout_s: float, memory_limit: int | None, temp_dir: str) -> tuple[list[str], list[str]]:
    """stress-ng argv (``--timeout`` = the on-host expiry) and notes on how amounts were resolved."""
    v = spec.values
    timeout = f"{max(1, math.ceil(timeout_s))}s"
    notes: list[str] = []
    base = ["stress-ng", "--timeout", timeout, "--metrics-brief"]
    if spec.type == "cpu-stress":
        return base + ["--cpu", str(v["workers"]), "--cpu-load", f"{v['load'].value:g}"], notes
    if spec.type == "memory-stress":
        if v["bytes"] is not None:
            total = v["bytes"].bytes
        else:
            if not memory_limit:
                raise FaultRefused("memory-stress as a percent needs the node's memory limit, and this node has none "
                                   "(no cgroup memory limit found): give 'bytes' instead")
            total = int(memory_limit * need(v, "percent").fraction)
            notes.append(f"{v['percent']} of the node's memory limit {memory_limit} B = {total} B")
        per = max(4096, total // v["workers"])
        return base + ["--vm", str(v["workers"]), "--vm-bytes", f"{per}", "--vm-keep"], notes
    if spec.type == "disk-io-stress":
        plain_path(temp_dir, "temp dir")
        return base + ["--hdd", str(v["workers"]), "--hdd-bytes", str(v["bytes"].bytes), "--temp-path", temp_dir], notes
    raise FaultRefused(f"{spec.type} is not a stress fault")
