"""Where grayctl's files live: its content (playbooks, roles, inventories, topologies, examples)
and lab homes.

The content comes, in order, from ``GRAYCTL_ROOT`` (a checkout or an unpacked copy), from the
package itself (``grayctl/_content``: a wheel or ``pip install .`` carries it, see setup.py), or
from the checkout an editable install points into. ``require_content()`` says in words when none
of them holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from grayctl.errors import LabError

# What setup.py packs into grayctl/_content (tests/unit/test_packaging.py keeps the two equal).
CONTENT = ("ansible.cfg", "requirements.yml", "playbooks", "roles", "inventories", "topologies",
           "experiments", "sweeps", "awx")
_PACKAGE = Path(__file__).resolve().parent


def _content_root() -> Path:
    if os.environ.get("GRAYCTL_ROOT"):
        return Path(os.environ["GRAYCTL_ROOT"]).resolve()
    packaged = _PACKAGE / "_content"
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE.parent
    if (checkout / "playbooks").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return packaged  # missing: require_content() says so


PROJECT_ROOT = _content_root()
PLAYBOOKS_DIR = PROJECT_ROOT / "playbooks"
ROLES_DIR = PROJECT_ROOT / "roles"
INVENTORIES_DIR = PROJECT_ROOT / "inventories"
TOPOLOGIES_DIR = PROJECT_ROOT / "topologies"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
SWEEPS_DIR = PROJECT_ROOT / "sweeps"
ANSIBLE_CFG = PROJECT_ROOT / "ansible.cfg"
CONTROLLER_INVENTORY = INVENTORIES_DIR / "controller.yml"


def require_content() -> Path:
    """The content root, or LabError naming where it was looked for and how to fix it."""
    missing = [name for name in ("ansible.cfg", "playbooks", "roles") if not (PROJECT_ROOT / name).exists()]
    if missing:
        how = ("GRAYCTL_ROOT=" + os.environ["GRAYCTL_ROOT"]) if os.environ.get("GRAYCTL_ROOT") else "the package"
        raise LabError(f"grayctl's Ansible content is missing: no {', '.join(missing)} in {PROJECT_ROOT} ({how})",
                       hint="reinstall grayctl from a wheel or 'pip install .', or set GRAYCTL_ROOT to a grayctl checkout")
    return PROJECT_ROOT
