"""A resolved fault on one node -> what exactly to run there, per backend. Pure data and argv lists.

The fault roles hand the node-side executor (``grayctl.faulthelpers.faultctl``) a *spec*: the
plan's extravars for one fault plus the node's facts (interfaces, python, fault directory).
This module turns a spec into ``Actions``: the argv lists to run, the detached helper to start,
the nft script to load, the argv lists that revert — or a ``Refused`` reason. Nothing here runs.

Map:
  load_spec(data) -> Spec                       validate every field (ids, names, addresses, ports)
  ensure_interface_allowed(spec)                the guard: the data interface only, never mgmt
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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grayctl import tc
from grayctl.faulthelpers import steer
from grayctl.units import parse_duration, parse_percent, parse_size

__all__ = [
    "NETWORK_TYPES",
    "PROCESS_TYPES",
    "STRESS_TYPES",
    "Actions",
    "FaultRefused",
    "Spec",
    "ensure_interface_allowed",
    "fallback_queue",
    "helper_seed",
    "load_spec",
    "network_actions",
    "node_fault_id",
    "select_backend",
    "stress_argv",
]

NETWORK_TYPES = ("network-latency", "network-loss", "network-bandwidth", "network-corruption",
                 "network-duplication", "network-reorder", "network-partition")
STRESS_TYPES = ("cpu-stress", "memory-stress", "disk-io-stress")
PROCESS_TYPES = ("process-pause", "process-kill")
BACKENDS = ("auto", "netem", "fallback")
_SERVICE = re.compile(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
_PATH = re.compile(r"\A/[A-Za-z0-9_./+-]{0,4095}\Z")


class FaultRefused(ValueError):
    """This fault cannot be applied as written here: say why, inject nothing else."""


@dataclass(frozen=True)
class Spec:
    fault_id: str
    type: str
    parameters: dict[str, Any]
    interface: str | None
    peers: tuple[str, ...]
    ports: tuple[int, ...]
    direction: str
    backend: str
    expire_after_s: float
    service: str
    data_iface: str | None
    mgmt_iface: str | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    fraction: float = 1.0  # network faults: the share of flows (connections) affected


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


def node_fault_id(experiment_id: str) -> str:
    """The id a fault has on the node (nft table, iptables chain, records): ``[a-z0-9_]``, <= 20 chars.

    Experiment ids may hold dashes and be long; iptables chain names stop at 28 characters
    (``GRAYCTL_`` + 20). Long ids keep a prefix and a hash, so distinct ids stay distinct.
    """
    base = re.sub(r"[^a-z0-9_]", "_", experiment_id.lower()).strip("_") or "f"
    if len(base) > 20 or base != experiment_id:
        digest = hashlib.sha1(experiment_id.encode()).hexdigest()[:6]
        base = f"{base[:13]}_{digest}" if len(base) > 20 else base
    return tc.validate_fault_id(base)


def _path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _PATH.match(value) or "/../" in value + "/":
        raise FaultRefused(f"{what} {value!r} is not a plain absolute path")
    return value


def load_spec(data: Mapping[str, Any]) -> Spec:
    """Validate a spec (JSON from the role); raise FaultRefused / TcError with the reason."""
    fid = tc.validate_fault_id(data.get("id"))
    ftype = data.get("type")
    if ftype not in NETWORK_TYPES + STRESS_TYPES + PROCESS_TYPES:
        raise FaultRefused(f"unknown fault type {ftype!r}")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise FaultRefused("parameters must be a mapping")
    iface = data.get("interface")
    peers = tuple(str(tc.validate_network(p)) for p in data.get("peers") or ())
    ports = tuple(tc.validate_port(p) for p in data.get("ports") or ())
    direction = data.get("direction") or "egress"
    if direction not in tc.DIRECTIONS:
        raise FaultRefused(f"direction {direction!r} must be one of {', '.join(tc.DIRECTIONS)}")
    backend = data.get("backend") or "auto"
    if backend not in BACKENDS:
        raise FaultRefused(f"backend {backend!r} must be one of {', '.join(BACKENDS)}")
    expire = data.get("expire_after_s")
    if isinstance(expire, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", expire):
        expire = float(expire)
    if isinstance(expire, bool) or not isinstance(expire, (int, float)) or not 0 < expire <= 7 * 86400:
        raise FaultRefused(f"expire_after_s {expire!r} must be a number of seconds in (0, 604800]")
    service = data.get("service") or ""
    if service and not _SERVICE.match(service):
        raise FaultRefused(f"service name {service!r} is invalid")
    data_iface = data.get("data_iface")
    mgmt_iface = data.get("mgmt_iface")
    for name in (iface, data_iface, mgmt_iface):
        if name is not None:
            tc.validate_ifname(name)
    return Spec(fid, ftype, params, iface, peers, ports, direction, backend, float(expire), service,
                data_iface, mgmt_iface, dict(data), _fraction(data.get("fraction"), ftype))


def _fraction(value: Any, ftype: str) -> float:
    """``fraction`` of the spec (``30%``, as the plan writes scope.fraction): a share of flows."""
    if value in (None, "", "100%"):
        return 1.0
    try:
        frac = parse_percent(value).fraction
    except (ValueError, TypeError):
        raise FaultRefused(f"fraction {value!r} must be a percentage such as 30%") from None
    if not 0 < frac <= 1:
        raise FaultRefused(f"fraction {value!r} must be within (0%, 100%]")
    if frac < 1 and ftype not in NETWORK_TYPES:
        raise FaultRefused(f"fraction {value!r}: flow fractions apply to network faults; for {ftype} the plan "
                           f"picks a share of the replica nodes instead")
    return frac


def ensure_interface_allowed(spec: Spec) -> str:
    """The guard: a network fault touches the host's data interface and nothing else."""
    if spec.interface is None:
        raise FaultRefused(f"{spec.type} needs an interface")
    if not spec.data_iface:
        raise FaultRefused("the host has no grayctl_data_iface in the inventory: refusing to guess an interface")
    if spec.mgmt_iface and spec.interface == spec.mgmt_iface:
        raise FaultRefused(f"interface {spec.interface!r} is the management interface: network faults live on "
                           f"the data interface only")
    if spec.interface != spec.data_iface:
        raise FaultRefused(f"interface {spec.interface!r} is not this host's data interface "
                           f"({spec.data_iface!r}): refusing to touch it")
    return spec.interface


