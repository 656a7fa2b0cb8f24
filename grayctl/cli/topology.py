"""``grayctl topology list|show`` — the topologies grayctl knows, and what one contains."""

from __future__ import annotations

import json

import click

from grayctl.topology import Topology, list_topologies, load_topology


@click.group()
def topology() -> None:
    """Inspect topology files."""


@topology.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(as_json: bool) -> None:
    """List the topologies in topologies/."""
    items = list_topologies()
    if as_json:
        click.echo(json.dumps([{"name": n, "path": str(p), "summary": s} for n, p, s in items], indent=2))
        return
    if not items:
        click.echo("no topologies found")
        return
    width = max(len(n) for n, _, _ in items)
    for name, _, summary in items:
        click.echo(f"{name:<{width}}  {summary}")


@topology.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(name: str, as_json: bool) -> None:
    """Show a topology: services, placement, request mix and call graphs (NAME or a file path)."""
    topo = load_topology(name)
    if as_json:
        click.echo(json.dumps(topo.to_dict(), indent=2))
        return
    click.echo("\n".join(render_topology(topo)))


def render_topology(topo: Topology) -> list[str]:
    """Plain-text lines describing a topology (services, slots, requests, call trees)."""
    lines = [f"topology {topo.name}: {topo.summary()}"]
    if topo.description:
        lines.append(f"  {topo.description.strip()}")
    lines += ["", "services (components -> slots x replicas, port):"]
    for svc in topo.services.values():
        lines.append(f"  {svc.name}: [{', '.join(svc.components)}] -> {', '.join(svc.slots)} "
                     f"x{svc.replicas}, port {svc.port}, metrics {svc.metrics_port}")
    lines += ["", f"slots: {', '.join(topo.slots())}", "", "requests (mix, call graph):"]
    for req in topo.requests.values():
        lines.append(f"  {req.name} ({req.mix}):")
        callers: list[str] = []  # service at each depth of the walk
        for depth, target, call, parallel in topo.call_tree(req.entry):
            svc = topo.service_of(target.split(".", 1)[0])
            del callers[depth:]
            label = f"{target}  [{svc}]"
            if call is not None:
                hop = "in-process" if callers and callers[-1] == svc else f"timeout {call.timeout}, retries {call.retries}"
                label = ("|| " if parallel else "") + f"{label}  {hop}"
            callers.append(svc)
            lines.append("    " + "  " * depth + label)
    lines += ["", "work per endpoint:"]
    for comp in topo.components.values():
        for ep in comp.endpoints.values():
            lines.append(f"  {comp.name}.{ep.name}: cpu {ep.cpu.describe()}, response {ep.response_size}"
                         + (f", store ops {ep.store_ops}" if ep.store_ops else ""))
    return lines
