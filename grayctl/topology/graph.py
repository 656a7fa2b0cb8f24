"""The application's call graph: endpoints (``component.endpoint``) are its nodes, calls its edges.

Map:
  find_cycle(components) -> CallCycle | None   the first call cycle a depth-first search meets
  CallCycle                                    the cycle's endpoints and the call that closes it

The walks a caller needs on a valid topology (every call, the call tree from an entry) are
``Topology.calls()`` and ``Topology.call_tree()`` in ``model``; drawing the graph is ``render``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from grayctl.topology.model import Call, Component, Parallel

__all__ = ["CallCycle", "find_cycle"]


@dataclass(frozen=True)
class CallCycle:
    """A call cycle: ``targets`` from the first endpoint back to itself, closed by one call of ``caller``.

    That call is ``caller``'s step ``step`` (from 0), and within a parallel step its member ``member``
    (None for a plain call): enough for the validator to point at the line that closes the cycle.
    """

    targets: tuple[str, ...]
    caller: str
    step: int
    member: int | None


def _edges(components: Mapping[str, Component], target: str) -> list[tuple[int, int | None, Call]]:
    """``target``'s calls as (step index, index within a parallel step or None, call)."""
    comp, ep = target.split(".")
    out: list[tuple[int, int | None, Call]] = []
    for i, step in enumerate(components[comp].endpoints[ep].calls):
        if isinstance(step, Parallel):
            out += [(i, j, c) for j, c in enumerate(step.calls)]
        else:
            out.append((i, None, step))
    return out


def find_cycle(components: Mapping[str, Component]) -> CallCycle | None:
    """Depth-first search over endpoints in file order; the first back edge is a call cycle.

    Calls to endpoints that do not exist are skipped (the validator reports those on their own).
    """
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    stack: list[str] = []

    def visit(target: str) -> CallCycle | None:
        state[target] = 1
        stack.append(target)
        for i, j, call in _edges(components, target):
            if call.component not in components or call.endpoint not in components[call.component].endpoints:
                continue
            nxt = call.target
            if state.get(nxt) == 1:
                return CallCycle(tuple(stack[stack.index(nxt):] + [nxt]), target, i, j)
            if state.get(nxt) is None and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[target] = 2
        return None

    for cname, comp in components.items():
        for ename in comp.endpoints:
            t = f"{cname}.{ename}"
            if state.get(t) is None and (found := visit(t)) is not None:
                return found
    return None
