"""The package is what it says: its content list, its extras, and what each part imports.

- setup.py packs the same content entries that grayctl.paths looks for;
- the node programs import nothing beyond the standard library and the node requirements
  (grayctl/node-requirements.txt, the `node` extra and what the node runtime installs);
- `import grayctl.dataset` needs pandas, pyarrow, numpy and pyyaml only, not the controller's
  Ansible, click, rich, jinja2 or matplotlib.
Imports are read from the source (AST), following grayctl's own modules transitively.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

from grayctl import paths
from grayctl.node_runtime import node_requirements

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "grayctl"
# distribution name -> the top-level module it provides
IMPORT_NAME = {"pyyaml": "yaml", "hdrhistogram": "hdrh"}
NODE_PROGRAMS = ["grayctl.runtime", "grayctl.workload", "grayctl.exporters", "grayctl.observer",
                 "grayctl.faults.node.faultctl", "grayctl.faults.node.nfqdelay", "grayctl.faults.node.steer",
                 "grayctl.faults.node.stutter", "grayctl.faults.node.probe", "grayctl.faults.node.expiry",
                 "grayctl.faults.node.flap"]


def _file(module: str) -> Path | None:
    base = PKG.parent / Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py", base / "__main__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    pkg = module if path.name in ("__init__.py", "__main__.py") else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.add(name)
            if name.startswith("grayctl"):  # `from grayctl.x import y` may name a submodule y
                out |= {f"{name}.{a.name}" for a in node.names if _file(f"{name}.{a.name}")}
        elif isinstance(node, ast.If) and top_level_only:
            nodes.extend(node.body)
        elif isinstance(node, ast.Try) and top_level_only:
            nodes.extend(node.body)
    return out


def _third_party(roots: list[str], top_level_only: bool) -> dict[str, set[str]]:
    """Third-party top-level names imported by ``roots`` and the grayctl modules they reach."""
    seen: set[str] = set()
    todo = list(roots)
    found: dict[str, set[str]] = {}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run first
        path = _file(mod)
        if path is None:
            continue
        if path.name == "__init__.py" and mod in roots:  # a package root: all of its modules
            todo += [f"{mod}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__"]
        for name in _imports(path, mod, top_level_only):
            top = name.split(".")[0]
            if top == "grayctl":
                todo.append(name)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(mod)
    return found


def test_setup_packs_the_content_grayctl_paths_looks_for() -> None:
    tree = ast.parse((REPO / "setup.py").read_text())
    content = next(ast.literal_eval(n.value) for n in tree.body
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "CONTENT")
    assert tuple(content) == paths.CONTENT
    assert all((REPO / name).exists() for name in content)


def test_the_extras_read_the_requirement_files_that_exist() -> None:
    dyn = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    files = {extra: spec["file"] for extra, spec in dyn["optional-dependencies"].items()}
    assert files["node"] == ["grayctl/node-requirements.txt"]
    assert all((REPO / f).is_file() for fs in files.values() for f in fs)


def test_node_programs_import_only_the_node_requirements() -> None:
    provided = {IMPORT_NAME.get(r.split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower(),
                                r.split("<")[0].split(">")[0].split("=")[0].strip().lower())
                for r in node_requirements()}
    found = _third_party(NODE_PROGRAMS, top_level_only=False)
    missing = {name: sorted(mods)[:3] for name, mods in found.items() if name not in provided}
    assert not missing, f"node programs import packages the node runtime does not install: {missing}"
    unused = provided - set(found)
    assert not unused, f"node requirements no node program imports: {sorted(unused)}"


@pytest.mark.parametrize("heavy", ["ansible", "ansible_runner", "click", "rich", "jinja2", "matplotlib"])
def test_importing_the_dataset_package_needs_none_of_the_controller(heavy: str) -> None:
    found = _third_party(["grayctl.dataset"], top_level_only=True)
    assert heavy not in found, f"import grayctl.dataset pulls {heavy} in through {sorted(found[heavy])}"
    assert set(found) <= {"pandas", "pyarrow", "numpy", "yaml"}, found