# What the fallback cannot build, and why (the fault is refused rather than replaced).
FALLBACK_REFUSALS = {
    "network-corruption": "the fallback backend cannot corrupt packets (NFQUEUE verdicts accept or drop; "
                          "rewriting payloads is not implemented): use a node with sch_netem (backend netem)",
    "network-duplication": "the fallback backend cannot duplicate packets (an NFQUEUE verdict releases a "
                           "packet once): use a node with sch_netem (backend netem)",
}


def select_backend(spec: Spec, netem_available: bool) -> str:
    """``auto`` picks netem where the kernel has it; a required backend that cannot work is refused."""
    if spec.backend == "netem" and not netem_available:
        raise FaultRefused(f"fault {spec.fault_id} requires backend netem, but this kernel has no sch_netem "
                           f"(probe: adding a netem qdisc to a throwaway ifb device failed)")
    backend = "netem" if (spec.backend == "netem" or (spec.backend == "auto" and netem_available)) else "fallback"
    if backend == "fallback" and spec.type in FALLBACK_REFUSALS:
        raise FaultRefused(f"{spec.type}: {FALLBACK_REFUSALS[spec.type]}")
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
    return 1000 + int(hashlib.sha1(tc.validate_fault_id(fault_id).encode()).hexdigest()[:8], 16) % 60000


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


