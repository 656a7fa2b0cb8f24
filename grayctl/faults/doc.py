"""docs/fault-catalog.md's "Types" section, rendered from the catalog (the page never lists a type itself).

  to_markdown() -> str       the section: one table per type, then the common scope fields
  render_doc(text) -> str    the page with its generated section replaced

``python -m grayctl.faults.doc`` rewrites the page; tests/unit/test_experiment.py fails when the
page and the catalog differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grayctl.faults.catalog import CATALOG, SCOPE_PARAMS, Param

__all__ = ["DOC", "render_doc", "to_markdown"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "fault-catalog.md"
_BEGIN, _END = "<!-- generated from grayctl/faults/catalog.py: begin -->", "<!-- generated: end -->"
_DATASETS = {"rcaeval": "RCAEval"}


def _cell_default(p: Param) -> str:
    if p.required:
        return "required"
    if p.default is None:
        return "—"
    if isinstance(p.default, bool):
        return f"`{str(p.default).lower()}`"
    return f"`{p.default}`"


def _cell_range(p: Param) -> str:
    if p.kind == "percent" and p.min is None and p.max is None:
        return "0%–100%"
    parts = []
    if p.min is not None:
        parts.append(f"{'>' if p.min_exclusive else '>='} {p.format(p.min)}")
    if p.max is not None:
        parts.append(f"<= {p.format(p.max)}")
    return ", ".join(parts) or "—"


def _rows(params: tuple[Param, ...], prefix: str = "") -> list[str]:
    out = []
    for p in params:
        out.append(f"| `{prefix}{p.name}` | {p.unit_hint} | {_cell_default(p)} | {_cell_range(p)} | {p.doc} |")
        out += _rows(p.fields, f"{prefix}{p.name}.")
    return out


def _table(params: tuple[Param, ...], first: str) -> list[str]:
    return [f"| {first} | kind | default | range | meaning |", "|---|---|---|---|---|", *_rows(params)]


_RUNTIME_HOW = {
    "network-latency": "each call into it sleeps a sampled delay first (twice with direction both)",
    "network-loss": "a lost call never reaches it, the caller's timeout and retries run",
    "network-bandwidth": "calls wait in a token bucket for their answer's bytes, lost past the limit",
    "network-corruption": "a corrupted call fails (in-process: an error; over HTTP: 502)",
    "network-partition": "every call from the peers (default all callers) is lost",
    "process-pause": "its worker pool stops taking work: calls wait at its gate for the pause or stutter",
}


def to_markdown() -> str:
    """The "Types" section of docs/fault-catalog.md, from the catalog."""
    out = [_BEGIN, "## Types", ""]
    for ft in CATALOG.values():
        backends = ", ".join(f"`{b}`" for b in ft.backends)
        refused = "".join(f" Not on `{b}`: {why}." for b, why in ft.refused.items())
        exports = ", ".join(f"{_DATASETS.get(k, k)} `{v}`" for k, v in ft.export.items())
        out += [f"### `{ft.name}` ({ft.family})", "", ft.doc, "", *_table(ft.params, "parameter"), "",
                f"Scope fields: {', '.join(f'`{s}`' for s in ft.scope_fields)}. Backends: {backends}.{refused} "
                f"Exported as: {exports}.", "",
                f"Realised on a service with its own hop: {ft.realisation['service']}; on a component inside a "
                f"shared process: {ft.realisation['component']}"
                + (f" ({ft.in_process_refusal}; the runtime cannot either: {ft.runtime_refusal}; "
                   "`scope.widen: process` faults the whole process)"
                   if ft.realisation["component"] == "refused" else
                   " (the service runtime at the component's boundary: " + _RUNTIME_HOW.get(ft.name, "") + "; "
                   "`scope.realise: runtime` asks for it on a service of its own too)") + ".", ""]
    out += ["### `scope` (common to all types)", "", *_table(SCOPE_PARAMS, "field"), "", _END]
    return "\n".join(out) + "\n"


def render_doc(text: str) -> str:
    """``text`` (the page) with its generated section replaced by ``to_markdown()``."""
    head, sep, rest = text.partition(_BEGIN)
    _, sep2, tail = rest.partition(_END + "\n")
    if not sep or not sep2:
        raise ValueError(f"{DOC} has no generated section ({_BEGIN} ... {_END})")
    return head + to_markdown() + tail


if __name__ == "__main__":
    DOC.write_text(render_doc(DOC.read_text()))
    sys.exit(0)
