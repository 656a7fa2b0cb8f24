"""The fault catalog: each fault type, its parameters (as data) and how they are validated.

``CATALOG`` maps a fault type name to a ``FaultType``; each ``FaultType`` holds
``Param`` specs (kind, unit, default, range, choices, doc). Validators use it
to parse an experiment's ``parameters`` block (``validate_parameters``); later
code (issue 4: backends and command rendering) reads the same specs, so the
catalog stays pure data plus one cross-field check per type.

Kinds and the Python values they parse to:
  duration -> units.Duration     percent -> units.Percent    size -> units.Size
  rate     -> units.Rate         int     -> int              bool -> bool
  choice   -> str                names   -> list[str] | "all"   group -> dict (nested Params)

``SCOPE_PARAMS`` is the common ``scope`` block (peers, direction, fraction).
docs/fault-catalog.md is the user-facing version of this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grayctl.source import (
    Checker,
    FieldPath,
    ValueProblem,
    parse_bool,
    parse_choice,
    parse_identifier,
    parse_int,
)
from grayctl.units import (
    Duration,
    Percent,
    Size,
    parse_duration,
    parse_percent,
    parse_rate,
    parse_size,
)

__all__ = [
    "Param",
    "FaultType",
    "CATALOG",
    "FAULT_TYPES",
    "SCOPE_PARAMS",
    "DIRECTIONS",
    "BACKENDS",
    "validate_parameters",
    "parse_param",
]

DIRECTIONS = ("egress", "ingress", "both")
BACKENDS = ("auto", "netem", "fallback")
SIGNALS = ("KILL", "TERM", "INT", "QUIT", "HUP", "ABRT", "USR1", "USR2")


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


Check = Callable[[dict[str, Any], Checker, FieldPath], None]


@dataclass(frozen=True)
class FaultType:
    """A fault type: its layer, parameters and the cross-field rule between them."""

    name: str
    layer: str  # network | resource | process
    doc: str
    params: tuple[Param, ...]
    check: Check | None = None
    scope_fields: tuple[str, ...] = ("peers", "direction", "fraction")

    @property
    def param_map(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @property
    def is_network(self) -> bool:
        return self.layer == "network"


def _d(text: str) -> Duration:
    return parse_duration(text)


def _p(text: str) -> Percent:
    return parse_percent(text)


def _s(text: str) -> Size:
    return parse_size(text)


_CORRELATION = Param("correlation", "percent", "Correlation with the previous packet's decision (netem).", default=_p("0%"))
_MAX_DELAY = 60.0  # seconds; more is a partition, not latency


# -- cross-field checks -------------------------------------------------------

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

_NET_SCOPE = ("peers", "direction", "fraction")

CATALOG: dict[str, FaultType] = {
    ft.name: ft
    for ft in [
        FaultType("network-latency", "network", "Add delay (and jitter) to packets on the target's data interface.", (
            Param("delay", "duration", "Added one-way delay.", required=True, min=0.0, min_exclusive=True, max=_MAX_DELAY),
            Param("jitter", "duration", "Random variation of the delay (<= delay).", default=_d("0ms"), min=0.0, max=_MAX_DELAY),
            _CORRELATION,
            Param("distribution", "choice", "Shape of the jitter.", default="normal",
                  choices=("normal", "pareto", "paretonormal", "uniform")),
        ), _check_latency),
        FaultType("network-loss", "network", "Drop packets: random loss, or bursts (Gilbert-Elliott model).", (
            Param("percent", "percent", "Probability a packet is dropped (random loss)."),
            _CORRELATION,
            Param("burst", "group", "Gilbert-Elliott burst loss (netem 'loss gemodel p r 1-h 1-k').", fields=(
                Param("p", "percent", "Probability of moving from the good to the bad state.", required=True),
                Param("r", "percent", "Probability of moving from the bad to the good state.", required=True),
                Param("bad_loss", "percent", "Loss probability in the bad state (1-h).", default=_p("100%")),
                Param("good_loss", "percent", "Loss probability in the good state (1-k).", default=_p("0%")),
            )),
        ), _check_loss),
        FaultType("network-bandwidth", "network", "Limit bandwidth with a token bucket.", (
            Param("rate", "rate", "Bandwidth limit.", required=True, min=1000.0, max=100e9),
            Param("burst", "size", "Bucket size (bytes sent at line rate).", default=_s("32KiB"), min=1500, max=1024**3),
            Param("limit", "size", "Queue limit: bytes that may wait for tokens before drops.", default=_s("1MiB"),
                  min=1500, max=1024**3),
        )),
        FaultType("network-corruption", "network", "Corrupt a random bit in a fraction of packets.", (
            Param("percent", "percent", "Probability a packet is corrupted.", required=True),
            _CORRELATION,
        )),
        FaultType("network-duplication", "network", "Duplicate a fraction of packets.", (
            Param("percent", "percent", "Probability a packet is duplicated.", required=True),
            _CORRELATION,
        )),
        FaultType("network-reorder", "network", "Send a fraction of packets immediately, delaying the rest.", (
            Param("percent", "percent", "Probability a packet jumps the queue.", required=True),
            _CORRELATION,
            Param("gap", "int", "Reorder every N-th packet (netem 'gap').", default=5, min=1, max=1000),
            Param("delay", "duration", "Delay of the packets that are not reordered (netem needs one).",
                  default=_d("10ms"), min=0.0, min_exclusive=True, max=_MAX_DELAY),
        )),
        FaultType("network-partition", "network", "Drop all traffic between the target and its peers.", (
            Param("peers", "names", "Services cut off from the target, or 'all'.", default="all"),
            Param("direction", "choice", "Which way traffic is dropped.", default="both", choices=DIRECTIONS),
        ), _check_partition, scope_fields=("fraction",)),
        FaultType("cpu-stress", "resource", "Burn CPU inside the target node's limits (stress-ng --cpu).", (
            Param("workers", "int", "Number of CPU workers.", default=1, min=1, max=1024),
            Param("load", "percent", "Load per worker.", default=_p("100%"), min=0.0, min_exclusive=True),
        ), scope_fields=("fraction",)),
        FaultType("memory-stress", "resource", "Allocate and touch memory inside the target node's limits (stress-ng --vm).", (
            Param("bytes", "size", "Memory to hold.", min=1, max=1024**4),
            Param("percent", "percent", "Memory to hold, as a share of the node's memory limit.", min=0.0, min_exclusive=True),
            Param("workers", "int", "Number of VM workers sharing the amount.", default=1, min=1, max=64),
        ), _check_memory, scope_fields=("fraction",)),
        FaultType("disk-io-stress", "resource", "Write and sync files in the node's state directory (stress-ng --hdd).", (
            Param("workers", "int", "Number of I/O workers.", default=1, min=1, max=64),
            Param("bytes", "size", "Bytes each worker writes per cycle.", default=_s("256MiB"), min=4096, max=1024**4),
        ), scope_fields=("fraction",)),
        FaultType("process-pause", "process", "SIGSTOP/SIGCONT the target service's processes: one pause or a stutter.", (
            Param("duration", "duration", "One pause this long at the start of the window (default: the whole window).",
                  min=0.0, min_exclusive=True),
            Param("stutter", "group", "Periodic pauses: stop for 'pause' every 'every'.", fields=(
                Param("pause", "duration", "How long each pause lasts.", required=True, min=0.0, min_exclusive=True),
                Param("every", "duration", "Period of the pauses.", required=True, min=0.0, min_exclusive=True),
            )),
        ), _check_pause, scope_fields=("fraction",)),
        FaultType("process-kill", "process", "Kill the target service's processes, optionally restarting them.", (
            Param("signal", "choice", "Signal sent (name without SIG).", default="KILL", choices=SIGNALS),
            Param("restart", "bool", "Restart the service after the kill.", default=True),
        ), scope_fields=("fraction",)),
    ]
}

FAULT_TYPES: tuple[str, ...] = tuple(CATALOG)

SCOPE_PARAMS: tuple[Param, ...] = (
    Param("peers", "names", "Only traffic to/from these services (default: all traffic).", default="all"),
    Param("direction", "choice", "Traffic direction the fault applies to.", default="egress", choices=DIRECTIONS),
    Param("fraction", "percent", "Share of the target's replicas (or flows, for network faults) affected.",
          default=_p("100%"), min=0.0, min_exclusive=True),
)


# -- parsing ----------------------------------------------------------------------

def _base(value: Any) -> float:
    """A parsed value in its base unit, for range checks."""
    for attr in ("seconds", "bytes", "bits_per_second", "value"):
        if hasattr(value, attr):
            return float(getattr(value, attr))
    return float(value)


def _fmt_bound(spec: Param, bound: Any) -> str:
    if spec.kind == "duration":
        return str(Duration(bound))
    if spec.kind == "size":
        return str(Size(int(bound)))
    if spec.kind == "percent":
        return str(Percent(bound))
    if spec.kind == "rate":
        from grayctl.units import Rate

        return str(Rate(bound))
    return str(bound)


def _parse_names(value: Any) -> list[str] | str:
    if value == "all":
        return "all"
    if isinstance(value, str):
        return [parse_identifier(value, what="service name")]
    if not isinstance(value, list):
        raise ValueProblem("expected a list of service names or 'all'", "a list of service names, or all")
    out = []
    for item in value:
        out.append(parse_identifier(item, what="service name"))
    return out


def parse_param(spec: Param, value: Any) -> Any:
    """Parse one parameter value according to its spec (raises ValueError/UnitError)."""
    if spec.kind == "names":
        return _parse_names(value)
    parsers: dict[str, Callable[[Any], Any]] = {
        "duration": parse_duration, "percent": parse_percent, "size": parse_size, "rate": parse_rate,
        "bool": parse_bool,
    }  # fmt: skip
    if spec.kind == "int":
        return parse_int(spec.min, spec.max)(value)
    if spec.kind == "choice":
        if spec.choices == SIGNALS and isinstance(value, str) and value.upper().removeprefix("SIG") in SIGNALS:
            return value.upper().removeprefix("SIG")
        return parse_choice(spec.choices, spec.name)(value)
    parsed = parsers[spec.kind](value)
    base = _base(parsed)
    if spec.min is not None and (base < spec.min or (spec.min_exclusive and base <= spec.min)):
        word = "greater than" if spec.min_exclusive else "at least"
        raise ValueProblem(f"{value!r} is out of range", f"{word} {_fmt_bound(spec, spec.min)}"
                           + (f" and at most {_fmt_bound(spec, spec.max)}" if spec.max is not None else ""))
    if spec.max is not None and base > spec.max:
        raise ValueProblem(f"{value!r} is out of range (too large)", f"at most {_fmt_bound(spec, spec.max)}")
    return parsed


def validate_params_against(specs: tuple[Param, ...], raw: Any, ck: Checker, path: FieldPath,
                            what: str) -> dict[str, Any] | None:
    """Parse a mapping of parameters against ``specs``; record problems; return parsed values with defaults.

    The returned dict also carries ``_given``: the names the user wrote (cross-checks need it).
    """
    spec_map = {p.name: p for p in specs}
    if raw is None:
        raw = {}
    m = ck.mapping(raw, path, allowed=spec_map, required=[p.name for p in specs if p.required],
                   what=f"a mapping of {what}")
    if m is None:
        return None
    out: dict[str, Any] = {"_given": tuple(k for k in m if k in spec_map)}
    for spec in specs:
        if spec.name in m:
            if spec.kind == "group":
                out[spec.name] = validate_params_against(spec.fields, m[spec.name], ck, path + (spec.name,),
                                                         f"{spec.name} fields")
            else:
                out[spec.name] = ck.convert(m[spec.name], path + (spec.name,), lambda v, s=spec: parse_param(s, v))
        else:
            out[spec.name] = spec.default
    return out


def validate_parameters(fault_type: str, raw: Any, ck: Checker, path: FieldPath) -> dict[str, Any] | None:
    """Validate an injection's ``parameters`` for ``fault_type``; return parsed values (defaults filled).

    Problems go to ``ck``; the result has no ``_given`` key.
    """
    ft = CATALOG[fault_type]
    before = len(ck.problems)
    values = validate_params_against(ft.params, raw, ck, path, f"{fault_type} parameters")
    if values is None:
        return None
    if ft.check is not None and len(ck.problems) == before:
        ft.check(values, ck, path)
    return _strip_given(values)


def _strip_given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (_strip_given(v) if isinstance(v, dict) else v) for k, v in values.items() if k != "_given"}


def to_plain(value: Any) -> Any:
    """Parsed parameter values -> canonical plain data (strings with units); unset optionals are left out."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items() if k != "_given" and v is not None}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if hasattr(value, "canonical"):
        return value.canonical()
    return value


__all__ += ["to_plain", "validate_params_against", "SIGNALS"]
