"""The qemu provider: a netns lab whose ``providers.qemu`` nodes are VMs (roles/qemu_lab, docs/vm-lab.md).

The VMs sit on the netns provider's bridges and come up in the same lab_* playbooks, right after
the netns_lab role; so this provider is the netns one plus what differs: the golden image must
exist before ``up``, every reset is a reimage (a fresh overlay), and VM nodes have kernels of their
own (the fault backend is not probed here for them). Images: grayctl.lab.image.
"""

from __future__ import annotations

from typing import Any

from grayctl.lab.netns import NetnsProvider
from grayctl.lab.provider import Capabilities

__all__ = ["QemuProvider"]


class QemuProvider(NetnsProvider):
    name = "qemu"
    # A VM's reset is a reboot from a fresh overlay: too slow to be a run's undeploy.
    capabilities = Capabilities(creates_nodes=True, reset_reimages=True, teardown_by_reset=False,
                                reset_reusable=True, host_kernel=False)

    def before_up(self, defn: Any) -> None:
        if defn.qemu:
            from grayctl.lab.image import find_image

            find_image(defn.qemu["image"])  # before anything is made: 'grayctl image build' first

    def host_kernel_nodes(self, defn: Any) -> list[str]:
        return [n for n in defn.node_names if n not in defn.vm_nodes]
