"""The topology model: pure description data, built by ``validate`` and read by everyone else.

Map (frozen dataclasses, ``to_dict`` on each gives plain JSON data):
  Topology
    components: {name: Component(endpoints, concurrency, store)}
      Endpoint(work: cpu Dist + response_size + store_ops, calls: [Step])
        Step = Call(component, endpoint, timeout, retries, backoff) | Parallel(calls)
      Store(latency Dist, cache_hit_ratio, cache_latency Dist), Concurrency(workers, queue)
    requests:   {request-type: RequestType(entry "component.endpoint", mix Percent)}
    services:   {service: Service(components, slots, replicas, port, metrics_port, replica ports)}
  with slots(), service_of(component), names(), resolve_target(name), is_network_hop(name),
  default_mix(), endpoint(target), calls(), call_tree(entry), summary(), to_dict();
  application_file: the file the application came from (None when inline).

Nothing here reads a file or checks input: a Topology is already valid when it exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grayctl.source import ValueProblem, suggest
from grayctl.units import Duration, Percent, Size

__all__ = [
    "Call",
    "Component",
    "Concurrency",
    "Dist",
    "Endpoint",
    "Parallel",
    "RequestType",
    "Service",
    "Step",
    "Store",
    "Topology",
]


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
