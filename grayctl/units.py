"""Quantities with units, as written in experiment and topology files.

Every duration, size, bandwidth, percentage and request rate in a user file
carries its unit; this module parses them strictly and renders them back in
one canonical form.

  Duration     ``500us`` ``200ms`` ``1.5s`` ``2m`` ``1h``     -> float seconds
  Size         ``4096B`` ``100KiB`` ``512MiB`` ``1GB``        -> int bytes
  Rate         ``100kbit`` ``10mbit`` ``1gbit`` ``500kbps``   -> float bits/s (tc's units)
  Percent      ``5%`` ``0.5%``  (0..100)                      -> float percent
  RequestRate  ``100/s`` ``6000/min`` ``10/h``                -> float requests/s

``parse_*`` functions raise ``UnitError`` (a ``ValueError`` carrying the
expected form); callers turn it into a ``Problem`` with the file position.
Numbers are plain decimals (``1.5``) — no exponents, signs, spaces or
leading dots — and every regex is fully anchored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "UnitError",
    "Duration",
    "Size",
    "Rate",
    "Percent",
    "RequestRate",
    "parse_duration",
    "parse_size",
    "parse_rate",
    "parse_percent",
    "parse_request_rate",
]


class UnitError(ValueError):
    """A value that is not a well-formed quantity of the expected kind."""

    def __init__(self, message: str, expected: str) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected


_NUMBER = r"(?P<num>[0-9]+(?:\.[0-9]+)?)"

DURATION_UNITS: dict[str, float] = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}  # fmt: skip
# tc(8): bit/kbit/mbit/gbit/tbit are bits per second; bps/kbps/... are BYTES per second.
RATE_UNITS: dict[str, int] = {
    "bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3, "tbit": 1000**4,
    "bps": 8, "kbps": 8 * 1000, "mbps": 8 * 1000**2, "gbps": 8 * 1000**3, "tbps": 8 * 1000**4,
}  # fmt: skip
REQUEST_RATE_UNITS: dict[str, float] = {"/s": 1.0, "/min": 1 / 60, "/h": 1 / 3600}

DURATION_FORM = "a number with a unit: us, ms, s, m or h (e.g. 200ms, 1.5s, 2m)"
SIZE_FORM = "a number with a unit: B, KB, MB, GB, KiB, MiB, GiB (e.g. 512MiB, 4096B)"
RATE_FORM = "a bandwidth with a tc unit: bit, kbit, mbit, gbit (bits/s) or bps, kbps, mbps (bytes/s), e.g. 10mbit"
PERCENT_FORM = "a percentage between 0% and 100% (e.g. 5%, 0.5%)"
REQUEST_RATE_FORM = "requests per time unit: N/s, N/min or N/h (e.g. 100/s, 6000/min)"


def _regex(units: dict[str, Any]) -> re.Pattern[str]:
    alts = "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True))
    return re.compile(rf"\A{_NUMBER}(?P<unit>{alts})\Z")


_DURATION_RE = _regex(DURATION_UNITS)
_SIZE_RE = _regex(SIZE_UNITS)
_RATE_RE = _regex(RATE_UNITS)
_PERCENT_RE = re.compile(rf"\A{_NUMBER}%\Z")
_REQUEST_RATE_RE = _regex(REQUEST_RATE_UNITS)
_BARE_NUMBER_RE = re.compile(r"\A[+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?\Z")


def _fmt(x: float) -> str:
    """Shortest plain decimal for x (no exponent): 1.5 -> '1.5', 200.0 -> '200'. An int past a float's range
    (YAML reads 1e400 written out as an int) is shown by its digits, never converted (OverflowError)."""
    if isinstance(x, int):
        digits = str(x)
        return digits if len(digits) <= 30 else f"{digits[:12]}... ({len(digits)} digits)"
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text


def _match(text: Any, pattern: re.Pattern[str], kind: str, form: str, units: dict[str, Any]) -> re.Match[str]:
    """Match ``text`` against ``pattern`` or raise a UnitError that says what is wrong."""
    if isinstance(text, bool) or text is None or isinstance(text, (list, dict)):
        raise UnitError(f"expected {kind}, got {describe_value(text)}", form)
    if isinstance(text, (int, float)):
        if isinstance(text, float) and not math.isfinite(text):
            raise UnitError(f"expected {kind}, got {text!r}", form)
        if text < 0:
            raise UnitError(f"{kind} must not be negative (got {_fmt(text)}) and needs a unit", form)
        raise UnitError(f"missing unit: {_fmt(text)} has no unit", form)
    if not isinstance(text, str):
        raise UnitError(f"expected {kind}, got {describe_value(text)}", form)
    m = pattern.match(text)
    if m:
        return m
    stripped = text.strip()
    if stripped.startswith("-"):
        raise UnitError(f"{kind} must not be negative (got {text!r})", form)
    if _BARE_NUMBER_RE.match(stripped):
        raise UnitError(f"missing unit: {text!r} has no unit", form)
    if stripped != text or " " in text:
        if pattern.match(text.replace(" ", "").strip()):
            raise UnitError(f"{text!r}: no spaces allowed between number and unit", form)
    # a known unit in another case (e.g. '10Mbit', '200MS')?
    lowered = {u.lower(): u for u in units}
    m2 = re.match(rf"\A{_NUMBER}(?P<unit>.*)\Z", stripped)
    if m2:
        unit = m2.group("unit")
        if unit.lower() in lowered and lowered[unit.lower()] != unit:
            raise UnitError(
                f"{text!r}: unit {unit!r} is not recognised; units are case-sensitive, "
                f"write {m2.group('num')}{lowered[unit.lower()]}",
                form,
            )
        if unit:
            raise UnitError(f"{text!r}: {unit!r} is not a unit of {kind}", form)
    raise UnitError(f"{text!r} is not {kind}", form)


def describe_value(value: Any) -> str:
    """How a wrong value reads in an error message ("the text 'x'", "a list", …)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"the number {value!r}"


