"""The fault catalog: the one list of fault types. Pure data; imports nothing but ``grayctl.units``.

``CATALOG`` maps a type name to a ``FaultType``: its family, parameters (kind, unit, default,
range, choices, doc), the backends that can realise it (and why the others cannot), the names
other datasets give it, and one cross-field check. Everything else derives from it:

  experiment files   grayctl.faults.validate parses ``parameters`` against these specs
  the node           grayctl.faults.spec resolves a spec's parameters (defaults filled from here);
                     tc, backends and faultctl read the resolved values, never a default of their own
  the fault role     ``family`` picks roles/fault/tasks/<family>.yml (the plan writes it into the spec)
  exports            ``export["rcaeval"]`` (grayctl.dataset.export)
  docs               the "Types" section of docs/fault-catalog.md is grayctl.faults.doc's rendering
                     (``python -m grayctl.faults.doc`` rewrites it; a unit test compares)

Kinds and the Python values they parse to:
  duration -> units.Duration     percent -> units.Percent    size -> units.Size
  rate     -> units.Rate         int     -> int              bool -> bool
  choice   -> str                names   -> list[str] | "all"   group -> dict (nested Params)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grayctl.units import Duration, Percent, Rate, Size, parse_duration, parse_percent, parse_rate, parse_size

if TYPE_CHECKING:  # the checks get the experiment's checker; the catalog itself never imports it
    from grayctl.source import Checker, FieldPath

__all__ = [
    "BACKENDS",
    "CATALOG",
    "DIRECTIONS",
    "FAMILIES",
    "FAULT_TYPES",
    "QUANTITY_PARSERS",
    "REALISE_CHOICES",
    "RUNTIME_TYPES",
    "SCOPE_PARAMS",
    "SIGNALS",
    "WIDEN_CHOICES",
    "FaultType",
    "Param",
    "types_of",
]

FAMILIES = ("network", "resource", "process")
DIRECTIONS = ("egress", "ingress", "both")
BACKENDS = ("auto", "netem", "fallback")  # what an experiment may ask for (network faults)
WIDEN_CHOICES = ("process",)  # scope.widen: what a fault on a component may be widened to, on request
REALISE_CHOICES = ("host", "runtime")  # scope.realise: ask for one realisation (grayctl.faults.realise)
SIGNALS = ("KILL", "TERM", "INT", "QUIT", "HUP", "ABRT", "USR1", "USR2")
# The one parser of each quantity kind (grayctl.units), for the experiment and the node alike.
QUANTITY_PARSERS: dict[str, Callable[[Any], Any]] = {
    "duration": parse_duration, "percent": parse_percent, "size": parse_size, "rate": parse_rate,
}  # fmt: skip
_QUANTITY_TYPES = {"duration": Duration, "percent": Percent, "size": Size, "rate": Rate}


@dataclass(frozen=True)
class Param:
    """One parameter of a fault type."""

    name: str
    kind: str  # duration | percent | size | rate | int | bool | choice | names | group
    doc: str
    required: bool = False
    default: Any = None  # already parsed (e.g. Duration(0.0, "0ms")); None = absent unless given
    min: Any = None  # inclusive, in the parsed value's base unit (seconds, bytes, bits/s, percent)
    max: Any = None
    min_exclusive: bool = False
    choices: tuple[str, ...] = ()
    fields: tuple[Param, ...] = ()  # for kind == "group"

    @property
    def unit_hint(self) -> str:
        return {
            "duration": "duration (200ms)", "percent": "percent (5%)", "size": "size (512MiB)",
            "rate": "rate (10mbit)", "int": "integer", "bool": "true/false",
            "choice": " / ".join(self.choices), "names": "list of service names, or all", "group": "mapping",
        }[self.kind]  # fmt: skip

    def is_parsed(self, value: Any) -> bool:
        """Whether ``value`` is already this quantity's parsed form (a units object)."""
        kind = _QUANTITY_TYPES.get(self.kind)
        return kind is not None and isinstance(value, kind)

    def below_min(self, parsed: Any) -> bool:
        base = _base(parsed)
        return self.min is not None and (base < self.min or (self.min_exclusive and base <= self.min))

    def above_max(self, parsed: Any) -> bool:
        return self.max is not None and _base(parsed) > self.max

    def format(self, bound: Any) -> str:
        """A bound (base unit) in the parameter's own unit: 60.0 -> '1m' for a duration."""
        kind = _QUANTITY_TYPES.get(self.kind)
        if kind is None:
            return str(bound)
        return str(kind(int(bound) if kind is Size else bound))


