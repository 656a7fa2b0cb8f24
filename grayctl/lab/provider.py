"""The lab provider seam: what makes, resets and removes a lab's nodes, behind one small interface.

Everything outside ``grayctl/lab/`` asks the provider of a lab, never its provider's name:

  provider_for(lab) -> Provider         netns, qemu (a netns lab with VM nodes) or physical
  Provider.up / down / reset / status / doctor        the lifecycle (grayctl.lab.lifecycle calls them)
  Provider.capabilities                 what the plan and the run need to know (below)
  Provider.reimage_step / reset_vars    the plan's reimage step and its lab_reset.yml extra vars

A new provider is one module here (a ``Provider`` subclass named in PROVIDERS) plus one role
(the Ansible side that makes its nodes) — the same shape as the reimage backends.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grayctl.lab.records import DoctorReport, LabRecord

__all__ = ["Capabilities", "PROVIDERS", "Provider", "ReimageStep", "provider_for"]

# name -> module:class. Imported on first use, so the plan loads no provider's playbook code.
PROVIDERS = {
    "netns": "grayctl.lab.netns:NetnsProvider",
    "qemu": "grayctl.lab.qemu:QemuProvider",
    "physical": "grayctl.lab.physical:PhysicalProvider",
}


@dataclass(frozen=True)
class Capabilities:
    """What a provider's labs can do, as the plan, the run and the doctor ask it."""

    creates_nodes: bool      # 'lab up' / 'lab down' make and remove the nodes (physical: no)
    reset_reimages: bool     # a reset is a reimage (qemu: a fresh overlay; physical: the node's backend)
    teardown_by_reset: bool  # the reset is cheap and kills every process: a run ends with it, not teardown.yml
    reset_reusable: bool     # a repetition may start from the previous run's verified end reset
    host_kernel: bool        # nodes share this host's kernel: the fault backend (netem or the fallback) is probed here


@dataclass(frozen=True)
class ReimageStep:
    """The plan's first step: every node back to its golden baseline."""

    playbook: str
    hosts: str
    why: str


class Provider(ABC):
    name: str
    capabilities: Capabilities
    reimage: ReimageStep

    def reset_vars(self, lab: Any) -> dict[str, Any]:
        """Extra vars of the plan's reimage (and reset) step for ``lab``."""
        return {}

    @abstractmethod
    def up(self, lab: Any, nodes: int | None, *, verbose: bool) -> LabRecord: ...

    @abstractmethod
    def status(self, lab: Any, *, verbose: bool) -> LabRecord:
        """How the lab stands (nodes, addresses); the SSH ping is the lifecycle's, shared."""

    @abstractmethod
    def reset(self, lab: Any, *, verbose: bool, accept_drift: bool) -> LabRecord: ...

    @abstractmethod
    def down(self, lab: Any, *, verbose: bool) -> LabRecord: ...

    @abstractmethod
    def doctor(self, lab: Any, *, verbose: bool) -> DoctorReport: ...


_cache: dict[str, Provider] = {}


def provider_for(lab: Any) -> Provider:
    """The provider of ``lab``: its ``provider`` field, and qemu for a netns lab with VM nodes (they sit
    on the netns provider's bridges and are made by the same lab_* playbooks)."""
    name = getattr(lab, "provider", "netns")
    if name == "netns" and getattr(lab, "vm_nodes", ()):
        name = "qemu"
    if name not in _cache:
        module, _, cls = PROVIDERS[name].partition(":")
        _cache[name] = getattr(importlib.import_module(module), cls)()
    return _cache[name]
