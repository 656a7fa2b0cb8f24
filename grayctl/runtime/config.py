"""One service process's runtime config: resolved from a topology, written as JSON, validated on load.

Map:
  service_config(topology, service, placement, ...) -> dict   resolve (controller side)
  load_runtime_config(path)        -> RuntimeConfig            read + validate (node side)
  validate_runtime_config(data)    -> RuntimeConfig            validate already-parsed JSON
  RuntimeConfigError                                           every problem, with its JSON path

The JSON is the contract between the controller (which knows the topology and the placement)
and ``python -m grayctl.runtime`` on a node (which knows neither): it holds only what one
process needs — its own components with their endpoints, and for every call that leaves the
process the replica URLs of the service that serves it. Durations are float seconds, sizes
int bytes, ratios fractions in [0, 1], so the runtime does no unit parsing.
The contract is documented in docs/runtime.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grayctl.errors import GrayctlError
from grayctl.topology import Call, Dist, Parallel, Topology

__all__ = [
    "FORMAT",
    "CallSpec",
    "ComponentSpec",
    "DistSpec",
    "EndpointSpec",
    "ParallelSpec",
    "RuntimeConfig",
    "RuntimeConfigError",
    "StoreSpec",
    "load_runtime_config",
    "service_config",
    "validate_runtime_config",
]

FORMAT = "grayctl-runtime/1"
DISTS = ("constant", "exponential", "lognormal", "normal")

# Client knobs the topology does not describe; the same for every process, so they live here
# and are written into each config (visible, overridable per process by editing the JSON).
DEFAULT_BACKOFF_CAP = 1.0       # s: exponential backoff never waits longer than this
DEFAULT_POOL_SIZE = 256         # keep-alive connections per downstream service
DEFAULT_REFUSED_HOLDOFF = 1.0   # s: a replica that refused a connection is skipped this long
DEFAULT_SHUTDOWN_TIMEOUT = 5.0  # s: on SIGTERM, in-flight requests get this long to finish
DEFAULT_SPAN_FLUSH = 1.0        # s: span buffer flush period


class RuntimeConfigError(GrayctlError):
    """A runtime config (or the inputs to build one) is invalid."""

    exit_code = 2
    title = "invalid runtime config"

    def __init__(self, problems: list[str] | str, *, file: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        where = f"{file}: " if file else ""
        head = self.problems[0] if len(self.problems) == 1 else f"{len(self.problems)} problems"
        super().__init__(where + head)
        self.file = file

    def render(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if len(self.problems) == 1:
            return f"{self.title}: {where}{self.problems[0]}"
        return f"{self.title}: {where}\n" + "\n".join(f"  - {p}" for p in self.problems[:20])


# -- resolved model (plain data the runtime executes) ---------------------------------

@dataclass(frozen=True, slots=True)
class DistSpec:
    """A distribution in seconds. ``stddev`` and ``p99`` as in the topology (at most one used)."""

    dist: str
    mean: float
    stddev: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One call. ``service`` is None for an in-process call (same service: no HTTP, no timeout/retry)."""

    component: str
    endpoint: str
    service: str | None
    timeout: float
    retries: int
    backoff: float

    @property
    def target(self) -> str:
        return f"{self.component}.{self.endpoint}"


@dataclass(frozen=True, slots=True)
class ParallelSpec:
    calls: tuple[CallSpec, ...]


StepSpec = CallSpec | ParallelSpec


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    name: str
    cpu: DistSpec
    response_size: int
    store_ops: int
    steps: tuple[StepSpec, ...]


@dataclass(frozen=True, slots=True)
class StoreSpec:
    latency: DistSpec
    cache_hit_ratio: float  # 0 when there is no cache
    cache_latency: DistSpec | None


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    name: str
    workers: int
    queue: int
    store: StoreSpec | None
    endpoints: dict[str, EndpointSpec]


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    topology: str
    service: str
    replica: int
    listen_ip: str
    port: int
    metrics_ip: str
    metrics_port: int
    spans_path: str
    log_path: str
    seed: int
    components: dict[str, ComponentSpec]
    downstreams: dict[str, tuple[str, ...]]  # service -> replica base URLs
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    pool_size: int = DEFAULT_POOL_SIZE
    refused_holdoff: float = DEFAULT_REFUSED_HOLDOFF
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    span_flush: float = DEFAULT_SPAN_FLUSH


