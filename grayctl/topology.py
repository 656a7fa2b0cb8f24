"""Topology files: a logical application, its decomposition into services, and their placement.

Map:
  load_topology(name_or_path)  -> Topology     read + validate (InputError on any problem)
  find_topology(name)          -> Path         a bare name -> topologies/<name>.yaml
  list_topologies()            -> [(name, path, summary)]
  validate_topology(data, positions, file, path) -> Topology   validate already-loaded data

The application may live in its own file: ``application: {from: apps/social-network.yaml}``
(relative to the topology file, same directory or below, one level deep). gen1/gen2/gen3 share
one such file, so their per-request work is identical by construction. Problems inside the
application file are reported with that file's name, line and column, plus one problem at the
``from:`` line of the topology that included it.

The model (pure data, frozen dataclasses):
  Topology
    components: {name: Component(endpoints, store, concurrency)}
      Endpoint(work: cpu Dist + response_size + store_ops, calls: [Call | Parallel])
    requests:   {request-type: RequestType(entry "component.endpoint", mix Percent)}
    services:   {service: Service(components, slots, replicas, port, metrics_port)}
  with service_of(component), resolve_target(name), slots(), calls(), call_tree(entry);
  application_file: the file the application came from (None when inline).

The file format is documented in docs/topology-format.md. Component and
endpoint names use ``[a-z0-9][a-z0-9_-]*`` (no dots) so that ``component.endpoint``
is unambiguous.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grayctl.errors import InputError, Problem
from grayctl.source import (
    Checker,
    FieldPath,
    Positions,
    ValueProblem,
    load_yaml_document,
    parse_choice,
    parse_identifier,
    parse_int,
    parse_text,
    suggest,
)
from grayctl.units import (
    Duration,
    Percent,
    Size,
    parse_duration,
    parse_percent,
    parse_size,
)

try:  # the lead's module; fall back to the source tree when it is absent
    from grayctl.paths import TOPOLOGIES_DIR
except ImportError:  # pragma: no cover
    TOPOLOGIES_DIR = Path(__file__).resolve().parents[1] / "topologies"

__all__ = [
    "TOPOLOGIES_DIR",
    "Call",
    "Component",
    "Concurrency",
    "Dist",
    "Endpoint",
    "Parallel",
    "RequestType",
    "Service",
    "Store",
    "Topology",
    "find_topology",
    "list_topologies",
    "load_topology",
    "validate_topology",
]

PART_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,62}\Z")
PART_FORM = "lowercase letters, digits, '_' or '-' (no dots), starting with a letter or digit"
DISTS = ("constant", "exponential", "lognormal", "normal")

DEFAULT_TIMEOUT = "1s"
DEFAULT_RETRIES = 0
DEFAULT_BACKOFF = "10ms"
DEFAULT_WORKERS = 32
DEFAULT_QUEUE = 128
DEFAULT_PORT_BASE = 8100
DEFAULT_METRICS_PORT_BASE = 9100
# Ports the lab's own agents hold on every node (sshd, Prometheus, node_exporter, the grayctl exporter,
# the observer; docs/metrics.md): never handed to a co-located replica.
RESERVED_PORTS = frozenset({22, 9090, 9301, 9302, 9303})
DEFAULT_CACHE_LATENCY = "100us"
APP_FILE_KEYS = ("name", "description", "defaults", "components", "requests")
APP_REF_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*\.ya?ml\Z")


# -- model ----------------------------------------------------------------------

@dataclass(frozen=True)
class Dist:
    """A latency/CPU-time distribution. ``constant`` and ``exponential`` use ``mean`` only."""

    dist: str
    mean: Duration
    stddev: Duration | None = None
    p99: Duration | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dist": self.dist, "mean": self.mean.canonical()}
        if self.stddev is not None:
            out["stddev"] = self.stddev.canonical()
        if self.p99 is not None:
            out["p99"] = self.p99.canonical()
        return out

    def describe(self) -> str:
        if self.dist == "constant":
            return self.mean.canonical()
        extra = f", sd {self.stddev}" if self.stddev else (f", p99 {self.p99}" if self.p99 else "")
        return f"{self.dist}(mean {self.mean}{extra})"


@dataclass(frozen=True)
class Call:
    """One downstream call: ``component.endpoint`` with its timeout and retry policy."""

    component: str
    endpoint: str
    timeout: Duration
    retries: int
    backoff: Duration

    @property
    def target(self) -> str:
        return f"{self.component}.{self.endpoint}"

    def to_dict(self) -> dict[str, Any]:
        return {"call": self.target, "timeout": self.timeout.canonical(), "retries": self.retries,
                "backoff": self.backoff.canonical()}


@dataclass(frozen=True)
class Parallel:
    """Calls issued together; the step ends when all of them have finished."""

    calls: tuple[Call, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"parallel": [c.to_dict() for c in self.calls]}


Step = Call | Parallel


@dataclass(frozen=True)
class Endpoint:
    name: str
    cpu: Dist
    response_size: Size
    store_ops: int
    calls: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"work": {"cpu": self.cpu.to_dict(), "response_size": self.response_size.canonical(),
                         "store_ops": self.store_ops},
                "calls": [s.to_dict() for s in self.calls]}


@dataclass(frozen=True)
class Store:
    """A modelled data store: ``latency`` per access; with a cache, hits take ``cache_latency``."""

    latency: Dist
    cache_hit_ratio: Percent | None = None
    cache_latency: Dist | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"latency": self.latency.to_dict()}
        if self.cache_hit_ratio is not None:
            out["cache_hit_ratio"] = self.cache_hit_ratio.canonical()
            out["cache_latency"] = self.cache_latency.to_dict() if self.cache_latency else None
        return out


@dataclass(frozen=True)
class Concurrency:
    """A bounded worker pool and its queue; requests beyond both are rejected (503)."""

    workers: int
    queue: int

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "queue": self.queue}


@dataclass(frozen=True)
class Component:
    name: str
    endpoints: dict[str, Endpoint]
    concurrency: Concurrency
    store: Store | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoints": {n: e.to_dict() for n, e in self.endpoints.items()},
                               "concurrency": self.concurrency.to_dict()}
        if self.store is not None:
            out["store"] = self.store.to_dict()
        return out


@dataclass(frozen=True)
class RequestType:
    name: str
    entry: str  # component.endpoint
    mix: Percent

    @property
    def component(self) -> str:
        return self.entry.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "mix": self.mix.canonical()}


@dataclass(frozen=True)
class Service:
    """A deployable unit: components that run in one process, its replicas and their slots."""

    name: str
    components: tuple[str, ...]
    slots: tuple[str, ...]
    replicas: int
    port: int
    metrics_port: int
    # (port, metrics_port) per replica; empty = every replica on (port, metrics_port). Replicas that
    # share a slot (node) cannot share a port: the second and later ones get ports of their own.
    replica_port_pairs: tuple[tuple[int, int], ...] = ()

    def replica_slots(self) -> list[str]:
        """The slot of each replica (replicas are spread round-robin over the slots)."""
        return [self.slots[i % len(self.slots)] for i in range(self.replicas)]

    def replica_ports(self) -> list[tuple[int, int]]:
        """(port, metrics_port) of each replica, in replica order."""
        return list(self.replica_port_pairs) or [(self.port, self.metrics_port)] * self.replicas

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"components": list(self.components), "slots": list(self.slots),
                               "replicas": self.replicas, "port": self.port, "metrics_port": self.metrics_port}
        if self.replica_port_pairs:
            out["replica_ports"] = [list(p) for p in self.replica_port_pairs]
        return out


@dataclass(frozen=True)
class Topology:
    name: str
    description: str
    components: dict[str, Component]
    requests: dict[str, RequestType]
    services: dict[str, Service]
    path: Path | None = None
    _service_of: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    application_file: Path | None = None

    # -- what the plan builder needs ---------------------------------------------
    def slots(self) -> list[str]:
        """Distinct slot names in order of first use (services in file order)."""
        seen: dict[str, None] = {}
        for svc in self.services.values():
            for slot in svc.slots:
                seen.setdefault(slot, None)
        return list(seen)

    def service_of(self, component: str) -> str:
        """The service that runs ``component`` (KeyError if there is no such component)."""
        return self._service_of[component]

    def names(self) -> list[str]:
        """Every name a fault may target: services, then components not already listed."""
        out = list(self.services)
        out += [c for c in self.components if c not in self.services]
        return out

    def resolve_target(self, name: str) -> str:
        """The service hosting ``name`` (a service or a component name).

        Raises ``ValueProblem`` with a did-you-mean suggestion when the name is unknown.
        """
        if name in self.services:
            return name
        if name in self._service_of:
            return self._service_of[name]
        raise ValueProblem(f"unknown service {name!r} in topology {self.name!r}",
                           "a service or component of the topology: " + ", ".join(self.names()),
                           suggest(name, self.names()))

    def is_network_hop(self, name: str) -> bool:
        """True when ``name``'s traffic crosses the network in this topology (it runs alone in its service,
        or it names a whole service). False for a component sharing a process with others (e.g. gen1)."""
        if name in self.services:
            return True
        svc = self.services[self.resolve_target(name)]
        return len(svc.components) == 1

    def default_mix(self) -> dict[str, Percent]:
        return {name: r.mix for name, r in self.requests.items()}

    def endpoint(self, target: str) -> Endpoint:
        comp, ep = target.split(".", 1)
        return self.components[comp].endpoints[ep]

    def calls(self) -> Iterator[tuple[str, int, Call, bool]]:
        """Every call of the application: (caller ``component.endpoint``, step number from 1, call, parallel)."""
        for cname, comp in self.components.items():
            for ename, ep in comp.endpoints.items():
                for i, step in enumerate(ep.calls, start=1):
                    calls, par = (step.calls, True) if isinstance(step, Parallel) else ((step,), False)
                    for c in calls:
                        yield f"{cname}.{ename}", i, c, par

    def call_tree(self, entry: str) -> Iterator[tuple[int, str, Call | None, bool]]:
        """Walk the call graph from ``entry`` depth-first.

        Yields (depth, label, call, parallel) where ``call`` is None for the entry itself and
        ``parallel`` says whether the call is part of a parallel step.
        """
        yield 0, entry, None, False
        yield from self._walk(entry, 1)

    def _walk(self, target: str, depth: int) -> Iterator[tuple[int, str, Call | None, bool]]:
        for step in self.endpoint(target).calls:
            calls, par = (step.calls, True) if isinstance(step, Parallel) else ((step,), False)
            for c in calls:
                yield depth, c.target, c, par
                yield from self._walk(c.target, depth + 1)

    def summary(self) -> str:
        return (f"{len(self.services)} services, {len(self.components)} components, "
                f"{len(self.slots())} slots, requests: {', '.join(self.requests)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, the application always inline (resolved); ``application_file`` says where it came from."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "application": {
                "components": {n: c.to_dict() for n, c in self.components.items()},
                "requests": {n: r.to_dict() for n, r in self.requests.items()},
            },
            "services": {n: s.to_dict() for n, s in self.services.items()},
            "slots": self.slots(),
        }
        if self.application_file is not None:
            shown = self.application_file
            if self.path is not None and shown.resolve().is_relative_to(self.path.resolve().parent):
                shown = shown.resolve().relative_to(self.path.resolve().parent)
            out["application_file"] = str(shown)
        return out


# -- finding and loading --------------------------------------------------------------

def _looks_like_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def find_topology(ref: str, base_dir: Path | None = None) -> Path:
    """Resolve a topology reference: a bare name -> topologies/<name>.yaml; a path -> relative to ``base_dir``.

    Raises ValueProblem (with a did-you-mean) when it does not exist.
    """
    if _looks_like_path(ref):
        p = Path(ref)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.is_file():
            raise ValueProblem(f"topology file {ref!r} not found", "a topology name or an existing file path")
        return p
    name = parse_identifier(ref, what="topology name")
    p = TOPOLOGIES_DIR / f"{name}.yaml"
    if not p.is_file():
        names = [n for n, _, _ in _topology_files()]
        raise ValueProblem(f"unknown topology {name!r}", "one of: " + ", ".join(names) if names else
                           f"a file {TOPOLOGIES_DIR}/{name}.yaml", suggest(name, names))
    return p


def _topology_files() -> list[tuple[str, Path, str]]:
    if not TOPOLOGIES_DIR.is_dir():
        return []
    return [(p.stem, p, "") for p in sorted(TOPOLOGIES_DIR.glob("*.yaml"))]


def list_topologies() -> list[tuple[str, Path, str]]:
    """Every topology in topologies/: (name, path, one-line summary or the first problem)."""
    out = []
    for name, path, _ in _topology_files():
        try:
            topo = load_topology(path)
            summary = topo.description.strip().splitlines()[0] if topo.description.strip() else topo.summary()
        except InputError as err:
            summary = f"INVALID: {err.problems[0].message if err.problems else err.message}"
        out.append((name, path, summary))
    return out


def load_topology(name_or_path: str | Path, base_dir: Path | None = None) -> Topology:
    """Read and validate a topology by name (topologies/<name>.yaml) or path. Raises InputError."""
    if isinstance(name_or_path, Path):
        path = name_or_path
    else:
        try:
            path = find_topology(name_or_path, base_dir)
        except ValueProblem as err:
            raise InputError(Problem(str(err), file=str(name_or_path), expected=err.expected,
                                     suggestion=err.suggestion)) from None
    data, positions = load_yaml_document(path)
    return validate_topology(data, positions, str(path), path)


# -- validation -------------------------------------------------------------------

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

    def run(self) -> Topology:
        ck = self.topo_ck
        if isinstance(self.data, dict) and "application" not in self.data and "components" in self.data:
            raise InputError(Problem(
                "this is an application file (components and requests), not a topology",
                file=self.file, line=1, column=1,
                expected="a topology that includes it: application: {from: <this file>}, plus decomposition "
                         "and placement"))
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
        services = self._services(top, components) if walk_app else {}
        if not self.topo_ck.problems and not self.app_ck.problems:
            self.ck = self.app_ck
            self._check_cycles(components)
            self.ck = self.topo_ck
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
        ck = self.topo_ck
        fpath: FieldPath = ("application", "from")
        for key in app_raw:
            if key != "from":
                ck.problem(("application", key), f"'{key}' next to 'from': the application comes either from "
                           "a file or inline, not both", at_key=True,
                           expected="application: {from: apps/<name>.yaml} alone, or components and requests inline")
        rel = ck.convert(app_raw["from"], fpath, _parse_app_ref)
        if rel is None:
            return None
        topo_file = self.path if self.path is not None else Path(self.file)
        base = topo_file.parent
        target = base / rel
        shown = os.path.normpath(os.path.join(os.path.dirname(self.file), rel))
        if not target.resolve().is_relative_to(base.resolve()):
            ck.problem(fpath, f"application file {rel!r} resolves outside the topology's directory "
                       f"(through a symbolic link): {target.resolve()}",
                       expected="a file in the topology's directory or below it")
            return None
        if target.resolve() == topo_file.resolve():
            ck.problem(fpath, f"include cycle: {topo_file.name} takes its application from itself",
                       expected="a separate application file (components and requests)")
            return None
        if not target.is_file():
            folder = target.parent
            files = {p.stem: p.name for p in folder.glob("*.y*ml")} if folder.is_dir() else {}
            near = suggest(target.stem, files)
            ck.problem(fpath, f"application file {rel!r} not found (looked for {shown})",
                       expected="an existing YAML file, relative to the topology file",
                       suggestion=str(Path(rel).parent / files[near]) if near else None)
            return None
        self.app_file = target
        self.app_display = shown
        try:
            data, positions = load_yaml_document(shown if Path(shown).resolve() == target.resolve() else target)
        except InputError as err:
            self.app_ck = Checker(shown)
            self.app_ck.problems.extend(err.problems)
            return None
        self.app_ck = Checker(shown, positions)
        self.app_root = ()
        if "from" in data:
            self.app_ck.problem(("from",), "an application file cannot itself use 'from': includes are one level "
                                "deep (which also rules out include cycles)", at_key=True,
                                expected="components and requests written out in this file")
            return None
        if any(k in data for k in ("decomposition", "placement", "application")):
            self.app_ck.problem((), f"{shown} is a topology file, not an application file",
                                expected="a file with components and requests (and optional name, "
                                         "description, defaults)")
            return None
        return data

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
        comps = list(self.endpoint_names) if hasattr(self, "endpoint_names") else []
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

    def _services(self, top: dict[str, Any], components: dict[str, Component]) -> dict[str, Service]:
        ck = self.ck
        comp_names = list(getattr(self, "endpoint_names", {}))
        decomp = top.get("decomposition")
        placement = top.get("placement")
        if "decomposition" not in top:
            return {}
        dpath, ppath = ("decomposition",), ("placement",)
        if not isinstance(decomp, dict) or not decomp:
            ck.problem(dpath, "expected a non-empty mapping of services to components",
                       expected="{service-name: [component, ...]}")
            return {}
        owner: dict[str, str] = {}
        members: dict[str, tuple[str, ...]] = {}
        for sname, lst in decomp.items():
            sp = dpath + (sname,)
            if ck.convert(sname, sp, lambda v: parse_identifier(v, what="service name")) is None:
                continue
            if isinstance(lst, str):
                lst = [lst]
            seq = ck.sequence(lst, sp, what="a list of component names")
            if seq is None:
                continue
            if not seq:
                ck.problem(sp, f"service {sname!r} has no components", expected="at least one component")
            ok: list[str] = []
            for i, comp in enumerate(seq):
                if not isinstance(comp, str) or comp not in comp_names:
                    where = f"the application in {self.app_display}" if self.app_display else "application.components"
                    ck.problem(sp + (i,), f"unknown component {comp!r}", expected=f"a component of {where}",
                               suggestion=suggest(comp, comp_names) if isinstance(comp, str) else None)
                    continue
                if comp in owner:
                    ck.problem(sp + (i,), f"component {comp!r} is already in service {owner[comp]!r}",
                               expected="each component in exactly one service")
                    continue
                owner[comp] = sname
                ok.append(comp)
            members[sname] = tuple(ok)
        for comp in comp_names:
            if comp not in owner:
                ck.problem(dpath, f"component {comp!r} is unplaced: it is in no service of the decomposition",
                           expected="every component in exactly one service")
        # placement
        if not isinstance(placement, dict):
            if "placement" in top:
                ck.problem(ppath, "expected a mapping of services to placements",
                           expected="{service: {slots: [app1], replicas: 1}}")
            return {}
        for sname in placement:
            if sname not in members:
                ck.problem(ppath + (sname,), f"placement for unknown service {sname!r}", at_key=True,
                           expected="a service of the decomposition", suggestion=suggest(sname, members))
        ports = self._ports(top.get("ports"))
        services: dict[str, Service] = {}
        used_ports: dict[tuple[str, int], str] = {}
        for i, (sname, comps) in enumerate(members.items()):
            if sname not in placement:
                ck.problem(ppath, f"service {sname!r} is unplaced: it has no placement",
                           expected=f"placement.{sname}: {{slots: [app1], replicas: 1}}")
                continue
            sp = ppath + (sname,)
            m = ck.mapping(placement[sname], sp, allowed=("slots", "replicas", "port", "metrics_port"),
                           required=("slots",))
            if m is None:
                continue
            slots_raw = m.get("slots")
            if isinstance(slots_raw, str):
                slots_raw = [slots_raw]
            slots: list[str] = []
            if "slots" in m:
                seq = ck.sequence(slots_raw, sp + ("slots",), what="a list of slot names")
                if seq is not None and not seq:
                    ck.problem(sp + ("slots",), "no slots", expected="at least one slot name, e.g. [app1]")
                for j, s in enumerate(seq or []):
                    v = ck.convert(s, sp + ("slots", j), lambda x: parse_identifier(x, what="slot name"))
                    if v is not None and v in slots:
                        ck.problem(sp + ("slots", j), f"slot {v!r} listed twice", expected="distinct slot names")
                    elif v is not None:
                        slots.append(v)
            replicas = ck.field(m, sp, "replicas", parse_int(1, 1000, "a replica count"), 1)
            port = ck.field(m, sp, "port", parse_int(1024, 65535, "a TCP port"), ports[0] + i)
            mport = ck.field(m, sp, "metrics_port", parse_int(1024, 65535, "a TCP port"), ports[1] + i)
            if not slots or replicas is None or port is None or mport is None:
                continue
            for slot in slots:
                for pt, what in ((port, "port"), (mport, "metrics_port")):
                    if (slot, pt) in used_ports:
                        ck.problem(sp + (what,) if what in m else sp,
                                   f"{what} {pt} on slot {slot!r} is already used by {used_ports[(slot, pt)]}",
                                   expected="distinct ports for services sharing a slot")
                    used_ports[(slot, pt)] = f"service {sname!r}"
            services[sname] = Service(sname, comps, tuple(slots), replicas, port, mport)
        return self._colocated_replica_ports(services, used_ports, ports, len(members))

    @staticmethod
    def _colocated_replica_ports(services: dict[str, Service], used: dict[tuple[str, int], str],
                                 bases: tuple[int, int], n_services: int) -> dict[str, Service]:
        """Give every replica after the first on a slot its own port pair, after every service's own.

        Chosen once all services' ports are known, so an explicit port of a later service is never
        taken; the allocation is deterministic (file order), so plans and datasets stay reproducible.
        """
        taken = {pt for _, pt in used} | RESERVED_PORTS
        nxt = [bases[0] + n_services, bases[1] + n_services]

        def fresh(k: int) -> int:
            while nxt[k] in taken:
                nxt[k] += 1
            taken.add(nxt[k])
            return nxt[k]

        out = {}
        for name, svc in services.items():
            seen: set[str] = set()
            pairs = []
            for slot in svc.replica_slots():
                pairs.append((svc.port, svc.metrics_port) if slot not in seen else (fresh(0), fresh(1)))
                seen.add(slot)
            shared = len(seen) < svc.replicas
            out[name] = Service(svc.name, svc.components, svc.slots, svc.replicas, svc.port, svc.metrics_port,
                                tuple(pairs) if shared else ())
        return out

    def _ports(self, raw: Any) -> tuple[int, int]:
        ck = self.ck
        if raw is None:
            return DEFAULT_PORT_BASE, DEFAULT_METRICS_PORT_BASE
        m = ck.mapping(raw, ("ports",), allowed=("base", "metrics_base"))
        if m is None:
            return DEFAULT_PORT_BASE, DEFAULT_METRICS_PORT_BASE
        base = ck.field(m, ("ports",), "base", parse_int(1024, 60000, "a TCP port"), DEFAULT_PORT_BASE)
        mbase = ck.field(m, ("ports",), "metrics_base", parse_int(1024, 60000, "a TCP port"), DEFAULT_METRICS_PORT_BASE)
        return base or DEFAULT_PORT_BASE, mbase or DEFAULT_METRICS_PORT_BASE

    def _check_cycles(self, components: dict[str, Component]) -> None:
        """Depth-first search over endpoints; a back edge is a call cycle."""
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        stack: list[str] = []

        def edges(target: str) -> list[tuple[int, int | None, Call]]:
            comp, ep = target.split(".")
            out: list[tuple[int, int | None, Call]] = []
            for i, step in enumerate(components[comp].endpoints[ep].calls):
                if isinstance(step, Parallel):
                    out += [(i, j, c) for j, c in enumerate(step.calls)]
                else:
                    out.append((i, None, step))
            return out

        def visit(target: str) -> bool:
            state[target] = 1
            stack.append(target)
            for i, j, call in edges(target):
                if call.component not in components or call.endpoint not in components[call.component].endpoints:
                    continue
                nxt = call.target
                if state.get(nxt) == 1:
                    cycle = stack[stack.index(nxt):] + [nxt]
                    comp, ep = target.split(".")
                    path: FieldPath = self.app_root + ("components", comp, "endpoints", ep, "calls", i)
                    if j is not None:
                        path += ("parallel", j)
                    self.ck.problem(path, "call cycle: " + " -> ".join(cycle),
                                    expected="a call graph without cycles (requests must terminate)")
                    return True
                if state.get(nxt) is None and visit(nxt):
                    return True
            stack.pop()
            state[target] = 2
            return False

        for cname, comp in components.items():
            for ename in comp.endpoints:
                t = f"{cname}.{ename}"
                if state.get(t) is None and visit(t):
                    return


def _by_position(problem: Problem) -> tuple[int, int]:
    return problem.line or 0, problem.column or 0


def _parse_app_ref(value: Any) -> str:
    """``application.from``: a relative path to a .yaml file in the topology's directory or below."""
    form = "a relative path to a .yaml file in the topology's directory or below, e.g. apps/social-network.yaml"
    if not isinstance(value, str):
        raise ValueProblem(f"expected a file path, got {type(value).__name__}", form)
    if value.startswith("/"):
        raise ValueProblem(f"{value!r} is an absolute path", form)
    if ".." in value.split("/"):
        raise ValueProblem(f"{value!r} leaves the topology's directory ('..'); an application file must sit "
                           "beside the topology or below it", form)
    if not APP_REF_RE.match(value):
        raise ValueProblem(f"{value!r} is not a plain relative .yaml path", form)
    return value


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
