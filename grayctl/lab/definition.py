"""The lab definition: which nodes a lab has, their addresses, roles and limits.

A lab definition is a small YAML file, ``inventories/<name>/lab.yml`` (schema in docs/lab.md)::

    name: local            # short identifier
    provider: netns
    nodes: {count: 14, prefix: node}
    roles: {node14: [client]}               # optional: node -> inventory groups
    networks: {management: 10.213.0.0/24, data: 10.213.64.0/24}
    limits: {cpu: 50%, memory: 512MiB}
    home: /var/lib/grayctl/labs/local       # optional
    providers: {qemu: [node05]}             # optional: nodes that are qemu VMs (docs/vm-lab.md)
    qemu: {image: debian12, memory: 1GiB, cpus: 1, accel: auto}   # optional: how VM nodes run

``load_lab`` reads and validates it into a ``LabDefinition`` (pure data); errors are
``InputError``s naming file, line and field. The netns provider's module
(``plugins/modules/grayctl_netns_lab.py``, via module_utils/labdef.py) resolves the same file on its own, since it
must stay self-contained; ``tests/unit/test_labdef.py`` keeps the two in step.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from grayctl.errors import InputError, Problem
from grayctl.lab.node import LabNode
from grayctl.paths import INVENTORIES_DIR
from grayctl.source import Checker, ValueProblem, load_yaml_document, parse_choice
from grayctl.units import UnitError, parse_size

__all__ = ["LabNode", "LabDefinition", "load_lab", "validate_lab", "DEFAULT_LAB_HOME"]

DEFAULT_LAB_HOME = "/var/lib/grayctl/labs"
DEFAULT_COUNT = 14  # 12 gen3 services + a client + a monitor
MAX_NODES = 250
DEFAULT_MANAGEMENT = "10.213.0.0/24"
DEFAULT_DATA = "10.213.64.0/24"
DEFAULT_CPU = "50%"
DEFAULT_MEMORY = "512MiB"
CPU_PERIOD_US = 100_000
MIN_MEMORY = 32 * 1024**2  # sshd plus one Ansible module must fit

# Lab names and node prefixes reach namespace, link and file names: short and plain.
SHORT_NAME_RE = re.compile(r"\A[a-z][a-z0-9-]{0,15}\Z")
SHORT_NAME_FORM = "a short name: a-z, 0-9 and '-', starting with a letter, at most 16 characters"
GROUP_RE = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")
GROUP_FORM = "an Ansible group name: a-z, 0-9 and '_', starting with a letter"
RESERVED_GROUPS = {"all", "ungrouped", "lab_nodes"}
TOP_KEYS = ["name", "description", "provider", "nodes", "roles", "networks", "limits", "home", "providers", "qemu"]
QEMU_KEYS = ["image", "memory", "cpus", "accel"]
QEMU_DEFAULTS = {"image": "debian12", "memory": "1GiB", "cpus": 1, "accel": "auto"}
MIN_VM_MEMORY = 256 * 1024**2  # systemd, sshd and an Ansible module in a Debian guest
MAX_VM_CPUS = 64


@dataclass(frozen=True)
class LabDefinition:
    name: str
    provider: str = "netns"
    count: int = DEFAULT_COUNT
    prefix: str = "node"
    roles: dict[str, tuple[str, ...]] | None = None  # explicit node -> groups; None = defaults
    management: ipaddress.IPv4Network = ipaddress.IPv4Network(DEFAULT_MANAGEMENT)
    data: ipaddress.IPv4Network = ipaddress.IPv4Network(DEFAULT_DATA)
    cpu: str = DEFAULT_CPU
    memory: str = DEFAULT_MEMORY
    home: Path | None = None  # as written; None = default under GRAYCTL_LAB_HOME
    description: str = ""
    vm_nodes: tuple[str, ...] = ()  # providers.qemu: nodes that are VMs, the rest are namespaces
    qemu: dict[str, Any] | None = None  # the qemu block (image, memory, cpus, accel), defaults filled in
    source: Path | None = field(default=None, compare=False)

    # -- derived ------------------------------------------------------------
    @property
    def lab_id(self) -> str:
        """Short id in host-side link names (IFNAMSIZ is 15): ``gc`` + 5 hex of the name."""
        return "gc" + hashlib.sha1(self.name.encode()).hexdigest()[:5]

    @property
    def cpu_quota_us(self) -> int:
        return round(float(self.cpu.rstrip("%")) / 100 * CPU_PERIOD_US)

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory).bytes

    @property
    def host_mgmt_ip(self) -> str:
        return str(self.management.network_address + 1)

    @property
    def node_names(self) -> list[str]:
        return [f"{self.prefix}{i:02d}" for i in range(1, self.count + 1)]

    @property
    def nodes(self) -> list[LabNode]:
        names = self.node_names
        groups = _default_roles(names) if self.roles is None else {
            n: self.roles.get(n, ("app",)) for n in names}
        return [
            LabNode(
                name=n,
                index=i,
                roles=tuple(sorted(set(groups[n]))),
                # node N is .N+1 on both networks; the host keeps .1 of management
                mgmt_ip=str(self.management.network_address + 1 + i),
                data_ip=str(self.data.network_address + 1 + i),
                provider="qemu" if n in self.vm_nodes else "netns",
            )
            for i, n in enumerate(names, start=1)
        ]

    @property
    def lab_dir(self) -> Path:
        if self.home is not None:
            return self.home
        return Path(os.environ.get("GRAYCTL_LAB_HOME") or DEFAULT_LAB_HOME) / self.name

    @property
    def inventory_path(self) -> Path:
        return self.lab_dir / "inventory.yml"

    @property
    def state_path(self) -> Path:
        return self.lab_dir / "state.json"

    @property
    def key_path(self) -> Path:
        return self.lab_dir / "ssh" / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.lab_dir / "known_hosts"

    def netns_of(self, node: str) -> str:
        return f"gc-{self.name}-{node}"

    def with_count(self, count: int) -> LabDefinition:
        """The same lab with ``count`` nodes (``lab up --nodes N``); raises InputError when it cannot fit."""
        if not 1 <= count <= MAX_NODES:
            raise InputError(Problem(f"{count} nodes is out of range", path="--nodes",
                                     expected=f"a node count from 1 to {MAX_NODES}"))
        capacity = min(_capacity(self.management), _capacity(self.data))
        if count > capacity:
            raise InputError(Problem(f"{count} nodes do not fit the lab's networks "
                                     f"({self.management}, {self.data}: room for {capacity})",
                                     file=str(self.source) if self.source else None, path="networks",
                                     expected="a larger network in the lab definition, or fewer nodes"))
        return self if count == self.count else replace(self, count=count)

    def to_dict(self) -> dict[str, Any]:
        """The definition as a lab.yml mapping (what the netns_lab role accepts inline)."""
        out: dict[str, Any] = {
            "name": self.name,
            "provider": self.provider,
            "nodes": {"count": self.count, "prefix": self.prefix},
            "networks": {"management": str(self.management), "data": str(self.data)},
            "limits": {"cpu": self.cpu, "memory": self.memory},
        }
        if self.roles is not None:
            out["roles"] = {n: list(g) for n, g in self.roles.items()}
        if self.home is not None:
            out["home"] = str(self.home)
        if self.vm_nodes:
            out["providers"] = {"qemu": list(self.vm_nodes)}
        if self.qemu is not None:
            out["qemu"] = dict(self.qemu)
        return out


def _capacity(net: ipaddress.IPv4Network) -> int:
    return max(0, net.num_addresses - 3)  # network, broadcast and the host's .1


def _default_roles(names: list[str]) -> dict[str, set[str]]:
    """The last node is the client, the one before the monitor, the rest the app (shared below 3)."""
    roles: dict[str, set[str]] = {n: set() for n in names}
    roles[names[-1]].add("client")
    roles[names[-2] if len(names) >= 2 else names[-1]].add("monitor")
    for n in names[:-2] if len(names) >= 3 else names[:1]:
        roles[n].add("app")
    return roles


# ---------------------------------------------------------------------------
# Loading and validation


def load_lab(name_or_path: str = "local") -> LabDefinition:
    """A lab by name (``inventories/<name>/lab.yml``) or by path to its lab.yml; a lab grayctl does
    not make is an Ansible inventory instead (grayctl/lab/physical.py), by path or as the name of an
    inventories/ directory that holds hosts.yml and no lab.yml."""
    path = _locate(name_or_path)
    from grayctl.lab.physical import is_inventory, load_physical_lab

    if is_inventory(path):
        return load_physical_lab(path)  # type: ignore[return-value]  # the same surface for plan/run/lab
    data, positions = load_yaml_document(path)
    return validate_lab(data, Checker(str(path), positions), source=path)


def _locate(name_or_path: str) -> Path:
    looks_like_path = os.sep in name_or_path or name_or_path.endswith((".yml", ".yaml"))
    if looks_like_path:
        return Path(name_or_path)
    if not SHORT_NAME_RE.match(name_or_path):
        raise InputError(Problem(f"{name_or_path!r} is neither a lab name nor a path", path="--lab",
                                 expected="a lab name (inventories/<name>/lab.yml) or a path to a lab.yml"))
    path = INVENTORIES_DIR / name_or_path / "lab.yml"
    if not path.is_file() and (path.parent / "hosts.yml").is_file():
        return path.parent / "hosts.yml"
    if not path.is_file():
        known = sorted(p.parent.name for p in INVENTORIES_DIR.glob("*/lab.yml"))
        raise InputError(Problem(f"no lab named {name_or_path!r} ({path} does not exist)", path="--lab",
                                 expected="one of: " + (", ".join(known) or "(none)")))
    return path


def _short_name(what: str):
    def parse(value: Any) -> str:
        if isinstance(value, str) and SHORT_NAME_RE.match(value):
            return value
        raise ValueProblem(f"{what} {value!r} is not a usable name", SHORT_NAME_FORM)
    return parse


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueProblem(f"expected a whole number of nodes, got {value!r}", f"an integer from 1 to {MAX_NODES}")
    if not 1 <= value <= MAX_NODES:
        raise ValueProblem(f"{value} nodes is out of range", f"an integer from 1 to {MAX_NODES}")
    return value


def _network(value: Any) -> ipaddress.IPv4Network:
    form = "an IPv4 network in CIDR form with host bits zero, at most /30 (e.g. 10.213.0.0/24)"
    if not isinstance(value, str):
        raise ValueProblem(f"expected a network such as 10.213.0.0/24, got {value!r}", form)
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ValueProblem(f"{value!r} is not a network: {err}", form) from None
    if net.prefixlen > 30:
        raise ValueProblem(f"{value} is too small to hold nodes", form)
    if not net.is_private:
        raise ValueProblem(f"{value} is not a private range; lab traffic must not look like the internet's",
                           "a private range (10/8, 172.16/12, 192.168/16)")
    return net


def _cpu(value: Any) -> str:
    form = "a share of one core with '%', e.g. 50% (half a core) or 200% (two cores)"
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)%", value) if isinstance(value, str) else None
    if not m:
        raise ValueProblem(f"expected a CPU share such as 50%, got {value!r}", form)
    if not 1 <= float(m.group(1)) <= 102400:
        raise ValueProblem(f"{value} is out of range", "at least 1% (the kernel's minimum cfs quota)")
    return value


def _memory(value: Any) -> str:
    try:
        size = parse_size(value)
    except UnitError:
        raise
    if size.bytes < MIN_MEMORY:
        raise ValueProblem(f"{value} is too little for a node", "at least 32MiB (sshd and one Ansible module)")
    return value


def _home(value: Any) -> Path:
    if not isinstance(value, str) or not value.startswith("/") or "\n" in value:
        raise ValueProblem(f"expected an absolute path, got {value!r}", "an absolute directory path")
    return Path(os.path.normpath(value))


def _groups(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueProblem(f"expected a list of group names, got {value!r}", "a list such as [app] or [client]")
    for g in items:
        if not isinstance(g, str) or not GROUP_RE.match(g) or g in RESERVED_GROUPS:
            reserved = ", ".join(sorted(RESERVED_GROUPS))
            raise ValueProblem(f"{g!r} is not a usable group name", f"{GROUP_FORM} (not {reserved})")
    return tuple(sorted(set(items)))


def _vm_memory(value: Any) -> str:
    size = parse_size(value)
    if size.bytes < MIN_VM_MEMORY:
        raise ValueProblem(f"{value} is too little for a VM node", "at least 256MiB (systemd, sshd and Ansible)")
    return value


def _vm_cpus(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VM_CPUS:
        raise ValueProblem(f"expected a whole number of virtual CPUs, got {value!r}", f"an integer from 1 to {MAX_VM_CPUS}")
    return value


def _image_ref(value: Any) -> str:
    if isinstance(value, str) and (re.fullmatch(r"[a-z][a-z0-9-]{0,31}", value)
                                   or (value.startswith("/") and "\n" not in value)):
        return value
    raise ValueProblem(f"{value!r} is not an image", "an image name (grayctl image ls) or the absolute path of an "
                       "image directory")


def _validate_vms(data: dict[str, Any], check: Checker, names: list[str] | None) -> tuple[tuple[str, ...],
                                                                                          dict[str, Any] | None]:
    """providers.qemu (VM node names) and the qemu block; VMs sit on the netns provider's bridges."""
    vm_nodes: list[str] = []
    if "providers" in data:
        provs = check.mapping(data["providers"], ("providers",), allowed=["qemu", "netns"]) or {}
        if "netns" in provs:
            check.problem(("providers", "netns"), "netns nodes are the ones not listed under providers.qemu",
                          at_key=True, expected="providers: {qemu: [node05, ...]}")
        raw = check.sequence(provs.get("qemu", []), ("providers", "qemu"), what="a list of node names") or []
        for i, node in enumerate(raw):
            if names is not None and node not in names:
                check.problem(("providers", "qemu", i), f"there is no node {node!r}",
                              expected=f"one of {names[0]} .. {names[-1]}" if names else None)
            elif node in vm_nodes:
                check.problem(("providers", "qemu", i), f"{node} is listed twice")
            else:
                vm_nodes.append(node)
    qemu: dict[str, Any] | None = None
    if "qemu" in data or vm_nodes:
        block = check.mapping(data.get("qemu", {}), ("qemu",), allowed=QEMU_KEYS) or {}
        qemu = {
            "image": check.field(block, ("qemu",), "image", _image_ref, default=QEMU_DEFAULTS["image"]),
            "memory": check.field(block, ("qemu",), "memory", _vm_memory, default=QEMU_DEFAULTS["memory"]),
            "cpus": check.field(block, ("qemu",), "cpus", _vm_cpus, default=QEMU_DEFAULTS["cpus"]),
            "accel": check.field(block, ("qemu",), "accel", parse_choice(["auto", "kvm", "tcg"], "accel"),
                                 default=QEMU_DEFAULTS["accel"]),
        }
    return tuple(vm_nodes), qemu


