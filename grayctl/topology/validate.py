"""Validating topology data: YAML (with positions) in, a Topology out, or one InputError listing every problem.

Map:
  validate_topology(data, positions, file, path) -> Topology   the whole file, application included
  _TopologyValidator   walks one file: the top level and ``defaults``; the application, inline or
                       read by ``include.load_application`` (components, endpoints, call steps,
                       requests); ``decomposition``/``placement`` via ``placement.parse_services``;
                       then, when all of that is clean, call cycles via ``graph.find_cycle``
  _parse_dist, _part, _positive_duration   value parsers for the fields above

Problems are collected on ``source.Checker``s (one per file, with its positions) and raised
together, the topology's first (by line), then the application file's. The file format is
documented in docs/topology-format.md. Component and endpoint names use ``[a-z0-9][a-z0-9_-]*``
(no dots) so that ``component.endpoint`` is unambiguous.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from grayctl.errors import InputError, Problem
from grayctl.source import (
    Checker,
    FieldPath,
    Positions,
    ValueProblem,
    parse_choice,
    parse_identifier,
    parse_int,
    parse_text,
    suggest,
)
from grayctl.topology.graph import find_cycle
from grayctl.topology.include import load_application
from grayctl.topology.model import (
    Call,
    Component,
    Concurrency,
    Dist,
    Endpoint,
    Parallel,
    RequestType,
    Step,
    Store,
    Topology,
)
from grayctl.topology.placement import parse_services
from grayctl.units import Duration, parse_duration, parse_percent, parse_size

__all__ = ["validate_topology"]

PART_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,62}\Z")
PART_FORM = "lowercase letters, digits, '_' or '-' (no dots), starting with a letter or digit"
DISTS = ("constant", "exponential", "lognormal", "normal")

DEFAULT_TIMEOUT = "1s"
DEFAULT_RETRIES = 0
DEFAULT_BACKOFF = "10ms"
DEFAULT_WORKERS = 32
DEFAULT_QUEUE = 128
DEFAULT_CACHE_LATENCY = "100us"
APP_FILE_KEYS = ("name", "description", "defaults", "components", "requests")


def _part(value: Any, what: str) -> str:
    if isinstance(value, str) and PART_RE.match(value):
        return value
    parse_identifier(value, what=what)  # raises the shell-syntax / not-a-name messages
    raise ValueProblem(f"{what} {value!r} may not contain '.'", PART_FORM)


def _parse_dist(ck: Checker, raw: Any, path: FieldPath) -> Dist | None:
    """A duration string (constant) or {dist, mean, stddev | p99}."""
    if not isinstance(raw, dict):
        d = ck.convert(raw, path, parse_duration)
        return Dist("constant", d) if d is not None else None
    m = ck.mapping(raw, path, allowed=("dist", "mean", "stddev", "p99"), required=("dist", "mean"),
                   what="a duration or a distribution {dist, mean, stddev|p99}")
    if m is None:
        return None
    kind = ck.field(m, path, "dist", parse_choice(DISTS, "distribution"))
    mean = ck.field(m, path, "mean", parse_duration)
    stddev = ck.field(m, path, "stddev", parse_duration, None)
    p99 = ck.field(m, path, "p99", parse_duration, None)
    if kind is None or mean is None:
        return None
    if kind in ("constant", "exponential") and (stddev is not None or p99 is not None):
        ck.problem(path, f"a {kind} distribution takes only 'mean'", expected="dist and mean")
    if kind == "normal" and stddev is None:
        ck.problem(path, "a normal distribution needs 'stddev'", expected="stddev: a duration")
    if kind == "normal" and p99 is not None:
        ck.problem(path + ("p99",), "a normal distribution is given by mean and stddev", expected="stddev only")
    if kind == "lognormal" and (stddev is None) == (p99 is None):
        ck.problem(path, "a lognormal distribution needs exactly one of 'stddev' or 'p99'", expected="stddev or p99")
    if kind == "lognormal" and p99 is not None and p99.seconds <= mean.seconds:
        ck.problem(path + ("p99",), f"p99 {p99} must be above the mean {mean}", expected="p99 > mean")
    if mean.seconds <= 0 and kind != "constant":
        ck.problem(path + ("mean",), "mean must be greater than 0", expected="a positive duration")
    return Dist(kind, mean, stddev, p99)


class _TopologyValidator:
    """Validates one topology file (and the application file it includes, if any).

    Two checkers: ``topo_ck`` for the topology file, ``app_ck`` for the file holding the
    application (the same checker when the application is inline). ``self.ck`` is whichever
    file is being walked, and ``self.app_root`` the field path of the application in it.
    """

    def __init__(self, data: dict[str, Any], positions: Positions, file: str, path: Path | None) -> None:
        self.data = data
        self.topo_ck = Checker(file, positions)
        self.app_ck = self.topo_ck
        self.ck = self.topo_ck
        self.app_root: FieldPath = ("application",)
        self.app_file: Path | None = None
        self.app_display: str | None = None
        self.path = path
        self.file = file
        self.endpoint_names: dict[str, list[str]] = {}  # component -> endpoint names, set by _components

    def run(self) -> Topology:
        ck = self.topo_ck
        if isinstance(self.data, dict) and "application" not in self.data and "components" in self.data:
            ck.problem(("components",), "this is an application file (components and requests), not a topology",
                       at_key=True, expected="a topology that includes it: application: {from: <this file>}, "
                                             "plus decomposition and placement")
            ck.raise_if_problems()
        top = ck.mapping(self.data, (), allowed=("name", "description", "defaults", "application",
                                                 "decomposition", "placement", "ports"),
                         required=("application", "decomposition", "placement"))
        assert top is not None
        stem = Path(self.file).stem
        name = ck.field(top, (), "name", lambda v: parse_identifier(v, what="topology name"), None)
        if name is None:
            name = stem if re.match(r"\A[a-z0-9][a-z0-9._-]{0,62}\Z", stem) else "topology"
        description = ck.field(top, (), "description", parse_text, "")
        app_raw = top.get("application")
        walk_app = "application" in top
        if isinstance(app_raw, dict) and "from" in app_raw:
            if "defaults" in top:
                ck.problem(("defaults",), "'defaults' next to 'application: {from: ...}': defaults belong in the "
                           "application file, so every decomposition of it gets the same timeouts and pools",
                           at_key=True, expected="a 'defaults' block in the application file")
            app_raw = self._include(app_raw)
            walk_app = app_raw is not None
        else:
            self._defaults(top.get("defaults"))
        components: dict[str, Component] = {}
        requests: dict[str, RequestType] = {}
        if walk_app:
            self.ck = self.app_ck
            if self.app_ck is not self.topo_ck and isinstance(app_raw, dict):
                self.ck.field(app_raw, (), "name", lambda v: parse_identifier(v, what="application name"), None)
                self.ck.field(app_raw, (), "description", parse_text, "")
                self._defaults(app_raw.get("defaults"))
            components = self._components(app_raw)
            requests = self._requests(app_raw, components)
            self.ck = self.topo_ck
        # Without a readable application every component name would be "unknown": say nothing more.
        services = parse_services(self.topo_ck, top, list(self.endpoint_names), self.app_display) if walk_app else {}
        if not self.topo_ck.problems and not self.app_ck.problems:
            self._check_cycles(components)
        self._raise_if_problems()
        service_of = {c: s.name for s in services.values() for c in s.components}
        return Topology(name, description or "", components, requests, services, self.path, service_of,
                        self.app_file)

    def _raise_if_problems(self) -> None:
        """One InputError: the topology's problems (by line), then the application file's."""
        app = [] if self.app_ck is self.topo_ck else self.app_ck.problems
        if app:
            self.topo_ck.problem(("application", "from"), f"application file {self.app_display} has "
                                 f"{len(app)} problem(s), listed below",
                                 expected="a valid application file (components, requests, optional defaults)")
        if not self.topo_ck.problems:
            return
        raise InputError(sorted(self.topo_ck.problems, key=_by_position) + sorted(app, key=_by_position))

    # application: {from: apps/x.yaml}
    def _include(self, app_raw: dict[str, Any]) -> dict[str, Any] | None:
        """Load the application file named by ``application.from``; None (problem recorded) when it can't be."""
        app = load_application(self.topo_ck, app_raw, self.file, self.path)
        if app is None:
            return None
        self.app_file, self.app_display, self.app_ck = app.path, app.display, app.checker
        if app.data is not None:
            self.app_root = ()  # the application is that file's whole document
        return app.data

    # defaults: {call: {timeout, retries, backoff}, concurrency: {workers, queue}}
    def _defaults(self, raw: Any) -> None:
        ck = self.ck
        self.timeout = parse_duration(DEFAULT_TIMEOUT)
        self.retries = DEFAULT_RETRIES
        self.backoff = parse_duration(DEFAULT_BACKOFF)
        self.workers, self.queue = DEFAULT_WORKERS, DEFAULT_QUEUE
        if raw is None:
            return
        m = ck.mapping(raw, ("defaults",), allowed=("call", "concurrency"))
        if m is None:
            return
        if "call" in m:
            c = ck.mapping(m["call"], ("defaults", "call"), allowed=("timeout", "retries", "backoff"))
            if c is not None:
                p = ("defaults", "call")
                self.timeout = ck.field(c, p, "timeout", _positive_duration, self.timeout) or self.timeout
                self.retries = ck.field(c, p, "retries", parse_int(0, 10), self.retries)
                self.backoff = ck.field(c, p, "backoff", parse_duration, self.backoff) or self.backoff
        if "concurrency" in m:
            c = ck.mapping(m["concurrency"], ("defaults", "concurrency"), allowed=("workers", "queue"))
            if c is not None:
                p = ("defaults", "concurrency")
                self.workers = ck.field(c, p, "workers", parse_int(1, 100_000), self.workers) or self.workers
                q = ck.field(c, p, "queue", parse_int(0, 1_000_000), self.queue)
                self.queue = self.queue if q is None else q

    def _components(self, app_raw: Any) -> dict[str, Component]:
        ck = self.ck
        allowed = ("components", "requests") if self.app_root else APP_FILE_KEYS
        app = ck.mapping(app_raw, self.app_root, allowed=allowed, required=("components", "requests"),
                         what="a mapping with components and requests")
        if app is None or "components" not in app:
            return {}
        comps_raw = app["components"]
        path = self.app_root + ("components",)
        if not isinstance(comps_raw, dict) or not comps_raw:
            ck.problem(path, "expected a non-empty mapping of components", expected="{component-name: {endpoints: ...}}")
            return {}
        names = list(comps_raw)
        self.endpoint_names = {n: list((comps_raw[n] or {}).get("endpoints") or {})
                               if isinstance(comps_raw[n], dict) and isinstance(comps_raw[n].get("endpoints"), dict)
                               else [] for n in names}
        out: dict[str, Component] = {}
        for cname, craw in comps_raw.items():
            cp = path + (cname,)
            if ck.convert(cname, cp, lambda v: _part(v, "component name")) is None:
                continue
            c = ck.mapping(craw, cp, allowed=("endpoints", "store", "concurrency"), required=("endpoints",))
            if c is None:
                continue
            store = self._store(c.get("store"), cp + ("store",)) if "store" in c else None
            conc = Concurrency(self.workers, self.queue)
            if "concurrency" in c:
                cc = ck.mapping(c["concurrency"], cp + ("concurrency",), allowed=("workers", "queue"))
                if cc is not None:
                    w = ck.field(cc, cp + ("concurrency",), "workers", parse_int(1, 100_000), self.workers)
                    q = ck.field(cc, cp + ("concurrency",), "queue", parse_int(0, 1_000_000), self.queue)
                    conc = Concurrency(w or self.workers, self.queue if q is None else q)
            endpoints: dict[str, Endpoint] = {}
            eps = c.get("endpoints")
            if "endpoints" in c and (not isinstance(eps, dict) or not eps):
                ck.problem(cp + ("endpoints",), "expected a non-empty mapping of endpoints",
                           expected="{endpoint-name: {work: ..., calls: [...]}}")
                eps = {}
            for ename, eraw in (eps or {}).items():
                ep = self._endpoint(ename, eraw, cp + ("endpoints", ename), store is not None, names)
                if ep is not None:
                    endpoints[ename] = ep
            out[cname] = Component(cname, endpoints, conc, store)
        return out

    def _store(self, raw: Any, path: FieldPath) -> Store | None:
        ck = self.ck
        m = ck.mapping(raw, path, allowed=("latency", "cache_hit_ratio", "cache_latency"), required=("latency",))
        if m is None or "latency" not in m:
            return None
        latency = _parse_dist(ck, m["latency"], path + ("latency",))
        ratio = ck.field(m, path, "cache_hit_ratio", parse_percent, None)
        cache_latency = None
        if "cache_latency" in m:
            if ratio is None:
                ck.problem(path + ("cache_latency",), "cache_latency without cache_hit_ratio",
                           expected="cache_hit_ratio: a percentage")
            cache_latency = _parse_dist(ck, m["cache_latency"], path + ("cache_latency",))
        elif ratio is not None:
            cache_latency = Dist("constant", parse_duration(DEFAULT_CACHE_LATENCY))
        if latency is None:
            return None
        return Store(latency, ratio, cache_latency)

    def _endpoint(self, name: Any, raw: Any, path: FieldPath, has_store: bool, comps: list[str]) -> Endpoint | None:
        ck = self.ck
        if ck.convert(name, path, lambda v: _part(v, "endpoint name")) is None:
            return None
        if raw is None:
            raw = {}
        m = ck.mapping(raw, path, allowed=("work", "calls"), what="an endpoint {work, calls}")
        if m is None:
            return None
        cpu, size, store_ops = Dist("constant", parse_duration("0ms")), parse_size("0B"), 0
        if "work" in m:
            wp = path + ("work",)
            w = ck.mapping(m["work"], wp, allowed=("cpu", "response_size", "store_ops"))
            if w is not None:
                if "cpu" in w:
                    cpu = _parse_dist(ck, w["cpu"], wp + ("cpu",)) or cpu
                size = ck.field(w, wp, "response_size", parse_size, size) or size
                store_ops = ck.field(w, wp, "store_ops", parse_int(0, 100), 0) or 0
                if store_ops and not has_store:
                    ck.problem(wp + ("store_ops",), "store_ops given but the component has no 'store'",
                               expected="a 'store' block on the component, or store_ops: 0")
        steps: list[Step] = []
        if "calls" in m:
            seq = ck.sequence(m["calls"], path + ("calls",), what="a list of call steps")
            for i, sraw in enumerate(seq or []):
                step = self._step(sraw, path + ("calls", i), comps)
                if step is not None:
                    steps.append(step)
        return Endpoint(name, cpu, size, store_ops, tuple(steps))

    def _step(self, raw: Any, path: FieldPath, comps: list[str]) -> Step | None:
        if isinstance(raw, dict) and "parallel" in raw:
            m = self.ck.mapping(raw, path, allowed=("parallel",))
            seq = self.ck.sequence(m["parallel"] if m else None, path + ("parallel",), what="a list of calls")
            if seq is None:
                return None
            if len(seq) < 1:
                self.ck.problem(path + ("parallel",), "an empty parallel step", expected="at least one call")
                return None
            calls = [self._call(c, path + ("parallel", i), comps) for i, c in enumerate(seq)]
            return Parallel(tuple(c for c in calls if c is not None))
        return self._call(raw, path, comps)

    def _call(self, raw: Any, path: FieldPath, comps: list[str]) -> Call | None:
        ck = self.ck
        m: dict[str, Any] | None
        if isinstance(raw, str):
            raw_target, m = raw, {}
            tpath = path
        else:
            m = ck.mapping(raw, path, allowed=("call", "timeout", "retries", "backoff"), required=("call",),
                           what="a call {call: component.endpoint, timeout, retries, backoff} or {parallel: [...]}")
            if m is None or "call" not in m:
                return None
            raw_target, tpath = m["call"], path + ("call",)
        target = ck.convert(raw_target, tpath, lambda v: self._target(v, comps))
        timeout = ck.field(m, path, "timeout", _positive_duration, self.timeout)
        retries = ck.field(m, path, "retries", parse_int(0, 10), self.retries)
        backoff = ck.field(m, path, "backoff", parse_duration, self.backoff)
        if target is None or timeout is None or retries is None or backoff is None:
            return None
        comp, ep = target
        return Call(comp, ep, timeout, retries, backoff)

    def _target(self, value: Any, comps: list[str]) -> tuple[str, str]:
        form = "component.endpoint, e.g. api.get-items"
        if not isinstance(value, str) or value.count(".") != 1:
            if isinstance(value, str):
                parse_identifier(value, what="call target")  # shell syntax message first
            raise ValueProblem(f"call target {value!r} is not of the form component.endpoint", form)
        comp, ep = value.split(".")
        parse_identifier(value, what="call target")
        if comp not in comps:
            raise ValueProblem(f"unknown call target: no component {comp!r}", "one of: " + ", ".join(comps),
                               _with_ep(suggest(comp, comps), ep))
        eps = self.endpoint_names.get(comp, [])
        if ep not in eps:
            raise ValueProblem(f"unknown call target: component {comp!r} has no endpoint {ep!r}",
                               "one of: " + ", ".join(f"{comp}.{e}" for e in eps),
                               _with_ep(comp, suggest(ep, eps)) if suggest(ep, eps) else None)
        return comp, ep

    def _requests(self, app_raw: Any, components: dict[str, Component]) -> dict[str, RequestType]:
        ck = self.ck
        if not isinstance(app_raw, dict) or "requests" not in app_raw:
            return {}
        path = self.app_root + ("requests",)
        raw = app_raw["requests"]
        if not isinstance(raw, dict) or not raw:
            ck.problem(path, "expected a non-empty mapping of request types",
                       expected="{request-type: {entry: component.endpoint, mix: 50%}}")
            return {}
        comps = list(self.endpoint_names)
        out: dict[str, RequestType] = {}
        total, mixes_ok = 0.0, True
        for rname, rraw in raw.items():
            rp = path + (rname,)
            if ck.convert(rname, rp, lambda v: parse_identifier(v, what="request type")) is None:
                continue
            m = ck.mapping(rraw, rp, allowed=("entry", "mix"), required=("entry", "mix"))
            if m is None:
                mixes_ok = False
                continue
            entry = ck.field(m, rp, "entry", lambda v: self._target(v, comps))
            mix = ck.field(m, rp, "mix", parse_percent)
            if mix is None:
                mixes_ok = False
            else:
                total += mix.value
            if entry is not None and mix is not None:
                out[rname] = RequestType(rname, f"{entry[0]}.{entry[1]}", mix)
        if mixes_ok and abs(total - 100.0) > 1e-6:
            ck.problem(path, f"the request mix sums to {round(total, 6):g}%, not 100%",
                       expected="mix percentages that add up to 100%")
        return out

    def _check_cycles(self, components: dict[str, Component]) -> None:
        """One problem, in the file holding the application, at the call that closes the first cycle."""
        cycle = find_cycle(components)
        if cycle is None:
            return
        comp, ep = cycle.caller.split(".")
        path: FieldPath = self.app_root + ("components", comp, "endpoints", ep, "calls", cycle.step)
        if cycle.member is not None:
            path += ("parallel", cycle.member)
        self.app_ck.problem(path, "call cycle: " + " -> ".join(cycle.targets),
                            expected="a call graph without cycles (requests must terminate)")


def _by_position(problem: Problem) -> tuple[int, int]:
    return problem.line or 0, problem.column or 0


def _with_ep(comp: str | None, ep: str | None) -> str | None:
    return f"{comp}.{ep}" if comp and ep else None


def _positive_duration(value: Any) -> Duration:
    d = parse_duration(value)
    if d.seconds <= 0:
        raise ValueProblem(f"{value!r} must be greater than 0", "a positive duration")
    return d


def validate_topology(data: dict[str, Any], positions: Positions, file: str, path: Path | None = None) -> Topology:
    """Validate loaded topology data; raise InputError listing every problem found."""
    return _TopologyValidator(data, positions, file, path).run()
