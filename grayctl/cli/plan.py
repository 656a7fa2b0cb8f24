"""``grayctl plan FILE`` — print the resolved experiment and its steps, touch no host."""

import click


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(file: str, as_json: bool) -> None:
    """Print the resolved experiment and the ordered steps it would run."""
    raise NotImplementedError
