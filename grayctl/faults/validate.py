"""An experiment's fault parameters, parsed against the catalog with file positions (controller side).

Map:
  validate_parameters(type, raw, ck, path)   parse one injection's ``parameters``; defaults filled,
                                             the type's cross-field check run; problems go to ``ck``
  validate_params_against(specs, raw, ...)   the same for any tuple of ``Param`` (scope, groups)
  parse_param(spec, value)                   one value (raises ValueProblem / UnitError)
  to_plain(values)                           parsed values -> canonical strings (the plan's spec)

The node resolves the same parameters without positions (grayctl.faults.spec); both use the
catalog's parsers (``QUANTITY_PARSERS``, i.e. grayctl.units) and bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grayctl.faults.catalog import CATALOG, QUANTITY_PARSERS, SIGNALS, Param
from grayctl.source import (
    Checker,
    FieldPath,
    ValueProblem,
    parse_bool,
    parse_choice,
    parse_identifier,
    parse_int,
)

__all__ = ["parse_param", "to_plain", "validate_parameters", "validate_params_against"]


def _parse_names(value: Any) -> list[str] | str:
    if value == "all":
        return "all"
    if isinstance(value, str):
        return [parse_identifier(value, what="service name")]
    if not isinstance(value, list):
        raise ValueProblem("expected a list of service names or 'all'", "a list of service names, or all")
    return [parse_identifier(item, what="service name") for item in value]


def parse_param(spec: Param, value: Any) -> Any:
    """Parse one parameter value according to its spec (raises ValueError/UnitError)."""
    if spec.kind == "names":
        return _parse_names(value)
    if spec.kind == "int":
        return parse_int(spec.min, spec.max)(value)
    if spec.kind == "bool":
        return parse_bool(value)
    if spec.kind == "choice":
        if spec.choices == SIGNALS and isinstance(value, str) and value.upper().removeprefix("SIG") in SIGNALS:
            return value.upper().removeprefix("SIG")
        return parse_choice(spec.choices, spec.name)(value)
    parsed = QUANTITY_PARSERS[spec.kind](value)
    if spec.below_min(parsed):
        word = "greater than" if spec.min_exclusive else "at least"
        raise ValueProblem(f"{value!r} is out of range", f"{word} {spec.format(spec.min)}"
                           + (f" and at most {spec.format(spec.max)}" if spec.max is not None else ""))
    if spec.above_max(parsed):
        raise ValueProblem(f"{value!r} is out of range (too large)", f"at most {spec.format(spec.max)}")
    return parsed


def validate_params_against(specs: tuple[Param, ...], raw: Any, ck: Checker, path: FieldPath,
                            what: str) -> dict[str, Any] | None:
    """Parse a mapping of parameters against ``specs``; record problems; return parsed values with defaults.

    The returned dict also carries ``_given``: the names the user wrote (cross-checks need it).
    """
    spec_map = {p.name: p for p in specs}
    if raw is None:
        raw = {}
    m = ck.mapping(raw, path, allowed=spec_map, required=[p.name for p in specs if p.required],
                   what=f"a mapping of {what}")
    if m is None:
        return None
    out: dict[str, Any] = {"_given": tuple(k for k in m if k in spec_map)}
    for spec in specs:
        if spec.name in m:
            if spec.kind == "group":
                out[spec.name] = validate_params_against(spec.fields, m[spec.name], ck, path + (spec.name,),
                                                         f"{spec.name} fields")
            else:
                parse: Callable[[Any], Any] = lambda v, s=spec: parse_param(s, v)  # noqa: E731
                out[spec.name] = ck.convert(m[spec.name], path + (spec.name,), parse)
        else:
            out[spec.name] = spec.default
    return out


def validate_parameters(fault_type: str, raw: Any, ck: Checker, path: FieldPath) -> dict[str, Any] | None:
    """Validate an injection's ``parameters`` for ``fault_type``; return parsed values (defaults filled).

    Problems go to ``ck``; the result has no ``_given`` key.
    """
    ft = CATALOG[fault_type]
    before = len(ck.problems)
    values = validate_params_against(ft.params, raw, ck, path, f"{fault_type} parameters")
    if values is None:
        return None
    if ft.check is not None and len(ck.problems) == before:
        ft.check(values, ck, path)
    return _strip_given(values)


def _strip_given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (_strip_given(v) if isinstance(v, dict) else v) for k, v in values.items() if k != "_given"}


def to_plain(value: Any) -> Any:
    """Parsed parameter values -> canonical plain data (strings with units); unset optionals are left out."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items() if k != "_given" and v is not None}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if hasattr(value, "canonical"):
        return value.canonical()
    return value
