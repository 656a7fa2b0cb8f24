"""The repo root is the Ansible collection grayctl.lab: it builds with ansible-galaxy into an artifact
of collection content only (no links, none of the controller), installs from that tarball, and a
role runs from the installed copy alone (no checkout on any Ansible path).

The role is baseline, in record mode and check mode against localhost over the local connection:
grayctl_fingerprint (module_utils commands) fingerprints this host read-only and
grayctl_baseline_store (module_utils files) reports the golden record it would write. No root, no
lab; nothing is written outside tmp_path.
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
import yaml

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOT_CONTENT = {"grayctl", "tests", "docs", "bench", "scripts", "molecule", "collections", "awx", "topologies",
               "experiments", "sweeps", "setup.py", "pyproject.toml", "ansible.cfg", ".venv", ".git"}


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_collection_builds_installs_and_runs_a_role_from_the_install(tmp_path: Path) -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    installed = tmp_path / "installed"
    # Only the install under test is on Ansible's paths: not the checkout's, nor ~/.ansible's.
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(installed),
           "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False", "ANSIBLE_ROLES_PATH": str(tmp_path / "no-roles"),
           "ANSIBLE_NOCOLOR": "1"}
    _run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path / "dist"), str(REPO)],
         cwd=tmp_path, env=env)
    tarball = tmp_path / "dist" / f"grayctl-lab-{galaxy['version']}.tar.gz"
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = {m.name for m in members}
    assert {"MANIFEST.json", "meta/runtime.yml", "plugins/module_utils/process.py",
            "plugins/modules/grayctl_process.py", "plugins/action/grayctl_collect.py",
            "roles/baseline/tasks/main.yml", "playbooks/baseline.yml", "inventories/local/lab.yml"} <= names
    assert not sorted(n for n in names if n.split("/")[0] in NOT_CONTENT), "controller files in the artifact"
    assert not [m.name for m in members if m.issym() or m.islnk()], "links in the artifact"

    _run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(installed), str(tarball)], cwd=tmp_path, env=env)
    assert (installed / "ansible_collections" / "grayctl" / "lab" / "plugins" / "module_utils" / "files.py").is_file()

    lab_dir, state_dir = tmp_path / "lab", tmp_path / "state"
    state_dir.mkdir()
    play = [{
        "name": "Record this host's baseline in check mode, from the installed collection",
        "hosts": "localhost",
        "gather_facts": False,
        "roles": [{"role": "grayctl.lab.baseline", "vars": {
            "baseline_mode": "record",
            "grayctl_lab_dir": str(lab_dir),
            "grayctl_state_dir": str(state_dir),
            # this shared host may run other labs' processes and devices: fingerprint only lo
            "baseline_interfaces": ["lo"],
            "baseline_process_names": [],
            "baseline_forbidden_link_kinds": [],
        }}],
        # check_mode false: the one write of the run, into tmp_path, so the test can read the result
        "post_tasks": [{"name": "Keep what the role's fingerprint returned", "check_mode": False,
                        "ansible.builtin.copy": {"content": "{{ __baseline_fingerprint | to_json }}",
                                                 "dest": str(tmp_path / "fingerprint.json"), "mode": "0600"}}],
    }]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    proc = _run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check",
                 "-e", f"ansible_python_interpreter={sys.executable}", "play.yml"], cwd=tmp_path, env=env)
    fingerprint = json.loads((tmp_path / "fingerprint.json").read_text())
    assert fingerprint["fingerprint"]["qdiscs"] and fingerprint["violations"] == [], fingerprint
    # the store task ran from the install and, in check mode, only said it would write
    store = re.search(r"TASK \[grayctl\.lab\.baseline : Write the golden records on the controller\] \**\n(\w+): \[localhost",
                      proc.stdout)
    assert store and store.group(1) == "changed", proc.stdout
    assert not lab_dir.exists(), "check mode wrote the golden record"
