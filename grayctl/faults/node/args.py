"""Option types of the node helpers' command lines: grayctl.units' parsers, worded for argparse.

The helpers (nfqdelay, stutter, expiry) take durations and percentages with units, exactly as
experiment files write them (``200ms``, ``5%``); the one parser of each is grayctl.units.
"""

from __future__ import annotations

import argparse
import time

from grayctl.units import UnitError, parse_duration, parse_percent

__all__ = ["duration_ns", "percent", "monotonic_deadline"]


def duration_ns(text: str) -> int:
    """``200ms`` -> 200_000_000. Units required, as in experiment files."""
    try:
        return round(parse_duration(text).seconds * 1e9)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}; expected {exc.expected}") from None


def percent(text: str) -> float:
    """``0.5%`` -> 0.5 (percent, 0..100)."""
    try:
        return parse_percent(text).value
    except UnitError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}; expected {exc.expected}") from None


def monotonic_deadline(at_epoch: float) -> float:
    """A Unix-time deadline as a ``time.monotonic()`` one, converted once at start.

    The controller can only name a deadline in wall-clock time; from then on the helpers wait on
    the monotonic clock, so stepping the node's clock forwards or backwards during a fault moves
    its end neither earlier nor later.
    """
    return time.monotonic() + (at_epoch - time.time())
