"""Every Molecule scenario passes `molecule test` (default driver, a real netns node over SSH).

Tier 3: needs root (the scenarios build network-namespace lab nodes) and takes tens of seconds
per scenario. Scenarios are found as molecule/<scenario>/molecule.yml, as Molecule finds them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.molecule

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def test_there_are_molecule_scenarios() -> None:
    assert {"baseline", "netns_lab"} <= set(SCENARIOS), SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario_passes(scenario: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("Molecule scenarios build netns lab nodes: run the molecule tier as root")
    molecule = shutil.which("molecule")
    if molecule is None:
        pytest.skip("molecule is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [molecule, "test", "-s", scenario],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )
    output = (result.stdout + result.stderr)[-8000:]
    assert result.returncode == 0, f"molecule test -s {scenario} failed:\n{output}"
