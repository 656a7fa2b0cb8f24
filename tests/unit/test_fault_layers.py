"""Faults' layers point one way: the node half imports only grayctl.faults.* and grayctl.units, and the
controller never imports the node executor (it plans with the catalog and the spec)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "grayctl"
# What the node runs: the executor, its helpers, and the pure modules they build commands with.
NODE_SIDE = sorted([*(PKG / "faults" / "node").glob("*.py"),
                    *(PKG / "faults" / f"{m}.py" for m in ("catalog", "spec", "tc", "backends"))])


def _grayctl_imports(path: Path) -> set[str]:
    """grayctl modules ``path`` imports at run time (``if TYPE_CHECKING:`` blocks are type hints only)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("grayctl")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("grayctl"):
            out.add(node.module or "")
    return out


@pytest.mark.parametrize("path", NODE_SIDE, ids=lambda p: str(p.relative_to(PKG)))
def test_the_node_half_imports_only_faults_and_units(path: Path) -> None:
    stray = {m for m in _grayctl_imports(path) if not (m.startswith("grayctl.faults") or m == "grayctl.units")}
    assert not stray, f"{path.relative_to(PKG)} imports {sorted(stray)}"


# Node programs outside faults/ that take a fault from the node half: the service runtime realises
# runtime faults from the control file the executor owns (runtimectl) with netem's decision model
# (delaymodel). They import those two and nothing else of it; the controller imports neither module.
NODE_PROGRAMS = {"runtime/faults.py": {"grayctl.faults.node.runtimectl", "grayctl.faults.node.delaymodel"},
                 "runtime/__main__.py": {"grayctl.faults.node.runtimectl"}}


def test_node_programs_take_only_the_control_channel_and_the_decision_model() -> None:
    for rel, allowed in NODE_PROGRAMS.items():
        mods = {m for m in _grayctl_imports(PKG / rel) if m.startswith("grayctl.faults.node")}
        assert mods <= allowed, (rel, mods - allowed)


def test_the_controller_never_imports_the_node_executor() -> None:
    controller = [p for p in PKG.rglob("*.py") if "faults" not in p.relative_to(PKG).parts
                  and str(p.relative_to(PKG)) not in NODE_PROGRAMS]
    bad = {str(p.relative_to(PKG)): sorted(m for m in _grayctl_imports(p) if m.startswith("grayctl.faults.node"))
           for p in controller}
    assert not {k: v for k, v in bad.items() if v}
