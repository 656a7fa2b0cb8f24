# -*- coding: utf-8 -*-
"""The lab definition (a dict, as in ``lab.yml``) resolved to what every lab provider shares.

The netns and qemu lab modules both start from ``resolve_lab``: the lab's name and id, its home,
the node names, the two networks and each node's addresses, and which nodes are VMs. Each adds its
own part of the plan. grayctl/lab/definition.py validates the same file on the controller first (with
line numbers); tests/unit/test_labdef.py keeps the three in step.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import os
import re

DEFAULTS = {
    "name": "local",
    "count": 14,  # 12 gen3 services + a client + a monitor
    "prefix": "node",
    "management": "10.213.0.0/24",
    "data": "10.213.64.0/24",
    "cpu": "50%",
    "memory": "512MiB",
}
QEMU_DEFAULTS = {"image": "debian12", "memory": "1GiB", "cpus": 1, "accel": "auto"}
# A VM node's state dir is inside the guest (the golden image's).
VM_STATE_DIR = "/var/lib/grayctl/node/state"
LAB_NAME_RE = re.compile(r"\A[a-z][a-z0-9-]{0,15}\Z")
PREFIX_RE = re.compile(r"\A[a-z][a-z0-9-]{0,15}\Z")
MAX_NODES = 250


def lab_id_of(name):
    """A short id that keeps host-side link names within IFNAMSIZ (15): ``gc`` + 5 hex."""
    return "gc" + hashlib.sha1(name.encode()).hexdigest()[:5]


def node_names(prefix, count):
    return ["%s%02d" % (prefix, i) for i in range(1, count + 1)]


def resolve_lab(defn, count=0, home="", env=None):
    """What every provider needs of ``defn``; ValueError naming the field when it is unusable.

    ``count`` and ``home`` override the definition's (a CLI option); ``env`` supplies
    GRAYCTL_LAB_HOME (default os.environ).
    """
    env = os.environ if env is None else env
    defn = defn or {}
    name = defn.get("name", DEFAULTS["name"])
    if not isinstance(name, str) or not LAB_NAME_RE.match(name):
        raise ValueError("name must be a short identifier (a-z, 0-9, '-', at most 16, starting with a letter), "
                         "got %r" % (name,))
    nodes = defn.get("nodes") or {}
    count = int(count or nodes.get("count", DEFAULTS["count"]))
    if not 1 <= count <= MAX_NODES:
        raise ValueError("the node count must be from 1 to %d, got %d" % (MAX_NODES, count))
    prefix = nodes.get("prefix", DEFAULTS["prefix"])
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise ValueError("nodes.prefix must be a short identifier, got %r" % (prefix,))
    nets = defn.get("networks") or {}
    mgmt = ipaddress.IPv4Network(nets.get("management", DEFAULTS["management"]), strict=True)
    data = ipaddress.IPv4Network(nets.get("data", DEFAULTS["data"]), strict=True)
    if mgmt.overlaps(data):
        raise ValueError("networks.management %s and networks.data %s overlap" % (mgmt, data))
    for label, net in (("management", mgmt), ("data", data)):
        # network, broadcast and the host's .1 are not node addresses
        if net.num_addresses - 3 < count:
            raise ValueError("networks.%s %s is too small for %d nodes" % (label, net, count))
    lab_dir = home or defn.get("home") or os.path.join(env.get("GRAYCTL_LAB_HOME") or "/var/lib/grayctl/labs", name)
    if not os.path.isabs(lab_dir):
        raise ValueError("the lab home must be an absolute path, got %r" % (lab_dir,))
    names = node_names(prefix, count)
    providers = defn.get("providers") or {}
    vms = list(providers.get("qemu") or [])
    if [v for v in vms if v not in names] or set(providers) - {"qemu"}:
        raise ValueError("providers: only 'qemu: [node, ...]' naming nodes of this lab, got %r" % (providers,))
    lab_id = lab_id_of(name)
    return {
        "name": name,
        "lab_id": lab_id,
        "lab_dir": os.path.normpath(lab_dir),
        "count": count,
        "prefix": prefix,
        "names": names,
        "vms": vms,
        "qemu": dict(QEMU_DEFAULTS, **(defn.get("qemu") or {})),
        "mgmt": mgmt,
        "data": data,
        "mgmt_bridge": lab_id + "-mgmt",
        "data_bridge": lab_id + "-data",
    }


def node_address(net, index):
    """Node ``index`` (from 1) gets .index+1 on both networks: easy to read; the host keeps .1."""
    return net.network_address + 1 + index


# The options every lab provider module takes; each adds its own (module-level ARGUMENT_SPEC).
PROVIDER_OPTIONS = dict(
    state=dict(type="str", default="present", choices=["present", "absent", "reset", "inspect"]),
    definition=dict(type="dict", required=True),
    nodes=dict(type="int", default=0),
    home=dict(type="str", default=""),
)


def plan_to_act_on(state, planned, recorded, resolve, params):
    """The plan a provider's ``state`` acts on, given the definition's (``planned``) and the recorded one.

    absent and inspect act on (and report) what was made; reset keeps the node count that is up,
    with the rest (limits) from the definition; present follows the definition.
    """
    if recorded and state in ("absent", "inspect"):
        return recorded
    if recorded and state == "reset":
        return resolve(params["definition"], params["nodes"] or recorded["count"], params["home"])
    return planned
