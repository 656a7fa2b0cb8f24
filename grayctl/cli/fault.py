"""``grayctl fault inject|revert|list`` — faults on the lab by hand, for users and tests.

Parses options, calls ``grayctl.injection`` and renders. ``inject`` holds the faults for their
duration (or ``--duration``) and reverts them; Ctrl-C or SIGTERM reverts every recorded fault
(``playbooks/fault_revert_all.yml``) before exiting.
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


@click.group()
def fault() -> None:
    """Inject, revert and list faults on the lab's nodes."""


@fault.command()
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False))
@click.option("--id", "fault_ids", multiple=True, metavar="ID", help="Only this fault (repeatable).")
@click.option("--duration", type=float, default=None, metavar="SECONDS",
              help="Hold the faults this long instead (at most each fault's window).")
@click.option("--record-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the node records and injection.json go (default: <lab>/faults/<UTC time>).")
@click.option("--expire-margin", type=float, default=30.0, show_default=True, metavar="SECONDS",
              help="The on-host expiry reverts each fault this long after its planned end, controller or not "
                   "(at most 30).")
@_lab_option
def inject(experiment: str, fault_ids: tuple[str, ...], duration: float | None, record_dir: Path | None,
           expire_margin: float, lab_name: str) -> None:
    """Inject EXPERIMENT's faults at once, hold them, revert and verify."""
    from grayctl.injection import run_inject
    from grayctl.lab.definition import load_lab
    from grayctl.lab.lifecycle import ensure_root

    ensure_root("fault inject")

    def shown(rec) -> None:
        for f in rec.faults:
            click.echo(f"injected {f['fault_id']} {f['type']} on {f['host']} ({f.get('interface') or '-'}): "
                       f"backend {f.get('backend')} / {f.get('mechanism')}", err=False)

    rec = run_inject(experiment, load_lab(lab_name), fault_ids=fault_ids, duration=duration, record_dir=record_dir,
                     verbose=_verbose(), on_injected=shown, expire_margin=expire_margin)
    for f in rec.faults:
        state = "verified clean" if f.get("revert_verified") else "NOT verified"
        click.echo(f"reverted {f['fault_id']} on {f['host']}: {state} ({f.get('end_reason')})")
    click.echo(f"record: {rec.path}")


@fault.command()
@click.option("--all", "all_", is_flag=True, required=True, help="Revert every fault recorded on the nodes.")
@_lab_option
def revert(all_: bool, lab_name: str) -> None:
    """Revert every fault recorded on the lab's nodes and verify each node's state."""
    from grayctl.injection import run_revert_all
    from grayctl.lab.definition import load_lab
    from grayctl.lab.lifecycle import ensure_root

    ensure_root("fault revert")
    results = run_revert_all(load_lab(lab_name), verbose=_verbose())
    click.echo(f"reverted {len(results)} recorded fault(s)")


@fault.command(name="list")
@_lab_option
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def list_(lab_name: str, as_json: bool) -> None:
    """List the fault records fetched to the controller (injection.json of each inject)."""
    from grayctl.lab.definition import load_lab

    root = load_lab(lab_name).lab_dir / "faults"
    found = sorted(root.glob("*/injection.json")) if root.is_dir() else []
    data = [{"record": str(p), **json.loads(p.read_text())} for p in found]
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    for d in data:
        for f in d["faults"]:
            click.echo(f"{f['fault_id']:12} {f['type']:20} {f['host']:8} {f.get('backend') or '-':10} "
                       f"{f.get('start_utc')} -> {f.get('end_utc')}  verified={f.get('revert_verified')}")
