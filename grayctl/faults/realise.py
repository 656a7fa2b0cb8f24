"""How a fault is realised on its target, given where the target lives in the chosen decomposition.

A fault's target is one of two kinds (``TARGET_KINDS``):

  service     a service with its own network hop (gen3's components, any service named as such)
  component   a component inside a shared process (gen1's components, most of gen2's)

Each fault type declares, in the catalog (``FaultType.realisation``), what it does on each kind:
``host`` (the node-side executor acts on the host: tc/netem or the fallback delayer, nftables,
stress-ng, signals) or ``refused`` (it cannot be realised faithfully there). A later ``runtime``
realisation (the service runtime acting at the component's boundary) slots in as a third value.

A refused fault is refused at validate/plan, never silently widened; ``scope.widen: process`` asks
for the whole hosting service instead, and the realisation string says so.

Map:
  target_kind(is_hop) -> "service" | "component"
  realisation_problem(ftype, kind, widen, ...) -> None | (message, expected)   why it is refused
  describe(...) -> str   the short realisation string of the plan, injection.json and the labels

Pure: imports only the catalog, so the controller and the node executor share the same words.
"""

from __future__ import annotations

from collections.abc import Iterable

from grayctl.faults.catalog import CATALOG, WIDEN_CHOICES

__all__ = ["TARGET_KINDS", "describe", "realisation_problem", "target_kind", "widened"]

TARGET_KINDS = ("service", "component")


def target_kind(is_hop: bool) -> str:
    return "service" if is_hop else "component"


def widened(kind: str, widen: str | None) -> bool:
    """Whether the fault acts on more than its target: a component target under ``scope.widen: process``."""
    return kind == "component" and widen in WIDEN_CHOICES


def realisation_problem(ftype: str, kind: str, widen: str | None, *, target: str, service: str,
                        topology: str) -> tuple[str, str] | None:
    """None when ``ftype`` can be realised on a target of ``kind``; else (why, what would be accepted)."""
    ft = CATALOG[ftype]
    how = ft.realisation[kind]
    if how != "refused" or widened(kind, widen):
        return None
    return (f"{target!r} is a component inside service {service!r} in topology {topology!r}: {ft.in_process_refusal}; "
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
             peer_services: Iterable[str] = ()) -> str:
    """The short realisation string, e.g. ``host: fallback delayer egress on node01 data, peers all``.

    ``backend``: what the node chose (netem, fallback), or what was asked (auto) in the plan."""
    ft = CATALOG[ftype]
    where = ",".join(nodes) or "?"
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
