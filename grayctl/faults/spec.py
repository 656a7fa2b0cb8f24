"""The resolved, node-facing spec of one fault on one node: written by the plan, read by the node.

The plan writes it (``to_spec``: the catalog's family, canonical parameter strings, the target's
interface, peers and ports, the on-host expiry); the fault role adds the host's facts (its data
and management interfaces, the interpreter, the services directory); the node-side executor
(``grayctl.faults.node.faultctl``) validates it (``load_spec``) before anything runs. Pure data.

Map:
  to_spec(...) -> dict                          the spec the plan hands to playbooks/fault.yml
  load_spec(data) -> Spec                       validate every field (ids, names, addresses, ports)
  Spec.values                                   the parameters resolved against the catalog: parsed
                                                by grayctl.units, defaults filled from the catalog
  ensure_interface_allowed(spec)                the guard: the data interface only, never mgmt
  node_fault_id(experiment_id)                  the id a fault has on the node
  expire_after(window_s) -> float               the on-host expiry: the planned length + EXPIRY_MARGIN_S
  expiry_problem(window_s, margin_s) -> str|None why an expiry would be out of bounds (validate, plan, inject)
  validate_fault_id / _ifname / _network / _port, plain_path   refuse anything not plainly valid
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from grayctl.faults.catalog import BACKENDS, CATALOG, DIRECTIONS, QUANTITY_PARSERS, FaultType, Param
from grayctl.units import parse_percent

__all__ = [
    "EXPIRY_MARGIN_S",
    "FAULT_ID_RE",
    "MAX_EXPIRE_AFTER_S",
    "IFNAME_RE",
    "FaultRefused",
    "Spec",
    "ensure_interface_allowed",
    "expire_after",
    "expiry_problem",
    "is_fault_id",
    "is_ifname",
    "load_spec",
    "node_fault_id",
    "plain_path",
    "resolve_parameters",
    "to_spec",
    "validate_fault_id",
    "validate_ifname",
    "validate_network",
    "validate_port",
]

# \A…\Z, not ^…$: "$" would accept a trailing newline.
FAULT_ID_RE = re.compile(r"\A[a-z0-9][a-z0-9_]{0,31}\Z")
# Linux IFNAMSIZ is 16 including the NUL; stay within a quoting-free charset.
IFNAME_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
# What the executor does with its effect evidence (grayctl.faults.node.effect): "require" fails the
# apply (exit 6) without it, as the run's plan asks; "record" only records it (hand-written specs).
EFFECT_MODES = ("require", "record")
_SERVICE = re.compile(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
_PATH = re.compile(r"\A/[A-Za-z0-9_./+-]{0,4095}\Z")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FaultRefused(ValueError):
    """This fault cannot be applied as written here: say why, inject nothing else."""


def is_fault_id(value: object) -> bool:
    return isinstance(value, str) and FAULT_ID_RE.match(value) is not None


def is_ifname(value: object) -> bool:
    return isinstance(value, str) and IFNAME_RE.match(value) is not None and value not in {".", ".."}


def validate_fault_id(fault_id: Any) -> str:
    if not is_fault_id(fault_id):
        raise FaultRefused(f"fault id {fault_id!r} must match {FAULT_ID_RE.pattern}")
    return fault_id


def validate_ifname(name: Any) -> str:
    if not is_ifname(name):
        raise FaultRefused(f"interface name {name!r} is not a valid Linux interface name")
    return name


def validate_network(text: Any) -> Network:
    """An address or network (``10.0.0.2``, ``10.0.0.0/24``, ``fd00::1``); nothing else."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9A-Fa-f.:/]{2,64}", text):
        raise FaultRefused(f"peer {text!r} is not an IP address or network")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise FaultRefused(f"peer {text!r} is not an IP address or network: {exc}") from None


def validate_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise FaultRefused(f"port {port!r} must be an integer 1..65535")
    return port


def plain_path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _PATH.match(value) or "/../" in value + "/":
        raise FaultRefused(f"{what} {value!r} is not a plain absolute path")
    return value


EXPIRY_MARGIN_S = 30.0  # the on-host expiry reverts a fault this long after its planned end
MAX_EXPIRE_AFTER_S = 7 * 86400  # the node refuses a spec whose expiry is further out (load_spec)


def expire_after(window_s: float, margin_s: float = EXPIRY_MARGIN_S) -> float:
    """``expire_after_s`` of a fault held ``window_s``: the node reverts it by itself this long after its apply."""
    return round(window_s + margin_s, 3)


