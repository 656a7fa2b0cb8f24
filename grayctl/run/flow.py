"""``grayctl run``: one experiment file in, one dataset out — every step a playbook, every stop clean.

Map:
  run_experiment(path, *, lab_ref, out_dir, overrides, repetitions, keep, on_event) -> [RunRecord]
                          each repetition a separate run from the golden baseline
  run_once(experiment, lab, *, out_dir, ...) -> RunRecord    one run (used by sweeps too)
  step_names(plan, keep) -> [str]   the steps run_once announces, in the order it runs them
  (RunRecord, new_run_id: grayctl.run.journal)

Layout of one run (``out_dir`` = ``runs/`` by default):
  runs/<run-id>/          the dataset (docs/dataset-format.md): only what its manifest lists, so
                          ``grayctl dataset verify|ls|export`` work on it as on any dataset
  runs/<run-id>.run/      the run's own records: events.jsonl, logs/<nn>-<step>/<playbook>.log
                          (Ansible's output of each step), raw/ (files fetched from the nodes,
                          clock offsets, fault records, baseline fingerprints), run.json
  (The dataset format refuses unlisted files in a dataset directory, so logs live next to it.)

The flow is the plan's step list (``grayctl plan``): reimage + baseline verify (drift: exit 5)
-> prepare (one playbook: replicas and exporters, Prometheus, clock offsets, and last the load
generator, detached, whose start is t0) -> the timeline (inject at t0+start_s, revert at t0+end_s,
each a fault.yml run; labels use the host-measured times the nodes record, not these planned ones)
-> collect (one playbook: wait for the load generator and fetch its records, clock offsets, node
files) -> Prometheus over the run window -> the experiment's checks against that Prometheus, per
phase (grayctl.checks; their queries were parsed by it in prepare, before any fault) -> assemble
dataset + report -> teardown. A ``fail_run`` check that did not pass (fail, no data, not evaluated)
ends a complete run with ChecksFailed (exit 7). The teardown
takes one of two paths (``plan.teardown_path``, recorded in the manifest under ``teardown.path``):
``reset`` on the netns provider (the reset kills every process of every node and empties its state,
so it is the undeploy, and it verifies the baseline), ``undeploy`` elsewhere (teardown.yml, then a
baseline verify-clean).

Stopping: SIGINT/SIGTERM anywhere, or a failed step, runs the cleanup: fault_revert_all.yml
(always: a cancelled ansible-runner run SIGKILLs ansible, so an inject may have applied its fault
without reporting it), collect what there is (the load generator is asked to stop and write its
records), then on the ``undeploy`` path teardown.yml, and the lab reset — each step best-effort, logged as a
``cleanup`` event, and run in a worker thread while further signals are only acknowledged, so a
second Ctrl-C cannot leave a fault behind. What was collected is assembled; an interrupted run's
manifest says ``status: incomplete`` (exit 130), a failed one ``failed`` (exit 4, or the error's).
A run that lost a node's management path (NodeUnreachable: link down, SSH blocked) fails (exit 4)
and its dataset is ``incomplete`` too: what was collected lacks that node. Its cleanup waits for
the node to answer (steps.revert_all) until the faults' on-host expiry has ended them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grayctl.checks import failing, not_evaluated
from grayctl.errors import ChecksFailed, GrayctlError, Interrupted, LabError, LoadInvalid, NodeUnreachable
from grayctl.lab.definition import load_lab
from grayctl.lab.lifecycle import ensure_root
from grayctl.overrides import Override, load_experiment_with
from grayctl.plan import Plan, build_plan
from grayctl.run import steps
from grayctl.run.cleanup import cleanup, end_teardown, interruptible
from grayctl.run.context import Run
from grayctl.run.dataset import assemble, begin_dataset, close_dataset
from grayctl.run.events import Emitter, EventHandler, RunLog
from grayctl.run.journal import RunRecord, new_run_id
from grayctl.run.timeline import emit_fault_timing, run_timeline

__all__ = ["ChecksFailed", "RunRecord", "new_run_id", "run_experiment", "run_once", "step_names"]


def step_names(plan: Plan, keep: bool) -> list[str]:
    """What run_once executes, in order: the plan's steps (reimage includes verify-baseline; inject
    and revert steps run inside the timeline) plus the controller's own metrics, checks (when the
    experiment has any) and assemble."""
    by_phase: dict[str, list[str]] = {}
    for s in plan.steps:
        if s.name != "verify-baseline" and s.phase != "run":
            by_phase.setdefault(s.phase, []).append(s.name)
    checks = ["checks"] if plan.experiment.checks else []
    return (by_phase.get("prepare", []) + ["timeline"] + by_phase.get("collect", []) + ["metrics", *checks, "assemble"]
            + ([] if keep else by_phase.get("teardown", [])))


def run_once(experiment: Any, lab: Any, *, out_dir: Path = Path("runs"), keep: bool = False,
             on_event: EventHandler | Sequence[EventHandler] | None = None, verbose: bool = False,
             run_id: str | None = None, repetition: int = 1, accept_drift: bool = False,
             fresh_from: RunRecord | None = None, allow_invalid_load: bool = False) -> RunRecord:
    """One run of a validated ``experiment`` on ``lab``; never raises for a run that started (the
    record says how it ended); InputError/LabError before anything touched the lab do raise.
    ``accept_drift``: run on drifted nodes, the deviation recorded in the manifest (baseline).
    ``fresh_from``: the run that used this lab just before, in this process; its verified end reset
    stands in for this run's reimage when it is recent (``FRESH_S``).
    ``allow_invalid_load``: a run whose load generator fell behind ends ``complete`` (the manifest's
    ``load`` still says it was invalid) instead of ``invalid-load`` with exit 9."""
    handlers = list(on_event) if isinstance(on_event, Sequence) else ([on_event] if on_event else [])
    emit = Emitter(handlers)
    run_id = run_id or new_run_id(experiment, salt=f"rep{repetition}")
    r = Run(experiment, lab, out_dir=out_dir, keep=keep, emit=emit, verbose=verbose, run_id=run_id,
            repetition=repetition)
    r.accept_drift = accept_drift
    r.fresh_from = fresh_from
    r.allow_invalid_load = allow_invalid_load
    rec = r.rec
    begin_dataset(r)
    emit.add(RunLog(rec.records_dir / "events.jsonl"))
    t_run = time.monotonic()
    emit("run_start", run_id=rec.run_id, run_dir=str(rec.run_dir), records_dir=str(rec.records_dir),
         experiment=experiment.name, topology=experiment.topology.name, lab=lab.name,
         schedule_s=r.plan.duration_s, repetition=repetition,
         steps=step_names(r.plan, keep), teardown=None if keep else r.teardown_path)
    for w in experiment.warnings:  # what validation could not check (no promtool: prepare checks instead)
        emit("warning", message=w)
    error: GrayctlError | None = None
    crash: BaseException | None = None
    try:
        with interruptible():
            step = r.journal.step
            step("reimage", "prepare", lambda: steps.reimage(r), "every node back to the golden baseline, verified")
            step("prepare", "prepare", lambda: steps.prepare(r), r.steps["prepare"].why)
            run_timeline(r)
            step("collect", "collect", lambda: steps.collect(r), r.steps["collect"].why)
            r.run_end_s = r.start_s() + r.plan.duration_s
            step("metrics", "collect", lambda: steps.collect_metrics(r), "query Prometheus over the run window")
            if r.exp.checks:  # while Prometheus is up: the teardown removes it
                step("checks", "collect", lambda: steps.evaluate_checks(r),
                     "the experiment's checks against the run's Prometheus, per phase")
            emit_fault_timing(r)
    except KeyboardInterrupt:
        error = Interrupted("interrupted")
    except GrayctlError as err:
        error = err
        if isinstance(err, NodeUnreachable):
            r.lost_nodes.update(err.hosts)
    except Exception as err:  # noqa: BLE001 - a bug: clean the lab up first, then report it
        crash = err
        error = GrayctlError(f"internal error: {err!r}")

    status = "complete" if error is None else ("incomplete" if isinstance(error, Interrupted) else "failed")
    if error is None:
        # Everything the dataset needs is on the controller now: assemble it (CPU, local files) while
        # the lab is torn down (Ansible, mostly waiting on the nodes). The main thread keeps the
        # teardown, and with it the signals; an interrupted teardown still cleans the lab up.
        assembly_errors: list[BaseException] = []

        def assemble_and_check() -> None:
            try:
                assemble(r, "complete")
            except BaseException as err:  # noqa: BLE001 - reported by the main thread below
                assembly_errors.append(err)

        worker = threading.Thread(target=assemble_and_check, name="grayctl-assemble")
        worker.start()
        try:
            end_teardown(r)
        finally:
            worker.join()
        if assembly_errors:  # the lab is down already; the manifest below says failed, with the error
            err = assembly_errors[0]
            error = err if isinstance(err, GrayctlError) else GrayctlError(f"assembly: {err!r}")
            status = "failed"
    else:
        if r.exp.checks and not rec.checks:  # the manifest still lists every check, with why
            rec.checks = not_evaluated(r.exp.checks, f"the run ended ({status}) before its checks were evaluated")
        cleanup(r, status)

    load = rec.load or {}
    if status == "complete" and load.get("valid") is False and not allow_invalid_load:
        # The dataset says invalid-load already (assembly); the run says it with an exit code of its own.
        status = "invalid-load"
        error = LoadInvalid(f"the load generator fell behind its schedule: {load.get('reason')}",
                            hint="lower the rate, give the client node more CPU, or keep the dataset as "
                                 "complete with --allow-invalid-load (marked load.allowed_invalid)")
    rec.status = status
    if error is not None:
        rec.error, rec.hint, rec.exit_code = error.message, error.hint, error.exit_code
    else:
        failed = failing(rec.checks)
        if failed:
            err = ChecksFailed(", ".join(f"{c['name']} ({c['phase']}: " + (f"{c['value']:.4g}" if isinstance(
                c.get("value"), float) else c["verdict"]) + ")" for c in failed))
            rec.error, rec.exit_code = err.message, err.exit_code
    if r.lost_nodes and rec.error:  # said where the user looks first
        head, _, rest = rec.error.partition("\n")
        rec.error = (f"{head} (the dataset is incomplete: it lacks {', '.join(sorted(r.lost_nodes))} while "
                     "unreachable)" + (f"\n{rest}" if rest else ""))
    rec.seconds = round(time.monotonic() - t_run, 2)
    close_dataset(r, status)
    r.journal.write_record()
    emit("run_end", status=status, exit_code=rec.exit_code, dataset=str(rec.dataset) if rec.dataset else None,
         report=str(rec.report) if rec.report else None, error=rec.error, seconds=rec.seconds,
         checks_failed=[c["name"] for c in rec.checks if c.get("verdict") == "fail"],
         checks_unverified=[c["name"] for c in rec.checks if c.get("verdict") in ("no data", "not evaluated")])
    emit.close()
    if crash is not None:
        raise crash
    return rec


# -- several repetitions -------------------------------------------------------------------------

def run_experiment(experiment_path: str | Path, *, lab_ref: str | None = None, out_dir: Path = Path("runs"),
                   overrides: Sequence[Override] = (), repetitions: int | None = None, keep: bool = False,
                   on_event: EventHandler | Sequence[EventHandler] | None = None,
                   verbose: bool = False, accept_drift: bool = False,
                   allow_invalid_load: bool = False) -> list[RunRecord]:
    """Load (with ``--set`` overrides), plan, and run every repetition, each from the golden baseline.

    Stops after the first repetition that did not complete (an interrupt or a failure). InputError
    for a bad file or override, LabError for a lab that is not there — before anything runs.
    """
    experiment = load_experiment_with(experiment_path, overrides)
    lab = load_lab(lab_ref or experiment.lab)
    build_plan(experiment, lab)  # refuse a misfit (InputError) before anything runs
    if not lab.inventory_path.is_file():
        raise LabError(f"lab {lab.name!r} is not up (no {lab.inventory_path})",
                       hint=f"grayctl lab up --lab {lab_ref or experiment.lab}")
    ensure_root("run")  # before a run directory exists: nothing to clean up after a refusal
    n = repetitions or experiment.repetitions
    if keep and n > 1:
        raise LabError("--keep leaves the topology deployed, so it cannot be combined with repetitions",
                       hint="--repetitions 1")
    records = []
    for i in range(1, n + 1):
        rec = run_once(experiment, lab, out_dir=out_dir, keep=keep, on_event=on_event, verbose=verbose,
                       repetition=i, accept_drift=accept_drift, fresh_from=records[-1] if records else None,
                       allow_invalid_load=allow_invalid_load)
        records.append(rec)
        if rec.status != "complete":
            break
    return records

