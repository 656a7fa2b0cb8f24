"""``grayctl examples [list|copy DIR]`` — the experiment, sweep and topology files grayctl ships.

An installed grayctl (a wheel, ``pip install .``) has no checkout to ``cd`` into: this is how a
user finds, or takes a copy of, the shipped examples to start from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from grayctl.errors import InputError, Problem
from grayctl.paths import EXPERIMENTS_DIR, SWEEPS_DIR, TOPOLOGIES_DIR, require_content

_KINDS = (("experiments", EXPERIMENTS_DIR), ("sweeps", SWEEPS_DIR), ("topologies", TOPOLOGIES_DIR))


@click.group(invoke_without_command=True)
@click.pass_context
def examples(ctx: click.Context) -> None:
    """The shipped example files (default: list them with their paths)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_examples)


@examples.command("list")
def list_examples() -> None:
    """Print every shipped example file with its full path."""
    require_content()
    for kind, folder in _KINDS:
        click.echo(f"{kind}: {folder}")
        for path in sorted(folder.glob("*.yaml")):
            click.echo(f"  {path}")


@examples.command("copy")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
def copy_examples(dest: Path) -> None:
    """Copy the examples into DEST/{experiments,sweeps,topologies} (refuses to overwrite)."""
    require_content()
    clashes = [dest / kind / p.relative_to(folder) for kind, folder in _KINDS for p in folder.rglob("*.yaml")
               if (dest / kind / p.relative_to(folder)).exists()]
    if clashes:
        raise InputError(Problem(f"{len(clashes)} file(s) exist already; nothing was copied", file=str(clashes[0])),
                         hint="choose an empty directory")
    for kind, folder in _KINDS:
        shutil.copytree(folder, dest / kind, dirs_exist_ok=True)
    click.echo(f"copied the examples to {dest}: run e.g. grayctl validate {dest}/experiments/seed.yaml")