def _network_actions(spec: Spec, backend: str, iface: str, mark: steer.FlowMark | None, *, python: str,
                     expire_at: float, files: Mapping[str, str]) -> Actions:
    p = spec.parameters
    fid = spec.fault_id
    directions = ("egress", "ingress") if spec.direction == "both" else (spec.direction,)
    if spec.type == "network-partition":
        pdir = p.get("direction", "both")
        pdirs = ("egress", "ingress") if pdir == "both" else (pdir,)
        script = _nft_loss_or_partition(spec, "counter drop", pdirs, mark)
        return Actions(backend, "nft-partition", nft_script=script, netfilter=True,
                       notes=["partition is nft drop on both backends (netem has no partition)"])
    tscope = tc.TcScope.build(iface, spec.direction, spec.peers, spec.ports, mark.selected if mark else None)
    if spec.type == "network-bandwidth":
        args = (tc.bandwidth_tbf_args(p), tc.bandwidth_class_args(p), parse_size(p.get("limit", "1MiB")).to_tc())
        return Actions(backend, "htb" if tscope.scoped else "tbf", commands=tc.build_apply(fid, tscope, "bandwidth", args),
                       revert=tc.build_revert(fid, tscope), tc_devices=[iface],
                       ifb=tc.ifb_name(fid) if "ingress" in tscope.directions else None,
                       nft_script=_tc_priority_script(spec, mark, "bandwidth") if mark else None,
                       netfilter=bool(mark), notes=["bandwidth is a tc token bucket on both backends"])
    if backend == "netem":
        return Actions(backend, "netem", commands=tc.build_apply(fid, tscope, "netem", tc.netem_args(spec.type, p)),
                       revert=tc.build_revert(fid, tscope), tc_devices=[iface],
                       ifb=tc.ifb_name(fid) if "ingress" in tscope.directions else None,
                       nft_script=_tc_priority_script(spec, mark, "netem") if mark else None, netfilter=bool(mark))
    # fallback
    corr = parse_percent(p.get("correlation", "0%"))
    if spec.type == "network-loss" and corr.value == 0 and not p.get("burst"):
        pct = parse_percent(p["percent"]).value
        threshold = round(pct / 100 * steer.LOSS_RESOLUTION)
        script = _nft_loss_or_partition(spec, f"numgen random mod {steer.LOSS_RESOLUTION} < {threshold} counter drop",
                                        directions, mark)
        return Actions(backend, "nft-loss", nft_script=script, netfilter=True)
    queue = fallback_queue(fid)
    helper = [python, "-m", "grayctl.faulthelpers.nfqdelay", "--queue", str(queue), "--fault-id", fid,
              "--expire-at", f"{expire_at:.3f}", "--pidfile", files["helper_pid"], "--stats", files["stats"]]
    if spec.type == "network-latency":
        helper += ["--delay", parse_duration(p["delay"]).to_tc(), "--jitter", parse_duration(p.get("jitter", "0ms")).to_tc(),
                   "--correlation", f"{corr.value:g}%", "--distribution", p.get("distribution", "normal")]
    elif spec.type == "network-reorder":
        gap = p.get("gap", 5)
        tc.validate_port(gap)  # 1..65535 integer; the catalog bounds it to 1000
        helper += ["--delay", parse_duration(p.get("delay", "10ms")).to_tc(), "--reorder",
                   f"{parse_percent(p['percent']).value:g}%", "--reorder-correlation", f"{corr.value:g}%",
                   "--gap", str(gap)]
    elif spec.type == "network-loss" and p.get("burst"):
        b = p["burst"]
        if not isinstance(b, dict) or "p" not in b or "r" not in b:
            raise FaultRefused("network-loss burst needs a mapping with p and r (Gilbert-Elliott)")
        helper += ["--gemodel", *(f"{parse_percent(b.get(k, d)).value:g}%" for k, d in
                                  (("p", None), ("r", None), ("bad_loss", "100%"), ("good_loss", "0%")))]
    elif spec.type == "network-loss":
        helper += ["--loss", f"{parse_percent(p['percent']).value:g}%", "--loss-correlation", f"{corr.value:g}%"]
    else:
        raise FaultRefused(f"{spec.type}: no fallback implementation")
    helper += ["--seed", str(helper_seed(spec))]
    return Actions(backend, "nfqueue-delayer", helper=helper, commands=_steer_argvs(fid, spec, queue, mark),
                   nft_script=steer._nft_table(fid, {}, _select(spec, mark)) if mark else None, netfilter=True)


def stress_argv(spec: Spec, *, timeout_s: float, memory_limit: int | None, temp_dir: str) -> tuple[list[str], list[str]]:
    """stress-ng argv (``--timeout`` = the on-host expiry) and notes on how amounts were resolved."""
    p = spec.parameters
    timeout = f"{max(1, math.ceil(timeout_s))}s"
    notes: list[str] = []
    base = ["stress-ng", "--timeout", timeout, "--metrics-brief"]
    if spec.type == "cpu-stress":
        workers = int(p.get("workers", 1))
        load = parse_percent(p.get("load", "100%")).value
        return base + ["--cpu", str(workers), "--cpu-load", f"{load:g}"], notes
    if spec.type == "memory-stress":
        workers = int(p.get("workers", 1))
        if p.get("bytes"):
            total = parse_size(p["bytes"]).bytes
        else:
            if not memory_limit:
                raise FaultRefused("memory-stress as a percent needs the node's memory limit, and this node has none "
                                   "(no cgroup memory limit found): give 'bytes' instead")
            total = int(memory_limit * parse_percent(p["percent"]).fraction)
            notes.append(f"{p['percent']} of the node's memory limit {memory_limit} B = {total} B")
        per = max(4096, total // workers)
        return base + ["--vm", str(workers), "--vm-bytes", f"{per}", "--vm-keep"], notes
    if spec.type == "disk-io-stress":
        _path(temp_dir, "temp dir")
        workers = int(p.get("workers", 1))
        return base + ["--hdd", str(workers), "--hdd-bytes", str(parse_size(p.get("bytes", "256MiB")).bytes),
                       "--temp-path", temp_dir], notes
    raise FaultRefused(f"{spec.type} is not a stress fault")
