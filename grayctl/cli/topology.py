"""``grayctl topology list|show`` — the topologies grayctl knows."""

import click


@click.group()
def topology() -> None:
    """Inspect topology files."""
