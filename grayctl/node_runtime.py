"""The node runtime: the installed copy of grayctl that lab nodes run.

Nodes run grayctl's node programs (service runtime, load generator, exporters, observer, fault
executor) as ``python -m grayctl.<module>``. They never import the controller's checkout: an
editable install points into it, a home directory is private to every netns node, and VM and
physical nodes have no checkout at all. Each lab host gets a non-editable runtime instead, in two
layers under ``RUNTIME_ROOT`` (default /opt/grayctl/runtime, outside any home directory):

  deps-<hash>/  a venv of the node's python3 with the node requirements (``grayctl[node]``, the
                list in grayctl/node-requirements.txt), pip-installed once per requirement set
  <key>/        a pip-less venv whose site-packages holds a copy of this grayctl's package files
                and a .pth naming the deps layer; the key hashes the code and the deps layer, so a
                code change costs a copy (well under a second), not an install

A lab links ``<lab dir>/runtime`` to its current key; the lab inventory's ``grayctl_python`` is
``<lab dir>/runtime/bin/python``. Builds go to a temporary directory and are renamed into place,
so a killed build leaves no half runtime that looks complete.

``python -m grayctl.node_runtime ensure --link PATH`` does the same for plain Ansible users
(Molecule's create playbook calls it). Nodes that do not share the controller's filesystem (VMs
left aside: they mount the package over virtio-9p) get theirs from roles/node_runtime: the
controller builds a *bundle* (``bundle``: the package files plus a wheelhouse of the node
requirements), the role copies it and runs this same module on the node from the bundle, so a
node needs python3 with venv and nothing else — no checkout, no index.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from grayctl.errors import LabError

__all__ = ["NodeRuntime", "ensure_runtime", "build_bundle", "BUNDLE_CACHE", "bundle_key", "node_requirements", "code_digest",
           "RUNTIME_ROOT"]

RUNTIME_ROOT = Path(os.environ.get("GRAYCTL_RUNTIME_ROOT") or "/opt/grayctl/runtime")
NODE_PYTHON = os.environ.get("GRAYCTL_NODE_PYTHON") or "/usr/bin/python3"
BUNDLE_CACHE = Path(os.environ.get("GRAYCTL_BUNDLE_CACHE") or "/var/cache/grayctl/node-runtime/bundles")
PACKAGE_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = PACKAGE_DIR / "node-requirements.txt"
MARKER = "runtime.json"
KEEP = 6  # code layers kept per root; older ones unreferenced by a lab link are pruned
PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class NodeRuntime:
    key: str
    path: Path
    python: Path  # what nodes run: <path>/bin/python (through the lab's link, when one is given)
    deps: Path
    created: bool  # False: it existed already

    def to_dict(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def node_requirements() -> list[str]:
    """The node requirement lines (one list, shared with pyproject's ``node`` extra)."""
    lines = REQUIREMENTS_FILE.read_text().splitlines()
    return [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]


def _package_files() -> list[Path]:
    files = []
    for path in sorted(PACKAGE_DIR.rglob("*")):
        rel = path.relative_to(PACKAGE_DIR)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
            files.append(rel)
    return files


def code_digest() -> str:
    """sha256 over this grayctl's package files (paths and bytes)."""
    h = hashlib.sha256()
    for rel in _package_files():
        h.update(str(rel).encode() + b"\0" + (PACKAGE_DIR / rel).read_bytes() + b"\0")
    return h.hexdigest()


def _python_tag(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f"the nodes' Python {python} does not run: {exc}",
                       hint="install python3 and python3-venv (apt-get install python3-venv), "
                            "or set GRAYCTL_NODE_PYTHON") from None
    return out


def _tail(text: str, n: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _run(argv: list[str], what: str, timeout: float = 120) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: no result after {timeout:.0f} s ({' '.join(argv[:3])} ...)") from None
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode}):\n{_tail(proc.stderr or proc.stdout)}",
                       hint="a node runtime needs python3-venv, and for netfilterqueue build-essential, "
                            "python3-dev and libnetfilter-queue-dev ('grayctl lab bootstrap')")


def _site_packages(venv: Path, tag: str) -> Path:
    return venv / "lib" / f"python{tag}" / "site-packages"


def _ensure_deps(root: Path, python: str, tag: str, wheelhouse: Path | None = None) -> Path:
    reqs = node_requirements()
    digest = hashlib.sha256(json.dumps([python, tag, reqs]).encode()).hexdigest()[:16]
    deps = root / f"deps-{digest}"
    if (deps / MARKER).is_file():
        return deps
    with open(root / ".deps.lock", "w") as lock:  # one pip install per set, even with two labs
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (deps / MARKER).is_file():
            return deps
        # built in place under the lock (venv scripts name their own path); the marker comes last,
        # so a killed build is found incomplete and redone
        shutil.rmtree(deps, ignore_errors=True)
        try:
            _run([python, "-m", "venv", str(deps)], f"creating the node dependency venv with {python}")
            # offline nodes install from the wheelhouse the controller brought (no index at all)
            index = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
            _run([str(deps / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  "--no-input", *index, *reqs], "installing the node requirements " + " ".join(reqs),
                 timeout=PIP_TIMEOUT_S)
            (deps / MARKER).write_text(json.dumps({"requirements": reqs, "python": python, "version": tag}) + "\n")
        except BaseException:
            shutil.rmtree(deps, ignore_errors=True)
            raise
    return deps


def _version() -> str:
    from grayctl import __version__

    return __version__


def _build_code_layer(final: Path, python: str, tag: str, deps: Path, key: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        # --without-pip: the layer installs nothing itself; bin/python is a link to python3
        _run([python, "-m", "venv", "--without-pip", str(tmp)], f"creating the node runtime venv with {python}")
        site = _site_packages(tmp, tag)
        dest = site / "grayctl"
        for rel in _package_files():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PACKAGE_DIR / rel, dest / rel)
        info = site / f"grayctl-{_version()}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: grayctl\nVersion: {_version()}\n")
        (info / "INSTALLER").write_text("grayctl-node-runtime\n")
        (site / "grayctl-node-deps.pth").write_text(str(_site_packages(deps, tag)) + "\n")
        # pyvenv.cfg names the venv's home; nothing in it depends on the temporary name
        (tmp / MARKER).write_text(json.dumps({"key": key, "grayctl": _version(), "deps": str(deps),
                                              "python": python}) + "\n")
        try:
            tmp.rename(final)
        except OSError:
            if not (final / MARKER).is_file():  # another process won the race with a whole runtime
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prune(root: Path, keep: set[Path]) -> None:
    layers = [p for p in root.iterdir() if p.is_dir() and len(p.name) == 16 and (p / MARKER).is_file()]
    layers.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in layers[KEEP:]:
        if old not in keep:
            shutil.rmtree(old, ignore_errors=True)


