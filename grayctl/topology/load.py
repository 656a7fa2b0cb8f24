"""Finding and reading topology files: the edge where a name or path becomes a validated Topology.

Map:
  load_topology(name_or_path, base_dir)  -> Topology   find + read YAML + validate (InputError on any problem)
  find_topology(ref, base_dir)           -> Path       a bare name -> topologies/<name>.yaml; a path as given
  list_topologies()                      -> [(name, path, summary)]   every shipped topology, invalid ones too
  TOPOLOGIES_DIR                                       where bare names are looked up (grayctl.paths)
"""

from __future__ import annotations

from pathlib import Path

from grayctl.errors import InputError, Problem
from grayctl.paths import TOPOLOGIES_DIR
from grayctl.source import ValueProblem, load_yaml_document, parse_identifier, suggest
from grayctl.topology.model import Topology
from grayctl.topology.validate import validate_topology

__all__ = ["TOPOLOGIES_DIR", "find_topology", "list_topologies", "load_topology"]


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def find_topology(ref: str, base_dir: Path | None = None) -> Path:
    """Resolve a topology reference: a bare name -> topologies/<name>.yaml; a path -> relative to ``base_dir``.

    Raises ValueProblem (with a did-you-mean) when it does not exist.
    """
    if _looks_like_path(ref):
        p = Path(ref)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.is_file():
            raise ValueProblem(f"topology file {ref!r} not found", "a topology name or an existing file path")
        return p
    name = parse_identifier(ref, what="topology name")
    p = TOPOLOGIES_DIR / f"{name}.yaml"
    if not p.is_file():
        names = [n for n, _, _ in _topology_files()]
        raise ValueProblem(f"unknown topology {name!r}", "one of: " + ", ".join(names) if names else
                           f"a file {TOPOLOGIES_DIR}/{name}.yaml", suggest(name, names))
    return p


def _topology_files() -> list[tuple[str, Path, str]]:
    if not TOPOLOGIES_DIR.is_dir():
        return []
    return [(p.stem, p, "") for p in sorted(TOPOLOGIES_DIR.glob("*.yaml"))]


def list_topologies() -> list[tuple[str, Path, str]]:
    """Every topology in topologies/: (name, path, one-line summary or the first problem)."""
    out = []
    for name, path, _ in _topology_files():
        try:
            topo = load_topology(path)
            summary = topo.description.strip().splitlines()[0] if topo.description.strip() else topo.summary()
        except InputError as err:
            summary = f"INVALID: {err.problems[0].message if err.problems else err.message}"
        out.append((name, path, summary))
    return out


def load_topology(name_or_path: str | Path, base_dir: Path | None = None) -> Topology:
    """Read and validate a topology by name (topologies/<name>.yaml) or path. Raises InputError."""
    if isinstance(name_or_path, Path):
        path = name_or_path
    else:
        try:
            path = find_topology(name_or_path, base_dir)
        except ValueProblem as err:
            raise InputError(Problem(str(err), file=str(name_or_path), expected=err.expected,
                                     suggestion=err.suggestion)) from None
    data, positions = load_yaml_document(path)
    return validate_topology(data, positions, str(path), path)
