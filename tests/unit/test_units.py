"""Quantities with units: strict parsing, clear errors, canonical rendering."""

from __future__ import annotations

import pytest

from grayctl.units import (
    Duration,
    Rate,
    Size,
    UnitError,
    parse_duration,
    parse_percent,
    parse_rate,
    parse_request_rate,
    parse_size,
)


@pytest.mark.parametrize("text, seconds", [
    ("500us", 0.0005), ("200ms", 0.2), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), ("0s", 0.0),
])
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text).seconds == pytest.approx(seconds)


@pytest.mark.parametrize("text, canonical, tc", [
    ("200ms", "200ms", "200ms"), ("1.5s", "1500ms", "1500ms"), ("60s", "1m", "60s"),
    ("0.5ms", "500us", "500us"), ("2h", "2h", "7200s"), ("0ms", "0s", "0s"),
])
def test_durations_render_canonically_and_for_tc(text: str, canonical: str, tc: str) -> None:
    d = parse_duration(text)
    assert d.canonical() == canonical
    assert d.to_tc() == tc
    assert parse_duration(d.canonical()).seconds == pytest.approx(d.seconds)


@pytest.mark.parametrize("value", [200, "200", 1.5, "0.5"])
def test_bare_numbers_are_missing_a_unit(value: object) -> None:
    with pytest.raises(UnitError, match="missing unit") as err:
        parse_duration(value)
    assert "ms" in err.value.expected


@pytest.mark.parametrize("value, message", [
    ("-5ms", "must not be negative"), (-5, "must not be negative"), ("200 ms", "no spaces"),
    ("200MS", "case-sensitive"), ("200mb", "not a unit of a duration"), ("1e3ms", "not a unit of a duration"),
    (".5s", "not a duration"), ("200ms;reboot", "not a unit"), (" 200ms", "no spaces"), (True, "boolean"),
    (None, "null"), ("", "not a duration"), ("ms", "not a duration"),
])
def test_malformed_durations_are_rejected_with_the_reason(value: object, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        parse_duration(value)


def test_sizes_use_binary_and_decimal_units() -> None:
    assert parse_size("512MiB").bytes == 512 * 1024**2
    assert parse_size("1GB").bytes == 10**9
    assert parse_size("100KiB").bytes == 102400
    assert parse_size("4096B").bytes == 4096
    assert Size(4096).canonical() == "4KiB"
    assert Size(1000).canonical() == "1KB"
    assert Size(1001).canonical() == "1001B"
    assert parse_size("64KiB").to_tc() == "64kb"


def test_fractional_bytes_are_rejected() -> None:
    with pytest.raises(UnitError, match="whole number of bytes"):
        parse_size("0.5B")


def test_rates_follow_tc_units_bits_and_bytes() -> None:
    assert parse_rate("10mbit").bits_per_second == 10e6
    assert parse_rate("1gbit").bits_per_second == 1e9
    assert parse_rate("100kbit").bits_per_second == 1e5
    assert parse_rate("500kbps").bits_per_second == 500 * 8000  # tc: kbps is kilobytes per second
    assert Rate(10e6).to_tc() == "10mbit"
    assert parse_rate("500kbps").to_tc() == "4mbit"
    assert Rate(1234).to_tc() == "1234bit"


def test_a_size_is_not_a_rate() -> None:
    with pytest.raises(UnitError, match="not a unit of a bandwidth"):
        parse_rate("10MiB")


def test_percent_range_is_zero_to_hundred() -> None:
    assert parse_percent("5%").value == 5.0
    assert parse_percent("0.5%").fraction == pytest.approx(0.005)
    assert parse_percent("100%").canonical() == "100%"
    with pytest.raises(UnitError, match="above 100%"):
        parse_percent("100.1%")
    with pytest.raises(UnitError, match="negative"):
        parse_percent("-1%")
    with pytest.raises(UnitError, match="missing unit"):
        parse_percent(5)


def test_request_rates_normalise_to_per_second() -> None:
    assert parse_request_rate("100/s").per_second == 100.0
    assert parse_request_rate("6000/min").per_second == pytest.approx(100.0)
    assert parse_request_rate("6000/min").canonical() == "100/s"
    assert parse_request_rate("36/h").canonical() == "0.01/s"
    with pytest.raises(UnitError, match="missing unit"):
        parse_request_rate(50)


def test_quantities_compare_by_value() -> None:
    assert parse_duration("1s") > parse_duration("999ms")
    assert Duration(0.2) == Duration(0.2)


def test_equality_ignores_how_the_value_was_written() -> None:
    assert parse_duration("1500ms") == parse_duration("1.5s")
    assert parse_rate("1000kbit") == parse_rate("1mbit")


def test_a_bare_int_past_a_floats_range_is_refused_with_its_digits_not_an_overflow() -> None:
    """Found by bench/fuzz_loaders.py (an application's latency mean of 1 and 400 zeros): formatting the number
    for the message converted it to a float and raised OverflowError, a traceback through the CLI."""
    with pytest.raises(UnitError) as info:
        parse_duration(10**105)
    assert "has no unit" in str(info.value) and "(106 digits)" in str(info.value)
    with pytest.raises(UnitError, match="expected a duration"):
        parse_duration(float("inf"))