def validate_lab(data: dict[str, Any], check: Checker, *, source: Path | None = None) -> LabDefinition:
    """A LabDefinition from a loaded lab.yml mapping; raises InputError listing every problem."""
    check.mapping(data, (), allowed=TOP_KEYS, required=["name"])
    name = check.field(data, (), "name", _short_name("lab name"))
    provider = check.field(data, (), "provider", parse_choice(["netns"], "provider"), default="netns")
    description = data.get("description", "")

    nodes = check.mapping(data.get("nodes", {}), ("nodes",), allowed=["count", "prefix"]) or {}
    count = check.field(nodes, ("nodes",), "count", _count, default=DEFAULT_COUNT)
    prefix = check.field(nodes, ("nodes",), "prefix", _short_name("node prefix"), default="node")

    nets = check.mapping(data.get("networks", {}), ("networks",), allowed=["management", "data"]) or {}
    management = check.field(nets, ("networks",), "management", _network,
                             default=ipaddress.IPv4Network(DEFAULT_MANAGEMENT))
    data_net = check.field(nets, ("networks",), "data", _network, default=ipaddress.IPv4Network(DEFAULT_DATA))

    limits = check.mapping(data.get("limits", {}), ("limits",), allowed=["cpu", "memory"]) or {}
    cpu = check.field(limits, ("limits",), "cpu", _cpu, default=DEFAULT_CPU)
    memory = check.field(limits, ("limits",), "memory", _memory, default=DEFAULT_MEMORY)
    home = check.field(data, (), "home", _home, default=None)

    if management is not None and data_net is not None:
        if management.overlaps(data_net):
            check.problem(("networks", "data"), f"{data_net} overlaps the management network {management}",
                          expected="two separate ranges")
        elif isinstance(count, int):
            for key, net in (("management", management), ("data", data_net)):
                if _capacity(net) < count:
                    check.problem(("networks", key), f"{net} has room for {_capacity(net)} nodes, not {count}",
                                  expected=f"a network with at least {count + 3} addresses")

    roles: dict[str, tuple[str, ...]] | None = None
    if "roles" in data:
        raw = check.mapping(data["roles"], ("roles",), allowed=data["roles"].keys()
                            if isinstance(data["roles"], dict) else [], what="a mapping of node -> groups")
        if raw is not None and isinstance(count, int) and isinstance(prefix, str):
            names = [f"{prefix}{i:02d}" for i in range(1, count + 1)]
            roles = {}
            for node, groups in raw.items():
                if node not in names:
                    check.problem(("roles", node), f"there is no node {node!r}", at_key=True,
                                  expected=f"one of {names[0]} .. {names[-1]}")
                    continue
                parsed = check.convert(groups, ("roles", node), _groups)
                if parsed is not None:
                    roles[node] = parsed

    names = [f"{prefix}{i:02d}" for i in range(1, count + 1)] \
        if isinstance(count, int) and isinstance(prefix, str) else None
    vm_nodes, qemu = _validate_vms(data, check, names)

    check.raise_if_problems(hint="the lab definition schema is in docs/lab.md (VM nodes: docs/vm-lab.md)")
    return LabDefinition(
        name=name, provider=provider, count=count, prefix=prefix, roles=roles, management=management,
        data=data_net, cpu=cpu, memory=memory, home=home, description=str(description or ""),
        vm_nodes=vm_nodes, qemu=qemu, source=source,
    )
