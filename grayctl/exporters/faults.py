"""``grayctl_fault_active``: the faults grayctl applied on this node, as a series in the run's TSDB.

Read at scrape time from the node's fault records (the node executor's store, ``<fault dir>/<id>.json``,
grayctl.faults.node.faultctl): 1 from the host-measured apply until the revert, 0 once reverted, no
sample for a fault only scheduled. Labels: ``fault_id``, ``type``, ``target`` (the experiment's target,
else the service), ``realisation`` (how it was realised here). So chaos events show in the users' own
Prometheus and Grafana, beside the metrics they disturb, at the scrape resolution (1 s in a run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from grayctl.exporters import Exposition

__all__ = ["collect"]

_RECORD = re.compile(r"[a-z0-9][a-z0-9_]{0,31}\.json")  # the store's record names (not .expiry/.stats)


def collect(fault_dir: str | Path | None) -> str:
    exp = Exposition()
    n = 0
    root = Path(fault_dir) if fault_dir else None
    for p in sorted(root.glob("*.json")) if root is not None and root.is_dir() else []:
        if not _RECORD.fullmatch(p.name):
            continue
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # a record being replaced: the next scrape reads it whole
        if not isinstance(rec, dict) or rec.get("start_ns") is None:
            continue
        active = rec.get("end_ns") is None and rec.get("status") in ("applying", "active")
        exp.add("grayctl_fault_active", "gauge",
                "1 while a fault grayctl applied on this node is in force (host-measured), 0 after its revert.",
                1.0 if active else 0.0,
                {"fault_id": str(rec.get("fault_id", "")), "type": str(rec.get("type", "")),
                 "target": str(rec.get("target_service") or rec.get("service") or ""),
                 "realisation": str(rec.get("realisation") or "")})
        n += 1
    return exp.render() if n else ""
