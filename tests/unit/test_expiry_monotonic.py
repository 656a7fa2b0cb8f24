"""The on-host expiry waits on the monotonic clock: a step of the node's clock changes nothing;
and the expiry that ended a fault closes the fault's own record.

The netns lab nodes share the host's clock, which must not be stepped, so the step is made here
by replacing ``time.time`` for the waiting code after the deadline was fixed; the helper it
watches is a real process (via its pidfd). The outcome is an ordering, not a timing: with a
wall-clock wait, a forward step expires the fault before the helper exits, and a backward step
lets the helper exit first.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time

import pytest

from grayctl.faults.node import expiry
from grayctl.faults.node.args import monotonic_deadline


def _wait(deadline: float, helper: subprocess.Popen[bytes]) -> str:
    pidfd = os.pidfd_open(helper.pid)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    try:
        return expiry.wait_for_trigger(deadline, pidfd, wake_r, [])
    finally:
        for fd in (pidfd, wake_r, wake_w):
            os.close(fd)


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch):
    real = time.time

    def step(offset_s: float) -> None:
        monkeypatch.setattr(time, "time", lambda: real() + offset_s)
    return step


def test_forward_step_does_not_end_the_fault_early(step_clock) -> None:
    deadline = monotonic_deadline(time.time() + 3.0)
    helper = subprocess.Popen(["sleep", "0.3"])
    step_clock(+3600.0)  # the node's clock jumps an hour ahead during the fault
    try:
        assert _wait(deadline, helper) == "helper-exited"
    finally:
        helper.wait()


def test_backward_step_does_not_hold_the_fault(step_clock) -> None:
    deadline = monotonic_deadline(time.time() + 0.3)
    helper = subprocess.Popen(["sleep", "5"])
    step_clock(-3600.0)  # the node's clock jumps an hour back during the fault
    try:
        assert _wait(deadline, helper) == "expired"
    finally:
        helper.kill()
        helper.wait()


def test_deadline_is_converted_once() -> None:
    before = time.monotonic()
    deadline = monotonic_deadline(time.time() + 10.0)
    assert before + 9.0 < deadline < time.monotonic() + 10.5


# --- the fault's own record, closed by the expiry that ended the fault (else it would say "active"
# for a fault that is gone, and the baseline verify would call the node drifted)

def _record(tmp_path, **fields):
    path = tmp_path / "lat.json"
    path.write_text(json.dumps({"fault_id": "lat", "status": "active", "expiry": {"pid": 4242}, **fields}))
    (tmp_path / "lat.stats.json").write_text('{"seen": 7}')
    return path


OUTCOME = {"fault_id": "lat", "reason": "expired", "reverted_utc": "2026-12-08T00:00:00.000+00:00",
           "left": [], "clean": True}


def test_the_expiry_that_ended_a_fault_closes_its_record(tmp_path) -> None:
    path = _record(tmp_path)
    assert expiry.close_fault_record(path, OUTCOME, pid=4242)
    rec = json.loads(path.read_text())
    assert (rec["status"], rec["end_reason"], rec["revert_verified"]) == ("reverted", "expiry:expired", True)
    assert rec["helper_stats"] == {"seen": 7} and rec["expiry_record"] == OUTCOME
    left = {**OUTCOME, "left": ["nft table inet grayctl_lat"], "clean": False}
    path = _record(tmp_path)
    assert expiry.close_fault_record(path, left, pid=4242)
    assert json.loads(path.read_text())["status"] == "revert-failed"


def test_a_newer_instance_or_an_ended_record_is_left_as_it_is(tmp_path) -> None:
    path = _record(tmp_path)
    before = path.read_text()
    assert not expiry.close_fault_record(path, OUTCOME, pid=1)  # another expiry's fault: a newer apply
    path = _record(tmp_path, status="reverted")
    assert not expiry.close_fault_record(path, OUTCOME, pid=4242)
    assert path.read_text() != before and '"reverted"' in path.read_text()


def test_a_revert_holding_the_lock_keeps_the_record_to_itself(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(expiry, "LOCK_WAIT_S", 0.2)
    path = _record(tmp_path)
    before = path.read_text()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as faultctl's Store.locked() takes it
        assert not expiry.close_fault_record(path, OUTCOME, pid=4242)
    finally:
        os.close(fd)
    assert path.read_text() == before
