"""``grayctl deploy|undeploy|load TOPOLOGY`` — a topology on the lab, and load at it, without an experiment.

Parses options, calls ``grayctl.deploy`` (which resolves placement through the plan machinery) and
renders. Useful for trying a topology by hand, for tests and for benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

_lab_option = click.option("--lab", "lab_name", default="local", show_default=True, metavar="NAME_OR_PATH",
                           help="A lab name (inventories/<name>/lab.yml) or a path to a lab.yml.")


def _verbose() -> bool:
    root = click.get_current_context().find_root()
    return bool(root.obj and root.obj.get("verbose"))


@click.command()
@click.argument("topology")
@_lab_option
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the services' random draws.")
def deploy(topology: str, lab_name: str, seed: int) -> None:
    """Deploy TOPOLOGY's services onto the lab and wait until every replica is healthy."""
    from grayctl.deploy import minimal_plan, run_deploy
    from grayctl.lab.definition import load_lab
    from grayctl.lab.lifecycle import ensure_root

    ensure_root("deploy")
    plan = minimal_plan(topology, load_lab(lab_name), workload={"seed": seed})
    rec = run_deploy(plan, state="present", verbose=_verbose())
    verb = "deployed" if rec.changed else "already deployed"
    click.echo(f"{rec.topology} {verb}: {rec.replicas} replica(s) on {len(rec.nodes)} node(s), "
               f"{rec.changed} change(s) in {rec.seconds:.1f}s")
    for r in plan.replicas:
        click.echo(f"  {r.service}[{r.index}]  {r.node}  http://{r.data_ip}:{r.port}  "
                   f"metrics http://{r.mgmt_ip}:{r.metrics_port}/metrics")


@click.command()
@click.argument("topology")
@_lab_option
def undeploy(topology: str, lab_name: str) -> None:
    """Stop every service replica on the lab's nodes and remove their files."""
    from grayctl.deploy import minimal_plan, run_deploy
    from grayctl.lab.definition import load_lab
    from grayctl.lab.lifecycle import ensure_root

    ensure_root("undeploy")
    rec = run_deploy(minimal_plan(topology, load_lab(lab_name)), state="absent", verbose=_verbose())
    click.echo(f"{rec.topology} undeployed: {rec.changed} change(s) in {rec.seconds:.1f}s")


@click.command()
@click.argument("topology")
@_lab_option
@click.option("--rate", default="20/s", show_default=True, help="Target rate, e.g. 20/s.")
@click.option("--duration", default="30s", show_default=True, help="How long to send, e.g. 30s.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the request sequence.")
@click.option("--arrival", type=click.Choice(["constant", "poisson"]), default="poisson", show_default=True)
@click.option("--fetch-dir", type=click.Path(file_okay=False), default=None,
              help="Where to put the summary and requests.parquet (default: a new temp dir).")
@click.option("--rate-bound-pct", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Validity bound: achieved rate within this many percent of the schedule.")
@click.option("--send-error-bound-ms", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Validity bound: p99 of the generator's own send lateness.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole summary as JSON.")
def load(topology: str, lab_name: str, rate: str, duration: str, seed: int, arrival: str,
         fetch_dir: str | None, rate_bound_pct: float, send_error_bound_ms: float, as_json: bool) -> None:
    """Send TOPOLOGY's request mix from the lab's client node (open loop) and print the summary.

    The topology must already be deployed (grayctl deploy). Exit 4 when the run could not keep to
    its schedule.
    """
    from grayctl.deploy import minimal_plan, run_load
    from grayctl.errors import InputError, Problem, StepFailed
    from grayctl.lab.definition import load_lab
    from grayctl.lab.lifecycle import ensure_root
    from grayctl.units import UnitError, parse_duration

    ensure_root("load")
    try:
        seconds = parse_duration(duration).seconds
    except UnitError as err:
        raise InputError(Problem(str(err), path="--duration", expected="a duration such as 30s")) from None
    # The experiment validator checks rate, seed and arrival as it would in a file.
    plan = minimal_plan(topology, load_lab(lab_name), workload={"rate": rate, "seed": seed, "arrival": arrival})
    rec = run_load(plan, duration=seconds, fetch_dir=Path(fetch_dir) if fetch_dir else None,
                   keep_up_bound={"rate_pct": rate_bound_pct, "send_error_p99_ms": send_error_bound_ms},
                   verbose=_verbose())
    s = rec.summary
    if as_json:
        click.echo(json.dumps(s, indent=2))
    else:
        lat = s.get("latency_ms", {}).get("corrected", {})
        click.echo(f"{topology}: {'valid' if s.get('valid') else 'INVALID'}  sent {s.get('sent')}  "
                   f"achieved {s.get('achieved_rate', 0):.2f}/s of {s.get('target_rate')}/s  "
                   f"errors {sum((s.get('errors') or {}).values()) if isinstance(s.get('errors'), dict) else s.get('errors')}")
        click.echo("latency (corrected, ms): " + "  ".join(
            f"{k} {lat[k]:.2f}" for k in ("p50", "p90", "p99", "max") if isinstance(lat.get(k), (int, float))))
        click.echo(f"records: {rec.fetch_dir}")
    if not s.get("valid"):
        raise StepFailed(f"the load generator could not keep to its schedule: {s.get('reason')}")
