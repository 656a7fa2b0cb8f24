"""Per-qdisc counters of the node's network namespace, from ``tc -s -j qdisc show``.

``collect(tc)`` runs tc once per scrape (a few ms) and returns the exposition. One series per qdisc:
``iface``, ``kind``, ``handle`` and ``parent`` keep a netem child apart from its classful root. Interface
counters are not repeated here: node_exporter's netdev collector reads them per netns.
"""

from __future__ import annotations

import json
import subprocess

from grayctl.exporters import Exposition

__all__ = ["collect", "parse_tc_json", "to_exposition"]

COUNTERS = (("bytes", "grayctl_qdisc_bytes_total", "Bytes sent by the qdisc."),
            ("packets", "grayctl_qdisc_packets_total", "Packets sent by the qdisc."),
            ("drops", "grayctl_qdisc_drops_total", "Packets dropped by the qdisc."),
            ("overlimits", "grayctl_qdisc_overlimits_total", "Overlimit events of the qdisc."),
            ("requeues", "grayctl_qdisc_requeues_total", "Packets requeued by the qdisc."))
GAUGES = (("backlog", "grayctl_qdisc_backlog_bytes", "Bytes queued in the qdisc."),
          ("qlen", "grayctl_qdisc_backlog_packets", "Packets queued in the qdisc."))


def parse_tc_json(text: str) -> list[dict]:
    data = json.loads(text or "[]")
    return [q for q in data if isinstance(q, dict)]


def to_exposition(qdiscs: list[dict], ok: bool = True) -> str:
    exp = Exposition()
    exp.add("grayctl_qdisc_up", "gauge", "1 when tc answered.", 1 if ok else 0)
    for q in qdiscs:
        labels = {"iface": str(q.get("dev", "")), "kind": str(q.get("kind", "")),
                  "handle": str(q.get("handle", "")),
                  "parent": "root" if q.get("root") else str(q.get("parent", ""))}
        for key, name, help_text in COUNTERS:
            if key in q:
                exp.add(name, "counter", help_text, float(q[key]), labels)
        for key, name, help_text in GAUGES:
            if key in q:
                exp.add(name, "gauge", help_text, float(q[key]), labels)
    return exp.render()


def _devices(tc: str) -> list[str]:
    """Link names of this netns (``tc -j qdisc show`` without dev omits the name on old iproute2)."""
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, timeout=5, check=True)
    return [link["ifname"] for link in json.loads(out.stdout or "[]")]


def collect(tc: str = "tc") -> str:
    try:
        proc = subprocess.run([tc, "-s", "-j", "qdisc", "show"], capture_output=True, text=True, timeout=5,
                              check=True)
        qdiscs = parse_tc_json(proc.stdout)
        if qdiscs and "dev" not in qdiscs[0]:
            qdiscs = []
            for dev in _devices(tc):
                one = subprocess.run([tc, "-s", "-j", "qdisc", "show", "dev", dev], capture_output=True,
                                     text=True, timeout=5, check=True)
                qdiscs += [{**q, "dev": dev} for q in parse_tc_json(one.stdout)]
        return to_exposition(qdiscs)
    except (OSError, subprocess.SubprocessError, ValueError):
        return to_exposition([], ok=False)