def _base(value: Any) -> float:
    """A parsed value in its base unit, for range checks."""
    for attr in ("seconds", "bytes", "bits_per_second", "value"):
        if hasattr(value, attr):
            return float(getattr(value, attr))
    return float(value)


Check = Callable[[dict[str, Any], "Checker", "FieldPath"], None]


@dataclass(frozen=True)
class FaultType:
    """A fault type: its family, parameters, backends, export names and the cross-field rule."""

    name: str
    family: str  # network | resource | process: the role's task file and the node's executor
    doc: str
    params: tuple[Param, ...]
    backends: tuple[str, ...]  # what can realise it: netem, fallback (network); stress-ng; signals
    export: Mapping[str, str]  # its name in other datasets' vocabularies, e.g. {"rcaeval": "delay"}
    check: Check | None = None
    scope_fields: tuple[str, ...] = ("peers", "direction", "fraction", "widen", "realise")
    refused: Mapping[str, str] = field(default_factory=dict)  # backend -> why it cannot realise this type
    # How it is realised on a target that is a service with its own network hop ("service") or a
    # component inside a shared process ("component"): host | runtime (the service runtime acts at
    # the component's boundary, grayctl.runtime.faults) | refused. grayctl.faults.realise reads it;
    # the types in RUNTIME_TYPES get "runtime" on components, the others "refused".
    realisation: Mapping[str, str] = field(default_factory=dict)
    in_process_refusal: str = ""  # why a host realisation would not be faithful on a component
    runtime_refusal: str = ""  # why the runtime cannot realise it ("" for the types it realises)

    def __post_init__(self) -> None:
        if not self.in_process_refusal:
            object.__setattr__(self, "in_process_refusal", _IN_PROCESS_REFUSAL[self.family])
        if not self.realisation:
            runtime = self.name in RUNTIME_TYPES
            object.__setattr__(self, "realisation", {"service": "host",
                                                     "component": "runtime" if runtime else "refused"})
        if self.name not in RUNTIME_TYPES and not self.runtime_refusal:
            object.__setattr__(self, "runtime_refusal", _RUNTIME_REFUSAL.get(self.name, "the service runtime does not "
                                                                             "realise this fault type"))

    @property
    def runtime_realisable(self) -> bool:
        return self.realisation.get("component") == "runtime"

    @property
    def param_map(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @property
    def layer(self) -> str:
        return self.family

    @property
    def is_network(self) -> bool:
        return self.family == "network"


# What the service runtime realises at a component's boundary (grayctl.runtime.faults): calls into
# the component delayed, lost, failed, cut off, rate-limited, or its worker pool stopped.
RUNTIME_TYPES = ("network-latency", "network-loss", "network-bandwidth", "network-corruption", "network-partition",
                 "process-pause")
_RUNTIME_REFUSAL = {
    "network-duplication": "a call is not a packet: a duplicated in-process call would be a second request, not "
                           "what duplication does on the wire (TCP drops the copy)",
    "network-reorder": "a call is not a packet stream: reordering has no in-process equivalent (TCP delivers in order)",
    "network-flap": "there is no link between components of one process to take down",
    "cpu-stress": "extra CPU inside one component's handlers is not implemented faithfully (one event loop: it "
                  "would slow every component of the process)",
    "memory-stress": "the process's memory is shared: an allocation cannot be charged to one component",
    "disk-io-stress": "the component's handlers do no disk I/O of their own to stress",
    "process-kill": "a component cannot be killed without its process (every component in it)",
}
_IN_PROCESS_REFUSAL = {
    "network": "its calls are in-process, so there is no packet to act on (the host would delay the whole "
               "service's traffic)",
    "resource": "stress on the host loads the whole process and node, not that component's handlers",
    "process": "a signal stops or kills the whole process, every component in it",
}


def _d(text: str) -> Duration:
    return parse_duration(text)


def _p(text: str) -> Percent:
    return parse_percent(text)


def _s(text: str) -> Size:
    return parse_size(text)


_CORRELATION = Param("correlation", "percent", "Correlation with the previous packet's decision (netem).", default=_p("0%"))
_MAX_DELAY = 60.0  # seconds; more is a partition, not latency
_NETWORK = ("netem", "fallback")


# -- cross-field checks (the checker is the experiment's; see grayctl.faults.validate) ---------

def _check_latency(v: dict[str, Any], ck: Checker, path: FieldPath) -> None:
    delay, jitter = v.get("delay"), v.get("jitter")
    if delay is not None and jitter is not None and jitter.seconds > delay.seconds:
        # netem would clamp negative delays to 0, silently skewing the distribution: refuse.
        ck.problem(path + ("jitter",), f"jitter {jitter} is larger than delay {delay}",
                   expected="jitter <= delay (netem clamps negative delays to 0 and skews the distribution)")


def _check_loss(v: dict[str, Any], ck: Checker, path: FieldPath) -> None:
    given = v.get("_given", ())
    if "percent" not in given and "burst" not in given:
        ck.problem(path, "network-loss needs 'percent' (random loss) or 'burst' (Gilbert-Elliott model)",
                   expected="percent: 5%   or   burst: {p: 1%, r: 25%}")
    if "percent" in given and "burst" in given:
        ck.problem(path + ("burst",), "give either 'percent' (random loss) or 'burst' (Gilbert-Elliott), not both",
                   expected="one loss model")
    if "burst" in given and "correlation" in given:
        ck.problem(path + ("correlation",), "'correlation' applies to random loss only, not to the burst model",
                   expected="remove correlation, or use percent")


def _check_memory(v: dict[str, Any], ck: Checker, path: FieldPath) -> None:
    given = v.get("_given", ())
    if ("bytes" in given) == ("percent" in given):
        ck.problem(path, "memory-stress needs exactly one of 'bytes' or 'percent'",
                   expected="bytes: 512MiB   or   percent: 80%  (of the node's memory limit)")


def _check_pause(v: dict[str, Any], ck: Checker, path: FieldPath) -> None:
    given = v.get("_given", ())
    if "duration" in given and "stutter" in given:
        ck.problem(path + ("stutter",), "give either 'duration' (one pause) or 'stutter' (periodic pauses), not both",
                   expected="one pause mode")
    st = v.get("stutter")
    if st and st.get("pause") is not None and st.get("every") is not None and st["pause"].seconds >= st["every"].seconds:
        ck.problem(path + ("stutter", "pause"), f"pause {st['pause']} must be shorter than every {st['every']}",
                   expected="pause < every (the process must run between pauses)")


def _check_partition(v: dict[str, Any], ck: Checker, path: FieldPath) -> None:
    peers = v.get("peers")
    if isinstance(peers, list) and not peers:
        ck.problem(path + ("peers",), "an empty peer list partitions nothing", expected="service names, or all")


# -- the catalog ----------------------------------------------------------------

_NO_FALLBACK_CORRUPT = ("the fallback backend cannot corrupt packets (NFQUEUE verdicts accept or drop; rewriting "
                        "payloads is not implemented): use a node with sch_netem (backend netem)")
_NO_FALLBACK_DUPLICATE = ("the fallback backend cannot duplicate packets (an NFQUEUE verdict releases a packet "
                          "once): use a node with sch_netem (backend netem)")

CATALOG: dict[str, FaultType] = {
    ft.name: ft
    for ft in [
        FaultType("network-latency", "network", "Add delay (and jitter) to packets on the target's data interface.", (
            Param("delay", "duration", "Added one-way delay.", required=True, min=0.0, min_exclusive=True, max=_MAX_DELAY),
            Param("jitter", "duration", "Random variation of the delay (<= delay).", default=_d("0ms"), min=0.0, max=_MAX_DELAY),
            _CORRELATION,
            Param("distribution", "choice", "Shape of the jitter.", default="normal",
                  choices=("normal", "pareto", "paretonormal", "uniform")),
        ), _NETWORK, {"rcaeval": "delay"}, _check_latency),
        FaultType("network-loss", "network", "Drop packets: random loss, or bursts (Gilbert-Elliott model).", (
            Param("percent", "percent", "Probability a packet is dropped (random loss)."),
            _CORRELATION,
            Param("burst", "group", "Gilbert-Elliott burst loss (netem 'loss gemodel p r 1-h 1-k').", fields=(
                Param("p", "percent", "Probability of moving from the good to the bad state.", required=True),
                Param("r", "percent", "Probability of moving from the bad to the good state.", required=True),
                Param("bad_loss", "percent", "Loss probability in the bad state (1-h).", default=_p("100%")),
                Param("good_loss", "percent", "Loss probability in the good state (1-k).", default=_p("0%")),
            )),
        ), _NETWORK, {"rcaeval": "loss"}, _check_loss),
        FaultType("network-bandwidth", "network", "Limit bandwidth with a token bucket.", (
            Param("rate", "rate", "Bandwidth limit.", required=True, min=1000.0, max=100e9),
            Param("burst", "size", "Bucket size (bytes sent at line rate).", default=_s("32KiB"), min=1500, max=1024**3),
            Param("limit", "size", "Queue limit: bytes that may wait for tokens before drops.", default=_s("1MiB"),
                  min=1500, max=1024**3),
        ), _NETWORK, {"rcaeval": "bandwidth"}),
        FaultType("network-corruption", "network", "Corrupt a random bit in a fraction of packets.", (
            Param("percent", "percent", "Probability a packet is corrupted.", required=True),
            _CORRELATION,
        ), ("netem",), {"rcaeval": "corrupt"}, refused={"fallback": _NO_FALLBACK_CORRUPT}),
        FaultType("network-duplication", "network", "Duplicate a fraction of packets.", (
            Param("percent", "percent", "Probability a packet is duplicated.", required=True),
            _CORRELATION,
        ), ("netem",), {"rcaeval": "duplicate"}, refused={"fallback": _NO_FALLBACK_DUPLICATE}),
        FaultType("network-reorder", "network", "Send a fraction of packets immediately, delaying the rest.", (
            Param("percent", "percent", "Probability a packet jumps the queue.", required=True),
            _CORRELATION,
            Param("gap", "int", "Reorder every N-th packet (netem 'gap').", default=5, min=1, max=1000),
            Param("delay", "duration", "Delay of the packets that are not reordered (netem needs one).",
                  default=_d("10ms"), min=0.0, min_exclusive=True, max=_MAX_DELAY),
        ), _NETWORK, {"rcaeval": "reorder"}),
        FaultType("network-partition", "network", "Drop all traffic between the target and its peers.", (
            Param("peers", "names", "Services cut off from the target, or 'all'.", default="all"),
            Param("direction", "choice", "Which way traffic is dropped.", default="both", choices=DIRECTIONS),
        ), _NETWORK, {"rcaeval": "socket"}, _check_partition, scope_fields=("fraction", "widen", "realise")),
        FaultType("network-flap", "network", "Take the target's data link down and up on a cycle (ip link set down/up).", (
            Param("down", "duration", "How long the link stays down each cycle.", required=True, min=0.0,
                  min_exclusive=True, max=_MAX_DELAY),
            Param("up", "duration", "How long the link stays up between downs.", required=True, min=0.0,
                  min_exclusive=True),
        ), _NETWORK, {"rcaeval": "flap"}, scope_fields=("fraction", "widen", "realise")),
        FaultType("cpu-stress", "resource", "Burn CPU inside the target node's limits (stress-ng --cpu).", (
            Param("workers", "int", "Number of CPU workers.", default=1, min=1, max=1024),
            Param("load", "percent", "Load per worker.", default=_p("100%"), min=0.0, min_exclusive=True),
        ), ("stress-ng",), {"rcaeval": "cpu"}, scope_fields=("fraction", "widen", "realise")),
        FaultType("memory-stress", "resource", "Allocate and touch memory inside the target node's limits (stress-ng --vm).", (
            Param("bytes", "size", "Memory to hold.", min=1, max=1024**4),
            Param("percent", "percent", "Memory to hold, as a share of the node's memory limit.", min=0.0, min_exclusive=True),
            Param("workers", "int", "Number of VM workers sharing the amount.", default=1, min=1, max=64),
        ), ("stress-ng",), {"rcaeval": "mem"}, _check_memory, scope_fields=("fraction", "widen", "realise")),
        FaultType("disk-io-stress", "resource", "Write and sync files in the node's state directory (stress-ng --hdd).", (
            Param("workers", "int", "Number of I/O workers.", default=1, min=1, max=64),
            Param("bytes", "size", "Bytes each worker writes per cycle.", default=_s("256MiB"), min=4096, max=1024**4),
        ), ("stress-ng",), {"rcaeval": "disk"}, scope_fields=("fraction", "widen", "realise")),
        FaultType("process-pause", "process", "SIGSTOP/SIGCONT the target service's processes: one pause or a stutter.", (
            Param("duration", "duration", "One pause this long at the start of the window (default: the whole window).",
                  min=0.0, min_exclusive=True),
            Param("stutter", "group", "Periodic pauses: stop for 'pause' every 'every'.", fields=(
                Param("pause", "duration", "How long each pause lasts.", required=True, min=0.0, min_exclusive=True),
                Param("every", "duration", "Period of the pauses.", required=True, min=0.0, min_exclusive=True),
            )),
        ), ("signals",), {"rcaeval": "pause"}, _check_pause, scope_fields=("fraction", "widen", "realise")),
        FaultType("process-kill", "process", "Kill the target service's processes, optionally restarting them.", (
            Param("signal", "choice", "Signal sent (name without SIG).", default="KILL", choices=SIGNALS),
            Param("restart", "bool", "Restart the service after the kill.", default=True),
        ), ("signals",), {"rcaeval": "kill"}, scope_fields=("fraction", "widen", "realise")),
    ]
}

FAULT_TYPES: tuple[str, ...] = tuple(CATALOG)

SCOPE_PARAMS: tuple[Param, ...] = (
    Param("peers", "names", "Only traffic to/from these services (default: all traffic).", default="all"),
    Param("direction", "choice", "Traffic direction the fault applies to.", default="egress", choices=DIRECTIONS),
    Param("fraction", "percent", "Share of the target's replicas (or flows, for network faults) affected.",
          default=_p("100%"), min=0.0, min_exclusive=True),
    Param("widen", "choice", "On a component inside a shared process: fault the whole process (recorded as "
          "widened). Without it a fault the runtime cannot realise there is refused.", choices=WIDEN_CHOICES),
    Param("realise", "choice", "Ask for one realisation: host (the node acts: tc, nftables, signals) or runtime "
          "(the service runtime acts at the target's boundary; also on a service of its own). Default: host on a "
          "service, runtime on a component inside a shared process.", choices=REALISE_CHOICES),
)


def types_of(family: str) -> tuple[str, ...]:
    """The fault types of one family, in catalog order."""
    return tuple(name for name, ft in CATALOG.items() if ft.family == family)
