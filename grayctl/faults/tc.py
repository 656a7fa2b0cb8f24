"""tc argv lists for network faults: netem qdiscs, token-bucket bandwidth, scoping, ifb ingress.

Pure functions: validated values in, exact argv lists out. Nothing here runs a command; the
node-side executor (``grayctl.faults.node.faultctl``) runs the lists with ``subprocess`` — argv
only, never a shell — and records them verbatim in the fault record. Parameters are resolved
against the catalog (``grayctl.faults.spec.resolve_parameters``): parsed by grayctl.units, every
default the catalog's.

Map:
  validate_ifname / validate_network / validate_port     (grayctl.faults.spec) refuse anything not plainly valid
  TcScope                                                interface, direction, peers, ports
  netem_args(type, params) -> ["delay", "200ms", ...]     tc-netem(8) options of one fault
  bandwidth_leaf(params) / bandwidth_tbf_args(params)    the shaper of network-bandwidth
  build_apply(fault_id, scope, kind, args) -> [argv]     root qdisc or prio/htb tree + u32 filters,
                                                         plus the ifb redirect for ingress
  build_revert(fault_id, scope) -> [argv]                what removes it (each may fail harmlessly)
  ifb_name(fault_id)                                     the fault's own ifb device

Scoping (FIELD-NOTES, "Traffic control"): without peers or ports the fault's qdisc is the root
qdisc of the interface. With them, a classful root sends only the matching packets through the
fault: ``prio`` (3 bands, every priority mapped to band 2 — class 1:2 — and the fault on band 3 —
class 1:3) for netem, ``htb default 0`` (unclassified packets take htb's unshaped direct queue)
with one shaped class 1:1 for bandwidth. u32 filters match the peer addresses (destination on
egress, source on ingress) and the service's local ports (source on egress, destination on
ingress); several peers or ports give several filters (OR), a peer and a port in one filter AND.
Ingress: ``ingress`` qdisc on the interface, one u32 catch-all with ``mirred egress redirect`` to
an ifb device named after the fault, the fault tree on the ifb's root.

u32's ``ip sport/dport`` assume an IPv4 header without options (IHL 5), as every u32 recipe does.

Flow fractions (``TcScope.mark``, the fault's "selected" conntrack-mark bit): connections are
chosen at their start by nft (``steer.build_flow_select``), which also matches peers and ports.
Egress: nft sets the packet's ``skb->priority`` to the fault's class (``FRACTION_CLASS``) and the
classful root classifies by it before any filter (``prio`` and ``htb`` both do), so the tree has
no filters — no ``cls_fw`` or u32 mark support is needed. Ingress (ifb): packets reach tc before
netfilter, so the redirect filter restores the conntrack mark with ``action connmark`` and the
ifb's tree matches it (``fw`` filter, or u32 ``match mark`` next to peers/ports); that needs
``act_connmark`` and ``cls_fw`` (Debian's kernels have them; kernels without them refuse the
command and the apply rolls back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from grayctl.faults.catalog import DIRECTIONS
from grayctl.faults.spec import (
    Network,
    need,
    resolve_parameters,
    validate_fault_id,
    validate_ifname,
    validate_network,
    validate_port,
)
from grayctl.units import Percent

__all__ = [
    "FRACTION_CLASS",
    "TcError",
    "TcScope",
    "bandwidth_class_args",
    "bandwidth_tbf_args",
    "build_apply",
    "build_revert",
    "ifb_name",
    "netem_args",
    "validate_fault_id",
    "validate_ifname",
    "validate_network",
    "validate_port",
]

# Every skb priority to band 2 (class 1:2); band 3 (class 1:3) only receives filtered packets.
_PRIOMAP = ["1"] * 16
# The class a selected flow's packets are steered to by skb priority (flow fractions, egress).
FRACTION_CLASS = {"netem": "1:3", "bandwidth": "1:1"}


class TcError(ValueError):
    """An input to a tc command is invalid: refused before anything is built."""


def ifb_name(fault_id: str) -> str:
    """The fault's ifb device: ``gcifb`` + 8 hex digits of the id's sha1 (IFNAMSIZ allows 15)."""
    return "gcifb" + hashlib.sha1(validate_fault_id(fault_id).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class TcScope:
    """Which packets a fault touches. Empty ``peers`` = every peer; empty ``ports`` = every port."""

    ifname: str
    direction: str = "egress"
    peers: tuple[Network, ...] = ()
    ports: tuple[int, ...] = ()  # this node's ports (the target service's)
    mark: int | None = None  # flow fractions: the fault's "selected" conntrack-mark bit

    @classmethod
    def build(cls, ifname: str, direction: str = "egress", peers: Iterable[str] = (),
              ports: Iterable[int] = (), mark: int | None = None) -> TcScope:
        if direction not in DIRECTIONS:
            raise TcError(f"direction {direction!r} must be one of {', '.join(DIRECTIONS)}")
        if mark is not None and (isinstance(mark, bool) or not isinstance(mark, int) or mark <= 0
                                 or mark >= 1 << 32 or mark & (mark - 1)):
            raise TcError(f"flow mark {mark!r} must be one bit of a 32-bit mark")
        nets = tuple(dict.fromkeys(validate_network(p) for p in peers))
        return cls(validate_ifname(ifname), direction, nets, tuple(dict.fromkeys(validate_port(p) for p in ports)),
                   mark)

    @property
    def scoped(self) -> bool:
        return bool(self.peers or self.ports or self.mark)

    @property
    def directions(self) -> tuple[str, ...]:
        return ("egress", "ingress") if self.direction == "both" else (self.direction,)


# ---------------------------------------------------------------------------- parameters

def _pct(value: Percent) -> str:
    return f"{value.value:g}%"


def netem_args(fault_type: str, params: Mapping[str, Any]) -> list[str]:
    """tc-netem(8) options for one fault, from its parameters (canonical strings or resolved values).

    ``distribution`` is always explicit when there is jitter (the kernel falls back to uniform
    when tc sends no table; ``uniform`` is exactly that table-less case, so it is omitted).
    """
    v = resolve_parameters(fault_type, params)
    corr = _pct(v["correlation"]) if v.get("correlation") is not None else ""
    if fault_type == "network-latency":
        args = ["delay", v["delay"].to_tc()]
        if v["jitter"].seconds > 0:
            args += [v["jitter"].to_tc(), corr]
            if v["distribution"] != "uniform":
                args += ["distribution", v["distribution"]]
        return args
    if fault_type == "network-loss":
        burst = v["burst"]
        if burst:
            return ["loss", "gemodel", *(_pct(burst[k]) for k in ("p", "r", "bad_loss", "good_loss"))]
        return ["loss", "random", _pct(need(v, "percent")), corr]
    if fault_type == "network-corruption":
        return ["corrupt", _pct(v["percent"]), corr]
    if fault_type == "network-duplication":
        return ["duplicate", _pct(v["percent"]), corr]
    if fault_type == "network-reorder":
        return ["delay", v["delay"].to_tc(), "reorder", _pct(v["percent"]), corr, "gap", str(v["gap"])]
    raise TcError(f"{fault_type} is not a netem fault")


def bandwidth_tbf_args(params: Mapping[str, Any]) -> list[str]:
    """``tbf rate R burst B limit L`` (unscoped bandwidth: the interface's root)."""
    v = resolve_parameters("network-bandwidth", params)
    return ["tbf", "rate", v["rate"].to_tc(), "burst", v["burst"].to_tc(), "limit", v["limit"].to_tc()]


def bandwidth_class_args(params: Mapping[str, Any]) -> list[str]:
    """htb class options of scoped bandwidth: rate = ceil, burst = cburst."""
    v = resolve_parameters("network-bandwidth", params)
    rate, burst = v["rate"].to_tc(), v["burst"].to_tc()
    return ["htb", "rate", rate, "ceil", rate, "burst", burst, "cburst", burst]


# ---------------------------------------------------------------------------- trees

def _filters(dev: str, scope: TcScope, direction: str, flowid: str) -> list[list[str]]:
    addr_key = "dst" if direction == "egress" else "src"
    port_key = "sport" if direction == "egress" else "dport"
    out = []
    if scope.mark and direction == "egress":
        return []  # classified by skb priority, set by the fault's nft rule (module docstring)
    mark = ["match", "mark", hex(scope.mark), hex(scope.mark)] if scope.mark else []
    if scope.mark and not (scope.peers or scope.ports):
        return [["tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "all", "prio", "1",
                 "handle", f"{hex(scope.mark)}/{hex(scope.mark)}", "fw", "classid", flowid]]
    peers: list[Network | None] = list(scope.peers) or [None]
    ports: list[int | None] = list(scope.ports) or [None]
    for peer in peers:
        for port in ports:
            v6 = peer is not None and peer.version == 6
            proto, fam = ("ipv6", "ip6") if v6 else ("ip", "ip")
            argv = ["tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", proto, "prio", "1", "u32"]
            if peer is not None:
                argv += ["match", fam, addr_key, str(peer)]
            if port is not None:
                argv += ["match", fam, port_key, str(port), "0xffff"]
            argv += [*mark, "flowid", flowid]
            out.append(argv)
            if peer is None and port is not None:
                # no peer to fix the family: the same port match for IPv6 as well
                out.append(argv[:8] + ["ipv6"] + argv[9:12]
                           + ["match", "ip6", port_key, str(port), "0xffff", *mark, "flowid", flowid])
    return out


def _tree(dev: str, scope: TcScope, direction: str, kind: str, args: list[str]) -> list[list[str]]:
    """The fault's qdisc tree on ``dev`` for packets going ``direction``."""
    if kind == "netem":
        if not scope.scoped:
            return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "netem", *args]]
        return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "prio", "bands", "3", "priomap", *_PRIOMAP],
                ["tc", "qdisc", "replace", "dev", dev, "parent", "1:3", "handle", "30:", "netem", *args],
                *_filters(dev, scope, direction, "1:3")]
    if kind == "bandwidth":
        if not scope.scoped:
            return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", *args[0]]]
        cls_args, limit = args[1], args[2]
        return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "0"],
                ["tc", "class", "replace", "dev", dev, "parent", "1:", "classid", "1:1", *cls_args],
                ["tc", "qdisc", "replace", "dev", dev, "parent", "1:1", "handle", "10:", "bfifo", "limit", limit],
                *_filters(dev, scope, direction, "1:1")]
    raise TcError(f"unknown tree kind {kind!r}")


