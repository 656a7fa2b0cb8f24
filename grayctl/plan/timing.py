"""A fault's timing: when its revert is aimed, and its planned against its host-measured edges.

Map:
  revert_aim_s(applied_s, window_s, total)             applied + planned length, capped at the end
  fault_edges(window_s, applied_s, reverted_s, total)  planned vs host-measured edges, lags, held

The run aims its reverts with the first; the run's closing lines and the report's faults table
share the second.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fault_edges", "revert_aim_s"]


def revert_aim_s(applied_s: float, window_s: tuple[float, float], schedule_s: float) -> float:
    """When a fault's revert is aimed (s since t=0): its host-measured apply plus its planned length,
    so a late apply does not shorten the fault (Chaos Mesh's ``duration`` semantics); never past the
    end of the schedule. ``grayctl run`` aims there; the report measures the revert's lag from it."""
    return min(applied_s + (window_s[1] - window_s[0]), schedule_s)


def fault_edges(window_s: tuple[float, float] | None, applied_s: float | None, reverted_s: float | None,
                schedule_s: float) -> dict[str, Any]:
    """A fault's planned window against its host-measured edges (s since t=0): the apply's lag from
    the planned start, the revert's from its aim (``revert_aim_s``), and how long it was held.
    One definition for the report's faults table and ``grayctl run``'s closing lines."""
    ps, pe = window_s if window_s else (None, None)
    aim = (revert_aim_s(applied_s, (ps, pe), schedule_s) if applied_s is not None and ps is not None
           else pe) if pe is not None else None
    return {"planned": [ps, pe], "actual": [applied_s, reverted_s], "aim_end": aim,
            "lag": [applied_s - ps if applied_s is not None and ps is not None else None,
                    reverted_s - aim if reverted_s is not None and aim is not None else None],
            "held_s": reverted_s - applied_s if applied_s is not None and reverted_s is not None else None}
