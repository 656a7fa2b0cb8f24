"""Layers point one way: the architecture's import rules, written as data and checked on the code.

Every module's imports are read from its source (an AST walk: module level, inside functions and
under ``if TYPE_CHECKING`` alike — a deferred import is still a dependency), resolved to the grayctl
module they name, and held against the rules below. A failure names the importing module, the line
and the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grayctl
from grayctl.lab.provider import PROVIDERS, Provider, provider_for

PACKAGE = Path(grayctl.__file__).resolve().parent

# -- the architecture, as data ------------------------------------------------------------------

# What runs on the lab nodes, not in the controller (installed there as the node runtime).
NODE_SIDE = (
    "grayctl.runtime",            # the topology's service processes
    "grayctl.workload.loadgen",   # the open-loop load generator ...
    "grayctl.workload.__main__",  # ... and its command line (its schedule and records are read here too)
    "grayctl.exporters",          # cgroup and qdisc exporters
    "grayctl.observer",           # the health checker
    "grayctl.faults.node", "grayctl.faults.backends", "grayctl.faults.tc",     # the fault executor and its helpers
)

# The contracts between the two halves: the controller writes them, the node validates them. The
# only doors from controller code into node-side packages.
CONTRACTS = (
    "grayctl.faults",          # the fault catalog (catalog, spec, validate); its node half is NODE_SIDE above
    "grayctl.runtime.config",  # a service process's runtime config: resolved by the plan, validated on the node
)

# The plan is data you can print before anything runs: it drives nothing.
PLAN = "grayctl.plan"
PLAN_MUST_NOT_IMPORT = (
    "grayctl.run",       # the run: its steps, timeline, cleanup and playbook driver
    "subprocess",
    "ansible_runner",
)
DRIVERS = ("ansible_runner", "grayctl.run")  # none of them loaded by `import grayctl.plan`

# The lab's providers sit behind one seam (grayctl.lab.provider): outside grayctl.lab, code asks
# ``provider_for(lab)`` what a lab can do and never imports a provider's module or tests its name.
LAB = "grayctl.lab"
PROVIDER_MODULES = tuple(sorted({v.partition(":")[0] for v in PROVIDERS.values()}))

# Imports allowed for now, each with what ends it. Keyed by (importer, imported module): once the
# imported module is gone the entry allows nothing, and the rule holds as written.
FOR_NOW: dict[tuple[str, str], str] = {}


# -- reading the imports -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    source: str  # importing module
    line: int
    target: str  # the grayctl module it resolves to, or the top-level name outside grayctl
    text: str

    def __str__(self) -> str:
        path = PACKAGE.parent / (self.source.replace(".", "/") + ".py")
        if not path.is_file():
            path = path.with_suffix("") / "__init__.py"
        return f"{path.relative_to(PACKAGE.parent)}:{self.line}: {self.text}  ({self.source} -> {self.target})"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """A dotted name -> the grayctl module that defines it (``grayctl.plan.Plan`` -> ``grayctl.plan``)."""
    if name != "grayctl" and not name.startswith("grayctl."):
        return name.split(".")[0]
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> list[Import]:
    path = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: None if path.name == "__init__.py" else -1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        text = ast.get_source_segment(path.read_text(), node) or ""
        for target in dict.fromkeys(_resolve(n) for n in names):
            if target != module:
                out.append(Import(module, node.lineno, target, " ".join(text.split())))
    return out


IMPORTS = [i for m in MODULES for i in _imports(m)]


def _within(module: str, prefixes: tuple[str, ...]) -> str | None:
    """The longest of ``prefixes`` that is ``module`` or a package holding it."""
    hits = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return max(hits, key=len) if hits else None


def is_node_side(module: str) -> bool:
    node, door = _within(module, NODE_SIDE), _within(module, CONTRACTS)
    return node is not None and (door is None or len(node) > len(door))


# -- the rules -----------------------------------------------------------------------------------------

def test_the_rules_name_modules_that_exist():
    """A rule about a module that is not there can never fail: each entry names a module of today's tree."""
    gone = [p for p in (*NODE_SIDE, *CONTRACTS, PLAN, LAB, *PROVIDER_MODULES) if _within(p, tuple(MODULES)) is None
            and not any(m.startswith(p + ".") for m in MODULES)]
    assert not gone, f"rules about modules that do not exist: {gone}"
    assert len(IMPORTS) > 100  # the walk found the imports at all


