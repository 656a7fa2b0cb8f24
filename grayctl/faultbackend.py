"""What the network-fault backend of this lab host needs, checked before a fault needs it.

The node-side executor (``grayctl.faults.node.faultctl``) picks the backend when a fault is
applied: ``netem`` where the kernel has ``sch_netem``, else the fallback (an NFQUEUE delayer in
the nodes' Python, nft and iptables rules). A missing piece then fails the run mid-way. netns
nodes share this host's kernel, filesystem and interpreter, so ``lab doctor`` and ``lab
bootstrap`` can ask the same questions here first:

  probe_fault_backend(python) -> BackendCheck   faultctl's own probe (a netem qdisc on a throwaway
                                                ifb device), run in a throwaway network namespace
                                                (``unshare --net``: nothing on the host is touched),
                                                then the chosen backend's needs: its tools on the
                                                nodes' PATH and, for the fallback, ``import
                                                netfilterqueue`` in the nodes' Python
  nodes_python(lab_dir, inventory)              the interpreter a netns lab's nodes run grayctl with
                                                (its node runtime), or None before the first up: then
                                                what building the runtime needs is checked instead

Needs root (the probe creates a network namespace), as the lab commands that call it do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BackendCheck", "Need", "NODE_PATH", "nodes_python", "probe_fault_backend"]

# PATH of the nodes' SSH sessions (sshd's default for root): where faultctl finds its tools.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROBE_TIMEOUT_S = 30.0

# tool -> (Debian package, what needs it); per backend. tc and ip come with the probe's answer.
_TOOLS = {
    "tc": ("iproute2", "every tc qdisc a fault adds or removes"),
    "nft": ("nftables", "partition and loss rules, flow-fraction selection"),
    "conntrack": ("conntrack", "forgetting a flow-fraction fault's connection marks at revert"),
    "iptables": ("iptables", "steering packets into the delayer's NFQUEUE"),
}
_BACKEND_TOOLS = {"netem": ("tc", "nft", "conntrack"), "fallback": ("tc", "nft", "iptables", "conntrack")}


@dataclass
class Need:
    """One thing the backend needs that this host does not have, and how to get it."""

    what: str
    why: str
    fix: str

    def render(self) -> str:
        return f"{self.what}: {self.why}\n  fix: {self.fix}"


@dataclass
class BackendCheck:
    backend: str  # netem | fallback | unknown (the probe did not answer)
    why: str  # the probe's words, e.g. "tc refused netem: Error: Specified qdisc kind is unknown."
    python: str | None
    python_source: str
    missing: list[Need] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        return f"fault backend {self.backend} ({self.why}); nodes' Python {self.python or '-'} ({self.python_source})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def nodes_python(lab_dir: Path | None = None, inventory: Path | None = None) -> tuple[str | None, str]:
    """The nodes' interpreter: an up lab's ``inventory`` names it (grayctl_python, the lab's node
    runtime link); a lab that is down keeps the runtime of its last up in ``<lab_dir>/runtime``.
    None: no runtime yet ('grayctl lab up' builds it, grayctl/node_runtime.py)."""
    if inventory is not None:
        try:
            import yaml

            doc = yaml.safe_load(inventory.read_text())
            python = doc["all"]["children"]["lab_nodes"]["vars"]["grayctl_python"]
            if isinstance(python, str) and python:
                return python, f"grayctl_python in {inventory}"
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    if lab_dir is not None and (lab_dir / "runtime" / "bin" / "python").exists():
        return str(lab_dir / "runtime" / "bin" / "python"), "the node runtime of the lab's last up"
    return None, "no node runtime yet: 'grayctl lab up' builds it; what that needs is checked"


def probe_fault_backend(python: str | None, *, python_source: str = "given", path: str = NODE_PATH) -> BackendCheck:
    """The backend faultctl would choose on this host and what of its needs is missing.

    ``python``: the nodes' interpreter; None (no node runtime yet): what building one needs instead.
    ``path``: where the nodes look for tools (their sessions' PATH).
    """
    probe, failure = _probe_netem()
    if probe is None:
        check = BackendCheck("unknown", failure, python, python_source)
        check.missing.append(Need("the sch_netem probe", failure,
                                  "run as root on a host with util-linux (unshare) and iproute2 (ip, tc)"))
        return check
    backend = "netem" if probe.get("netem") else "fallback"
    check = BackendCheck(backend, str(probe.get("why") or ""), python, python_source)
    for tool in _BACKEND_TOOLS[backend]:
        if shutil.which(tool, path=path) is None:
            package, use = _TOOLS[tool]
            check.missing.append(Need(f"{tool} (on the nodes' PATH)", f"not found; the {backend} backend needs it "
                                      f"for {use}", f"apt-get install {package}"))
    if python is None:
        # lab up will pip-install the node requirements, netfilterqueue among them, compiled here
        check.missing += _runtime_build_needs(path)
    elif backend == "fallback":
        need = _netfilterqueue(python)
        if need is not None:
            check.missing.append(need)
    return check


def _runtime_build_needs(path: str) -> list[Need]:
    """What 'grayctl lab up' needs to build the node runtime (grayctl.node_runtime): a venv of the
    nodes' python3 with the node requirements; netfilterqueue compiles against libnetfilter-queue."""
    from grayctl.node_runtime import NODE_PYTHON

    what = "to build the node runtime ('grayctl lab up')"
    needs = []
    if not Path("/usr/include/libnetfilter_queue/libnetfilter_queue.h").is_file():
        needs.append(Need("libnetfilter_queue.h", f"not found; netfilterqueue compiles against it {what}",
                          "apt-get install libnetfilter-queue-dev"))
    if shutil.which("cc", path=path) is None:
        needs.append(Need("a C compiler (cc)", f"not found; netfilterqueue is compiled {what}",
                          "apt-get install build-essential"))
    probe = ("import ensurepip, os, sysconfig; "
             "print(os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))")
    try:
        out = subprocess.run([NODE_PYTHON, "-c", probe], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return needs + [Need(f"the nodes' python3 {NODE_PYTHON}", f"does not run: {exc}", "apt-get install python3")]
    if out.returncode != 0:
        needs.append(Need(f"venv for {NODE_PYTHON}", f"ensurepip is missing {what}", "apt-get install python3-venv"))
    elif out.stdout.strip() != "True":
        needs.append(Need(f"Python.h for {NODE_PYTHON}", f"not found; netfilterqueue is compiled {what}",
                          "apt-get install python3-dev"))
    return needs


def _probe_netem() -> tuple[dict[str, Any] | None, str]:
    """faultctl's probe, in a network namespace of its own that ends with the process."""
    argv = ["unshare", "--net", "--", sys.executable, "-m", "grayctl.faults.node.faultctl", "probe"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"could not run {' '.join(argv[:3])}: {exc}"
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return None, f"the probe exited {proc.returncode}: {tail or 'no output'}"
    return answer, ""


def _runtime_deps(python: str) -> str | None:
    """The dependency layer's interpreter when ``python`` is a grayctl node runtime's."""
    try:
        marker = json.loads((Path(python).parent.parent / "runtime.json").read_text())
        return str(Path(marker["deps"]) / "bin" / "python")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _netfilterqueue(python: str) -> Need | None:
    """``import netfilterqueue`` in the nodes' interpreter: the fallback delayer's binding."""
    what = f"netfilterqueue in {python}"
    try:
        proc = subprocess.run([python, "-c", "import netfilterqueue"], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Need(f"the nodes' Python {python}", f"does not run: {exc}",
                    "run 'grayctl lab up' with the grayctl installation the nodes should use")
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    error = lines[-1] if lines else f"exit code {proc.returncode}"
    if "No module named" not in error:  # installed, but its shared library does not load
        fix = "apt-get install libnetfilter-queue-dev (it brings libnetfilter-queue1)"
    else:
        # a node runtime (grayctl.node_runtime) takes its packages from its dependency layer
        target = _runtime_deps(python) or python
        fix = (f"{target} -m pip install 'grayctl[node]' (from a source checkout: -e '.[node]'); building it "
               "needs apt-get install libnetfilter-queue-dev")
    return Need(what, f"the fallback's delayer cannot start without it ({error})", fix)