# -- resolving (controller side) --------------------------------------------------------

def _dist(d: Dist) -> dict[str, Any]:
    out: dict[str, Any] = {"dist": d.dist, "mean": d.mean.seconds}
    if d.stddev is not None:
        out["stddev"] = d.stddev.seconds
    if d.p99 is not None:
        out["p99"] = d.p99.seconds
    return out


def _url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


def service_config(
    topology: Topology,
    service_name: str,
    placement: dict[str, list[dict[str, Any]]],
    *,
    replica: int = 0,
    listen_ip: str | None = None,
    metrics_ip: str | None = None,
    spans_path: str,
    log_path: str,
    seed: int = 0,
) -> dict[str, Any]:
    """The JSON-serialisable runtime config of replica ``replica`` of ``service_name``.

    ``placement`` maps every service to its replicas' addresses
    ``[{"data_ip", "port", "mgmt_ip", "metrics_port"}, ...]``; only this service and the
    services its components call are read. ``listen_ip``/``metrics_ip`` default to this
    replica's ``data_ip``/``mgmt_ip`` (pass ``0.0.0.0`` to bind everything).
    Raises RuntimeConfigError when the service or a needed placement is missing.
    """
    if service_name not in topology.services:
        raise RuntimeConfigError(f"unknown service {service_name!r} in topology {topology.name!r}; "
                                 f"expected one of: {', '.join(topology.services)}")
    svc = topology.services[service_name]
    problems: list[str] = []
    mine = _replicas(placement, service_name, problems)
    if mine is not None and not 0 <= replica < len(mine):
        problems.append(f"replica {replica} of service {service_name!r}: the placement lists "
                        f"{len(mine)} replica(s)")
    components: dict[str, Any] = {}
    needed: list[str] = []
    for cname in svc.components:
        comp = topology.components[cname]
        endpoints = {}
        for ename, ep in comp.endpoints.items():
            steps: list[Any] = []
            for step in ep.calls:
                if isinstance(step, Parallel):
                    steps.append({"parallel": [_call(topology, c, service_name, needed) for c in step.calls]})
                else:
                    steps.append(_call(topology, step, service_name, needed))
            endpoints[ename] = {"cpu": _dist(ep.cpu), "response_size": ep.response_size.bytes,
                                "store_ops": ep.store_ops, "calls": steps}
        store = None
        if comp.store is not None:
            store = {"latency": _dist(comp.store.latency),
                     "cache_hit_ratio": comp.store.cache_hit_ratio.fraction if comp.store.cache_hit_ratio else 0.0,
                     "cache_latency": _dist(comp.store.cache_latency) if comp.store.cache_latency else None}
        components[cname] = {"concurrency": {"workers": comp.concurrency.workers, "queue": comp.concurrency.queue},
                             "store": store, "endpoints": endpoints}
    downstreams: dict[str, Any] = {}
    for other in needed:
        reps = _replicas(placement, other, problems)
        if reps is not None:
            downstreams[other] = [_url(r["data_ip"], r["port"]) for r in reps]
    if problems:
        raise RuntimeConfigError(problems, file="placement")
    assert mine is not None
    me = mine[replica]
    return {
        "format": FORMAT,
        "topology": topology.name,
        "service": service_name,
        "replica": replica,
        "listen": {"ip": listen_ip or me["data_ip"], "port": me["port"]},
        "metrics": {"ip": metrics_ip or me["mgmt_ip"], "port": me["metrics_port"]},
        "spans_path": str(spans_path),
        "log_path": str(log_path),
        "seed": seed,
        "components": components,
        "downstreams": downstreams,
        "client": {"backoff_cap": DEFAULT_BACKOFF_CAP, "pool_size": DEFAULT_POOL_SIZE,
                   "refused_holdoff": DEFAULT_REFUSED_HOLDOFF},
        "shutdown_timeout": DEFAULT_SHUTDOWN_TIMEOUT,
        "span_flush": DEFAULT_SPAN_FLUSH,
    }


