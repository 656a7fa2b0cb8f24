"""``grayctl validate FILE...`` — check experiment files, change nothing."""

import click


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate experiment files; exit 0 when all are valid, 2 otherwise."""
    raise NotImplementedError
