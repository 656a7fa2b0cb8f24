"""Clock alignment between the controller and the lab nodes.

``run_clock(inventory, path)`` runs ``playbooks/clock.yml`` (the ``grayctl_clock`` action plugin reads
``date +%s%N`` on each node between two controller timestamps) and writes
``{node: {offset_ns, rtt_ns, at, samples}}`` to ``path``; ``load_offsets(path)`` reads it back, and
``to_controller_ns(node_ns, offset)`` maps a node timestamp to controller time. Measured at the start and
the end of a run (``clock-start.json``, ``clock-end.json``); offset = node clock - controller clock at
the midpoint of the bracket, rtt = the bracket, an upper bound on the error (docs/metrics.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClockOffset", "load_offsets", "run_clock", "to_controller_ns"]


@dataclass(frozen=True)
class ClockOffset:
    node: str
    offset_ns: int
    rtt_ns: int
    at: str

    @property
    def error_bound_ns(self) -> int:
        return self.rtt_ns // 2 + 1


def load_offsets(path: str | Path) -> dict[str, ClockOffset]:
    data = json.loads(Path(path).read_text())
    return {n: ClockOffset(n, int(v["offset_ns"]), int(v["rtt_ns"]), str(v.get("at", ""))) for n, v in data.items()}


def to_controller_ns(node_ns: int, offset: ClockOffset | None) -> int:
    """A node timestamp in controller time; unchanged when the offset is within its own error bound."""
    if offset is None or abs(offset.offset_ns) <= offset.error_bound_ns:
        return node_ns
    return node_ns - offset.offset_ns


def run_clock(inventory: str | Path, path: str | Path, *, hosts: str = "lab_nodes",
              verbose: bool = False) -> dict[str, ClockOffset]:
    """Measure every node of ``hosts`` through Ansible and write/return the offsets."""
    from grayctl.run.ansible import run_playbook

    run_playbook("clock.yml", inventory=str(inventory),
                 extravars={"clock_file": str(Path(path).resolve()), "clock_hosts": hosts}, verbose=verbose)
    return load_offsets(path)
