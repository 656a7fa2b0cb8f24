"""ansible-lint (production profile) passes over every role, playbook and Molecule scenario."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[2]


def test_ansible_lint_production_profile_passes() -> None:
    linter = shutil.which("ansible-lint")
    if linter is None:
        pytest.skip("ansible-lint is not installed (pip install -e '.[test]')")
    targets = [p for p in ("roles", "playbooks", "molecule", "awx") if (REPO / p).is_dir()]
    result = subprocess.run(
        [linter, "--profile", "production", "--nocolor", *targets],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"ansible-lint --profile production {' '.join(targets)} failed:\n"
        f"{result.stdout}\n{result.stderr}"
    )