def ensure_runtime(*, link: Path | None = None, root: Path | None = None, python: str | None = None,
                   wheelhouse: Path | None = None) -> NodeRuntime:
    """The runtime of this grayctl on this host (built if missing); ``link`` is pointed at it."""
    root = Path(root or RUNTIME_ROOT)
    python = python or NODE_PYTHON
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create the node runtime directory {root}: {exc.strerror}",
                       hint="run as root, or set GRAYCTL_RUNTIME_ROOT to a writable path") from None
    tag = _python_tag(python)
    deps = _ensure_deps(root, python, tag, wheelhouse)
    key = hashlib.sha256(f"{code_digest()}\0{deps.name}".encode()).hexdigest()[:16]
    path = root / key
    created = not (path / MARKER).is_file()
    if created:
        _build_code_layer(path, python, tag, deps, key)
    else:
        os.utime(path)  # newest first when pruning
    if link is not None:
        link = Path(link)
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp_link = link.with_name(f".{link.name}.{os.getpid()}")
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(path)
        os.replace(tmp_link, link)  # atomic: a node never sees no runtime
    _prune(root, keep={path})
    return NodeRuntime(key=key, path=path, python=(Path(link) if link else path) / "bin" / "python",
                       deps=deps, created=created)


def bundle_key() -> str:
    """What a remote node's runtime is made of: this code and the node requirement list."""
    return hashlib.sha256(f"{code_digest()}\0{node_requirements()}".encode()).hexdigest()[:16]


def build_bundle(out: Path, *, python: str | None = None) -> Path:
    """``out/<bundle key>/bundle.tar``: the package files (``code/grayctl``) and a wheelhouse of the
    node requirements for ``python`` (``wheels/``), which the node_runtime role copies to nodes
    that have no checkout and maybe no index. Built once per key; the wheels need an index here."""
    python = python or NODE_PYTHON
    key = bundle_key()
    final = Path(out) / key
    if (final / "bundle.json").is_file():
        return final
    Path(out).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=out))
    try:
        for rel in _package_files():
            (tmp / "code" / "grayctl" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PACKAGE_DIR / rel, tmp / "code" / "grayctl" / rel)
        venv = tmp / ".pip"
        _run([python, "-m", "venv", str(venv)], f"creating a venv with {python} to fetch the node wheels")
        _run([str(venv / "bin" / "python"), "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-input",
              "-w", str(tmp / "wheels"), *node_requirements()], "building the node requirement wheels",
             timeout=PIP_TIMEOUT_S)
        shutil.rmtree(venv)
        # one file to copy: a directory of hundreds goes file by file over SSH (minutes)
        with tarfile.open(tmp / "bundle.tar", "w") as tar:
            for part in ("code", "wheels"):
                tar.add(tmp / part, arcname=part)
                shutil.rmtree(tmp / part)
        (tmp / "bundle.json").write_text(json.dumps({"key": key, "grayctl": _version(), "python": _python_tag(python),
                                                     "requirements": node_requirements()}) + "\n")
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "bundle.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grayctl.node_runtime",
                                     description="Build (or find) the node runtime of this grayctl.")
    sub = parser.add_subparsers(dest="command", required=True)
    ens = sub.add_parser("ensure", help="build the runtime if missing and print it as JSON")
    ens.add_argument("--link", type=Path, help="a symlink to point at the runtime (e.g. <lab dir>/runtime)")
    ens.add_argument("--root", type=Path, help=f"runtime root (default {RUNTIME_ROOT})")
    ens.add_argument("--python", help=f"the nodes' python3 (default {NODE_PYTHON})")
    ens.add_argument("--wheelhouse", type=Path, help="install the requirements from this directory only")
    bun = sub.add_parser("bundle", help="the code and wheels for nodes without a checkout; prints its path")
    bun.add_argument("--out", type=Path, required=True, help="directory of bundles (one per key)")
    bun.add_argument("--python", help=f"the nodes' python3 the wheels are for (default {NODE_PYTHON})")
    args = parser.parse_args(argv)
    try:
        if args.command == "bundle":
            print(json.dumps({"key": bundle_key(), "path": str(build_bundle(args.out, python=args.python))}))
            return 0
        rt = ensure_runtime(link=args.link, root=args.root, python=args.python, wheelhouse=args.wheelhouse)
    except LabError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    print(json.dumps(rt.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
