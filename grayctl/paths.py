"""Where grayctl's files live: its content (the Ansible collection grayctl.lab with its playbooks,
roles and plugins, inventories, topologies, examples) and lab homes.

The content comes, in order, from ``GRAYCTL_ROOT`` (a checkout or an unpacked copy), from the
package itself (``grayctl/_content/ansible_collections/grayctl/lab``: a wheel or ``pip install .``
carries it, see setup.py), or from the checkout an editable install points into.
``require_content()`` says in words when none of them holds it.

Ansible finds the collection under ``COLLECTIONS_DIR``: in a checkout its ``collections/``, whose
``ansible_collections/grayctl/lab`` links to the checkout; in the package the directory the
content root already sits in as ``ansible_collections/grayctl/lab``.
"""

from __future__ import annotations

import os
from pathlib import Path

from grayctl.errors import LabError

# What setup.py packs into grayctl/_content (tests/unit/test_packaging.py keeps the two equal).
CONTENT = ("ansible.cfg", "requirements.yml", "galaxy.yml", "meta", "plugins", "playbooks", "roles", "inventories",
           "topologies", "experiments", "sweeps", "awx", "grafana")
# The collection's place below a collections path (setup.py's COLLECTION).
COLLECTION = ("ansible_collections", "grayctl", "lab")
_PACKAGE = Path(__file__).resolve().parent


def _content_root() -> Path:
    if os.environ.get("GRAYCTL_ROOT"):
        return Path(os.environ["GRAYCTL_ROOT"]).resolve()
    packaged = _PACKAGE.joinpath("_content", *COLLECTION)
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE.parent
    if (checkout / "playbooks").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return packaged  # missing: require_content() says so


def _collections_dir(root: Path) -> Path:
    """The collections path under which ``root`` is the collection grayctl.lab."""
    if root.parts[-len(COLLECTION):] == COLLECTION:
        return root.parents[len(COLLECTION) - 1]
    return root / "collections"


PROJECT_ROOT = _content_root()
COLLECTIONS_DIR = _collections_dir(PROJECT_ROOT)
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
    found = COLLECTIONS_DIR.joinpath(*COLLECTION)
    if not (found / "galaxy.yml").is_file() or found.resolve() != PROJECT_ROOT:
        raise LabError(f"Ansible cannot find the collection grayctl.lab: {found} is not {PROJECT_ROOT}",
                       hint="a checkout needs its link collections/ansible_collections/grayctl/lab -> ../../.. "
                            "(git checkout -- collections restores it); or reinstall grayctl")
    return PROJECT_ROOT