def expiry_problem(window_s: float, margin_s: float = EXPIRY_MARGIN_S) -> str | None:
    """Why a fault held ``window_s`` with this margin would get an expiry out of bounds, or None.

    The bound is the schedule plus the margin: a fault never outlives its planned window by more
    than EXPIRY_MARGIN_S when the controller dies, and the node accepts no more than
    MAX_EXPIRE_AFTER_S. Checked where a user sets the window or the margin (experiment validation,
    ``grayctl fault inject``), so nothing out of bounds reaches a node's load_spec mid-run.
    """
    if not margin_s > 0:
        return f"an expiry margin of {margin_s:g} s would revert the fault at its apply"
    if margin_s > EXPIRY_MARGIN_S + 1e-9:
        return (f"an expiry margin of {margin_s:g} s would leave the fault on the node up to {margin_s:g} s past its "
                f"planned end if the controller dies; the bound is {EXPIRY_MARGIN_S:g} s")
    if window_s + margin_s > MAX_EXPIRE_AFTER_S + 1e-9:
        return (f"its on-host expiry ({window_s:g} s + the {margin_s:g} s margin) would be past the nodes' ceiling "
                f"of {MAX_EXPIRE_AFTER_S} s (7 days)")
    return None


def node_fault_id(experiment_id: str) -> str:
    """The id a fault has on the node (nft table, iptables chain, records): ``[a-z0-9_]``, <= 20 chars.

    Experiment ids may hold dashes and be long; iptables chain names stop at 28 characters
    (``GRAYCTL_`` + 20). Long ids keep a prefix and a hash, so distinct ids stay distinct.
    """
    base = re.sub(r"[^a-z0-9_]", "_", experiment_id.lower()).strip("_") or "f"
    if len(base) > 20 or base != experiment_id:
        digest = hashlib.sha1(experiment_id.encode()).hexdigest()[:6]
        base = f"{base[:13]}_{digest}" if len(base) > 20 else base
    return validate_fault_id(base)


