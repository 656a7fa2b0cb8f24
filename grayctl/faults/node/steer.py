"""Netfilter rules owned by one fault: steering into the delayer's queue, random loss, partition.

Everything a fault creates is named from its fault id, so it can be removed by exactly that
name (by the helper on exit, by ``expiry`` if the helper is SIGKILLed, by the role on revert):

  nft table       ``inet grayctl_<id>``   loss and partition rules (native nftables)
  iptables chain  ``GRAYCTL_<id>``        in table ``mangle`` of iptables and ip6tables,
                                          jumped to from OUTPUT (egress) / PREROUTING (ingress),
                                          holding the ``NFQUEUE`` rules of the delayer

Flow fractions (a share of the flows, chosen when each connection starts): the fault's nft table
gets two more chains, ``select_out`` (hook output) and ``select_in`` (hook prerouting), at
priority ``mangle - 10`` — after conntrack, before the iptables mangle chains and the fault's
own rules. A connection's first packet (``ct state new``) that no earlier packet has decided for
(the fault's *decided* bit unset) is selected with the fraction's probability: its conntrack
mark gets the fault's *decided* and *selected* bits, else only *decided* (so a retransmitted
SYN never rolls again). The fault's rules then match ``ct mark & selected`` (nft) or
``-m connmark --mark selected/selected`` (iptables); ``build_flow_select``.

Why two tools: kernels without ``sch_netem`` here are also built without ``CONFIG_NFT_QUEUE``
(nft's ``queue`` statement fails with "No such file or directory"), but they have the xtables
``NFQUEUE`` target through ``nft_compat``. So queue steering goes through ``iptables`` (the
nf_tables flavour — it lands in nftables' ruleset, visible to ``nft list ruleset``), everything
else is a native nft table. When our chain was the last thing in the iptables-nft ``mangle``
table, revert deletes that (then empty) table too, so the ruleset returns to the baseline.

Builders (``build_*``) are pure: validated inputs in, exact argv lists or nft script text out.
Runners (``apply_*``, ``revert_fault``) execute them — argv lists only, never a shell — in the
current network namespace or, with ``netns=``, through ``ip netns exec``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from grayctl.faults.spec import FAULT_ID_RE, IFNAME_RE, is_fault_id, is_ifname

__all__ = [
    "SteerError",
    "Scope",
    "validate_fault_id",
    "validate_ifname",
    "FAULT_ID_RE",
    "IFNAME_RE",
    "is_fault_id",
    "is_ifname",
    "nft_table_name",
    "iptables_chain_name",
    "build_queue_argvs",
    "build_queue_revert_argvs",
    "build_loss_script",
    "build_flow_select",
    "FlowMark",
    "build_partition_script",
    "apply_queue_steer",
    "apply_nft_script",
    "revert_fault",
    "fault_leftovers",
]

_NETNS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_MULTIPORT = 15  # xt_multiport's limit per rule
DIRECTIONS = ("egress", "ingress")
PARTITION_DIRECTIONS = ("egress", "ingress", "both")
LOSS_RESOLUTION = 1_000_000  # numgen modulus: loss percent with 4 decimals


class SteerError(ValueError):
    """A steering input is invalid, or a rule could not be applied."""


def validate_fault_id(fault_id: str) -> str:
    if not is_fault_id(fault_id):
        raise SteerError(f"fault id {fault_id!r} must match {FAULT_ID_RE.pattern}")
    return fault_id


def validate_ifname(name: str) -> str:
    if not is_ifname(name):
        raise SteerError(f"interface name {name!r} is not a valid Linux interface name")
    return name


def _validate_netns(name: str) -> str:
    if not _NETNS.match(name):
        raise SteerError(f"network namespace name {name!r} is invalid")
    return name


def _validate_ports(ports: Iterable[int], what: str) -> tuple[int, ...]:
    out = []
    for p in ports:
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
            raise SteerError(f"{what}: port {p!r} must be an integer 1..65535")
        if p not in out:
            out.append(p)
    if len(out) > MAX_MULTIPORT:
        raise SteerError(f"{what}: at most {MAX_MULTIPORT} ports per fault (xt_multiport)")
    return tuple(out)


def nft_table_name(fault_id: str) -> str:
    return f"grayctl_{validate_fault_id(fault_id)}"


def iptables_chain_name(fault_id: str) -> str:
    # iptables chain names are limited to 28 characters.
    name = f"GRAYCTL_{validate_fault_id(fault_id)}"
    if len(name) > 28:
        raise SteerError(f"fault id {fault_id!r} is too long for an iptables chain (max 20 characters)")
    return name


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Scope:
    """Which packets a fault touches: interface, direction, optional peers and ports.

    ``peer_ports`` are ports on the peer's side (destination port on egress, source port on
    ingress); ``local_ports`` are this node's (source on egress, destination on ingress).
    Ports imply TCP and UDP. An empty ``peers`` means every peer.
    """

    ifname: str
    direction: str = "egress"
    peers: tuple[Network, ...] = ()
    peer_ports: tuple[int, ...] = ()
    local_ports: tuple[int, ...] = ()

    @classmethod
    def build(cls, ifname: str, direction: str = "egress", peers: Iterable[str] = (),
              peer_ports: Iterable[int] = (), local_ports: Iterable[int] = ()) -> Scope:
        """Validate raw values (from a CLI or a role's vars) into a ``Scope``."""
        if direction not in DIRECTIONS:
            raise SteerError(f"direction {direction!r} must be one of {', '.join(DIRECTIONS)}")
        nets: list[Network] = []
        for p in peers:
            try:
                nets.append(ipaddress.ip_network(str(p), strict=True))
            except ValueError as exc:
                raise SteerError(f"peer {p!r} is not an address or network: {exc}") from None
        return cls(validate_ifname(ifname), direction, tuple(nets),
                   _validate_ports(peer_ports, "peer ports"), _validate_ports(local_ports, "local ports"))

    def families(self) -> tuple[int, ...]:
        """IP versions this scope covers (both when no peers narrow it)."""
        if not self.peers:
            return (4, 6)
        return tuple(v for v in (4, 6) if any(n.version == v for n in self.peers))

    def peers_of(self, version: int) -> list[Network]:
        return [n for n in self.peers if n.version == version]


# ---------------------------------------------------------------------------- queue (iptables)

def _iptables_tool(version: int) -> str:
    return "iptables" if version == 4 else "ip6tables"


def _hook_chain(direction: str) -> str:
    return "OUTPUT" if direction == "egress" else "PREROUTING"


def build_queue_argvs(fault_id: str, scope: Scope, queue: int, *, bypass: bool = True,
                      connmark: int | None = None) -> list[list[str]]:
    """argv lists that steer the scope's packets into NFQUEUE ``queue``, in apply order.

    The chain is filled before the jump is inserted, so no packet meets a half-built chain.
    ``bypass`` (``--queue-bypass``): packets pass untouched while no helper is bound.
    ``connmark``: only connections whose conntrack mark has this bit (flow fractions).
    """
    if connmark is not None:
        FlowMark.validate_bit(connmark)
    if isinstance(queue, bool) or not isinstance(queue, int) or not 0 <= queue <= 65535:
        raise SteerError(f"queue number {queue!r} must be 0..65535")
    chain = iptables_chain_name(fault_id)
    argvs: list[list[str]] = []
    for version in scope.families():
        tool = _iptables_tool(version)
        argvs.append([tool, "-t", "mangle", "-N", chain])
        dev = ["-o", scope.ifname] if scope.direction == "egress" else ["-i", scope.ifname]
        peer_flag = "-d" if scope.direction == "egress" else "-s"
        peers: list[Network | None] = list(scope.peers_of(version)) or [None]
        protos: list[str | None] = ["tcp", "udp"] if (scope.peer_ports or scope.local_ports) else [None]
        for peer in peers:
            for proto in protos:
                rule = [tool, "-t", "mangle", "-A", chain, *dev]
                if peer is not None:
                    rule += [peer_flag, str(peer)]
                if proto is not None:
                    rule += ["-p", proto]
                    remote = "--dports" if scope.direction == "egress" else "--sports"
                    local = "--sports" if scope.direction == "egress" else "--dports"
                    if scope.peer_ports:
                        rule += ["-m", "multiport", remote, ",".join(map(str, scope.peer_ports))]
                    if scope.local_ports:
                        rule += ["-m", "multiport", local, ",".join(map(str, scope.local_ports))]
                if connmark is not None:
                    rule += ["-m", "connmark", "--mark", f"{hex(connmark)}/{hex(connmark)}"]
                rule += ["-j", "NFQUEUE", "--queue-num", str(queue)]
                if bypass:
                    rule.append("--queue-bypass")
                argvs.append(rule)
        argvs.append([tool, "-t", "mangle", "-I", _hook_chain(scope.direction), "-j", chain])
    return argvs


def build_queue_revert_argvs(fault_id: str) -> list[list[str]]:
    """argv lists that remove the fault's chain from both families and both hooks.

    Each may fail harmlessly when that part does not exist; ``revert_fault`` runs them all.
    """
    chain = iptables_chain_name(fault_id)
    argvs = []
    for version in (4, 6):
        tool = _iptables_tool(version)
        for hook in ("OUTPUT", "PREROUTING"):
            argvs.append([tool, "-t", "mangle", "-D", hook, "-j", chain])
        argvs.append([tool, "-t", "mangle", "-F", chain])
        argvs.append([tool, "-t", "mangle", "-X", chain])
    return argvs


# ---------------------------------------------------------------------------- nft (loss, partition)

def _nft_matches(scope: Scope, direction: str) -> list[str]:
    """One nft match expression per IP family (a rule can only test one family's addresses)."""
    dev = f'oifname "{scope.ifname}"' if direction == "egress" else f'iifname "{scope.ifname}"'
    addr_key = "daddr" if direction == "egress" else "saddr"
    remote_port, local_port = ("dport", "sport") if direction == "egress" else ("sport", "dport")
    ports = ""
    if scope.peer_ports or scope.local_ports:
        ports = " meta l4proto { tcp, udp }"
        if scope.peer_ports:
            ports += f" th {remote_port} {{ {', '.join(map(str, scope.peer_ports))} }}"
        if scope.local_ports:
            ports += f" th {local_port} {{ {', '.join(map(str, scope.local_ports))} }}"
    if not scope.peers:
        return [dev + ports]
    out = []
    for version, fam in ((4, "ip"), (6, "ip6")):
        nets = scope.peers_of(version)
        if nets:
            out.append(f"{dev} {fam} {addr_key} {{ {', '.join(map(str, nets))} }}{ports}")
    return out


@dataclass(frozen=True)
class FlowMark:
    """The conntrack-mark bits of one flow-fraction fault: slot ``n`` owns bits ``2n`` and ``2n+1``."""

    slot: int
    fraction: float  # 0 < fraction < 1

    SLOTS = 16

    def __post_init__(self) -> None:
        if isinstance(self.slot, bool) or not isinstance(self.slot, int) or not 0 <= self.slot < self.SLOTS:
            raise SteerError(f"flow mark slot {self.slot!r} must be 0..{self.SLOTS - 1}")
        if not 0 < self.fraction < 1:
            raise SteerError(f"flow fraction {self.fraction!r} must be within (0, 1)")

    @property
    def decided(self) -> int:
        return 1 << (2 * self.slot)

    @property
    def selected(self) -> int:
        return 1 << (2 * self.slot + 1)

    @property
    def threshold(self) -> int:
        return round(self.fraction * LOSS_RESOLUTION)

    @staticmethod
    def validate_bit(bit: int) -> int:
        if isinstance(bit, bool) or not isinstance(bit, int) or not 0 < bit < 1 << 32 or bit & (bit - 1):
            raise SteerError(f"connmark {bit!r} must be one bit of a 32-bit mark")
        return bit

    def match(self) -> str:
        """nft match for the selected connections."""
        return f"ct mark & {hex(self.selected)} == {hex(self.selected)}"

    def to_dict(self) -> dict[str, object]:
        return {"slot": self.slot, "fraction": self.fraction, "decided": hex(self.decided),
                "selected": hex(self.selected), "threshold": f"{self.threshold}/{LOSS_RESOLUTION}"}


def build_flow_select(ifname: str, mark: FlowMark) -> dict[str, tuple[str, list[str]]]:
    """The selection chains of a flow-fraction fault: name -> (hook, rules), for ``_nft_table``."""
    validate_ifname(ifname)
    d, both = hex(mark.decided), hex(mark.decided | mark.selected)
    out = {}
    for name, hook, dev in (("select_out", "output", "oifname"), ("select_in", "prerouting", "iifname")):
        new = f'{dev} "{ifname}" ct state new ct mark & {d} == 0x0'
        out[name] = (hook, [f"{new} numgen random mod {LOSS_RESOLUTION} < {mark.threshold} ct mark set ct mark | {both}",
                            f"{new} ct mark set ct mark | {d}"])
    return out


def _nft_table(fault_id: str, chains: dict[str, list[str]],
               select: dict[str, tuple[str, list[str]]] | None = None) -> str:
    """A whole table, replaced atomically: add (no-op if present), delete, recreate — one transaction.

    ``select``: flow-selection chains (``build_flow_select``), at priority mangle - 10.
    """
    name = nft_table_name(fault_id)
    hooks = {"egress": "output", "ingress": "input"}
    lines = [f"add table inet {name}", f"delete table inet {name}", f"table inet {name} {{"]
    for chain, (hook, rules) in (select or {}).items():
        lines.append(f"\tchain {chain} {{")
        lines.append(f"\t\ttype filter hook {hook} priority mangle - 10; policy accept;")
        lines.extend(f"\t\t{r}" for r in rules)
        lines.append("\t}")
    for direction, rules in chains.items():
        lines.append(f"\tchain {direction} {{")
        lines.append(f"\t\ttype filter hook {hooks[direction]} priority filter; policy accept;")
        lines.extend(f"\t\t{r}" for r in rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_loss_script(fault_id: str, scope: Scope, percent: float) -> str:
    """nft script: drop a random ``percent`` of the scope's packets (independent, per packet).
    Two counters per rule: the scope's packets that reach the rule, then the dropped ones; the effect
    check reads their sum, so a low rate on little traffic (5 % of a few packets: often no drop in the
    check's 2 s) is still seen acting on the scope's traffic."""
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise SteerError(f"loss percent {percent!r} must be within (0, 100]")
    threshold = round(percent / 100 * LOSS_RESOLUTION)
    rules = [f"{m} counter numgen random mod {LOSS_RESOLUTION} < {threshold} counter drop"
             for m in _nft_matches(scope, scope.direction)]
    return _nft_table(fault_id, {scope.direction: rules})


def build_partition_script(fault_id: str, scope: Scope, direction: str = "both") -> str:
    """nft script: drop all the scope's packets to (egress) and/or from (ingress) the peers.

    ``direction`` overrides the scope's: a partition is usually both ways; one-way partitions
    (egress or ingress only) are the asymmetric gray case.
    """
    if direction not in PARTITION_DIRECTIONS:
        raise SteerError(f"partition direction {direction!r} must be one of {', '.join(PARTITION_DIRECTIONS)}")
    chains = {}
    for d in (("egress", "ingress") if direction == "both" else (direction,)):
        chains[d] = [f"{m} counter drop" for m in _nft_matches(scope, d)]
    return _nft_table(fault_id, chains)


# ---------------------------------------------------------------------------- runners

@dataclass
class CommandRecord:
    """What was run and how it ended — kept for injection.json."""

    argv: list[str]
    returncode: int
    stderr: str = ""
    stdin: str | None = None
    stdout: str = ""


@dataclass
class Applied:
    commands: list[CommandRecord] = field(default_factory=list)


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", _validate_netns(netns)] if netns else []


def _run(argv: Sequence[str], netns: str | None, *, stdin: str | None = None) -> CommandRecord:
    full = _prefix(netns) + list(argv)
    proc = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=30)
    return CommandRecord(full, proc.returncode, proc.stderr.strip(), stdin, proc.stdout)


def apply_queue_steer(fault_id: str, scope: Scope, queue: int, *, bypass: bool = True,
                      netns: str | None = None) -> Applied:
    """Install the queue steering; on any failure remove what was installed and raise."""
    done = Applied()
    for argv in build_queue_argvs(fault_id, scope, queue, bypass=bypass):
        rec = _run(argv, netns)
        done.commands.append(rec)
        if rec.returncode != 0:
            revert_fault(fault_id, netns=netns)
            raise SteerError(f"{' '.join(rec.argv)} failed: {rec.stderr}")
    return done


def apply_nft_script(script: str, *, netns: str | None = None) -> Applied:
    rec = _run(["nft", "-f", "-"], netns, stdin=script)
    if rec.returncode != 0:
        raise SteerError(f"nft -f - failed: {rec.stderr}")
    return Applied([rec])


def _table_json(family: str, name: str, netns: str | None) -> list[dict] | None:
    rec = _run(["nft", "-j", "list", "table", family, name], netns)
    if rec.returncode != 0:
        return None
    return json.loads(rec.stdout).get("nftables", [])


def _iptables_table_is_empty(items: list[dict]) -> bool:
    """Only base chains and no rules: an iptables-nft table that filters nothing."""
    chains = [i["chain"] for i in items if "chain" in i]
    rules = [i for i in items if "rule" in i]
    return not rules and all("hook" in c for c in chains)


def revert_fault(fault_id: str, *, netns: str | None = None) -> list[str]:
    """Remove everything named after ``fault_id``; return what was removed. Idempotent."""
    removed = []
    chain = iptables_chain_name(fault_id)
    for argv in build_queue_revert_argvs(fault_id):
        if _run(argv, netns).returncode == 0 and argv[3] == "-X":
            removed.append(f"{argv[0]} mangle chain {chain}")
    for family in ("ip", "ip6"):
        items = _table_json(family, "mangle", netns)
        if items is not None and _iptables_table_is_empty(items):
            # Our chain was the last content: drop the table iptables-nft created for it, so
            # the ruleset is back to the (firewall-free) baseline.
            if _run(["nft", "delete", "table", family, "mangle"], netns).returncode == 0:
                removed.append(f"nft table {family} mangle (empty)")
    table = nft_table_name(fault_id)
    if _run(["nft", "list", "table", "inet", table], netns).returncode == 0:
        if _run(["nft", "delete", "table", "inet", table], netns).returncode == 0:
            removed.append(f"nft table inet {table}")
    return removed


def fault_leftovers(fault_id: str, *, netns: str | None = None) -> list[str]:
    """What of the fault is still installed (empty list = reverted): read back from the kernel."""
    left = []
    if _run(["nft", "list", "table", "inet", nft_table_name(fault_id)], netns).returncode == 0:
        left.append(f"nft table inet {nft_table_name(fault_id)}")
    chain = iptables_chain_name(fault_id)
    for version in (4, 6):
        if _run([_iptables_tool(version), "-t", "mangle", "-S", chain], netns).returncode == 0:
            left.append(f"{_iptables_tool(version)} mangle chain {chain}")
    return left
