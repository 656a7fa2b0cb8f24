"""How a fault is realised on its target, given where the target lives in the chosen decomposition.

A fault's target is one of two kinds (``TARGET_KINDS``):

  service     a service with its own network hop (gen3's components, any service named as such)
  component   a component inside a shared process (gen1's components, most of gen2's)

Each fault type declares, in the catalog (``FaultType.realisation``), what it does on each kind:
``host`` (the node-side executor acts on the host: tc/netem or the fallback delayer, nftables,
stress-ng, signals), ``runtime`` (the service runtime acts at the component's boundary, on the
calls into it: grayctl.runtime.faults, driven through the control file the node executor owns,
grayctl.faults.node.runtimectl) or ``refused`` (it cannot be realised faithfully there).

A refused fault is refused at validate/plan, never silently widened; ``scope.widen: process`` asks
for the whole hosting service instead, and the realisation string says so. ``scope.realise``
asks for one realisation: ``runtime`` on a service of its own too (the equivalence bench compares
it with the host's), ``host`` on a component only together with ``widen: process``.

Map:
  target_kind(is_hop) -> "service" | "component"
  realisation_of(ftype, kind, widen, realise) -> "host" | "runtime" | "refused"
  realisation_problem(ftype, kind, widen, ..., realise) -> None | (message, expected)   why it is refused
  describe(...) -> str   the short realisation string of the plan, injection.json and the labels

Pure: imports only the catalog, so the controller and the node executor share the same words.
"""

from __future__ import annotations

from collections.abc import Iterable

from grayctl.faults.catalog import CATALOG, WIDEN_CHOICES

__all__ = ["TARGET_KINDS", "describe", "realisation_of", "realisation_problem", "target_kind", "widened"]

TARGET_KINDS = ("service", "component")


def target_kind(is_hop: bool) -> str:
    return "service" if is_hop else "component"


def widened(kind: str, widen: str | None, realise: str | None = None) -> bool:
    """Whether the fault acts on more than its target: a component target under ``scope.widen: process``."""
    return kind == "component" and widen in WIDEN_CHOICES and realise != "runtime"


def realisation_of(ftype: str, kind: str, widen: str | None = None, realise: str | None = None) -> str:
    """How ``ftype`` is realised on a target of ``kind``: host | runtime | refused."""
    ft = CATALOG[ftype]
    if realise == "runtime":
        return "runtime" if ft.runtime_realisable and widen is None else "refused"
    if widened(kind, widen):
        return "host"
    if realise == "host":
        return "host" if kind == "service" else "refused"
    return ft.realisation[kind]


def realisation_problem(ftype: str, kind: str, widen: str | None, *, target: str, service: str,
                        topology: str, realise: str | None = None) -> tuple[str, str] | None:
    """None when ``ftype`` can be realised on a target of ``kind``; else (why, what would be accepted)."""
    ft = CATALOG[ftype]
    if realisation_of(ftype, kind, widen, realise) != "refused":
        return None
    if realise == "runtime" and widen is not None:
        return ("scope.realise: runtime acts at the target's boundary, scope.widen: process on the whole process: "
                "they contradict each other",
                "one of them: realise: runtime (the component alone) or widen: process (the whole process)")
    if realise == "runtime":
        return (f"{ftype} cannot be realised by the service runtime: {ft.runtime_refusal}",
                "remove scope.realise (host realisation on a service of its own), or a fault type the runtime "
                "realises: " + ", ".join(n for n, t in CATALOG.items() if t.runtime_realisable))
    if realise == "host":
        return (f"{target!r} is a component inside service {service!r} in topology {topology!r}: a host realisation "
                f"is not faithful there ({ft.in_process_refusal})",
                "remove scope.realise (the runtime realises it at the component), or add widen: process to "
                "fault the whole process on purpose")
    return (f"{target!r} is a component inside service {service!r} in topology {topology!r}: {ft.in_process_refusal}; "
            f"the service runtime cannot realise it either ({ft.runtime_refusal}); "
            f"grayctl refuses rather than widen the fault to the whole process silently",
            f"target the service {service!r} itself, a topology where {target!r} is a service of its own, "
            f"or scope: {{widen: process}} to fault the whole process on purpose")


_MECHANISM = {"netem": "netem", "fallback": "fallback delayer", "auto": "netem or fallback delayer (auto)"}


def _mechanism(ftype: str, backend: str) -> str:
    if ftype == "network-partition":
        return "nftables drop"
    if ftype == "network-flap":
        return "link down/up"
    if ftype == "network-bandwidth" and backend == "fallback":
        return "tbf"
    return _MECHANISM.get(backend, backend)


def describe(ftype: str, *, service: str, target_service: str, nodes: Iterable[str], widen: bool,
             interface: str | None = None, direction: str | None = None, backend: str = "auto",
             peer_services: Iterable[str] = (), runtime: bool = False, component: str | None = None,
             in_process: bool = True) -> str:
    """The short realisation string, e.g. ``host: fallback delayer egress on node01 data, peers all`` or
    ``runtime: in-process calls into social-graph-service in service monolith on node01``.

    ``backend``: what the node chose (netem, fallback), or what was asked (auto) in the plan.
    ``runtime``: realised by the service runtime; ``component``: the component it acts on (None: every
    component of the service); ``in_process``: the target shares its process (its callers call it
    in-process), else it is a service of its own under scope.realise: runtime (its calls arrive over
    the network)."""
    ft = CATALOG[ftype]
    where = ",".join(nodes) or "?"
    if runtime:
        pause = ftype == "process-pause"
        if component is None:
            head = f"runtime: {'worker pools of' if pause else 'calls into'} service {service} on {where}"
        else:
            what = "worker pool of" if pause else ("in-process calls into" if in_process else "calls into")
            head = f"runtime: {what} {component} in service {service} on {where}"
        peers = ",".join(peer_services)
        return head + (f", from {peers}" if peers else "")
    whom = f"service {service}" + (f" (widened from {target_service})" if widen else "")
    if ft.family == "network":
        peers = ",".join(peer_services) or "all"
        direction = "" if ftype == "network-flap" else f" {direction or 'egress'}"
        head = f"host: {_mechanism(ftype, backend)}{direction} on {where} {interface or '?'}, peers {peers}"
        return head + (f", {whom}" if widen else "")
    if ft.family == "resource":
        return f"host: stress-ng in the node cgroup on {where}, for {whom}"
    verb = "SIGSTOP" if ftype == "process-pause" else "kill"
    return f"host: {verb} of {whom} on {where}"
