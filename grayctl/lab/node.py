"""One node of a lab, whatever made it: the record a lab definition (``grayctl.lab.definition``) and
an Ansible inventory (``grayctl.lab.physical``) both produce. Its own module so that neither of those
two imports the other's half back (``definition.load_lab`` dispatches to ``physical``; ``physical``
needs only this).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LabNode"]


@dataclass(frozen=True)
class LabNode:
    name: str
    index: int  # 1-based
    roles: tuple[str, ...]
    mgmt_ip: str
    data_ip: str
    provider: str = "netns"  # netns | qemu | physical
