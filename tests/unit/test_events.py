"""The run's event model and its observers: JSON lines, the run log, and a handler that fails."""

from __future__ import annotations

import io
import json

from rich.console import Console

from grayctl.run.events import ConsoleProgress, Emitter, JsonEvents, RunLog


def test_events_reach_every_handler_as_json_lines(tmp_path):
    out = io.StringIO()
    emit = Emitter([JsonEvents(out), RunLog(tmp_path / "events.jsonl")])
    emit("step_end", step="deploy", phase="prepare", seconds=1.5)
    emit.close()
    (line,) = out.getvalue().splitlines()
    ev = json.loads(line)
    assert ev["kind"] == "step_end" and ev["step"] == "deploy" and ev["data"] == {"seconds": 1.5}
    assert json.loads((tmp_path / "events.jsonl").read_text()) == ev


def test_a_failing_handler_is_dropped_and_the_others_still_see_events(capsys):
    seen = []

    def broken(_ev):
        raise RuntimeError("boom")

    emit = Emitter([broken, seen.append])
    emit("a")
    emit("b")
    assert [e.kind for e in seen] == ["a", "b"]
    assert "dropped" in capsys.readouterr().err


def test_a_signal_inside_a_handler_reaches_the_run_and_drops_nothing(tmp_path):
    """SIGTERM during an observer (a JSON flush) is the run's interrupt, not the observer's failure."""
    import os
    import signal

    import pytest

    from grayctl.errors import Interrupted
    from grayctl.run.cleanup import interruptible

    calls = []

    def signalled(ev):
        calls.append(ev.kind)
        if ev.kind == "b":
            os.kill(os.getpid(), signal.SIGTERM)  # interruptible turns it into Interrupted right here

    log = RunLog(tmp_path / "events.jsonl")
    emit = Emitter([signalled, log])
    with interruptible():
        emit("a")
        with pytest.raises(Interrupted):
            emit("b")
        emit("c")
    emit.close()
    assert calls == ["a", "b", "c"]  # kept
    assert [json.loads(x)["kind"] for x in (tmp_path / "events.jsonl").read_text().splitlines()] == ["a", "b", "c"]


def test_console_progress_prints_plain_lines_off_a_terminal():
    buf = io.StringIO()
    progress = ConsoleProgress(Console(file=buf, force_terminal=False, width=120))
    emit = Emitter([progress])
    emit("run_start", run_id="r1", experiment="e", topology="t", lab="l", schedule_s=10, steps=["a", "b"])
    emit("step_end", step="deploy", phase="prepare", seconds=2.0)
    emit("phase", phase="fault", start_s=2, end_s=6)
    emit("fault", step="inject:x", id="x", state="applied", planned_s=2.0, at_s=3.5)
    emit("timeline_start", t0=1.0, t0_source="load generator", schedule_s=10)  # exact from here on
    emit("fault", step="revert:x", id="x", state="reverted", planned_s=6.0, aim_s=7.5, at_s=7.6)
    emit("fault_timing", faults=[{"id": "x", "planned": [2.0, 6.0], "actual": [3.4, 7.5], "aim_end": 7.4,
                                  "lag": [1.4, 0.1], "held_s": 4.1}])
    emit("cleanup", step="undeploy", ok=False, error="unreachable")
    emit("run_end", status="complete")
    text = buf.getvalue()
    assert "deploy" in text and "phase fault" in text and "x applied at ≈t+3.5s" in text
    # a revert moved by a late apply says so; the exact figures come after collect
    assert "x reverted at t+7.6s (aimed t+7.5s, planned t+6.0s, lag +0.1s)" in text
    assert "x: applied t+3.4s (+1.4s), reverted t+7.5s (+0.1s from its aim), held 4.1s of 4s" in text
    assert "cleanup undeploy: unreachable" in text
