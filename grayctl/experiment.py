"""Experiment files: the model, its defaults, and validation against the topology.

Map:
  load_experiment(path) -> Experiment     read + validate (InputError listing every problem)
  validate_experiment(data, positions, file, base_dir) -> Experiment
  Experiment.to_dict()                    the fully resolved file (every default filled, units canonical);
                                          feeding it back to validation gives the same Experiment
  DEFAULTS                                the defaults, in one place (docs/experiment-format.md lists them)

The model is plain frozen data: Experiment -> Workload, Schedule, [Fault], Metrics, Slo, [Check].
Times of faults are also given absolute, in seconds from the start of the run
(``Fault.start_s``/``end_s``), and each fault carries the topology service it resolves to.
The seed's singular ``chaos_injection`` is normalised into ``chaos_injections``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grayctl.errors import InputError, Problem
from grayctl.faults.catalog import BACKENDS, CATALOG, FAULT_TYPES, SCOPE_PARAMS
from grayctl.faults.realise import realisation_problem, target_kind
from grayctl.faults.spec import EXPIRY_MARGIN_S, MAX_EXPIRE_AFTER_S, expiry_problem
from grayctl.faults.validate import parse_param, to_plain, validate_parameters
from grayctl.promql import syntax_errors
from grayctl.source import (
    Checker,
    FieldPath,
    Positions,
    ValueProblem,
    display_path,
    format_path,
    load_yaml_document,
    parse_bool,
    parse_choice,
    parse_identifier,
    parse_int,
    parse_text,
    shell_syntax_in,
    suggest,
)
from grayctl.topology import Topology, find_topology, validate_topology
from grayctl.units import (
    Duration,
    Percent,
    RequestRate,
    UnitError,
    parse_duration,
    parse_percent,
    parse_request_rate,
)

__all__ = [
    "Experiment",
    "Workload",
    "Schedule",
    "Fault",
    "Scope",
    "Metrics",
    "Slo",
    "Check",
    "Tolerance",
    "PHASES",
    "DEFAULTS",
    "load_experiment",
    "validate_experiment",
]

PHASES = ("warmup", "baseline", "fault", "recovery")
CHECK_PHASES = PHASES + ("all",)
ARRIVALS = ("constant", "poisson")

DEFAULTS: dict[str, Any] = {
    "lab": "local",
    "workload": {"rate": "50/s", "arrival": "poisson", "seed": 1, "connections": 32,
                 "keep_up": {"rate": "1%", "send_lateness_p99": "100ms"}},
    "schedule": {"warmup": "10s", "baseline": "30s", "fault": "60s", "recovery": "30s"},
    "metrics": {"interval": "1s"},
    "repetitions": 1,
    "slo": {"latency_p99": "auto", "error_rate": "auto"},
    "fault": {"offset": "0s", "backend": "auto"},
}

TOP_KEYS = ("name", "description", "hypothesis", "lab", "topology", "workload", "schedule",
            "chaos_injection", "chaos_injections", "metrics", "repetitions", "slo", "checks")
FAULT_KEYS = ("id", "type", "target_service", "parameters", "scope", "offset", "duration", "backend")
LAB_RE = re.compile(r"\A[A-Za-z0-9._/][A-Za-z0-9._/-]{0,254}\Z")
METRIC_NAME_RE = re.compile(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,62}\Z")
RELATIVE_RE = re.compile(r"\A(?P<op><=|>=)?\s*(?P<num>[0-9]+(?:\.[0-9]+)?)x\Z")


# -- model ------------------------------------------------------------------------

@dataclass(frozen=True)
class KeepUp:
    """How far the load generator may miss its schedule before the run is ``invalid-load``."""

    rate: Percent  # |achieved - scheduled| / scheduled
    send_lateness_p99: Duration  # p99 of actual - intended send time

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate.canonical(), "send_lateness_p99": self.send_lateness_p99.canonical()}

    def bound(self) -> dict[str, float]:
        """As the generator's ``keep_up_bound`` (grayctl.workload.config)."""
        return {"rate_pct": self.rate.value, "send_error_p99_ms": self.send_lateness_p99.seconds * 1000.0}


