"""The ``grayctl`` command line: one module per command or command group.

Commands parse options, call domain code and render; they hold no domain logic.
Errors are ``GrayctlError``s, rendered for the user with their exit code.
"""

from __future__ import annotations

import sys

import click

from grayctl import __version__
from grayctl.errors import GrayctlError


class _Group(click.Group):
    """Turns GrayctlError into a message and an exit code; tracebacks only with --verbose."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GrayctlError as err:
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            click.echo(err.render(), err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grayctl")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and Ansible output.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """grayctl — gray-failure experiments on a lab, from one declarative file."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def _register() -> None:
    from grayctl.cli import (
        dataset,
        deploy,
        examples,
        fault,
        image,
        lab,
        plan,
        run,
        sweep,
        topology,
        validate,
    )

    cli.add_command(validate.validate)
    cli.add_command(plan.plan)
    cli.add_command(topology.topology)
    cli.add_command(lab.lab)
    cli.add_command(deploy.deploy)
    cli.add_command(deploy.undeploy)
    cli.add_command(deploy.load)
    cli.add_command(fault.fault)
    cli.add_command(dataset.dataset)
    cli.add_command(run.run)
    cli.add_command(sweep.sweep)
    cli.add_command(image.image)
    cli.add_command(examples.examples)


_register()


def main() -> None:
    try:
        cli(obj={}, standalone_mode=True)
    except GrayctlError as err:  # raised outside a command's invoke (rare)
        click.echo(err.render(), err=True)
        sys.exit(err.exit_code)
