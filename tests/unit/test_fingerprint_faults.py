"""grayctl_fingerprint's fault-record invariant, on real files: an unfinished fault is drift, an ended
record (the proof an on-host expiry leaves after its controller died) is history, not drift."""

from __future__ import annotations

import json
from pathlib import Path

from module_run import run_module


def _fingerprint(tmp: Path, records: dict[str, object]) -> dict:
    (tmp / "state").mkdir()
    faults = tmp / "faults"
    faults.mkdir()
    for name, body in records.items():
        (faults / name).write_text(body if isinstance(body, str) else json.dumps(body))
    return run_module("grayctl_fingerprint", tmp, {"state_dir": str(tmp / "state"), "fault_dir": str(faults),
                                                   "fail_on_drift": False})


def test_ended_fault_records_and_their_files_are_not_drift(tmp_path: Path) -> None:
    out = _fingerprint(tmp_path, {"lat.json": {"fault_id": "lat", "status": "reverted"},
                                  "lat.expiry.json": {"reason": "expired"}, "lat.stats.json": {"seen": 3},
                                  "pause.json": {"fault_id": "pause", "status": "cancelled"},
                                  "cpu.json": {"fault_id": "cpu", "status": "failed"}})
    assert out["fingerprint"]["fault_dir"]["entries"] == []
    assert not [e for e in out["violations"] if e["field"] == "fault_dir"]


def test_an_unfinished_or_unreadable_fault_record_is_drift(tmp_path: Path) -> None:
    out = _fingerprint(tmp_path, {"lat.json": {"fault_id": "lat", "status": "active"},
                                  "cpu.json": {"fault_id": "cpu", "status": "revert-failed"},
                                  "late.json": {"fault_id": "late", "status": "scheduled"},
                                  "torn.json": "{\"fault_id\": \"to", "ok.json": {"status": "reverted"}})
    found = sorted(e["now"] for e in out["violations"] if e["field"] == "fault_dir")
    assert found == ["cpu: revert-failed", "lat: active", "late: scheduled", "torn: unreadable"]
    assert out["drifted"]
