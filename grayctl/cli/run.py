"""``grayctl run EXPERIMENT`` — one experiment file in, a dataset and a report out.

Parses options, picks the event handlers (console, ``--json`` lines, or ``--quiet``), calls
``grayctl.run.flow.run_experiment`` and renders where the dataset and report are. The exit code is the
worst repetition's: 0, 4 (a step failed on a host), 5 (baseline drift), 7 (a ``fail_run`` check
failed), 8 (a fault had no effect), 9 (the load generator fell behind) or 130 (interrupted, after
cleanup). The closing lines give the users' figures per phase from the dataset itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from grayctl.errors import GrayctlError
from grayctl.run.events import phase_line


def _verbose() -> bool:
    root = click.get_current_context().find_root()
    return bool(root.obj and root.obj.get("verbose"))


def handlers(as_json: bool, quiet: bool) -> list:
    """The observers of a run for the chosen output mode (shared with ``grayctl sweep``)."""
    from grayctl.run.events import ConsoleProgress, JsonEvents

    if as_json:
        return [JsonEvents()]
    if quiet:
        return []
    return [ConsoleProgress()]


class RunEnded(GrayctlError):
    """A run that started and did not complete: the message was already shown with its paths."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code
        self.title = {130: "interrupted", 5: "baseline drift", 4: "step failed", 7: "hypothesis failed",
                      9: "load generator fell behind"}.get(
            exit_code, "run failed")


@click.command()
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False))
@click.option("--lab", "lab_name", default=None, metavar="NAME_OR_PATH",
              help="A lab name, lab.yml path or physical lab inventory (default: the experiment's 'lab', else local).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Where run directories go.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override an experiment field, e.g. --set schedule.fault=20s (repeatable).")
@click.option("--repetitions", type=click.IntRange(1, 1000), default=None,
              help="Run this many times, each from the golden baseline (default: the experiment's).")
@click.option("--keep", is_flag=True, help="Leave the topology (and Prometheus) deployed for inspection.")
@click.option("--accept-drift", is_flag=True,
              help="Run on nodes that differ from their golden baseline; the deviation goes into manifest.json.")
@click.option("--allow-invalid-load", is_flag=True,
              help="Keep a run whose load generator fell behind as complete (manifest load.allowed_invalid) "
                   "instead of invalid-load with exit 9.")
@click.option("--json", "as_json", is_flag=True, help="Events as JSON lines on stdout, nothing else.")
@click.option("--quiet", "-q", is_flag=True, help="Only the result lines.")
def run(experiment: str, lab_name: str | None, out_dir: Path, sets: tuple[str, ...], repetitions: int | None,
        keep: bool, accept_drift: bool, allow_invalid_load: bool, as_json: bool, quiet: bool) -> None:
    """Run EXPERIMENT on the lab: reset, deploy, load, inject, collect, assemble, tear down.

    Ctrl-C or SIGTERM stop cleanly: faults reverted, services stopped, the lab reset, and what was
    collected kept as a dataset marked incomplete (exit 130).
    """
    from grayctl.overrides import parse_overrides
    from grayctl.run.flow import run_experiment

    records = run_experiment(experiment, lab_ref=lab_name, out_dir=out_dir, overrides=parse_overrides(sets),
                             repetitions=repetitions, keep=keep, on_event=handlers(as_json, quiet),
                             verbose=_verbose(), accept_drift=accept_drift,
                             allow_invalid_load=allow_invalid_load)
    worst = None
    for rec in records:
        if not as_json:
            click.echo(render_record(rec))
        if rec.exit_code and worst is None:
            worst = rec
    if worst is not None:
        raise RunEnded(f"run {worst.run_id}: {worst.error}", worst.exit_code, worst.hint)


def _user_by_phase(rec) -> dict:
    """The dataset's own figures per phase (manifest user_by_phase): the console's closing truth."""
    if not rec.dataset:
        return {}
    try:
        return json.loads((Path(rec.dataset) / "manifest.json").read_text()).get("user_by_phase") or {}
    except (OSError, ValueError):
        return {}


def render_load(load: dict) -> str:
    """One line on the load generator: its rates and lateness, and loudly when it fell behind."""
    if load.get("valid") is None:
        return f"load: NOT JUDGED ({load.get('reason')})"
    figures = (f"achieved {load.get('achieved_rate')}/s of {load.get('scheduled_rate')}/s scheduled, "
               f"send lateness p99 {load.get('send_lateness_p99_ms')} ms, {load.get('dropped') or 0} dropped")
    if load["valid"]:
        return f"load: kept to its schedule ({figures})"
    kept = " (kept as complete: --allow-invalid-load)" if load.get("allowed_invalid") else ""
    return f"load: INVALID — the generator fell behind{kept}: {load.get('reason')} ({figures})"


def render_record(rec) -> str:
    """The lines a person needs after a run: status, dataset, report, records."""
    lines = [f"run {rec.run_id}: {rec.status} in {rec.seconds:.0f}s (schedule {rec.schedule_s:.0f}s)"]
    if rec.dataset:
        lines.append(f"  dataset: {rec.dataset}")
    if rec.report:
        lines.append(f"  report:  {rec.report}")
    lines.append(f"  logs:    {rec.records_dir}")
    if rec.load:
        lines.append("  " + render_load(rec.load))
    for name, fig in _user_by_phase(rec).items():
        lines.append(f"  users, {phase_line(name, fig)}")
    for c in rec.checks:
        # no data is never a pass: say it in capitals, with why, and whether it failed the run
        verdict = c["verdict"].upper() if c["verdict"] in ("no data", "not evaluated") else c["verdict"]
        lines.append(f"  check {c['name']} ({c['phase']}): {verdict}"
                     + (f" ({c['value']:.4g})" if isinstance(c.get("value"), float) else f" — {c.get('why')}")
                     + (" [fail_run: the run fails]" if c.get("fail_run") and c["verdict"] != "pass" else ""))
    if rec.verify_clean is not None:
        via = f" ({rec.verify_clean['via']})" if rec.verify_clean.get("via") else ""
        lines.append(f"  lab verified clean after the run{via}" if rec.verify_clean.get("ok")
                     else "  lab NOT clean after the run: " + "; ".join(rec.verify_clean.get("problems", [])[:3]))
    return "\n".join(lines)
