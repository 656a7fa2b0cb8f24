"""Fault injection outside a full run: inject an experiment's faults, hold them, revert — and records.

Map:
  run_inject(experiment, lab, ...) -> InjectionRecord   inject:<id> steps of the plan, hold the
                                                        window, revert:<id>; on Ctrl-C, SIGTERM or
                                                        any error: fault_revert_all.yml
  validate_hold(experiment, faults, duration, margin)   refuse a --duration / --expire-margin whose
                                                        on-host expiry would outlive the window + margin
  run_revert_all(lab) -> list[dict]                     revert every fault recorded on the nodes
  load_records(dir) -> list[dict]                       the node records fetched to the controller
  to_injection_json(...)                                injection.json: one entry per fault and node

Faults are injected together at once (offsets are a run's business, ``grayctl run``), each on the
nodes its plan step names; ``--duration`` overrides every fault's duration, up to its window (the
on-host expiry stays within the window plus the margin). The playbooks fetch
each node's record (host-measured UTC times, exact argv lists, backend, revert verified) into
``<record dir>/<host>/<id>.json``; ``injection.json`` gathers them.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from grayctl.errors import GrayctlError, InputError, Interrupted, Problem
from grayctl.experiment import Fault, load_experiment
from grayctl.faults.spec import EXPIRY_MARGIN_S, expire_after, expiry_problem
from grayctl.lab.definition import LabDefinition
from grayctl.plan import build_plan
from grayctl.run.ansible import run_playbook
from grayctl.source import Checker, load_yaml_document

__all__ = ["InjectionRecord", "load_records", "run_inject", "run_revert_all", "to_injection_json", "validate_hold"]


@dataclass
class InjectionRecord:
    record_dir: Path
    faults: list[dict[str, Any]] = field(default_factory=list)
    status: str = "complete"  # complete | interrupted | failed

    @property
    def path(self) -> Path:
        return self.record_dir / "injection.json"


def load_records(record_dir: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(record_dir.glob("*/*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        rec["host"] = p.parent.name
        out.append(rec)
    return out


def to_injection_json(records: list[dict[str, Any]], status: str) -> dict[str, Any]:
    keep = ("fault_id", "type", "target_service", "service", "node", "host", "interface", "ports", "peers",
            "peer_services", "direction", "parameters", "backend", "backend_requested", "mechanism", "commands",
            "nft_script", "helper", "expiry", "revert_commands", "start_ns", "start_utc", "applied_utc", "end_ns",
            "end_utc", "end_reason", "revert_verified", "leftovers", "notes", "status", "targets", "killed",
            "restarted", "helper_stats", "fraction", "flow_mark", "scheduled_ns", "revert_scheduled_ns", "realisation", "widened", "effect",
            "runtime", "runtime_dirs")
    faults = []
    for r in records:
        if r.get("status") == "cancelled":  # a scheduled apply cancelled before it acted: nothing happened
            continue
        entry = {k: r.get(k) for k in keep}
        probe = r.get("probe")
        if probe:
            entry["backend_probe"] = {"netem": probe.get("netem"), "why": probe.get("why")}
        faults.append(entry)
    return {"status": status, "faults": faults}


def _write(rec: InjectionRecord) -> None:
    rec.record_dir.mkdir(parents=True, exist_ok=True)
    data = to_injection_json(load_records(rec.record_dir), rec.status)
    rec.faults = data["faults"]
    rec.path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


class _Signals:
    """SIGTERM/SIGINT while holding a fault raise Interrupted (the runner owns them during a playbook)."""

    def __enter__(self) -> Self:
        self.old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in self.old:
            signal.signal(s, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, _frame: Any) -> None:
        raise Interrupted(f"{signal.Signals(signum).name} while a fault was active")

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def validate_hold(experiment_path: str, faults: list[Fault], duration: float | None, margin_s: float) -> None:
    """Refuse a hold (``--duration``) or an ``--expire-margin`` that would set a fault's on-host
    expiry beyond its planned window plus the margin (faults.spec.expiry_problem): an InputError
    naming the option, or the experiment's line of the window it would outlive."""
    if (why := expiry_problem(0.0, margin_s)) is not None:
        raise InputError(Problem(why, path="--expire-margin", expected=f"0 < --expire-margin <= {EXPIRY_MARGIN_S:g}"))
    if duration is None:
        return
    if not duration > 0:
        raise InputError(Problem(f"--duration {duration:g} must be more than 0 s", path="--duration",
                                 expected="a positive number of seconds"))
    data, positions = load_yaml_document(experiment_path)
    ck = Checker(experiment_path, positions)
    key = "chaos_injection" if "chaos_injection" in data else "chaos_injections"
    items = [data[key]] if key == "chaos_injection" else list(data.get(key) or [])
    for f in faults:
        window = f.end_s - f.start_s
        if duration <= window + 1e-9:
            continue
        i = next((n for n, item in enumerate(items) if isinstance(item, dict) and item.get("id") == f.id), None)
        item = items[i] if i is not None else {}
        here = (key,) if key == "chaos_injection" else (key, i) if i is not None else (key,)
        where = here + ("duration",) if "duration" in item else ("schedule", "fault")
        ck.problem(where, f"--duration {duration:g} holds fault {f.id!r} {duration - window:g} s past its window "
                          f"({f.duration}): its on-host expiry would be {expire_after(duration, margin_s):g} s after "
                          f"the apply, beyond the window plus the {margin_s:g} s margin",
                   expected=f"--duration <= {window:g} (the fault's window), or a longer window in the experiment")
    ck.raise_if_problems(hint="grayctl plan EXPERIMENT shows each fault's window")