def to_spec(fault_id: str, fault_type: str, parameters: Mapping[str, Any], *, expire_after_s: float,
            name: str | None = None, service: str = "", target_service: str = "", interface: str | None = None,
            peers: Iterable[str] = (), peer_services: Iterable[str] = (), ports: Iterable[int] = (),
            scope: Mapping[str, Any] | None = None, backend: str = "auto", realisation: str = "",
            widened: bool = False, effect: str = "record", runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The node-facing spec of a fault (``parameters``: canonical strings). Network fields only for
    network faults: other families take no interface, peers or flow fraction on the node.
    ``runtime``: realised by the service runtime ({component, peers, peer_addresses}): the node
    writes a control file per replica of ``service`` (grayctl.faults.node.runtimectl)."""
    ft = CATALOG[fault_type]
    spec: dict[str, Any] = {"id": fault_id, "name": name or fault_id, "type": fault_type, "family": ft.family,
                            "parameters": dict(parameters), "service": service, "target_service": target_service,
                            "expire_after_s": expire_after_s, "effect": effect}
    if realisation:  # the plan's words; the node records them with the backend it chose
        spec.update(realisation=realisation, widened=widened)
    if runtime is not None:
        spec["runtime"] = {"component": runtime.get("component"), "in_process": bool(runtime.get("in_process", True)),
                           "peers": list(runtime.get("peers") or ()),
                           "peer_addresses": list(runtime.get("peer_addresses") or ())}
    if ft.is_network:
        scope = scope or {}
        spec.update(interface=interface, peers=list(peers), peer_services=list(peer_services), ports=list(ports),
                    direction=scope.get("direction") or "egress", fraction=scope.get("fraction") or "100%",
                    backend=backend)
    return spec


@dataclass(frozen=True)
class Spec:
    fault_id: str
    type: str
    parameters: dict[str, Any]  # as written in the spec (canonical strings): recorded verbatim
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

    @property
    def fault_type(self) -> FaultType:
        return CATALOG[self.type]

    @property
    def family(self) -> str:
        return self.fault_type.family

    @cached_property
    def values(self) -> dict[str, Any]:
        """The parameters parsed (grayctl.units) and completed with the catalog's defaults."""
        return resolve_parameters(self.type, self.parameters)


def _resolve(p: Param, value: Any, where: str) -> Any:
    """One parameter value on the node: the catalog's parser and bounds, no file positions."""
    if p.kind == "group":
        if not isinstance(value, Mapping):
            raise FaultRefused(f"parameter {where} must be a mapping of {', '.join(f.name for f in p.fields)}")
        return _resolve_all(p.fields, value, f"{where}.")
    if p.kind in QUANTITY_PARSERS:
        parsed = value if p.is_parsed(value) else QUANTITY_PARSERS[p.kind](value)
        if p.below_min(parsed) or p.above_max(parsed):
            raise FaultRefused(f"parameter {where} {value!r} is out of range")
        return parsed
    if p.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or p.below_min(value) or p.above_max(value):
            raise FaultRefused(f"parameter {where} {value!r} must be an integer {p.min}..{p.max}")
        return value
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise FaultRefused(f"parameter {where} {value!r} must be true or false")
        return value
    if p.kind == "choice":
        if value not in p.choices:
            raise FaultRefused(f"parameter {where} {value!r} is not one of {', '.join(p.choices)}")
        return value
    return value  # names: the plan has resolved them to addresses (peers); kept for the record


def _resolve_all(params: tuple[Param, ...], raw: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        value = raw.get(p.name)
        if value is None:
            if p.required:
                raise FaultRefused(f"parameter '{prefix}{p.name}' is required by this fault type "
                                   f"(grayctl plan writes the spec)")
            out[p.name] = p.default
        else:
            out[p.name] = _resolve(p, value, f"{prefix}{p.name}")
    return out


def resolve_parameters(fault_type: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A spec's parameters parsed and completed with the catalog's defaults (raises FaultRefused / UnitError).

    Accepts already-parsed values (units objects) as well as canonical strings."""
    if fault_type not in CATALOG:
        raise FaultRefused(f"unknown fault type {fault_type!r}")
    if not isinstance(raw, Mapping):
        raise FaultRefused("parameters must be a mapping")
    return _resolve_all(CATALOG[fault_type].params, raw)


def need(values: Mapping[str, Any], name: str) -> Any:
    """A parameter a backend cannot do without (optional in the catalog, e.g. loss's ``percent``)."""
    value = values.get(name)
    if value is None:
        raise FaultRefused(f"parameter {name!r} is required by this fault type (grayctl plan writes the spec)")
    return value


def load_spec(data: Mapping[str, Any]) -> Spec:
    """Validate a spec (JSON from the role); raise FaultRefused with the reason."""
    fid = validate_fault_id(data.get("id"))
    ftype = data.get("type")
    if ftype not in CATALOG:
        raise FaultRefused(f"unknown fault type {ftype!r}")
    family = data.get("family")
    if family is not None and family != CATALOG[ftype].family:
        raise FaultRefused(f"{ftype} is a {CATALOG[ftype].family} fault, not {family!r}")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise FaultRefused("parameters must be a mapping")
    iface = data.get("interface")
    peers = tuple(str(validate_network(p)) for p in data.get("peers") or ())
    ports = tuple(validate_port(p) for p in data.get("ports") or ())
    direction = data.get("direction") or "egress"
    if direction not in DIRECTIONS:
        raise FaultRefused(f"direction {direction!r} must be one of {', '.join(DIRECTIONS)}")
    backend = data.get("backend") or "auto"
    if backend not in BACKENDS:
        raise FaultRefused(f"backend {backend!r} must be one of {', '.join(BACKENDS)}")
    expire = data.get("expire_after_s")
    if isinstance(expire, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", expire):
        expire = float(expire)
    if isinstance(expire, bool) or not isinstance(expire, (int, float)) or not 0 < expire <= MAX_EXPIRE_AFTER_S:
        raise FaultRefused(f"expire_after_s {expire!r} must be a number of seconds in (0, {MAX_EXPIRE_AFTER_S}]")
    if data.get("effect", "record") not in EFFECT_MODES:
        raise FaultRefused(f"effect {data.get('effect')!r} must be one of {', '.join(EFFECT_MODES)}")
    service = data.get("service") or ""
    if service and not _SERVICE.match(service):
        raise FaultRefused(f"service name {service!r} is invalid")
    data_iface = data.get("data_iface")
    mgmt_iface = data.get("mgmt_iface")
    for name in (iface, data_iface, mgmt_iface):
        if name is not None:
            validate_ifname(name)
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
    if frac < 1 and not CATALOG[ftype].is_network:
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
