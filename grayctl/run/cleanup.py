"""Cleanup: who owns SIGINT/SIGTERM when, the normal teardown, and the best-effort cleanup.

Map:
  interruptible()          context: SIGINT/SIGTERM raise Interrupted in the main flow (the playbook
                           driver owns them while a playbook runs, grayctl.run.ansible)
  shielded(fn, on_signal)  run fn to its end in a worker thread; signals meanwhile only acknowledged
  end_teardown(r)          the normal end, by the plan's teardown path (reset | undeploy), or --keep
  cleanup(r, status)       after Ctrl-C, SIGTERM or a failure: revert every fault, collect what there
                           is (and the checks over it, while Prometheus is up), teardown, lab reset,
                           assemble — each step best-effort, logged as a
                           ``cleanup`` event, in reverse dependency order

Cleanup works from the run's record of what it started (``Run.started``), never from name patterns.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from grayctl.errors import GrayctlError, Interrupted
from grayctl.run import steps
from grayctl.run.context import Run
from grayctl.run.dataset import assemble

__all__ = ["cleanup", "end_teardown", "interruptible", "shielded"]


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT/SIGTERM raise Interrupted in the main flow (the runner owns them during a playbook)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(f"{signal.Signals(signum).name} received")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def shielded(fn: Callable[[], Any], on_signal: Callable[[str], None]) -> Any:
    """Run ``fn`` in a worker thread to its end; signals meanwhile are only acknowledged.

    ansible-runner installs its cancel handlers only on the main thread, so a cleanup playbook run
    from here cannot be cancelled by a second Ctrl-C (which would leave, e.g., a fault applied).
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the caller
            box["error"] = err

    main = threading.current_thread() is threading.main_thread()
    old = {}
    if main:
        def ack(signum: int, _frame: Any) -> None:
            on_signal(signal.Signals(signum).name)
        old = {s: signal.signal(s, ack) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t = threading.Thread(target=work, name="grayctl-cleanup", daemon=True)
        t.start()
        while t.is_alive():
            t.join(0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def end_teardown(r: Run) -> None:
    """The normal end, by the plan's teardown path — or nothing with --keep."""
    if r.keep:
        r.emit("warning", message="--keep: the topology and Prometheus stay up; "
               "'grayctl undeploy' and 'grayctl lab reset' clean up")
        return
    r.rec.teardown_path = r.teardown_path
    step = r.journal.step
    try:
        with interruptible():
            if r.teardown_path == "reset":
                step("reset", "teardown", lambda: steps.reset_teardown(r), r.steps["reset"].why)
            else:
                step("teardown", "teardown", lambda: steps.teardown(r), r.steps["teardown"].why)
                step("verify-clean", "teardown", lambda: steps.verify_clean(r), r.steps["verify-clean"].why)
    except (GrayctlError, KeyboardInterrupt) as err:
        # The dataset is complete; only the lab needs care now.
        r.emit("warning", message=f"teardown stopped ({getattr(err, 'message', err)}): resetting the lab")
        cleanup(r, "complete")


def cleanup(r: Run, status: str) -> None:
    """After Ctrl-C, SIGTERM or a failure: every step best-effort, in reverse dependency order."""
    acks: list[str] = []

    def on_signal(name: str) -> None:
        acks.append(name)
        r.emit("warning", message=f"{name}: cleaning up first (faults, services, lab); please wait")

    def attempt(name: str, fn: Callable[[], Any], when: bool = True) -> bool:
        if not when:
            return False
        t = time.monotonic()
        try:
            shielded(fn, on_signal)
            ok, err = True, None
        except (GrayctlError, Exception) as e:  # noqa: BLE001 - best effort, logged
            ok, err = False, getattr(e, "message", None) or repr(e)
        secs = round(time.monotonic() - t, 2)
        r.rec.cleanup.append({"step": name, "ok": ok, "error": err, "seconds": secs})
        r.emit("cleanup", step=name, phase="cleanup", ok=ok, error=err, seconds=secs)
        return ok

    started_lab = r.started["deploy"]
    # Always: a cancelled inject may have applied its fault without telling us.
    # A node that cannot be reached is waited for (until its faults' on-host expiry has passed):
    # a further signal stops the wait.
    attempt("revert-faults", lambda: steps.revert_all(r, stop=lambda: bool(acks)), when=started_lab)
    if status != "complete" and r.t0_est is not None:
        attempt("collect", lambda: steps.collect_nodes(r, stop_workload=True), when=started_lab)
        r.run_end_s = time.time()
        attempt("metrics", lambda: steps.collect_metrics(r), when=r.started["monitor"])
        # while Prometheus is still up: verdicts over what ran (a phase that never came is "no data")
        attempt("checks", lambda: steps.evaluate_checks(r), when=r.started["monitor"] and bool(r.exp.checks))
    # On the reset path the lab reset below stops every process; elsewhere teardown.yml does.
    attempt("teardown", lambda: steps.teardown(r), when=started_lab and r.teardown_path != "reset")
    if attempt("lab-reset", lambda: steps.lab_reset(r), when=started_lab or r.started["reimage"]) \
            and r.rec.teardown_path is None:
        r.rec.teardown_path = "reset"
    if status != "complete":
        if r.t0_est is not None and r.rec.dataset is None:
            attempt("assemble", lambda: assemble(r, status))
        else:
            assert r.writer is not None
            r.writer.amend(run_status=status)
