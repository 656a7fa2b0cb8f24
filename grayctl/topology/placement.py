"""Decomposition and placement: which components run together as a service, and where its replicas go.

Map:
  parse_services(ck, top, comp_names, app_display) -> {name: Service}
      checks ``decomposition`` (service -> components, each component in exactly one service),
      ``placement`` (service -> slots, replicas, port, metrics_port) and ``ports`` (the bases the
      default ports count up from); every problem is recorded on the Checker ``ck``.
  RESERVED_PORTS, DEFAULT_PORT_BASE, DEFAULT_METRICS_PORT_BASE

Ports: service i (file order) defaults to base + i and metrics_base + i; replicas that share a slot
get port pairs of their own after every service's (``_colocated_replica_ports``), never a reserved one.
"""

from __future__ import annotations

from typing import Any

from grayctl.source import Checker, parse_identifier, parse_int, suggest
from grayctl.topology.model import Service

__all__ = ["DEFAULT_METRICS_PORT_BASE", "DEFAULT_PORT_BASE", "RESERVED_PORTS", "parse_services"]

DEFAULT_PORT_BASE = 8100
DEFAULT_METRICS_PORT_BASE = 9100
# Ports the lab's own agents hold on every node (sshd, Prometheus, node_exporter, the grayctl exporter,
# the observer; docs/metrics.md): never handed to a co-located replica.
RESERVED_PORTS = frozenset({22, 9090, 9301, 9302, 9303})


def parse_services(ck: Checker, top: dict[str, Any], comp_names: list[str],
                   app_display: str | None) -> dict[str, Service]:
    """``decomposition`` and ``placement`` of ``top`` as services; problems go to ``ck``.

    ``comp_names`` are the application's components, ``app_display`` the application file's name
    (None when the application is inline), for the messages.
    """
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
                where = f"the application in {app_display}" if app_display else "application.components"
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
    ports = _ports(ck, top.get("ports"))
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
    return _colocated_replica_ports(services, used_ports, ports, len(members))


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


def _ports(ck: Checker, raw: Any) -> tuple[int, int]:
    """``ports: {base, metrics_base}``: where the default port of each service counts up from."""
    if raw is None:
        return DEFAULT_PORT_BASE, DEFAULT_METRICS_PORT_BASE
    m = ck.mapping(raw, ("ports",), allowed=("base", "metrics_base"))
    if m is None:
        return DEFAULT_PORT_BASE, DEFAULT_METRICS_PORT_BASE
    base = ck.field(m, ("ports",), "base", parse_int(1024, 60000, "a TCP port"), DEFAULT_PORT_BASE)
    mbase = ck.field(m, ("ports",), "metrics_base", parse_int(1024, 60000, "a TCP port"), DEFAULT_METRICS_PORT_BASE)
    return base or DEFAULT_PORT_BASE, mbase or DEFAULT_METRICS_PORT_BASE
