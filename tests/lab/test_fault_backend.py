"""The fault backend's needs on this host, asked as faultctl asks them, with real interpreters.

A venv made with ``--without-pip`` is a real interpreter without netfilterqueue; an empty
directory as PATH is a host without the tools. ``grayctl lab doctor`` is driven as a user drives
it, on a lab of its own whose node runtime link is pointed at that interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_netns_lab import Lab  # tests/lab is on sys.path (rootdir-less test dir)

from grayctl.faultbackend import nodes_python, probe_fault_backend

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the probe makes a network namespace (root)"),
]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import netfilterqueue"], capture_output=True).returncode != 0
    return python


def _host_links_and_netns() -> tuple[str, str]:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    return out("ip", "netns", "list"), "\n".join(sorted(out("ip", "-o", "link").splitlines()))


def test_the_check_passes_with_grayctls_interpreter_and_touches_nothing() -> None:
    before = _host_links_and_netns()
    check = probe_fault_backend(sys.executable)
    assert check.ok, [n.render() for n in check.missing]
    assert check.backend in ("netem", "fallback") and check.why  # the probe's own words
    after = _host_links_and_netns()
    assert "gcprb" not in "".join(after)  # the probe's ifb lived in its own netns
    # no named netns of its own either; other test files' labs (gc-<lab>-nodeNN) may come and go meanwhile
    new = set(after[0].splitlines()) - set(before[0].splitlines())
    assert all(line.startswith("gc-") for line in new), new


def test_an_interpreter_without_netfilterqueue_fails_the_fallback_with_what_to_install(bare_python: str) -> None:
    check = probe_fault_backend(bare_python)
    if check.backend == "netem":
        assert check.ok  # netem needs no Python binding: nothing to ask of the interpreter
        return
    (need,) = check.missing
    assert need.what == f"netfilterqueue in {bare_python}"
    assert "No module named 'netfilterqueue'" in need.why
    assert f"{bare_python} -m pip install 'grayctl[node]'" in need.fix
    assert "apt-get install libnetfilter-queue-dev" in need.fix


def test_tools_missing_from_the_nodes_path_are_named_with_their_package(tmp_path: Path) -> None:
    check = probe_fault_backend(sys.executable, path=str(tmp_path))
    fixes = {n.what.split()[0]: n.fix for n in check.missing}
    expected = {"tc": "apt-get install iproute2", "nft": "apt-get install nftables",
                "conntrack": "apt-get install conntrack"}
    if check.backend == "fallback":
        expected["iptables"] = "apt-get install iptables"
    assert fixes == expected


def test_before_the_first_up_what_building_the_node_runtime_needs_is_checked(tmp_path: Path) -> None:
    python, where = nodes_python(tmp_path / "never-up")
    assert python is None and where.startswith("no node runtime yet")
    assert probe_fault_backend(None).ok  # this host has built runtimes: compiler, headers, venv
    without = probe_fault_backend(None, path=str(tmp_path))  # a host without a compiler on PATH
    assert [n.fix for n in without.missing if n.what == "a C compiler (cc)"] == ["apt-get install build-essential"]


def test_a_node_runtime_is_told_to_install_into_its_dependency_layer(tmp_path: Path, bare_python: str) -> None:
    """A node runtime (grayctl.node_runtime) gets its packages from the deps venv its runtime.json names."""
    runtime = tmp_path / "runtime"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(runtime)], check=True, timeout=120)
    deps = Path(bare_python).parent.parent
    (runtime / "runtime.json").write_text(json.dumps({"key": "k", "deps": str(deps)}))
    check = probe_fault_backend(str(runtime / "bin" / "python"))
    if check.backend == "netem":
        assert check.ok
        return
    (need,) = check.missing
    assert need.fix.startswith(f"{deps / 'bin' / 'python'} -m pip install 'grayctl[node]'")


@pytest.fixture
def lab(tmp_path: Path):
    lab = Lab(tmp_path, "b", "10.251.0.0/26", "10.251.64.0/26", count=1)
    try:
        lab.grayctl("lab", "up")
        yield lab
    finally:
        lab.teardown()


def test_doctor_names_what_the_nodes_python_lacks_and_exits_3(lab: Lab, bare_python: str) -> None:
    ok = json.loads(lab.grayctl("lab", "doctor", "--json").stdout)
    python = str(lab.dir / "runtime" / "bin" / "python")  # the lab's node runtime, through its link
    assert ok["clean"] and ok["fault_backend"]["python"] == python
    # the lab's runtime link pointed at a real interpreter without netfilterqueue
    link = lab.dir / "runtime"
    link.unlink()
    link.symlink_to(Path(bare_python).parent.parent)
    doctor = lab.grayctl("lab", "doctor", check=False)
    if ok["fault_backend"]["backend"] == "netem":
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        return
    assert doctor.returncode == 3, doctor.stdout + doctor.stderr
    assert f"nodes' Python: {python} (grayctl_python in {lab.inventory})" in doctor.stdout
    assert f"netfilterqueue in {python}: the fallback's delayer cannot start" in doctor.stdout
    assert f"fix: {python} -m pip install 'grayctl[node]'" in doctor.stdout
    assert "1 missing for the fault backend" in doctor.stderr
