"""Run one grayctl.lab module file the way Ansible's AnsiballZ wrapper does: a fresh Python with an
args file, the collection's module_utils importable under their ansible_collections names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from grayctl.paths import COLLECTIONS_DIR

MODULES = Path(__file__).resolve().parents[2] / "plugins" / "modules"


def run_module(name: str, tmp: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Run plugins/modules/<name>.py once with ``args``; its JSON result (failed results included)."""
    path = tmp / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out = subprocess.run([sys.executable, str(MODULES / f"{name}.py"), str(path)], check=False, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(COLLECTIONS_DIR)})
    result: dict[str, Any] = json.loads(out.stdout)
    result.pop("invocation", None)
    return result
