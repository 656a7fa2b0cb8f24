"""``grayctl topology list|show|graph`` — the topologies grayctl knows, what one contains, its call graph."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from grayctl.errors import InputError, Problem
from grayctl.topology import Topology, list_topologies, load_topology
from grayctl.topology.render import FORMATS, to_dot, to_image


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


_SUFFIX_FORMATS = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}


@topology.command("graph")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE instead of standard output (the format follows its suffix).")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS),
              help="dot (default), or svg/png rendered with Graphviz's 'dot' program.")
def graph(name: str, output: Path | None, fmt: str | None) -> None:
    """Write a topology's call graph as Graphviz (NAME or a file path).

    Services are clusters around their components; every call is an edge labelled with its
    step, '∥' for a parallel group, timeout and retries; in-process calls are dashed.
    """
    if fmt is None:
        fmt = _SUFFIX_FORMATS.get(output.suffix.lower(), "dot") if output is not None else "dot"
    if fmt == "png" and output is None and sys.stdout.isatty():
        raise InputError(Problem("a PNG is binary: it will not be written to a terminal", path="--format",
                                 expected="-o FILE.png, or redirect standard output to a file"))
    topo = load_topology(name)
    text = to_dot(topo)
    data = text.encode("utf-8") if fmt == "dot" else to_image(text, fmt)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as err:
        raise InputError(Problem(f"cannot write: {err.strerror or err}", file=str(output), path="--output",
                                 expected="a writable file path")) from None
    click.echo(f"wrote {output} ({fmt}, {len(topo.services)} services, "
               f"{sum(1 for _ in topo.calls())} calls)", err=True)


def render_topology(topo: Topology) -> list[str]:
    """Plain-text lines describing a topology (services, slots, requests, call trees)."""
    lines = [f"topology {topo.name}: {topo.summary()}"]
    if topo.description:
        lines.append(f"  {topo.description.strip()}")
    if topo.application_file is not None:
        lines.append(f"  application from {topo.to_dict()['application_file']}")
    lines += ["", "services (components -> slots x replicas, port):"]
    for svc in topo.services.values():
        lines.append(f"  {svc.name}: [{', '.join(svc.components)}] -> {', '.join(svc.slots)} "
                     f"x{svc.replicas}, port {svc.port}, metrics {svc.metrics_port}")
    lines += ["", f"slots: {', '.join(topo.slots())}", "", "requests (mix, call graph):"]
    for req in topo.requests.values():
        lines.append(f"  {req.name} ({req.mix}):")
        callers: list[str] = []  # service at each depth of the walk
        for depth, target, call, parallel in topo.call_tree(req.entry):
            owner = topo.service_of(target.split(".", 1)[0])
            del callers[depth:]
            label = f"{target}  [{owner}]"
            if call is not None:
                hop = "in-process" if callers and callers[-1] == owner else f"timeout {call.timeout}, retries {call.retries}"
                label = ("|| " if parallel else "") + f"{label}  {hop}"
            callers.append(owner)
            lines.append("    " + "  " * depth + label)
    lines += ["", "work per endpoint:"]
    for comp in topo.components.values():
        for ep in comp.endpoints.values():
            lines.append(f"  {comp.name}.{ep.name}: cpu {ep.cpu.describe()}, response {ep.response_size}"
                         + (f", store ops {ep.store_ops}" if ep.store_ops else ""))
    return lines
