"""What a lab command returns (plain data for the CLI to render), and the root check every provider
that touches this host makes."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from grayctl.errors import LabError

__all__ = ["DoctorReport", "LabRecord", "NodeStatus", "ensure_root"]


@dataclass
class NodeStatus:
    name: str
    roles: list[str]
    mgmt_ip: str
    data_ip: str
    netns: str
    reachable: bool | None = None  # None: not checked


@dataclass
class LabRecord:
    """What a lab command did and how the lab stands afterwards."""

    lab: str
    lab_dir: str
    status: str  # up | down | creating | removing
    inventory: str
    nodes: list[NodeStatus] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    cleaned: dict[str, list[str]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    baseline: str = "skipped"  # recorded | verified | drift accepted | skipped (no baseline playbook) | not run
    changed: bool = False
    # With --accept-drift: node -> [{check, golden, seen, why}], what verify found and the caller accepted.
    drift: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    lab: str
    status: str
    missing: list[str]
    left_behind: list[str]
    unrecorded: list[str]
    sshd_not_listening: list[str]
    drift: list[str]
    notes: list[str] = field(default_factory=list)
    # grayctl.faultbackend's check for the netns nodes (they share this host's kernel); None: not checked
    fault_backend: dict[str, Any] | None = None

    @property
    def backend_missing(self) -> list[dict[str, str]]:
        return list((self.fault_backend or {}).get("missing") or [])

    @property
    def clean(self) -> bool:
        return not (self.missing or self.left_behind or self.unrecorded or self.sshd_not_listening
                    or self.drift or self.backend_missing or self.status not in ("up", "down"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def ensure_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"'{what}' needs root: the lab is namespaces, links, cgroups and sshds on this machine",
                       hint=f"run it as root, e.g. sudo grayctl {what}")
