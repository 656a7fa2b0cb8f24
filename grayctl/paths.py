"""Where grayctl's files live: the project tree (playbooks, roles, topologies) and lab homes."""

from __future__ import annotations

import os
from pathlib import Path

# The repo root holds playbooks/, roles/, inventories/, topologies/ next to grayctl/.
PROJECT_ROOT = Path(os.environ.get("GRAYCTL_ROOT") or Path(__file__).resolve().parents[1])
PLAYBOOKS_DIR = PROJECT_ROOT / "playbooks"
ROLES_DIR = PROJECT_ROOT / "roles"
INVENTORIES_DIR = PROJECT_ROOT / "inventories"
TOPOLOGIES_DIR = PROJECT_ROOT / "topologies"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
ANSIBLE_CFG = PROJECT_ROOT / "ansible.cfg"
CONTROLLER_INVENTORY = INVENTORIES_DIR / "controller.yml"
