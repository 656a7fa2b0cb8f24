"""The golden baseline around a provider's reset: record, verify, and the drift as lines or records.

Every provider ends its reset with ``verify`` (roles/baseline over SSH); what differs raises
DriftError (exit 5) or, with ``accept_drift``, is returned.
"""

from __future__ import annotations

import json
from typing import Any

from grayctl.errors import DriftError
from grayctl.paths import PLAYBOOKS_DIR

__all__ = ["BASELINE_PLAYBOOK", "DRIFT_TASK", "drift_lines", "golden_complete", "has_baseline", "judge",
           "run_baseline", "verify"]

DRIFT_TASK = "Fail when the node drifted from its golden baseline"  # roles/baseline/tasks/verify.yml
BASELINE_PLAYBOOK = "baseline.yml"


def has_baseline() -> bool:
    return (PLAYBOOKS_DIR / BASELINE_PLAYBOOK).is_file()


def golden_complete(defn: Any) -> bool:
    golden = defn.lab_dir / "baseline" / "golden"
    return all((golden / f"{n}.json").is_file() for n in defn.node_names)


def run_baseline(defn: Any, mode: str, verbose: bool, check: bool = True):
    from grayctl.run.ansible import run_playbook

    return run_playbook(BASELINE_PLAYBOOK, inventory=defn.inventory_path,
                        extravars={"baseline_mode": mode}, verbose=verbose, check=check)


def drift_lines(result) -> list[str]:
    """The baseline role's diff lines per drifted node; other failures as the runner renders them."""
    lines: list[str] = []
    drift = result.results(DRIFT_TASK)
    for f in result.failures:
        msg = (drift.get(f.host) or {}).get("msg") if f.task == DRIFT_TASK else None
        if isinstance(msg, list):
            lines += [str(msg[0])] + [f"  {m}" for m in msg[1:]]
        else:
            lines.append(f.render())
    return lines


def _drift_records(defn: Any, nodes: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Per drifted node, per check: golden vs seen, from the verify records (baseline/last/<node>.json)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for node in sorted(nodes):
        try:
            rec = json.loads((defn.lab_dir / "baseline" / "last" / f"{node}.json").read_text())
        except (OSError, ValueError):
            out[node] = [{"check": "?", "golden": None, "seen": None, "why": "no verify record on the controller"}]
            continue
        out[node] = [{"check": d.get("field"), "golden": d.get("golden"), "seen": d.get("now"), "why": d.get("why")}
                     for d in rec.get("drift") or []]
    return out


def verify(defn: Any, verbose: bool, accept_drift: bool, when: str) -> dict[str, list[dict[str, Any]]]:
    """Baseline verify; {} when clean. Drift raises DriftError with a per node, per check diff, or
    with ``accept_drift`` is returned. Any other failure (a node unreachable) always raises."""
    return judge(defn, run_baseline(defn, "verify", verbose, check=False), accept_drift, when)


def judge(defn: Any, result: Any, accept_drift: bool, when: str) -> dict[str, list[dict[str, Any]]]:
    """What a verify play's ``result`` says (see ``verify``): a verify run alone, or the verify play
    of a reset playbook (lab_reset.yml's second play)."""
    if result.ok:
        return {}
    drifted = {f.host for f in result.failures if f.task == DRIFT_TASK}
    other = [f for f in result.failures if f.task != DRIFT_TASK]
    drift = _drift_records(defn, drifted)
    if accept_drift and drift and not other:
        return drift
    total = len(defn.node_names)
    head = (f"{len(drifted)} of {total} node(s) differ from their golden baseline {when}"
            + (f"; {len(other)} node(s) could not be verified" if other else "") + " (check: golden -> now):")
    lines = [head]
    for node, checks in drift.items():
        lines.append(f"  {node}:")
        lines += [f"    {c['check']}: {c['golden']!s} -> {c['seen']!s}" + (f"  ({c['why']})" if c.get("why") else "")
                  for c in checks]
    lines += [f"  {f.render()}" for f in other]
    hint = f"the golden and last fingerprints are in {defn.lab_dir / 'baseline'}"
    if drift and not other:
        hint += "; --accept-drift runs anyway and records the deviation (in a run's manifest.json: baseline)"
    raise DriftError("\n".join(lines), hint=hint)