@dataclass(frozen=True, order=True)
class Duration:
    """A time span; ``seconds`` is authoritative, ``text`` is what the user wrote."""

    seconds: float
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.canonical()

    def canonical(self) -> str:
        """Largest unit that represents the value exactly: 90s -> '90s', 120s -> '2m', 1.5s -> '1500ms'."""
        return self._render(("h", "m", "s", "ms", "us"))

    def to_tc(self) -> str:
        """tc(8) time syntax (s, ms, us only): '200ms', '2s', '500us'."""
        return self._render(("s", "ms", "us"))

    def _render(self, units: tuple[str, ...]) -> str:
        us = round(self.seconds * 1e6)
        if us == 0:
            return "0s"
        for unit in units:
            factor = round(DURATION_UNITS[unit] * 1e6)
            if us % factor == 0:
                return f"{us // factor}{unit}"
        return f"{_fmt(self.seconds * 1e6)}us"

    @property
    def ms(self) -> float:
        return self.seconds * 1000.0


@dataclass(frozen=True, order=True)
class Size:
    """A number of bytes."""

    bytes: int
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.canonical()

    def canonical(self) -> str:
        """Largest binary (then decimal) unit that divides exactly, else bytes."""
        for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
            if self.bytes and self.bytes % SIZE_UNITS[unit] == 0:
                return f"{self.bytes // SIZE_UNITS[unit]}{unit}"
        return f"{self.bytes}B"

    def to_tc(self) -> str:
        """tc(8) size syntax: 'b' bytes, 'kb' = 1024 bytes, 'mb' = 1024*1024 bytes."""
        for unit, factor in (("mb", 1024**2), ("kb", 1024)):
            if self.bytes and self.bytes % factor == 0:
                return f"{self.bytes // factor}{unit}"
        return f"{self.bytes}b"


@dataclass(frozen=True, order=True)
class Rate:
    """A bandwidth in bits per second."""

    bits_per_second: float
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.to_tc()

    def canonical(self) -> str:
        return self.to_tc()

    def to_tc(self) -> str:
        """tc(8) rate syntax in bits: '10mbit', '1gbit', '100kbit', '12345bit'."""
        bps = round(self.bits_per_second)
        for unit in ("tbit", "gbit", "mbit", "kbit"):
            if bps and bps % RATE_UNITS[unit] == 0:
                return f"{bps // RATE_UNITS[unit]}{unit}"
        return f"{bps}bit"


@dataclass(frozen=True, order=True)
class Percent:
    """A percentage in [0, 100]."""

    value: float
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.canonical()

    def canonical(self) -> str:
        return f"{_fmt(self.value)}%"

    @property
    def fraction(self) -> float:
        return self.value / 100.0


@dataclass(frozen=True, order=True)
class RequestRate:
    """Requests per second."""

    per_second: float
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.canonical()

    def canonical(self) -> str:
        return f"{_fmt(round(self.per_second, 9))}/s"


def parse_duration(text: Any) -> Duration:
    """``'200ms'`` -> Duration(0.2). Raises UnitError."""
    m = _match(text, _DURATION_RE, "a duration", DURATION_FORM, DURATION_UNITS)
    seconds = float(m.group("num")) * DURATION_UNITS[m.group("unit")]
    return Duration(seconds, text)


def parse_size(text: Any) -> Size:
    """``'512MiB'`` -> Size(536870912). Fractions must come out as whole bytes."""
    m = _match(text, _SIZE_RE, "a size", SIZE_FORM, SIZE_UNITS)
    value = float(m.group("num")) * SIZE_UNITS[m.group("unit")]
    if value != int(value):
        raise UnitError(f"{text!r} is not a whole number of bytes", SIZE_FORM)
    return Size(int(value), text)


def parse_rate(text: Any) -> Rate:
    """``'10mbit'`` -> Rate(10_000_000.0) bits/s; ``'500kbps'`` is 500 kB/s = 4 Mbit/s, as in tc."""
    m = _match(text, _RATE_RE, "a bandwidth", RATE_FORM, RATE_UNITS)
    return Rate(float(m.group("num")) * RATE_UNITS[m.group("unit")], text)


def parse_percent(text: Any) -> Percent:
    """``'5%'`` -> Percent(5.0); values above 100% are rejected."""
    m = _match(text, _PERCENT_RE, "a percentage", PERCENT_FORM, {"%": 1})
    value = float(m.group("num"))
    if value > 100.0:
        raise UnitError(f"{text!r} is above 100%", PERCENT_FORM)
    return Percent(value, text)


def parse_request_rate(text: Any) -> RequestRate:
    """``'6000/min'`` -> RequestRate(100.0)."""
    m = _match(text, _REQUEST_RATE_RE, "a request rate", REQUEST_RATE_FORM, REQUEST_RATE_UNITS)
    return RequestRate(float(m.group("num")) * REQUEST_RATE_UNITS[m.group("unit")], text)
