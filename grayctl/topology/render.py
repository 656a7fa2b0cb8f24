"""A topology's call graph as Graphviz: services as clusters, components in them, one edge per call.

Map:
  to_dot(topology)        -> str     the graph in the dot language (pure; no Graphviz needed)
  to_image(dot, format)   -> bytes   render with the ``dot`` binary (svg or png); LabError if absent
  IMAGE_FORMATS, FORMATS             what ``to_image`` and ``grayctl topology graph`` accept

Drawing conventions (also in docs/topology-format.md):
  - a cluster per service, labelled with its slots, replicas and port;
  - a node per component: a table with one row (a port) per endpoint, its CPU work, and the
    component's store and worker pool;
  - an oval per request type (with its mix) and an edge to its entry endpoint;
  - an edge per call, endpoint to endpoint, labelled ``<step>`` (the position in the caller's
    sequence of steps, ``#1``), ``∥`` when the step is a parallel group, then the timeout and retries;
  - network calls (between services) are solid and black; in-process calls (same service) are
    dashed and grey, labelled ``in-process`` (no timeout or retry on a wire).
"""

from __future__ import annotations

import shutil
import subprocess
from html import escape

from grayctl.errors import GrayctlError, LabError
from grayctl.topology.model import Call, Component, Topology

__all__ = ["FORMATS", "IMAGE_FORMATS", "to_dot", "to_image"]

FORMATS = ("dot", "svg", "png")
IMAGE_FORMATS = ("svg", "png")
RENDER_TIMEOUT_S = 60

_NETWORK = 'color="black", fontcolor="black", style="solid"'
_IN_PROCESS = 'color="gray45", fontcolor="gray35", style="dashed"'


def _q(text: str) -> str:
    """A dot double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _component_id(name: str) -> str:
    return _q(f"component:{name}")


def _component_node(comp: Component) -> str:
    rows = [f'<tr><td bgcolor="lightsteelblue1"><b>{escape(comp.name)}</b></td></tr>']
    for ep in comp.endpoints.values():
        work = f"cpu {ep.cpu.describe()}, {ep.response_size}"
        if ep.store_ops:
            work += f", {ep.store_ops} store op{'s' if ep.store_ops > 1 else ''}"
        rows.append(f'<tr><td port="{escape(ep.name)}" align="left">{escape(ep.name)} '
                    f'<font point-size="8" color="gray30">{escape(work)}</font></td></tr>')
    notes = [f"workers {comp.concurrency.workers}, queue {comp.concurrency.queue}"]
    if comp.store is not None:
        store = f"store {comp.store.latency.describe()}"
        if comp.store.cache_hit_ratio is not None and comp.store.cache_latency is not None:
            store += f", cache {comp.store.cache_hit_ratio} hits in {comp.store.cache_latency.describe()}"
        notes.append(store)
    for note in notes:
        rows.append(f'<tr><td align="left"><font point-size="8" color="gray30">{escape(note)}</font></td></tr>')
    table = '<table border="0" cellborder="1" cellspacing="0" cellpadding="3">' + "".join(rows) + "</table>"
    return f"{_component_id(comp.name)} [label=<{table}>];"


def _call_label(step: int, parallel: bool, call: Call, network: bool) -> str:
    head = f"#{step}" + (" ∥" if parallel else "")
    if not network:
        return f"{head} in-process"
    retries = f"{call.retries} retr{'y' if call.retries == 1 else 'ies'}"
    if call.retries:
        retries += f" (backoff {call.backoff})"
    return f"{head} timeout {call.timeout}, {retries}"


def to_dot(topology: Topology) -> str:
    """The topology's services, components, request entry points and calls in the dot language."""
    lines = [
        f"digraph {_q(topology.name)} {{",
        (f"  graph [rankdir=LR, compound=true, fontname=\"Helvetica\", fontsize=12, labelloc=t, "
         f"label={_q(f'topology {topology.name}: {topology.summary()}')}];"),
        '  node [shape=plain, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8, arrowsize=0.7];',
        "",
    ]
    for req in topology.requests.values():
        label = _q(req.name + "\n" + str(req.mix))
        lines.append(f"  {_q('request:' + req.name)} [shape=oval, style=filled, fillcolor=\"khaki1\", "
                     f"label={label}];")
    for svc in topology.services.values():
        label = _q(f"service {svc.name}" + "\n" + f"{', '.join(svc.slots)} x{svc.replicas}, port {svc.port}")
        lines += [
            "",
            f"  subgraph {_q('cluster_' + svc.name)} {{",
            f"    label={label};",
            '    style="rounded,filled"; fillcolor="gray96"; color="gray60";',
        ]
        for cname in svc.components:
            lines.append("    " + _component_node(topology.components[cname]))
        lines.append("  }")
    lines.append("")
    for req in topology.requests.values():
        comp, ep = req.entry.split(".", 1)
        lines.append(f"  {_q('request:' + req.name)} -> {_component_id(comp)}:{_q(ep)} "
                     f'[color="darkgoldenrod", style="bold", comment="entry"];')
    for caller, step, call, parallel in topology.calls():
        comp, ep = caller.split(".", 1)
        network = topology.service_of(call.component) != topology.service_of(comp)
        style = _NETWORK + (", penwidth=1.6" if parallel else "") if network else _IN_PROCESS
        lines.append(f"  {_component_id(comp)}:{_q(ep)} -> {_component_id(call.component)}:{_q(call.endpoint)} "
                     f"[label={_q(_call_label(step, parallel, call, network))}, {style}, "
                     f"comment={_q('network' if network else 'in-process')}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_image(dot: str, fmt: str) -> bytes:
    """Render dot text to ``svg`` or ``png`` with Graphviz's ``dot``; LabError when it is not installed."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {fmt!r}")
    binary = shutil.which("dot")
    if binary is None:
        raise LabError(f"cannot write {fmt}: Graphviz's 'dot' program is not installed",
                       hint="install graphviz (Debian/Ubuntu: apt-get install graphviz), or use --format dot")
    try:
        done = subprocess.run([binary, f"-T{fmt}"], input=dot.encode("utf-8"), capture_output=True,
                              timeout=RENDER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"Graphviz's dot did not finish within {RENDER_TIMEOUT_S}s") from None
    if done.returncode != 0:  # our dot text is wrong: a bug, not the user's input
        raise GrayctlError(f"Graphviz's dot failed (exit {done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout
