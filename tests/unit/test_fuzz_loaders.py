"""Property-based fuzzing of every file loader: each document is accepted, or refused with exit 2 and a
Problem naming the file (and, when the document parsed as YAML, the line and the field).

Loaders, each called as the CLI calls it, on a real file in a scratch copy of the content tree:
experiment (``load_experiment``), topology (``load_topology``), application (``topologies/apps/*.yaml``
through a topology's ``application: {from: …}``), sweep (``load_sweep``, cells included) and lab
definition (``load_lab``).

Documents come from two strategies: random YAML-able trees written as YAML text (weird scalars,
anchors and aliases, deep nesting), and mutations of the shipped valid files and the corpus (a key
deleted, duplicated or unknown, a value of another type, truncation at a byte, swapped units, extreme
numbers, wrong nesting). ``fuzz_one`` is the property; bench/fuzz_loaders.py drives the same
strategies over 10,000+ documents per loader. Bounds per document: ``TIME_LIMIT_S`` of wall time
(SIGALRM: a hang fails instead of stalling the run) and ``RSS_LIMIT`` bytes of peak resident set growth
(the kernel's high-water mark, reset before each load).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grayctl.errors import InputError, Problem
from grayctl.source import MAX_FILE_BYTES, load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
RSS_LIMIT = 64 * 1024**2  # growth of the peak resident set per document; files are < 1 MiB
TIME_LIMIT_S = 20.0  # one load, on a loaded 2-core machine (a sweep validates each of its cells): a hang fails
CI_EXAMPLES = 150  # per loader: the five together stay under a minute on 2 cores

# ---------------------------------------------------------------------------------------------
# Documents as YAML text


@dataclass(frozen=True)
class Raw:
    """A scalar or fragment written verbatim (unquoted), so YAML's resolver sees it: yes, ~, 0x10, 1e400.

    Not a str subclass: hypothesis (6.170) replays drawn str values as choices and fails on a subclass."""

    text: str


@dataclass(frozen=True)
class Anchor:
    node: Any


@dataclass(frozen=True)
class Alias:
    pick: int  # which earlier anchor (mod their count); undefined when none precedes it


@dataclass(frozen=True)
class Flow:
    node: Any  # a collection written in flow style: {a: 1} / [1, 2]


class _Emitter:
    def __init__(self) -> None:
        self.anchors: list[str] = []

    def scalar(self, v: Any, flow: bool = False) -> str:
        if isinstance(v, Raw):
            return v.text
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            if v != v:
                return ".nan"
            if v in (float("inf"), float("-inf")):
                return ".inf" if v > 0 else "-.inf"
            return repr(v)
        if isinstance(v, Alias):
            return f"*{self.anchors[v.pick % len(self.anchors)]}" if self.anchors else "*undefined"
        return json.dumps(str(v), ensure_ascii=False)

    def key(self, k: Any) -> str:
        if isinstance(k, Raw):
            return k.text
        if isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", k):
            return k
        return self.scalar(k)

    def flow(self, node: Any) -> str:
        if isinstance(node, (Anchor, Flow)):
            inner = node.node
            if isinstance(node, Anchor):
                name = f"a{len(self.anchors)}"
                self.anchors.append(name)
                return f"&{name} {self.flow(inner)}"
            return self.flow(inner)
        if isinstance(node, dict):
            return "{" + ", ".join(f"{self.key(k)}: {self.flow(v)}" for k, v in node.items()) + "}"
        if isinstance(node, list):
            return "[" + ", ".join(self.flow(v) for v in node) + "]"
        return self.scalar(node, flow=True)

    def block(self, node: Any, indent: int) -> list[str]:
        """Lines for ``node`` as the value of a key/item; the first line continues its parent's line."""
        pad = " " * indent
        prefix = ""
        if isinstance(node, Anchor):
            name = f"a{len(self.anchors)}"
            self.anchors.append(name)
            prefix, node = f"&{name}", node.node
        if isinstance(node, Flow):
            return [(prefix + " " if prefix else "") + self.flow(node.node)]
        if isinstance(node, dict) and node:
            lines = [prefix]
            for k, v in node.items():
                sub = self.block(v, indent + 2)
                lines.append(f"{pad}{self.key(k)}:" + (" " + sub[0] if sub[0] else ""))
                lines.extend(sub[1:])
            return lines
        if isinstance(node, list) and node:
            lines = [prefix]
            for v in node:
                sub = self.block(v, indent + 2)
                lines.append(f"{pad}-" + (" " + sub[0] if sub[0] else ""))
                lines.extend(sub[1:])
            return lines
        text = "{}" if isinstance(node, dict) else "[]" if isinstance(node, list) else self.scalar(node)
        return [(prefix + " " if prefix else "") + text]


def to_yaml(tree: Any) -> str:
    """``tree`` as YAML text: block style, with Raw, Anchor, Alias and Flow as written."""
    lines = _Emitter().block(tree, 0)
    if lines and lines[0] == "":
        lines = lines[1:]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Strategies

WEIRD = [
    "yes", "no", "on", "off", "y", "n", "~", "null", "Null", "", "0x10", "0o17", "017", "0b101", "1e400",
    "-1e400", ".inf", "-.inf", ".nan", ".NaN", "1_000", "12:30:00", "190:20:30", "2001-12-14",
    "2001-12-14t21:59:43.10-05:00", "200ms", "200 parsecs", "-1s", "0s", "5%", "150%", "1e3ms", "10mbit",
    "512MiB", "-512MiB", "0/s", "100/s", "nan%", "infms", "NaNs", "9" * 5000, "-" + "9" * 40, "1" + "0" * 400,
    "'quoted'", '"\\ud800"', '"\\U0010ffff"', '"\\x00"', '"\\e\\a"', "!!str 1", "!!int x", "!!float y",
    "!!binary aGVsbG8=", "!!python/object/apply:os.system [true]", "!!set {a, b}", "!!omap [a: 1]",
    "!!timestamp 2001-12-14", "!custom x", "<<", "=", "*undefined", "&dangling", "? complex", "|\n  literal",
    ">-\n  folded", "- in-a-scalar", "a: b", "[unclosed", "{unclosed", "%YAML 1.2", "---", "...",
    "\"a\\\nb\"", "ünïcödé", "\u202egnp.exe", "🙂", "\u0085", "\u2028", "\ufeff", "x" * 5000,
]
WEIRD_KEYS = ["yes", "1", "~", "null", "[a, b]", "{a: 1}", "<<", "!!python/name:os.system", "? [x]", "''",
              '"\\ud800"', "-", "1.5", "true", "*undefined", "&a k"]


def scalars(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(), st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 10**400]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40), st.sampled_from(keys),
        st.sampled_from(WEIRD).map(Raw),
        st.integers(0, 20).map(Alias),
        st.integers(1, 3000).map(lambda n: Raw("[" * n + "]" * n)),
        st.integers(1, 3000).map(lambda n: Raw("{a: " * n + "1" + "}" * n)),
    )


def trees(keys: list[str], *, max_leaves: int = 60) -> st.SearchStrategy[Any]:
    """Random YAML-able trees: mappings (the loader's own keys mostly), lists, weird scalars."""
    key = st.one_of(st.sampled_from(keys), st.sampled_from(keys), st.text(max_size=12),
                    st.sampled_from(WEIRD_KEYS).map(Raw))

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        coll = st.one_of(st.lists(children, max_size=6), st.dictionaries(key, children, max_size=6))
        return st.one_of(coll, coll.map(Anchor), coll.map(Flow))

    return st.recursive(scalars(keys), extend, max_leaves=max_leaves)


def documents(keys: list[str]) -> st.SearchStrategy[str]:
    """YAML text of random trees; mostly mappings at the top, as the files are."""
    top = st.one_of(st.dictionaries(st.sampled_from(keys), trees(keys), min_size=1, max_size=10),
                    st.dictionaries(st.sampled_from(keys), trees(keys), max_size=10), trees(keys))
    deep = st.integers(10, 400).map(lambda n: "".join(f"{' ' * 2 * i}k{i}:\n" for i in range(n)) + " " * 2 * n + "x\n")
    return st.one_of(top.map(to_yaml), top.map(to_yaml), top.map(to_yaml), deep)


@functools.cache
def _source_cached(source: Path) -> tuple[str, Any]:
    text = source.read_text(errors="replace")
    return text, _tree_of(text)


def _source(source: Path) -> tuple[str, Any]:
    """A source file's text and a fresh copy of its tree (mutations edit the tree in place)."""
    text, tree = _source_cached(source)
    return text, copy.deepcopy(tree)


def _tree_of(text: str) -> Any:
    """The document as plain data through grayctl's own bounded reader, or None when it refuses it: the
    corpus holds alias bombs, and walking PyYAML's shared alias objects path by path never ends."""
    try:
        return load_yaml_text(text)[0]
    except InputError:
        return None


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, prefix + (i,))


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(tree, path[:-1])[path[-1]] = value
    return tree


UNICODE = ["\ufeff", "\u202e", "\u200b", "\u0085", "\u2028", "\ud800", "\U0001f642", "é", "ﬁ", "\x7f",
           "\x1b[31m", "\u00a0", "\uffff", "\x0c", "\x08"]
UNITS = [" parsecs", "", "MS", "ms ms", "%%", "mbit/s", "s", "KiB", "µs", "h", "d", "years", "/min", "e400",
         "ms;", " ms", "GiB", "tbit", "ns", "-", ".", "1"]
NUMBERS = ["-1", "0", "-0", "99999999999999999999", "1e400", ".nan", "0x10", "-9223372036854775809", "0.0000001",
           "1" + "0" * 30]
UNIT_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(ms|us|s|m|h|mbit|kbit|gbit|MiB|GiB|KiB|%|/s|/min)\b")
NUM_RE = re.compile(r"(?<=[:\[,\s-])\s*(-?\d+(?:\.\d+)?)(?=\s*($|[,\]}#\n]))", re.M)
KEY_LINE_RE = re.compile(r"^\s*(- )?[\w.-]+:", re.M)


@st.composite
def mutations(draw: Callable[..., Any], sources: list[Path], keys: list[str]) -> tuple[Path, bytes]:
    """A shipped or corpus file, mutated 1-3 times (tree edits re-written as YAML, then text edits)."""
    source = draw(st.sampled_from(sources))
    text, tree = _source(source)
    for _ in range(draw(st.integers(0, 3)) if isinstance(tree, (dict, list)) else 0):
        paths = list(_paths(tree))
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["delete", "retype", "unknown", "wrap", "unwrap", "number", "unit", "weird"]))
        node = _get(tree, path)
        if kind == "delete" and path:
            parent = _get(tree, path[:-1])
            del parent[path[-1]]
        elif kind == "retype":
            tree = _set(tree, path, draw(trees(keys, max_leaves=8)))
        elif kind == "unknown" and isinstance(node, dict):
            near = draw(st.sampled_from([k + "s" for k in node] + [k.upper() for k in node] + keys + ["x-extra"]
                                        if node else keys))
            node[near] = draw(scalars(keys))
        elif kind == "wrap":
            tree = _set(tree, path, draw(st.sampled_from([[node], {"value": node}, [node, node], {"x": {"y": node}}])))
        elif kind == "unwrap" and isinstance(node, (dict, list)):
            tree = _set(tree, path, [[k, v] for k, v in node.items()] if isinstance(node, dict) else
                        (node[0] if node else {}) if draw(st.booleans()) else {str(i): v for i, v in enumerate(node)})
        elif kind == "number":
            tree = _set(tree, path, Raw(draw(st.sampled_from(NUMBERS))))
        elif kind == "unit" and isinstance(node, str):
            m = UNIT_RE.search(node)
            tree = _set(tree, path, (node[:m.start(2)] + draw(st.sampled_from(UNITS)) + node[m.end(2):]) if m
                        else Raw(draw(st.sampled_from(WEIRD))))
        elif kind == "weird":
            tree = _set(tree, path, draw(scalars(keys)))
    text = to_yaml(tree) if isinstance(tree, (dict, list)) and draw(st.booleans()) else text
    data = text.encode()
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["truncate", "dup-key", "unit", "number", "indent", "drop-line", "bom", "tab",
                                     "binary", "unicode", "laughs", "deep", "crlf"]))
        if kind == "bom":
            data = b"\xef\xbb\xbf" + data if draw(st.booleans()) else data.replace(b"\n", b"\n\xef\xbb\xbf", 1)
        elif kind == "tab":
            data = data.replace(b"  ", b"\t", draw(st.integers(1, 3)))
        elif kind == "crlf":
            data = data.replace(b"\n", b"\r\n") if draw(st.booleans()) else data.replace(b"\n", b"\r")
        elif kind == "binary":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        elif kind == "unicode":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.sampled_from(UNICODE)).encode("utf-8", "surrogatepass") + data[at:]
        elif kind in ("laughs", "deep"):
            # Replace one value with an alias bomb (each level doubles, 2**depth nodes) or a deep nest.
            lines = data.split(b"\n")
            keyed = [i for i, ln in enumerate(lines) if re.match(rb"^\s*[\w.-]+: *\S", ln)]
            if keyed:
                i = draw(st.sampled_from(keyed))
                head = lines[i].split(b":", 1)[0]
                if kind == "laughs":
                    depth = draw(st.integers(2, 40))
                    bomb = b"&l0 [x, x]" + b"".join(b", x%d: &l%d [*l%d, *l%d]" % (n, n, n - 1, n - 1)
                                                    for n in range(1, depth))
                    lines[i] = head + b": {b: " + bomb + b"}"
                else:
                    n = draw(st.integers(30, 2000))
                    lines[i] = head + b": " + (b"[" * n + b"]" * n if draw(st.booleans()) else b"{a: " * n + b"1" + b"}" * n)
                data = b"\n".join(lines)
        elif kind == "truncate" and data:
            data = data[:draw(st.integers(0, len(data)))]
        elif kind in ("dup-key", "indent", "drop-line"):
            lines = data.split(b"\n")
            keyed = [i for i, ln in enumerate(lines) if KEY_LINE_RE.match(ln.decode(errors="replace"))]
            if keyed:
                i = draw(st.sampled_from(keyed))
                if kind == "dup-key":
                    lines.insert(i + 1, lines[i])
                elif kind == "indent":
                    lines[i] = b" " * draw(st.integers(1, 5)) + lines[i]
                else:
                    del lines[i]
                data = b"\n".join(lines)
        elif kind in ("unit", "number"):
            s = data.decode(errors="replace")
            found = list((UNIT_RE if kind == "unit" else NUM_RE).finditer(s))
            if found:
                m = draw(st.sampled_from(found))
                if kind == "unit":
                    s = s[:m.start(2)] + draw(st.sampled_from(UNITS)) + s[m.end(2):]
                else:
                    s = s[:m.start(1)] + draw(st.sampled_from(NUMBERS)) + s[m.end(1):]
                data = s.encode()
    return source, data


# ---------------------------------------------------------------------------------------------
# The loaders, in a scratch copy of the content tree


def _keys_of(files: list[Path], extra: tuple[str, ...] = ()) -> list[str]:
    found: set[str] = set(extra)
    for f in files:
        tree = _tree_of(f.read_text(errors="replace"))
        for p in _paths(tree):
            found.update(k for k in p if isinstance(k, str))
    return sorted(found)


def _yaml_files(*globs: str) -> list[Path]:
    return sorted({p for g in globs for p in ROOT.glob(g) if p.is_file()})


@dataclass
class Loader:
    """One loader: where its fuzzed file goes, how the CLI reads it, what its documents look like."""

    name: str
    sources: list[Path]
    call: Callable[[Path, Path], Any]  # (the file written, the file the CLI is given) -> model
    place: Callable[[Path, Path | None], tuple[Path, Path]]  # (scratch root, source) -> (fuzzed file, CLI file)
    keys: list[str] = field(default_factory=list)

    def documents(self) -> st.SearchStrategy[tuple[Path | None, bytes]]:
        randoms = documents(self.keys).map(lambda t: (None, t.encode()))
        return st.one_of(randoms, mutations(self.sources, self.keys), mutations(self.sources, self.keys))


def _beside(root: Path, source: Path | None, default: str, name: str) -> Path:
    """Where a document derived from ``source`` goes in the scratch tree: beside the source's copy, so
    its relative references (a topology path, an application file, a sweep's base) still resolve."""
    folder = root / (source.parent.relative_to(ROOT) if source is not None else Path(default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _load_experiment(path: Path, cli: Path) -> Any:
    from grayctl.experiment import load_experiment

    return load_experiment(str(cli))


def _load_topology(path: Path, cli: Path) -> Any:
    from grayctl.topology import load_topology

    return load_topology(cli)


def _load_sweep(path: Path, cli: Path) -> Any:
    from grayctl.sweep import load_sweep

    return load_sweep(cli)


def _load_lab(path: Path, cli: Path) -> Any:
    from grayctl.lab.definition import load_lab

    return load_lab(str(cli))


def _app_host(root: Path, source: Path | None) -> tuple[Path, Path]:
    """An application file is read through a topology: the fuzzed app beside its source, and a copy of the
    topology that includes the source (gen3 for a random document) taking its application from it."""
    app = _beside(root, source, "topologies/apps", "fuzz-app.yaml")
    host_src = ROOT / "topologies" / "gen3-disaggregated.yaml"
    if source is not None:
        for cand in sorted(source.parent.parent.glob("*.yaml")):
            if f"apps/{source.name}" in cand.read_text():
                host_src = cand
                break
    host = app.parent.parent / "fuzz-host.yaml"
    text = re.sub(r"from: *apps/[\w.-]+\.yaml", "from: apps/fuzz-app.yaml", host_src.read_text())
    host.write_text(text)
    return app, host


def loaders() -> dict[str, Loader]:
    exp = _yaml_files("experiments/*.yaml", "tests/corpus/experiments/**/*.yaml")
    topo = _yaml_files("topologies/*.yaml", "tests/corpus/topologies/*/*.yaml")
    apps = _yaml_files("topologies/apps/*.yaml", "tests/corpus/topologies/*/apps/*.yaml")
    sweeps = _yaml_files("sweeps/*.yaml", "tests/corpus/sweeps/**/*.yaml")
    labs = _yaml_files("inventories/*/lab.yml", "tests/corpus/labs/**/*.yml")
    same = lambda p: (p, p)  # noqa: E731
    return {
        "experiment": Loader("experiment", exp, _load_experiment,
                             lambda r, s: same(_beside(r, s, "experiments", "fuzz.yaml")), _keys_of(exp + topo)),
        "topology": Loader("topology", topo, _load_topology,
                           lambda r, s: same(_beside(r, s, "topologies", "fuzz.yaml")), _keys_of(topo + apps)),
        "application": Loader("application", apps, _load_topology, _app_host, _keys_of(apps)),
        "sweep": Loader("sweep", sweeps, _load_sweep,
                        lambda r, s: same(_beside(r, s, "sweeps", "fuzz.yaml")),
                        _keys_of(sweeps + exp, ("chaos_injections.0.parameters.delay", "workload.rate"))),
        "lab": Loader("lab", labs, _load_lab,
                      lambda r, s: same(_beside(r, s, "inventories/fuzz", "lab.yml")),
                      _keys_of(labs, ("vms", "qemu", "image", "memory", "cpus", "roles", "node01", "home"))),
    }


def scratch_tree(root: Path) -> Path:
    """A copy of the files the loaders resolve references against (experiments, topologies, sweeps, the
    corpus), so a fuzzed file can sit beside the one it came from."""
    for sub in ("experiments", "topologies", "sweeps", "tests/corpus"):
        if (ROOT / sub).is_dir():
            shutil.copytree(ROOT / sub, root / sub, dirs_exist_ok=True)
    return root


# ---------------------------------------------------------------------------------------------
# The property


@dataclass
class Outcome:
    accepted: bool
    seconds: float
    rss_growth: int  # bytes the resident set's high-water mark rose above its size before the load
    problems: list[Problem]


def _rss() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in bytes."""
    got = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                got[line[:5]] = int(line.split()[1]) * 1024
    return got["VmRSS"], got["VmHWM"]


def _reset_hwm() -> None:
    """Reset the peak RSS to the current RSS (Linux: 5 > /proc/self/clear_refs), so one load's peak is seen."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


class DocumentTimeout(Exception):
    """One load ran past TIME_LIMIT_S (raised from SIGALRM inside the loader)."""


def _alarm(signum: int, frame: Any) -> None:
    raise DocumentTimeout(f"a load ran longer than {TIME_LIMIT_S} s")


def _parses(data: bytes) -> bool:
    """Whether the document reads as one YAML mapping (then every problem must also have a line and a field)."""
    try:
        load_yaml_text(data.decode("utf-8").removeprefix("\ufeff"))
    except (InputError, UnicodeDecodeError):
        return False
    return b"\x00" not in data and len(data) <= MAX_FILE_BYTES


def _referenced(root: Path, file: str | None) -> bool:
    """Whether ``file`` is one of the scratch tree's files (a document can only reference those)."""
    if not file:
        return False
    f = Path(file) if Path(file).is_absolute() else Path.cwd() / file
    return f.resolve().is_relative_to(root.resolve()) and f.is_file()


def fuzz_one(loader: Loader, root: Path, source: Path | None, data: bytes) -> Outcome:
    """Write ``data`` as ``loader``'s file and load it as the CLI does; AssertionError when the property fails.

    Any exception other than InputError propagates: through the CLI it would be a traceback.
    """
    path, cli = loader.place(root, source)
    path.write_bytes(data)
    allowed = {str(path), str(cli), str(path.resolve()), str(cli.resolve())}
    _reset_hwm()
    before, _ = _rss()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    t0 = time.perf_counter()
    try:
        loader.call(path, cli)
    except InputError as err:
        problems, accepted = err.problems, False
        error: InputError | None = err
    else:
        problems, accepted, error = [], True, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - t0
    growth = max(0, _rss()[1] - before)
    if error is not None:
        rendered = error.render()
        rendered.encode("utf-8")  # the CLI prints it: a lone surrogate would be a UnicodeEncodeError there
        assert error.exit_code == 2
        assert problems, f"an InputError without problems: {rendered}"
        parsed = _parses(data)
        # A file it references (an experiment's topology, an included application) may have problems of
        # its own; they name that file, and the document's own file is named too (at the reference).
        assert any(p.file in allowed for p in problems), f"no problem names the file {path}:\n{rendered}"
        for p in problems:
            assert p.file in allowed or _referenced(root, p.file), \
                f"problem names {p.file!r}, not the file {path} nor one it references:\n{rendered}"
            if parsed and p.file in allowed:
                assert p.line is not None, f"problem without a line:\n{p.render()}"
                assert p.path, f"problem without a field path:\n{p.render()}"
    assert growth < RSS_LIMIT, f"the resident set grew {growth / 2**20:.1f} MiB for one {len(data)}-byte document"
    return Outcome(accepted, seconds, growth, problems)


# ---------------------------------------------------------------------------------------------
# The CI run: a short, reproducible budget per loader

LOADERS = loaders()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_tree(tmp_path_factory.mktemp("fuzz"))


def _ci(loader: Loader, examples: int = CI_EXAMPLES) -> Callable[..., None]:
    @settings(max_examples=examples, deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                    HealthCheck.filter_too_much, HealthCheck.large_base_example])
    @given(doc=loader.documents())
    def run(scratch: Path, doc: tuple[Path | None, bytes]) -> None:
        fuzz_one(loader, scratch, *doc)

    return run


test_experiment_documents_are_accepted_or_refused_with_file_line_and_field = _ci(LOADERS["experiment"])
test_topology_documents_are_accepted_or_refused_with_file_line_and_field = _ci(LOADERS["topology"])
test_application_documents_are_accepted_or_refused_with_file_line_and_field = _ci(LOADERS["application"])
test_sweep_documents_are_accepted_or_refused_with_file_line_and_field = _ci(LOADERS["sweep"], 100)
test_lab_documents_are_accepted_or_refused_with_file_line_and_field = _ci(LOADERS["lab"])


def test_the_shipped_files_are_accepted_as_written(scratch: Path) -> None:
    """The mutations start from valid files: unmutated, each loader accepts its shipped sources."""
    for name, loader in LOADERS.items():
        for src in loader.sources:
            if "bad" in src.parts:
                continue
            out = fuzz_one(loader, scratch, src, src.read_bytes())
            assert out.accepted, f"{name}: {src} refused: {[p.render() for p in out.problems]}"


def test_the_property_fails_on_a_problem_without_a_line(scratch: Path) -> None:
    """The check itself can fail: an InputError whose problem lacks a line is caught."""
    def refuse(path: Path, cli: Path) -> None:
        raise InputError(Problem("no line", file=str(cli), path="x"))

    broken = Loader("broken", [], refuse, LOADERS["lab"].place)
    with pytest.raises(AssertionError, match="without a line"):
        fuzz_one(broken, scratch, None, b"name: x\n")


# ---------------------------------------------------------------------------------------------
# What the fuzzer found, through the real command line: exit 2, file and line named, no traceback

FOUND = [
    # (what, command after "grayctl", {file name: text}, what the refusal must say)
    ("a missing top-level field had no field path", ["validate", "{d}/exp.yaml"],
     {"exp.yaml": "# no topology\nname: x\n"}, "exp.yaml:2:1: topology: missing required field 'topology'"),
    ("a topology file included as the application named no field", ["validate", "{d}/topo.yaml"],
     {"topo.yaml": "application: {from: apps/app.yaml}\ndecomposition: {web: [web]}\n"
                   "placement: {web: {slots: [app1]}}\n",
      "apps/app.yaml": "name: x\nplacement: {web: {slots: [app1]}}\n"},
     "apps/app.yaml:2:1: placement: "),
    ("3000 '[' took PyYAML 6 s", ["validate", "{d}/exp.yaml"],
     {"exp.yaml": "topology: three-tier\nname: " + "[" * 3000 + "]" * 3000 + "\n"}, "exp.yaml:2:71: YAML nested too deeply"),
    ("a deep lab file was a RecursionError traceback", ["plan", "{root}/experiments/seed.yaml", "--lab", "{d}/lab.yml"],
     {"lab.yml": "name: deep\nnodes: " + "[" * 3000 + "]" * 3000 + "\n"}, "lab.yml:2:72: YAML nested too deeply"),
    ("a broken lab.yml went to ansible-inventory", ["plan", "{root}/experiments/seed.yaml", "--lab", "{d}/lab.yml"],
     {"lab.yml": "name: x\n[lab_nodes]\n  bad: indent\n"}, "lab.yml:3:"),
    ("a lab.yml tag PyYAML cannot build was a ValueError traceback (the inventory sniff)",
     ["plan", "{root}/experiments/seed.yaml", "--lab", "{d}/lab.yml"],
     {"lab.yml": "- [true, .NaN]\n- - null\n  - !!float y\n"}, "lab.yml:1:1: the document is a list"),
]


@pytest.mark.parametrize("what,args,files,says", FOUND, ids=[f[0] for f in FOUND])
def test_what_the_fuzzer_found_is_refused_with_exit_2_through_the_cli(
        tmp_path: Path, what: str, args: list[str], files: dict[str, str], says: str) -> None:
    import subprocess
    import sys

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    argv = [a.format(d=tmp_path, root=ROOT) for a in args]
    proc = subprocess.run([sys.executable, "-m", "grayctl", *argv], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 2, f"{what}: exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    assert says in proc.stderr, f"{what}: expected {says!r} in:\n{proc.stderr}"