@dataclass(frozen=True)
class Workload:
    rate: RequestRate
    arrival: str
    mix: dict[str, Percent]
    seed: int
    connections: int
    keep_up: KeepUp

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate.canonical(), "arrival": self.arrival,
                "mix": {k: v.canonical() for k, v in self.mix.items()}, "seed": self.seed,
                "connections": self.connections, "keep_up": self.keep_up.to_dict()}


@dataclass(frozen=True)
class Schedule:
    warmup: Duration
    baseline: Duration
    fault: Duration
    recovery: Duration

    def phases(self) -> list[tuple[str, float, float]]:
        """(phase, start_s, end_s) from the start of the run, in order."""
        out, t = [], 0.0
        for name in PHASES:
            d = getattr(self, name).seconds
            out.append((name, t, t + d))
            t += d
        return out

    def start_of(self, phase: str) -> float:
        return {n: s for n, s, _ in self.phases()}[phase]

    @property
    def total_s(self) -> float:
        return sum(getattr(self, n).seconds for n in PHASES)

    def to_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n).canonical() for n in PHASES}


@dataclass(frozen=True)
class Scope:
    peers: tuple[str, ...] | str  # "all" or service/component names
    direction: str | None  # None for non-network faults
    fraction: Percent
    widen: str | None = None  # "process": a fault on a component inside a shared process hits all of it
    realise: str | None = None  # "host" | "runtime": the realisation asked for (grayctl.faults.realise)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.direction is not None:
            out["peers"] = self.peers if self.peers == "all" else list(self.peers)
            out["direction"] = self.direction
        out["fraction"] = self.fraction.canonical()
        if self.widen is not None:
            out["widen"] = self.widen
        if self.realise is not None:
            out["realise"] = self.realise
        return out


@dataclass(frozen=True)
class Fault:
    """One injection: what, where (``target_service`` as written, ``service`` as resolved), when, how."""

    id: str
    type: str
    target_service: str
    service: str
    parameters: dict[str, Any]  # parsed values (units.* objects), every default filled
    scope: Scope
    offset: Duration
    duration: Duration
    backend: str
    start_s: float  # from the start of the run
    end_s: float

    @property
    def layer(self) -> str:
        return CATALOG[self.type].layer

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "target_service": self.target_service,
                "parameters": to_plain(self.parameters), "scope": self.scope.to_dict(),
                "offset": self.offset.canonical(), "duration": self.duration.canonical(),
                "backend": self.backend}


@dataclass(frozen=True)
class Metrics:
    interval: Duration
    extra: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"interval": self.interval.canonical(), "extra": dict(self.extra)}


@dataclass(frozen=True)
class Slo:
    """Service-level objective; None means "auto" (derived from the baseline phase at analysis time)."""

    latency_p99: Duration | None
    error_rate: Percent | None

    def to_dict(self) -> dict[str, Any]:
        return {"latency_p99": self.latency_p99.canonical() if self.latency_p99 else "auto",
                "error_rate": self.error_rate.canonical() if self.error_rate else "auto"}


@dataclass(frozen=True)
class Tolerance:
    """``max``/``min``: absolute bound on the query's value; ``relative_to_baseline``: ratio to the baseline."""

    kind: str  # max | min | relative_to_baseline
    value: float
    op: str = "<="  # for relative_to_baseline
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "relative_to_baseline":
            return {self.kind: f"{self.op}{_num(self.value)}x"}
        return {self.kind: self.text if self.text else self.value}


@dataclass(frozen=True)
class Check:
    name: str
    query: str
    phase: str
    tolerance: Tolerance
    fail_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "query": self.query, "phase": self.phase,
                "tolerance": self.tolerance.to_dict(), "fail_run": self.fail_run}


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    hypothesis: str
    lab: str
    topology_ref: str
    topology: Topology
    workload: Workload
    schedule: Schedule
    faults: tuple[Fault, ...]
    metrics: Metrics
    repetitions: int
    slo: Slo
    checks: tuple[Check, ...]
    source: Path | None = None
    # What validation could not check, said by ``grayctl validate`` and ``plan`` (e.g. no promtool).
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The resolved experiment in file form: every default filled in, units canonical."""
        return {
            "name": self.name,
            "description": self.description,
            "hypothesis": self.hypothesis,
            "lab": self.lab,
            "topology": self.topology_ref,
            "workload": self.workload.to_dict(),
            "schedule": self.schedule.to_dict(),
            "chaos_injections": [f.to_dict() for f in self.faults],
            "metrics": self.metrics.to_dict(),
            "repetitions": self.repetitions,
            "slo": self.slo.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
        }


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


# -- loading ----------------------------------------------------------------------

def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file (and the topology it names). Raises InputError."""
    data, positions = load_yaml_document(path)
    return validate_experiment(data, positions, str(path), Path(path).resolve().parent)


