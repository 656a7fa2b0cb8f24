"""The node runtime on a node without a checkout: roles/node_runtime over real SSH.

A private one-node netns lab stands in for a physical host (the role copies the bundle over SSH
and builds the runtime with the node's own python3 and no index, exactly as on a real host); the
runtime root is private to the test, so the lab host's own runtimes are never touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from grayctl.node_runtime import BUNDLE_CACHE, build_bundle
from grayctl.paths import PROJECT_ROOT
from runlab import RunLab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = RunLab(tmp_path_factory.mktemp("rtlab"), prefix="rt", count=1, network="10.241")
    lab.grayctl("lab", "up", "--lab", str(lab.file))
    try:
        yield lab
    finally:
        lab.grayctl("lab", "down", "--lab", str(lab.file), check=False)


def _play(lab: RunLab, bundle: Path, root: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(lab.defn.inventory_path),
            "playbooks/node_runtime.yml", "-e", json.dumps({"node_runtime_bundle": str(bundle),
                                                            "node_runtime_root": str(root)})]
    proc = subprocess.run(argv, env=lab.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "no hosts matched" not in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def test_the_role_installs_the_runtime_from_a_bundle_and_a_second_run_changes_nothing(lab: RunLab) -> None:
    bundle = build_bundle(BUNDLE_CACHE)
    with tarfile.open(bundle / "bundle.tar") as tar:
        names = tar.getnames()
    assert any(n.startswith("wheels/netfilterqueue-") for n in names), "the wheelhouse holds the node requirements"
    assert "code/grayctl/node_runtime.py" in names
    root = lab.tmp / "node-root"
    first = _play(lab, bundle, root)
    assert re.search(r"node01\s+: ok=\d+\s+changed=[1-9]", first.stdout), first.stdout[-1500:]
    node = lab.defn.node_names[0]
    probe = ["ip", "netns", "exec", lab.defn.netns_of(node), str(root / "current" / "bin" / "python"), "-c",
             "import os, grayctl, netfilterqueue, hdrh; print(os.path.realpath(grayctl.__file__))"]
    # cwd /: `python -c` puts the working directory first on sys.path
    where = subprocess.run(probe, capture_output=True, text=True, check=True, cwd="/").stdout.strip()
    assert where.startswith(str(root) + "/") and "site-packages/grayctl/" in where, where
    assert not (root / "bundles" / bundle.name).exists(), "the bundle's copy is dropped once installed"
    second = _play(lab, bundle, root)
    assert re.search(r"node01\s+: ok=\d+\s+changed=0", second.stdout), second.stdout[-1500:]
