"""What the run benches share: ``grayctl`` as a user runs it, and a private lab up for the bench.

  grayctl(*args, env) -> CompletedProcess         python -m grayctl from the repo root
  private_lab(tmp, definition, env) -> lab file    a context: the lab up (its home in ``tmp``), down after
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def grayctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grayctl", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)


@contextmanager
def private_lab(tmp: Path, definition: dict, env: dict[str, str]) -> Iterator[str]:
    """``definition`` up as a lab of the bench's own (``env`` gets its lab home), down afterwards;
    SystemExit(1) with grayctl's output when it does not come up."""
    env["GRAYCTL_LAB_HOME"] = str(tmp / "labs")
    lab = tmp / f"{definition['name']}.yml"
    lab.write_text(yaml.safe_dump(definition))
    up = grayctl("lab", "up", "--lab", str(lab), env=env)
    if up.returncode != 0:
        print(up.stdout, up.stderr, file=sys.stderr)
        raise SystemExit(1)
    try:
        yield str(lab)
    finally:
        down = grayctl("lab", "down", "--lab", str(lab), env=env)
        if down.returncode != 0:
            print(down.stdout, down.stderr, file=sys.stderr)
