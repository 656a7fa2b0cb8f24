"""``grayctl lab ...`` — the local lab's lifecycle."""

import click


@click.group()
def lab() -> None:
    """Bootstrap, create, inspect, reset and remove the lab."""