def _call(topology: Topology, call: Call, me: str, needed: list[str]) -> dict[str, Any]:
    target_service = topology.service_of(call.component)
    remote = target_service != me
    if remote and target_service not in needed:
        needed.append(target_service)
    return {"call": call.target, "service": target_service if remote else None,
            "timeout": call.timeout.seconds, "retries": call.retries, "backoff": call.backoff.seconds}


_ADDR_KEYS = ("data_ip", "port", "mgmt_ip", "metrics_port")


def _replicas(placement: dict[str, list[dict[str, Any]]], service: str, problems: list[str]) -> list[dict[str, Any]] | None:
    reps = placement.get(service)
    if not isinstance(reps, list) or not reps:
        problems.append(f"service {service!r} has no replica addresses in the placement "
                        f"(expected a list of {{{', '.join(_ADDR_KEYS)}}})")
        return None
    for i, r in enumerate(reps):
        missing = [k for k in _ADDR_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            problems.append(f"placement {service}[{i}]: missing {', '.join(missing)}")
            return None
    return reps


# -- loading + validating (node side) -------------------------------------------------------

def load_runtime_config(path: str | Path) -> RuntimeConfig:
    """Read and validate a runtime config JSON file. Raises RuntimeConfigError."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise RuntimeConfigError(f"cannot read: {err.strerror or err}", file=str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RuntimeConfigError(f"not JSON: {err.msg} at line {err.lineno} column {err.colno}",
                                 file=str(path)) from None
    return validate_runtime_config(data, file=str(path))


class _V:
    """Collects problems as 'path: message' so one run reports all of them."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, msg: str) -> None:
        self.problems.append(f"{path}: {msg}")

    def obj(self, v: Any, path: str, required: tuple[str, ...] = (), allowed: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        if not isinstance(v, dict):
            self.bad(path, f"expected an object, got {type(v).__name__}")
            return None
        for k in required:
            if k not in v:
                self.bad(path, f"missing {k!r}")
        if allowed is not None:
            for k in v:
                if k not in allowed:
                    self.bad(f"{path}.{k}", f"unknown field (expected one of: {', '.join(allowed)})")
        return v

    def num(self, v: Any, path: str, lo: float = 0.0, integer: bool = False, hi: float | None = None) -> Any:
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type:
            self.bad(path, f"expected {'an integer' if integer else 'a number'}, got {v!r}")
            return None
        if v < lo or (hi is not None and v > hi):
            self.bad(path, f"{v!r} out of range [{lo}, {hi if hi is not None else 'inf'}]")
            return None
        return v

    def text(self, v: Any, path: str) -> str | None:
        if not isinstance(v, str) or not v:
            self.bad(path, f"expected a non-empty string, got {v!r}")
            return None
        return v


def validate_runtime_config(data: Any, *, file: str | None = None) -> RuntimeConfig:
    """Validate parsed runtime-config JSON; raise RuntimeConfigError listing every problem."""
    v = _V()
    top = v.obj(data, "$", required=("format", "service", "listen", "metrics", "spans_path", "log_path",
                                      "components", "downstreams"),
                allowed=("format", "topology", "service", "replica", "listen", "metrics", "spans_path",
                         "log_path", "seed", "components", "downstreams", "client", "shutdown_timeout",
                         "span_flush"))
    if top is None:
        raise RuntimeConfigError(v.problems, file=file)
    if top.get("format") != FORMAT:
        v.bad("$.format", f"expected {FORMAT!r}, got {top.get('format')!r}")
    service = v.text(top.get("service"), "$.service") or "?"
    listen = v.obj(top.get("listen"), "$.listen", required=("ip", "port")) or {}
    metrics = v.obj(top.get("metrics"), "$.metrics", required=("ip", "port")) or {}
    for name, m in (("listen", listen), ("metrics", metrics)):
        if m:
            v.text(m.get("ip"), f"$.{name}.ip")
            v.num(m.get("port"), f"$.{name}.port", 0, True, 65535)
    downstreams: dict[str, tuple[str, ...]] = {}
    ds = v.obj(top.get("downstreams"), "$.downstreams") or {}
    for sname, urls in ds.items():
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u.startswith("http://") for u in urls):
            v.bad(f"$.downstreams.{sname}", "expected a non-empty list of http:// URLs")
        else:
            downstreams[sname] = tuple(u.rstrip("/") for u in urls)
    comps_raw = v.obj(top.get("components"), "$.components") or {}
    if not comps_raw:
        v.bad("$.components", "no components: a service runs at least one")
    components: dict[str, ComponentSpec] = {}
    for cname, craw in comps_raw.items():
        c = _component(v, cname, craw, f"$.components.{cname}")
        if c is not None:
            components[cname] = c
    # Every call must resolve: in-process to a component here, remote to a known downstream.
    for cname, comp in components.items():
        for ename, ep in comp.endpoints.items():
            for i, step in enumerate(ep.steps):
                for call in (step.calls if isinstance(step, ParallelSpec) else (step,)):
                    p = f"$.components.{cname}.endpoints.{ename}.calls[{i}]"
                    if call.service is None:
                        if call.component not in components or call.endpoint not in components[call.component].endpoints:
                            v.bad(p, f"in-process call to {call.target}, which this service does not run")
                    elif call.service not in downstreams:
                        v.bad(p, f"call to service {call.service!r}, which has no entry in $.downstreams")
    client = v.obj(top.get("client", {}), "$.client", allowed=("backoff_cap", "pool_size", "refused_holdoff")) or {}
    cfg_kwargs = {
        "backoff_cap": v.num(client.get("backoff_cap", DEFAULT_BACKOFF_CAP), "$.client.backoff_cap"),
        "pool_size": v.num(client.get("pool_size", DEFAULT_POOL_SIZE), "$.client.pool_size", 0, True),
        "refused_holdoff": v.num(client.get("refused_holdoff", DEFAULT_REFUSED_HOLDOFF), "$.client.refused_holdoff"),
        "shutdown_timeout": v.num(top.get("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT), "$.shutdown_timeout"),
        "span_flush": v.num(top.get("span_flush", DEFAULT_SPAN_FLUSH), "$.span_flush", 0.01),
    }
    seed = v.num(top.get("seed", 0), "$.seed", -(2**63), True)
    replica = v.num(top.get("replica", 0), "$.replica", 0, True)
    spans_path = v.text(top.get("spans_path"), "$.spans_path")
    log_path = v.text(top.get("log_path"), "$.log_path")
    if v.problems:
        raise RuntimeConfigError(v.problems, file=file)
    return RuntimeConfig(
        topology=str(top.get("topology", "")), service=service, replica=replica,
        listen_ip=listen["ip"], port=listen["port"], metrics_ip=metrics["ip"], metrics_port=metrics["port"],
        spans_path=spans_path or "", log_path=log_path or "", seed=seed,
        components=components, downstreams=downstreams, **cfg_kwargs,  # type: ignore[arg-type]
    )


def _dist_spec(v: _V, raw: Any, path: str) -> DistSpec | None:
    d = v.obj(raw, path, required=("dist", "mean"), allowed=("dist", "mean", "stddev", "p99"))
    if d is None or "dist" not in d or "mean" not in d:
        return None
    if d["dist"] not in DISTS:
        v.bad(f"{path}.dist", f"{d['dist']!r} is not one of: {', '.join(DISTS)}")
        return None
    mean = v.num(d["mean"], f"{path}.mean")
    sd = v.num(d["stddev"], f"{path}.stddev") if "stddev" in d else None
    p99 = v.num(d["p99"], f"{path}.p99") if "p99" in d else None
    if mean is None:
        return None
    if d["dist"] == "normal" and sd is None:
        v.bad(path, "a normal distribution needs 'stddev'")
    if d["dist"] == "lognormal" and sd is None and p99 is None:
        v.bad(path, "a lognormal distribution needs 'stddev' or 'p99'")
    if d["dist"] == "lognormal" and p99 is not None and p99 <= mean:
        v.bad(f"{path}.p99", "must be above the mean")
    return DistSpec(d["dist"], float(mean), None if sd is None else float(sd), None if p99 is None else float(p99))


def _call_spec(v: _V, raw: Any, path: str) -> CallSpec | None:
    c = v.obj(raw, path, required=("call", "service", "timeout", "retries", "backoff"),
              allowed=("call", "service", "timeout", "retries", "backoff"))
    if c is None or not all(k in c for k in ("call", "service", "timeout", "retries", "backoff")):
        return None
    target = c["call"]
    if not isinstance(target, str) or target.count(".") != 1:
        v.bad(f"{path}.call", f"expected 'component.endpoint', got {target!r}")
        return None
    if c["service"] is not None and not isinstance(c["service"], str):
        v.bad(f"{path}.service", "expected a service name or null (in-process)")
        return None
    timeout = v.num(c["timeout"], f"{path}.timeout")
    retries = v.num(c["retries"], f"{path}.retries", 0, True, 100)
    backoff = v.num(c["backoff"], f"{path}.backoff")
    if timeout is None or retries is None or backoff is None:
        return None
    if timeout <= 0:
        v.bad(f"{path}.timeout", "must be greater than 0")
    comp, ep = target.split(".")
    return CallSpec(comp, ep, c["service"], float(timeout), int(retries), float(backoff))


def _component(v: _V, name: str, raw: Any, path: str) -> ComponentSpec | None:
    c = v.obj(raw, path, required=("concurrency", "endpoints"), allowed=("concurrency", "store", "endpoints"))
    if c is None:
        return None
    conc = v.obj(c.get("concurrency"), f"{path}.concurrency", required=("workers", "queue")) or {}
    workers = v.num(conc.get("workers"), f"{path}.concurrency.workers", 1, True)
    queue = v.num(conc.get("queue"), f"{path}.concurrency.queue", 0, True)
    store = None
    if c.get("store") is not None:
        s = v.obj(c["store"], f"{path}.store", required=("latency",),
                  allowed=("latency", "cache_hit_ratio", "cache_latency"))
        if s is not None and "latency" in s:
            lat = _dist_spec(v, s["latency"], f"{path}.store.latency")
            ratio = v.num(s.get("cache_hit_ratio", 0.0), f"{path}.store.cache_hit_ratio", 0.0, False, 1.0)
            clat = _dist_spec(v, s["cache_latency"], f"{path}.store.cache_latency") if s.get("cache_latency") else None
            if ratio and clat is None:
                v.bad(f"{path}.store", "cache_hit_ratio without cache_latency")
            if lat is not None and ratio is not None:
                store = StoreSpec(lat, float(ratio), clat)
    endpoints: dict[str, EndpointSpec] = {}
    eps = v.obj(c.get("endpoints"), f"{path}.endpoints") or {}
    for ename, eraw in eps.items():
        ep_path = f"{path}.endpoints.{ename}"
        e = v.obj(eraw, ep_path, required=("cpu", "response_size", "store_ops", "calls"),
                  allowed=("cpu", "response_size", "store_ops", "calls"))
        if e is None or not all(k in e for k in ("cpu", "response_size", "store_ops", "calls")):
            continue
        cpu = _dist_spec(v, e["cpu"], f"{ep_path}.cpu")
        size = v.num(e["response_size"], f"{ep_path}.response_size", 0, True)
        ops = v.num(e["store_ops"], f"{ep_path}.store_ops", 0, True, 100)
        if ops and c.get("store") is None:
            v.bad(f"{ep_path}.store_ops", "store_ops given but the component has no store")
        steps: list[StepSpec] = []
        if not isinstance(e["calls"], list):
            v.bad(f"{ep_path}.calls", "expected a list of steps")
        else:
            for i, sraw in enumerate(e["calls"]):
                sp = f"{ep_path}.calls[{i}]"
                if isinstance(sraw, dict) and "parallel" in sraw:
                    if not isinstance(sraw["parallel"], list) or not sraw["parallel"]:
                        v.bad(f"{sp}.parallel", "expected a non-empty list of calls")
                        continue
                    calls = [_call_spec(v, x, f"{sp}.parallel[{j}]") for j, x in enumerate(sraw["parallel"])]
                    steps.append(ParallelSpec(tuple(x for x in calls if x is not None)))
                else:
                    call = _call_spec(v, sraw, sp)
                    if call is not None:
                        steps.append(call)
        if cpu is not None and size is not None and ops is not None:
            endpoints[ename] = EndpointSpec(ename, cpu, size, ops, tuple(steps))
    if not eps:
        v.bad(f"{path}.endpoints", "no endpoints")
    # Keep going with placeholders so the cross-checks (calls vs downstreams) still report;
    # the problem is already recorded, so the config is rejected anyway.
    return ComponentSpec(name, workers or 1, queue or 0, store, endpoints)
