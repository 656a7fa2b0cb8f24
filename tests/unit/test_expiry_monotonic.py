"""The on-host expiry waits on the monotonic clock: a step of the node's clock changes nothing.

The netns lab nodes share the host's clock, which must not be stepped, so the step is made here
by replacing ``time.time`` for the waiting code after the deadline was fixed; the helper it
watches is a real process (via its pidfd). The outcome is an ordering, not a timing: with a
wall-clock wait, a forward step expires the fault before the helper exits, and a backward step
lets the helper exit first.
"""

from __future__ import annotations

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
