"""``grayctl validate FILE...`` — check experiment (and topology) files, change nothing.

An experiment is validated together with the topology it names. A file whose
top level has ``application`` and no ``topology`` is a topology file and is
validated as one, so the same command checks both kinds.
"""

from __future__ import annotations

from pathlib import Path

import click

from grayctl.errors import InputError
from grayctl.experiment import validate_experiment
from grayctl.source import load_yaml_document
from grayctl.topology import validate_topology


def validate_file(file: str) -> tuple[str, tuple[str, ...]]:
    """Validate one experiment or topology file; return its kind and what could not be checked
    (warnings). Raises InputError."""
    data, positions = load_yaml_document(file)
    if "application" in data and "topology" not in data:
        validate_topology(data, positions, file, Path(file))
        return "topology", ()
    return "experiment", validate_experiment(data, positions, file, Path(file).resolve().parent).warnings


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
def validate(files: tuple[str, ...]) -> None:
    """Validate experiment (or topology) files; exit 0 when all are valid, 2 otherwise.

    Prints 'ok  FILE' for each valid file and every problem of each invalid one; a warning for what
    could not be checked here (PromQL syntax without promtool).
    """
    failed = 0
    for file in files:
        try:
            _, warnings = validate_file(file)
        except InputError as err:
            failed += 1
            click.echo(err.render(), err=True)
            continue
        for w in warnings:
            click.echo(f"warning: {file}: {w}", err=True)
        click.echo(f"ok  {file}")
    if failed:
        click.echo(f"{failed} of {len(files)} file(s) invalid", err=True)
        raise SystemExit(InputError.exit_code)