def run_revert_all(lab: LabDefinition, *, record_dir: Path | None = None, verbose: bool = False) -> list[dict[str, Any]]:
    """Revert every fault recorded on the lab's nodes; fetch their records; fail if any is left."""
    record_dir = record_dir or lab.lab_dir / "faults"
    res = run_playbook("fault_revert_all.yml", inventory=lab.inventory_path,
                       extravars={"fault_record_dir": str(record_dir)}, verbose=verbose)
    return [r for host in res.results("Revert each fault and read the node's state back").values()
            for r in host.get("results", [])]


def run_inject(experiment_path: str, lab: LabDefinition, *, fault_ids: tuple[str, ...] = (),
               duration: float | None = None, record_dir: Path | None = None, verbose: bool = False,
               on_injected: Any = None, expire_margin: float = 30.0) -> InjectionRecord:
    """Inject the experiment's faults (or ``fault_ids``), hold them, revert; write injection.json."""
    plan = build_plan(load_experiment(experiment_path), lab)
    chosen = [ft for ft in plan.faults if not fault_ids or ft.fault.id in fault_ids]
    missing = set(fault_ids) - {ft.fault.id for ft in chosen}
    if missing or not chosen:
        raise InputError(Problem(f"no fault {', '.join(sorted(missing))} in this experiment", file=experiment_path,
                                 path="chaos_injections"),
                         hint="grayctl plan EXPERIMENT lists the faults and their ids")
    validate_hold(experiment_path, [ft.fault for ft in chosen], duration, expire_margin)
    rec = InjectionRecord(record_dir or lab.lab_dir / "faults" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    steps = {s.name: s for s in plan.steps}
    hold = max(duration if duration is not None else ft.fault.end_s - ft.fault.start_s for ft in chosen)
    common = {"fault_record_dir": str(rec.record_dir)}
    try:
        with _Signals():
            for ft in chosen:
                step = steps[f"inject:{ft.fault.id}"]
                hold_s = duration if duration is not None else ft.fault.end_s - ft.fault.start_s
                spec = {**step.extravars["fault_spec"], "expire_after_s": expire_after(hold_s, expire_margin)}
                extra = {**step.extravars, **common, "fault_spec": spec}
                run_playbook("fault.yml", inventory=lab.inventory_path, extravars=extra, limit=step.hosts,
                             verbose=verbose)
            _write(rec)
            if on_injected is not None:
                on_injected(rec)
            time.sleep(hold)
            for ft in chosen:
                step = steps[f"revert:{ft.fault.id}"]
                run_playbook("fault.yml", inventory=lab.inventory_path, extravars={**step.extravars, **common},
                             limit=step.hosts, verbose=verbose)
    except (GrayctlError, KeyboardInterrupt) as err:
        rec.status = "interrupted" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "failed"
        # Ignore further signals while cleaning up: a second Ctrl-C must not leave the fault behind.
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            run_revert_all(lab, record_dir=rec.record_dir, verbose=verbose)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            _write(rec)
        raise
    _write(rec)
    return rec
