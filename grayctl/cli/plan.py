"""``grayctl plan FILE`` — print the resolved experiment and its steps, touch no host."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
import yaml

if TYPE_CHECKING:
    from grayctl.plan import Plan


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--lab", "lab_ref", help="Lab name or lab.yml path (default: the experiment's `lab`).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override an experiment field as 'grayctl run --set' does, e.g. --set schedule.fault=20s.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(file: str, lab_ref: str | None, sets: tuple[str, ...], as_json: bool) -> None:
    """Print the resolved experiment and the ordered steps it would run (touches no host)."""
    from grayctl.lab.definition import load_lab
    from grayctl.overrides import load_experiment_with, parse_overrides
    from grayctl.plan import build_plan

    # The same loader as 'grayctl run', so the plan shown is the plan that runs.
    experiment = load_experiment_with(file, parse_overrides(sets))
    the_plan = build_plan(experiment, load_lab(lab_ref or experiment.lab))
    for w in experiment.warnings:
        click.echo(f"warning: {file}: {w}", err=True)
    if as_json:
        click.echo(json.dumps(the_plan.to_dict(), indent=2))
    else:
        click.echo(render(the_plan))


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 3:
        return f"[{len(value)} items]"
    if isinstance(value, dict) and len(json.dumps(value)) > 60:
        return "{" + ", ".join(value) + "}"
    return json.dumps(value) if not isinstance(value, str) else value


def _at(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:g}s"


def render(p: Plan) -> str:
    exp = p.experiment
    out = [
        f"experiment  {exp.name}" + (f"  ({exp.source})" if exp.source else ""),
        f"topology    {exp.topology.name}  ({len(exp.topology.services)} services, {len(p.replicas)} replicas)",
        f"lab         {p.lab.name}  ({p.lab.provider}, {len(p.lab.nodes)} nodes)",
        f"duration    {p.duration_s:g}s of schedule x {exp.repetitions} repetition(s)",
        "",
        "resolved experiment:",
        *("  " + line for line in yaml.safe_dump(exp.to_dict(), sort_keys=False).rstrip().splitlines()),
        "",
        "placement:",
        *(f"  {r.service}[{r.index}]  {r.slot} -> {r.node}  {r.data_ip}:{r.port}" for r in p.replicas),
        "",
        "timeline:  " + "  ".join(f"{ph} {s:g}-{e:g}s" for ph, s, e in p.phases),
    ]
    for ft in p.faults:
        out.append(f"fault {ft.fault.id}: {ft.fault.type} on {ft.service} -> "
                   f"{','.join(ft.nodes)} {ft.interface or ''} ports {list(ft.ports)} "
                   f"from {ft.fault.start_s:g}s to {ft.fault.end_s:g}s, backend {ft.fault.backend}")
        out.append(f"  realised as: {ft.realisation}")
    out += ["", "steps:"]
    width = max(len(s.name) for s in p.steps)
    for i, s in enumerate(p.steps, 1):
        window = f"{_at(s.at_s)}..{_at(s.until_s)}" if s.until_s is not None else _at(s.at_s)
        marker = "" if s.available else "  (playbook not in this version yet)"
        out.append(f"  {i:>2}. {s.name:<{width}}  {s.phase:<8} {window:<12} {s.playbook:<16} hosts={s.hosts}{marker}")
        if s.extravars:
            out.append("        " + " ".join(f"{k}={_short(v)}" for k, v in s.extravars.items()))
    return "\n".join(out)