def build_apply(fault_id: str, scope: TcScope, kind: str, args: Any) -> list[list[str]]:
    """Every argv that installs the fault, in order.

    ``kind`` ``netem``: ``args`` = ``netem_args(...)``. ``bandwidth``: ``args`` =
    ``(bandwidth_tbf_args(p), bandwidth_class_args(p), limit_tc)``.
    """
    validate_fault_id(fault_id)
    dev = scope.ifname
    out: list[list[str]] = []
    if "egress" in scope.directions:
        out += _tree(dev, scope, "egress", kind, args)
    if "ingress" in scope.directions:
        ifb = ifb_name(fault_id)
        out += [["ip", "link", "add", ifb, "type", "ifb"],
                ["ip", "link", "set", "dev", ifb, "up"],
                *_tree(ifb, scope, "ingress", kind, args),
                ["tc", "qdisc", "add", "dev", dev, "handle", "ffff:", "ingress"],
                ["tc", "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1", "u32",
                 "match", "u32", "0", "0",
                 # before netfilter has run: restore the conntrack mark so the ifb's filters see it
                 *(["action", "connmark", "pipe"] if scope.mark else []),
                 "action", "mirred", "egress", "redirect", "dev", ifb]]
    return out


def build_revert(fault_id: str, scope: TcScope) -> list[list[str]]:
    """argv lists that remove the fault; each may fail harmlessly when its part is already gone."""
    dev = scope.ifname
    out = []
    if "egress" in scope.directions:
        out.append(["tc", "qdisc", "del", "dev", dev, "root"])
    if "ingress" in scope.directions:
        out += [["tc", "qdisc", "del", "dev", dev, "ingress"], ["ip", "link", "del", "dev", ifb_name(fault_id)]]
    return out