def test_no_import_cycles_in_grayctl():
    """Between modules; a package and its own submodules (``__init__`` re-exports) do not count."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.target in MODULES and not (i.target.startswith(i.source + ".") or i.source.startswith(i.target + ".")):
            graph[i.source].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    detail = ["cycle: " + " <-> ".join(c) + "\n    " + "\n    ".join(
        str(i) for i in IMPORTS if i.source in c and i.target in c) for c in cycles]
    assert not cycles, "\n".join(detail)


def test_the_plan_imports_no_playbook_runner_no_subprocess_and_no_node_side_code():
    plan = [m for m in MODULES if m == PLAN or m.startswith(PLAN + ".")]
    assert plan, f"no {PLAN} in {PACKAGE}"
    bad = [i for i in IMPORTS if i.source in plan and (i.source, i.target) not in FOR_NOW
           and (_within(i.target, PLAN_MUST_NOT_IMPORT) or is_node_side(i.target))]
    assert not bad, "the plan must stay pure data:\n" + "\n".join(map(str, bad))


def test_importing_the_plan_loads_no_playbook_runner():
    """What ``import grayctl.plan`` pulls in, transitively, in a fresh interpreter."""
    code = ("import sys, grayctl.plan; "
            f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {DRIVERS!r} "
            f"or any(m == d or m.startswith(d + '.') for d in {DRIVERS!r}))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == [], f"import grayctl.plan loaded: {proc.stdout.strip()}"


def test_controller_code_reaches_node_side_code_only_through_the_contracts():
    bad = [i for i in IMPORTS if not is_node_side(i.source) and is_node_side(i.target)
           and (i.source, i.target) not in FOR_NOW]
    assert not bad, ("controller code imports node-side code; go through the fault catalog or the runtime "
                     "config contract:\n" + "\n".join(map(str, bad)))


def test_each_allowance_is_in_use_while_its_module_exists():
    """An allowance for an import that is no longer made is stale: drop it."""
    made = {(i.source, i.target) for i in IMPORTS}
    stale = [k for k in FOR_NOW if k[1] in MODULES and k not in made]
    assert not stale, f"FOR_NOW entries no longer needed: {stale}"


def test_only_the_lab_package_imports_a_provider_module():
    bad = [i for i in IMPORTS if _within(i.target, PROVIDER_MODULES) and not _within(i.source, (LAB,))]
    assert not bad, ("code outside grayctl.lab imports a lab provider; ask grayctl.lab.provider.provider_for(lab) "
                     "instead:\n" + "\n".join(map(str, bad)))


def _provider_name_tests(source: str, where: str) -> list[str]:
    """``x.provider == "netns"`` and the like: a provider check by name, not through the seam."""
    out = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(n, ast.Attribute) and n.attr == "provider" for n in sides)
            literal = any(isinstance(n, ast.Constant) and isinstance(n.value, str)
                          or isinstance(n, (ast.Tuple, ast.List, ast.Set)) for n in sides)
            if named and literal:
                out.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_outside_the_lab_package_no_code_tests_a_provider_by_name():
    bad = [hit for m, path in MODULES.items() if not _within(m, (LAB,))
           for hit in _provider_name_tests(path.read_text(), str(path.relative_to(PACKAGE.parent)))]
    assert not bad, "provider checks belong behind grayctl.lab.provider (a capability):\n" + "\n".join(bad)


def test_the_provider_check_finds_what_it_looks_for():
    """The rule above can fail: the checks the plan and the run used to make are found, a print is not."""
    assert _provider_name_tests('lab.provider == "physical"', "x.py") == ["x.py:1: lab.provider == 'physical'"]
    assert len(_provider_name_tests('r.lab.provider in ("netns", "qemu")', "x.py")) == 1
    assert _provider_name_tests('print(lab.provider, lab.name == "x")', "x.py") == []


def test_every_registered_provider_is_a_whole_provider():
    """Each PROVIDERS entry loads, implements every method of the seam, and is what provider_for picks."""
    for name, where in PROVIDERS.items():
        module, _, cls = where.partition(":")
        provider = getattr(__import__(module, fromlist=[cls]), cls)()  # TypeError if a method is missing
        assert isinstance(provider, Provider) and provider.name == name
        assert provider.reimage.playbook and provider.capabilities is not None


def test_the_classification_reads_as_written():
    """The longest matching entry decides: the fault catalog is a door, its node half is not."""
    assert is_node_side("grayctl.runtime.server") and not is_node_side("grayctl.runtime.config")
    assert is_node_side("grayctl.faults.node.faultctl") and not is_node_side("grayctl.faults.spec")
    assert not is_node_side("grayctl.workload.schedule") and is_node_side("grayctl.workload.loadgen")
    assert not is_node_side("grayctl.plan") and not is_node_side("grayctl.runtime_notes")