def validate_experiment(data: dict[str, Any], positions: Positions, file: str,
                        base_dir: Path | None = None) -> Experiment:
    """Validate loaded experiment data; raise InputError listing every problem (with the topology's, if any)."""
    return _ExperimentValidator(data, positions, file, base_dir).run()


def default_name(file: str) -> str:
    """The file stem made into a valid name: 'My Test.yaml' -> 'my-test'."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", Path(file).stem.lower()).strip("-._")[:63]
    return stem or "experiment"


class _ExperimentValidator:
    def __init__(self, data: dict[str, Any], positions: Positions, file: str, base_dir: Path | None) -> None:
        self.data = data
        self.ck = Checker(file, positions)
        self.file = file
        self.base_dir = base_dir
        self.topology_problems: list[Problem] = []
        self.queries: list[tuple[FieldPath, str]] = []  # PromQL to check with Prometheus's parser

    def run(self) -> Experiment:
        ck = self.ck
        top = ck.mapping(self.data, (), allowed=TOP_KEYS, required=("topology",))
        assert top is not None
        name = ck.field(top, (), "name", lambda v: parse_identifier(v, what="experiment name"), None) \
            or default_name(self.file)
        description = ck.field(top, (), "description", parse_text, "") or ""
        hypothesis = ck.field(top, (), "hypothesis", parse_text, "") or ""
        lab = ck.field(top, (), "lab", _parse_lab, DEFAULTS["lab"]) or DEFAULTS["lab"]
        topo_ref = top.get("topology")
        topology = self._topology(top)
        schedule = self._schedule(top.get("schedule"))
        workload = self._workload(top.get("workload"), topology)
        faults = self._faults(top, topology, schedule)
        metrics = self._metrics(top.get("metrics"))
        repetitions = ck.field(top, (), "repetitions", parse_int(1, 1000, "a number of repetitions"),
                               DEFAULTS["repetitions"])
        slo = self._slo(top.get("slo"))
        checks = self._checks(top.get("checks"))
        warnings = self._promql_syntax()
        if ck.problems or self.topology_problems:
            ck.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
            raise InputError(ck.problems + self.topology_problems)
        assert topology is not None and schedule is not None and workload is not None
        return Experiment(name, description, hypothesis, lab, topo_ref, topology, workload, schedule,
                          tuple(faults), metrics, repetitions, slo, tuple(checks),
                          Path(self.file), warnings)

    # -- topology -----------------------------------------------------------------
    def _topology(self, top: dict[str, Any]) -> Topology | None:
        ck = self.ck
        if "topology" not in top:
            return None
        ref = top["topology"]
        path: FieldPath = ("topology",)
        if not isinstance(ref, str):
            ck.problem(path, "expected a topology name or file path", expected="e.g. topology: three-tier")
            return None
        try:
            tpath = find_topology(ref, self.base_dir)
        except ValueProblem as err:
            ck.problem(path, str(err), expected=err.expected, suggestion=err.suggestion)
            return None
        try:
            shown = display_path(tpath)
            data, positions = load_yaml_document(shown)
            return validate_topology(data, positions, shown, tpath.resolve())
        except InputError as err:
            ck.problem(path, f"topology {ref!r} is invalid ({len(err.problems)} problem(s) in {shown})",
                       expected=f"a valid topology file (check it with: grayctl validate {shown})")
            self.topology_problems = err.problems
            return None

    # -- schedule -------------------------------------------------------------------
    def _schedule(self, raw: Any) -> Schedule | None:
        ck = self.ck
        d = DEFAULTS["schedule"]
        path: FieldPath = ("schedule",)
        m = {} if raw is None and "schedule" not in self.data else ck.mapping(raw, path, allowed=PHASES)
        if m is None:
            return Schedule(*(parse_duration(d[p]) for p in PHASES))
        values = []
        for phase in PHASES:
            v = ck.field(m, path, phase, _nonneg_duration(max_s=7 * 24 * 3600), parse_duration(d[phase]))
            values.append(v if v is not None else parse_duration(d[phase]))
        sched = Schedule(*values)
        if sched.fault.seconds <= 0 and "fault" in m:
            ck.problem(path + ("fault",), "the fault phase must be longer than 0s", expected="a positive duration")
        return sched

    # -- workload ---------------------------------------------------------------------
    def _workload(self, raw: Any, topology: Topology | None) -> Workload | None:
        ck = self.ck
        d = DEFAULTS["workload"]
        path: FieldPath = ("workload",)
        m = {} if "workload" not in self.data else ck.mapping(
            raw, path, allowed=("rate", "arrival", "mix", "seed", "connections", "keep_up"))
        m = m if m is not None else {}
        rate = ck.field(m, path, "rate", _positive_request_rate, parse_request_rate(d["rate"]))
        arrival = ck.field(m, path, "arrival", parse_choice(ARRIVALS, "arrival process"), d["arrival"])
        seed = ck.field(m, path, "seed", parse_int(0, 2**63 - 1, "an integer seed"), d["seed"])
        conns = ck.field(m, path, "connections", parse_int(1, 65535, "a connection count"), d["connections"])
        mix: dict[str, Percent] = topology.default_mix() if topology else {}
        if "mix" in m:
            mix = self._mix(m["mix"], path + ("mix",), topology) or mix
        keep_up = self._keep_up(m.get("keep_up"), path + ("keep_up",), "keep_up" in m)
        if rate is None or arrival is None or seed is None or conns is None or keep_up is None:
            return None
        return Workload(rate, arrival, mix, seed, conns, keep_up)

    def _keep_up(self, raw: Any, path: FieldPath, given: bool) -> KeepUp | None:
        ck = self.ck
        d = DEFAULTS["workload"]["keep_up"]
        m = ck.mapping(raw, path, allowed=("rate", "send_lateness_p99")) if given else {}
        m = m if m is not None else {}
        rate = ck.field(m, path, "rate", parse_percent, parse_percent(d["rate"]))
        late = ck.field(m, path, "send_lateness_p99", _nonneg_duration(max_s=60.0), parse_duration(d["send_lateness_p99"]))
        return KeepUp(rate, late) if rate is not None and late is not None else None

    def _mix(self, raw: Any, path: FieldPath, topology: Topology | None) -> dict[str, Percent] | None:
        ck = self.ck
        if not isinstance(raw, dict) or not raw:
            ck.problem(path, "expected a mapping of request types to percentages",
                       expected="e.g. {read-home-timeline: 60%, compose-post: 40%}")
            return None
        known = list(topology.requests) if topology else None
        out: dict[str, Percent] = {}
        ok = True
        for key, value in raw.items():
            if known is not None and key not in known:
                ck.problem(path + (key,), f"unknown request type {key!r} for topology {topology.name!r}",
                           at_key=True, expected="one of: " + ", ".join(known), suggestion=suggest(key, known))
                ok = False
                continue
            pct = ck.convert(value, path + (key,), parse_percent)
            if pct is None:
                ok = False
            else:
                out[key] = pct
        total = sum(p.value for p in out.values())
        if ok and abs(total - 100.0) > 1e-6:
            ck.problem(path, f"the request mix sums to {round(total, 6):g}%, not 100%",
                       expected="percentages that add up to 100%")
            return None
        return out if ok else None

    # -- faults ----------------------------------------------------------------------
    def _faults(self, top: dict[str, Any], topology: Topology | None, schedule: Schedule | None) -> list[Fault]:
        ck = self.ck
        items: list[tuple[Any, FieldPath]] = []
        if "chaos_injection" in top and "chaos_injections" in top:
            ck.problem(("chaos_injections",), "both 'chaos_injection' and 'chaos_injections' are given",
                       at_key=True, expected="one of them: chaos_injection (a single fault) or "
                                             "chaos_injections (a list)")
            return []
        if "chaos_injection" in top:
            items.append((top["chaos_injection"], ("chaos_injection",)))
        elif "chaos_injections" in top:
            seq = ck.sequence(top["chaos_injections"], ("chaos_injections",), what="a list of faults")
            items += [(raw, ("chaos_injections", i)) for i, raw in enumerate(seq or [])]
        out: list[Fault] = []
        seen: dict[str, FieldPath] = {}
        for i, (raw, path) in enumerate(items):
            fault = self._fault(raw, path, i, topology, schedule)
            if fault is None:
                continue
            if fault.id in seen:
                ck.problem(path + ("id",), f"duplicate fault id {fault.id!r}", expected="a unique id per fault")
                continue
            seen[fault.id] = path
            out.append(fault)
        return out

    def _fault(self, raw: Any, path: FieldPath, index: int, topology: Topology | None,
               schedule: Schedule | None) -> Fault | None:
        ck = self.ck
        m = ck.mapping(raw, path, allowed=FAULT_KEYS, required=("type", "target_service"),
                       what="a fault {type, target_service, parameters, ...}")
        if m is None:
            return None
        before = len(ck.problems)
        fid = ck.field(m, path, "id", lambda v: parse_identifier(v, what="fault id"), f"f{index + 1}")
        ftype = ck.field(m, path, "type", _parse_fault_type) if "type" in m else None
        target = None
        service = None
        if "target_service" in m:
            target = ck.convert(m["target_service"], path + ("target_service",),
                                lambda v: parse_identifier(v, what="service name"))
            if target is not None and topology is not None:
                service = ck.convert(target, path + ("target_service",), topology.resolve_target)
        params = None
        if ftype is not None:
            params = validate_parameters(ftype, m.get("parameters"), ck, path + ("parameters",))
            if params is not None and topology is not None and ftype == "network-partition":
                self._check_peers(params.get("peers"), path + ("parameters", "peers"), topology, target)
        scope = self._scope(m.get("scope"), path + ("scope",), ftype, topology, target) if ftype else None
        if ftype and target and service and scope is not None and topology is not None:
            # Where the target lives decides how the fault is realised; refuse here, with the line,
            # what would otherwise be widened silently to the whole process.
            why = realisation_problem(ftype, target_kind(topology.is_network_hop(target)), scope.widen,
                                      target=target, service=service, topology=topology.name, realise=scope.realise)
            if why:
                at = ("scope", "realise") if scope.realise is not None else ("target_service",)
                ck.problem(path + at, why[0], expected=why[1])
        offset = ck.field(m, path, "offset", _nonneg_duration(), parse_duration(DEFAULTS["fault"]["offset"]))
        backend = ck.field(m, path, "backend", parse_choice(BACKENDS, "backend"), DEFAULTS["fault"]["backend"])
        if ftype is not None and backend not in (None, "auto") and not CATALOG[ftype].is_network:
            ck.problem(path + ("backend",), f"backend {backend!r} applies to network faults only, not {ftype}",
                       expected="backend: auto (or leave it out)")
        duration = None
        if schedule is not None and offset is not None:
            window = schedule.fault.seconds
            if offset.seconds >= window and schedule.fault.seconds > 0:
                ck.problem(path + ("offset",), f"offset {offset} is outside the fault phase ({schedule.fault})",
                           expected=f"an offset below {schedule.fault}, the length of schedule.fault")
            rest = Duration(max(window - offset.seconds, 0.0))
            duration = ck.field(m, path, "duration", _positive_duration, rest)
            if duration is not None and "duration" in m and offset.seconds + duration.seconds > window + 1e-9:
                ck.problem(path + ("duration",),
                           f"the fault window (offset {offset} + duration {duration}) ends after the fault phase "
                           f"({schedule.fault})",
                           expected=f"offset + duration <= {schedule.fault} (schedule.fault)")
        if duration is not None and (why := expiry_problem(duration.seconds)):
            # the window decides the on-host expiry (grayctl/plan/build.py): bounded here, at its line
            where = path + ("duration",) if "duration" in m else ("schedule", "fault")
            ck.problem(where, f"fault window {duration}: {why}",
                       expected=f"a fault window of at most {Duration(MAX_EXPIRE_AFTER_S - EXPIRY_MARGIN_S)}")
        if ftype == "process-pause" and params is not None and duration is not None:
            self._check_pause_window(params, duration, path + ("parameters",))
        if len(ck.problems) > before or None in (fid, ftype, target, service, params, scope, offset, duration,
                                                  backend) or schedule is None:
            return None
        start = schedule.start_of("fault") + offset.seconds
        return Fault(fid, ftype, target, service, params, scope, offset, duration, backend, start,
                     start + duration.seconds)

    def _check_pause_window(self, params: dict[str, Any], window: Duration, path: FieldPath) -> None:
        pause = params.get("duration")
        if pause is not None and pause.seconds > window.seconds + 1e-9:
            self.ck.problem(path + ("duration",), f"pause {pause} is longer than the fault's window ({window})",
                            expected=f"at most {window}")
        st = params.get("stutter")
        if st and st.get("every") is not None and st["every"].seconds > window.seconds + 1e-9:
            self.ck.problem(path + ("stutter", "every"), f"period {st['every']} is longer than the fault's window "
                            f"({window})", expected=f"at most {window}")

    def _check_peers(self, peers: Any, path: FieldPath, topology: Topology, target: str | None) -> None:
        if peers is None or peers == "all":
            return
        for i, peer in enumerate(peers):
            p = path + (i,) if (path + (i,)) in self.ck.positions.values else path
            try:
                svc = topology.resolve_target(peer)
            except ValueProblem as err:
                self.ck.problem(p, str(err), expected=err.expected, suggestion=err.suggestion)
                continue
            if target is not None and peer == target:
                self.ck.problem(p, f"peer {peer!r} is the fault's own target", expected="other services")
            elif target is not None and target in topology.names() and svc == topology.resolve_target(target) \
                    and topology.is_network_hop(target):
                self.ck.problem(p, f"peer {peer!r} runs in the same service as the target", expected="other services")

    def _scope(self, raw: Any, path: FieldPath, ftype: str, topology: Topology | None,
               target: str | None) -> Scope | None:
        ck = self.ck
        ft = CATALOG[ftype]
        allowed = ft.scope_fields
        if raw is None:
            raw = {}
        if isinstance(raw, dict):
            for key in ("peers", "direction"):
                if key in raw and key not in allowed:
                    why = ("set them in parameters.peers/direction" if ftype == "network-partition"
                           else "they apply to network faults only")
                    ck.problem(path + (key,), f"scope.{key} is not used by {ftype}: {why}", at_key=True,
                               expected="scope fields: " + ", ".join(allowed))
            raw = {k: v for k, v in raw.items() if k not in ("peers", "direction") or k in allowed}
        m = ck.mapping(raw, path, allowed=allowed, what="a scope {peers, direction, fraction, widen, realise}")
        if m is None:
            return None
        specs = {p.name: p for p in SCOPE_PARAMS}
        values: dict[str, Any] = {}
        for key in ("peers", "direction", "fraction"):
            if key not in allowed:
                continue
            spec = specs[key]
            values[key] = ck.field(m, path, key, lambda v, s=spec: parse_param(s, v), spec.default)
        widen = ck.field(m, path, "widen", lambda v: parse_param(specs["widen"], v), None) if "widen" in m else None
        realise = (ck.field(m, path, "realise", lambda v: parse_param(specs["realise"], v), None)
                   if "realise" in m else None)
        if "peers" in allowed and topology is not None and values.get("peers") not in (None, "all"):
            self._check_peers(values["peers"], path + ("peers",), topology, target)
        if any(values.get(k) is None for k in allowed if k not in ("widen", "realise")) \
                or ("widen" in m and widen is None) or ("realise" in m and realise is None):
            return None
        peers = values.get("peers", "all")
        return Scope(peers if peers == "all" else tuple(peers), values.get("direction"), values["fraction"], widen,
                     realise)

    # -- metrics, slo, checks ------------------------------------------------------------
    def _metrics(self, raw: Any) -> Metrics:
        ck = self.ck
        path: FieldPath = ("metrics",)
        default = Metrics(parse_duration(DEFAULTS["metrics"]["interval"]), {})
        if "metrics" not in self.data:
            return default
        m = ck.mapping(raw, path, allowed=("interval", "extra"))
        if m is None:
            return default
        interval = ck.field(m, path, "interval", _interval, default.interval) or default.interval
        extra: dict[str, str] = {}
        if "extra" in m:
            em = ck.mapping(m["extra"], path + ("extra",), allowed=list(m["extra"] or {})
                            if isinstance(m["extra"], dict) else (), what="a mapping of name: PromQL query")
            for key, q in (em or {}).items():
                kp = path + ("extra", key)
                if not METRIC_NAME_RE.match(key):
                    shell = shell_syntax_in(key)
                    ck.problem(kp, f"metric name {key!r} is not valid" + (f" (contains {shell})" if shell else ""),
                               at_key=True, expected="a Prometheus-style name: letters, digits, '_'")
                    continue
                query = ck.convert(q, kp, _parse_query)
                if query is not None:
                    extra[key] = query
                    self.queries.append((kp, query))
        return Metrics(interval, extra)

    def _slo(self, raw: Any) -> Slo:
        ck = self.ck
        path: FieldPath = ("slo",)
        if "slo" not in self.data:
            return Slo(None, None)
        m = ck.mapping(raw, path, allowed=("latency_p99", "error_rate"))
        if m is None:
            return Slo(None, None)
        lat = ck.field(m, path, "latency_p99", _auto(_positive_duration), "auto")
        err = ck.field(m, path, "error_rate", _auto(parse_percent), "auto")
        return Slo(None if lat in (None, "auto") else lat, None if err in (None, "auto") else err)

    def _checks(self, raw: Any) -> list[Check]:
        ck = self.ck
        path: FieldPath = ("checks",)
        if "checks" not in self.data:
            return []
        seq = ck.sequence(raw, path, what="a list of checks")
        out: list[Check] = []
        names: set[str] = set()
        for i, item in enumerate(seq or []):
            cp = path + (i,)
            m = ck.mapping(item, cp, allowed=("name", "query", "phase", "tolerance", "fail_run"),
                           required=("name", "query", "tolerance"), what="a check {name, query, phase, tolerance}")
            if m is None:
                continue
            name = ck.field(m, cp, "name", lambda v: parse_identifier(v, what="check name"))
            if name is not None and name in names:
                ck.problem(cp + ("name",), f"duplicate check name {name!r}", expected="unique check names")
            query = ck.field(m, cp, "query", _parse_query)
            if query is not None:
                self.queries.append((cp + ("query",), query))
            phase = ck.field(m, cp, "phase", parse_choice(CHECK_PHASES, "phase"), "all")
            tol = self._tolerance(m.get("tolerance"), cp + ("tolerance",)) if "tolerance" in m else None
            fail_run = ck.field(m, cp, "fail_run", parse_bool, False)
            if None in (name, query, phase, tol, fail_run):
                continue
            names.add(name)
            out.append(Check(name, query, phase, tol, fail_run))
        return out

    def _promql_syntax(self) -> tuple[str, ...]:
        """Every query (metrics.extra, checks) through Prometheus's own parser: a problem per bad one,
        at the line of the file where the parser stopped when the query is a literal block (``|``)."""
        errors, unchecked = syntax_errors([q for _, q in self.queries])
        for i, err in sorted(errors.items()):
            path, query = self.queries[i]
            at = self._in_block(path, query, err.line, err.column)
            if at is None:
                self.ck.problem(path, err.message, expected="a PromQL expression")
            else:
                self.ck.problems.append(Problem(err.message, file=self.file, line=at[0], column=at[1],
                                                path=format_path(path), expected="a PromQL expression"))
        return (unchecked,) if unchecked else ()

    def _in_block(self, path: FieldPath, query: str, line: int | None, col: int | None) -> tuple[int, int] | None:
        """The file position of ``line:col`` of a query written as a literal block scalar, else None."""
        pos = self.ck.positions.value(path)
        if pos is None or line is None or col is None:
            return None
        content = query.rstrip("\n").split("\n")
        if line > len(content):  # "unexpected end of input" is past the block's last line: point at its end
            line, col = len(content), len(content[-1]) + 1
        try:
            lines = Path(self.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeError):
            return None
        if pos[0] + line > len(lines) or not lines[pos[0] - 1][pos[1] - 1:].startswith("|"):
            return None
        first = lines[pos[0]]  # the block's content starts on the line after '|', at its indentation
        return pos[0] + line, len(first) - len(first.lstrip(" ")) + col

    def _tolerance(self, raw: Any, path: FieldPath) -> Tolerance | None:
        ck = self.ck
        kinds = ("max", "min", "relative_to_baseline")
        m = ck.mapping(raw, path, allowed=kinds, what="a tolerance {max | min | relative_to_baseline}")
        if m is None:
            return None
        given = [k for k in kinds if k in m]
        if len(given) != 1:
            if given or not [k for k in m if k not in kinds]:
                ck.problem(path, "a tolerance needs exactly one of max, min or relative_to_baseline"
                           + (f" (got {', '.join(given)})" if given else ""),
                           expected="e.g. {max: 250ms} or {relative_to_baseline: <=1.5x}")
            return None
        kind = given[0]
        if kind == "relative_to_baseline":
            parsed = ck.convert(m[kind], path + (kind,), _parse_relative)
            return Tolerance(kind, parsed[1], parsed[0]) if parsed else None
        value = ck.convert(m[kind], path + (kind,), _parse_bound)
        if value is None:
            return None
        text = m[kind] if isinstance(m[kind], str) else ""
        return Tolerance(kind, value, "<=" if kind == "max" else ">=", text)


# -- value parsers -------------------------------------------------------------------

def _parse_fault_type(value: Any) -> str:
    if isinstance(value, str) and value in CATALOG:
        return value
    if isinstance(value, str):
        shell = shell_syntax_in(value)
        msg = f"unknown fault type {value!r}" + (f" (contains shell syntax: {shell})" if shell else "")
        raise ValueProblem(msg, "one of: " + ", ".join(FAULT_TYPES), suggest(value, FAULT_TYPES))
    raise ValueProblem("expected a fault type name", "one of: " + ", ".join(FAULT_TYPES))


def _parse_lab(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueProblem("expected a lab (inventory) name or path", "e.g. local, or inventories/my-lab")
    if LAB_RE.match(value) and ".." not in value.split("/"):
        return value
    shell = shell_syntax_in(value)
    if shell:
        raise ValueProblem(f"lab {value!r} contains shell syntax ({shell})", "an inventory name or a plain path")
    raise ValueProblem(f"lab {value!r} is not a valid inventory name or path",
                       "letters, digits, '.', '_', '-' and '/' (no '..')")


def _nonneg_duration(max_s: float | None = None) -> Any:
    def parse(value: Any) -> Duration:
        d = parse_duration(value)
        if max_s is not None and d.seconds > max_s:
            raise ValueProblem(f"{value!r} is too long", f"at most {Duration(max_s)}")
        return d

    return parse


def _positive_duration(value: Any) -> Duration:
    d = parse_duration(value)
    if d.seconds <= 0:
        raise ValueProblem(f"{value!r} must be greater than 0", "a positive duration, e.g. 30s")
    return d


def _interval(value: Any) -> Duration:
    d = parse_duration(value)
    if not 0.1 <= d.seconds <= 60:
        raise ValueProblem(f"interval {value!r} is out of range", "from 100ms to 60s")
    return d


def _positive_request_rate(value: Any) -> RequestRate:
    r = parse_request_rate(value)
    if r.per_second <= 0:
        raise ValueProblem(f"rate {value!r} must be greater than 0", "a positive rate, e.g. 50/s")
    if r.per_second > 1_000_000:
        raise ValueProblem(f"rate {value!r} is too high", "at most 1000000/s")
    return r


def _auto(parse: Any) -> Any:
    def inner(value: Any) -> Any:
        if value == "auto":
            return "auto"
        return parse(value)

    return inner


def _parse_query(value: Any) -> str:
    q = parse_text(value)
    if not q.strip():
        raise ValueProblem("empty query", "a PromQL expression")
    return q


def _parse_relative(value: Any) -> tuple[str, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueProblem(f"missing unit: {value!r} needs an 'x'", "a ratio like <=1.5x or >=0.8x")
    m = RELATIVE_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueProblem(f"{value!r} is not a ratio to the baseline", "a ratio like <=1.5x or >=0.8x")
    ratio = float(m.group("num"))
    if ratio <= 0:
        raise ValueProblem(f"{value!r}: the ratio must be greater than 0", "a ratio like <=1.5x")
    return m.group("op") or "<=", ratio


def _parse_bound(value: Any) -> float:
    """A bound for a query's value: a number, a duration (-> seconds) or a percentage (-> fraction)."""
    if isinstance(value, bool):
        raise ValueProblem("expected a number", "a number, a duration (250ms) or a percentage (1%)")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueProblem("expected a finite number", "a number")
        return float(value)
    if isinstance(value, str):
        for parse, conv in ((parse_duration, lambda d: d.seconds), (parse_percent, lambda p: p.fraction)):
            try:
                return conv(parse(value))
            except UnitError:
                pass
    raise ValueProblem(f"{value!r} is not a number, duration or percentage",
                       "a number, a duration (250ms, in seconds) or a percentage (1%, as a fraction)")

