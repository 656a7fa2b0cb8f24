"""``--set key=value`` overrides of experiment fields, applied to the raw data before validation.

Map:
  parse_override("schedule.fault=20s") -> Override(path=("schedule", "fault"), value="20s", text=...)
  apply_overrides(data, overrides) -> a new dict   (the input is not changed)
  load_experiment_with(path, overrides) -> Experiment   load, override, validate (one InputError path)

Keys are dotted field paths; a whole number selects a list item (``chaos_injections.0.type``).
Values are read as one YAML value, so ``20s``, ``30/s`` and ``100ms`` stay strings, ``3`` is a
number and ``[a, b]`` a list — the same value the field would hold in the file. The experiment's
own validator then checks everything, so an override can never produce an experiment a file
could not.

The seed's singular ``chaos_injection`` and the list form ``chaos_injections`` name the same
faults: ``chaos_injections.0.*`` reaches the single fault of a file that uses the singular form,
so sweeps can use one spelling for both (the validator refuses a file holding both keys).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from grayctl.errors import InputError, Problem
from grayctl.source import suggest

__all__ = ["Override", "apply_overrides", "load_experiment_with", "parse_override", "parse_overrides"]

SINGULAR, PLURAL = "chaos_injection", "chaos_injections"


@dataclass(frozen=True)
class Override:
    path: tuple[str | int, ...]
    value: Any
    text: str  # as the user wrote it, for messages

    @property
    def key(self) -> str:
        return ".".join(str(p) for p in self.path)


def _problem(text: str, message: str, expected: str | None = None, suggestion: str | None = None) -> Problem:
    return Problem(message, file="--set", path=text.split("=", 1)[0] or text, expected=expected,
                   suggestion=suggestion)


def parse_override(text: str) -> Override:
    """``key=value`` -> Override; InputError naming ``--set`` and the key when malformed."""
    if "=" not in text:
        raise InputError(_problem(text, f"{text!r} is not key=value", "e.g. --set schedule.fault=20s"))
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise InputError(_problem(text, f"empty field name in {key!r}", "a dotted field path, e.g. workload.rate"))
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    if isinstance(path[0], int):
        raise InputError(_problem(text, "the first part of the key must be a field name", "e.g. workload.rate"))
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise InputError(_problem(text, f"value {raw!r} is not a YAML value ({err.__class__.__name__})",
                                  "a plain value such as 20s, 30/s, 100ms, 3 or [a, b]")) from None
    if value is not None and not isinstance(value, (dict, list, str, int, float, bool)):
        value = raw.strip()  # dates and the like: keep the text, the validator parses it itself
    return Override(tuple(path), value, text)


def parse_overrides(texts: Iterable[str]) -> tuple[Override, ...]:
    return tuple(parse_override(t) for t in texts)


def _top_keys() -> Sequence[str]:
    from grayctl.experiment import TOP_KEYS

    return TOP_KEYS


def apply_overrides(data: dict[str, Any], overrides: Iterable[Override]) -> dict[str, Any]:
    """A copy of ``data`` with every override set, in order (a later one wins)."""
    out = copy.deepcopy(data)
    for ov in overrides:
        path = list(ov.path)
        top = path[0]
        if top not in _top_keys():
            raise InputError(_problem(ov.text, f"no experiment field {top!r}", "one of " + ", ".join(_top_keys()),
                                      suggest(str(top), _top_keys())))
        if top == PLURAL and SINGULAR in out and PLURAL not in out:
            # The seed form: chaos_injections.0 is its one fault.
            if len(path) == 1 or path[1] != 0:
                raise InputError(_problem(ov.text, f"this experiment has one fault ({SINGULAR}); "
                                                   f"only {PLURAL}.0 exists", f"{PLURAL}.0.<field>"))
            path = [SINGULAR] + path[2:]
        _set(out, path, ov)
    return out


def _set(node: Any, path: list[str | int], ov: Override) -> None:
    for i, part in enumerate(path):
        last = i == len(path) - 1
        where = ".".join(str(p) for p in ov.path[: i + 1])
        if isinstance(part, int):
            if not isinstance(node, list):
                raise InputError(_problem(ov.text, f"{where}: {_kind(node)} has no item {part}",
                                          "a field name here, not a list index"))
            if part > len(node):
                raise InputError(_problem(ov.text, f"{where}: the list has {len(node)} item(s)",
                                          f"an index from 0 to {len(node)} (= append)"))
            if part == len(node):
                node.append({} if not last else None)
        else:
            if not isinstance(node, dict):
                raise InputError(_problem(ov.text, f"{where}: {_kind(node)} has no field {part!r}",
                                          "a list index here" if isinstance(node, list) else None))
            if not last and part not in node:
                nxt = path[i + 1]
                node[part] = [] if isinstance(nxt, int) else {}
        if last:
            node[part] = ov.value  # type: ignore[index]
        else:
            node = node[part]  # type: ignore[index]


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "a list"
    if isinstance(node, dict):
        return "a mapping"
    return f"the value {node!r}"


def load_experiment_with(path: str | Path, overrides: Sequence[Override] = ()):
    """Load and validate ``path`` with ``overrides`` applied to its raw data first."""
    from grayctl.experiment import validate_experiment
    from grayctl.source import load_yaml_document

    data, positions = load_yaml_document(path)
    if not overrides:
        return validate_experiment(data, positions, str(path), Path(path).resolve().parent)
    data = apply_overrides(data, overrides)
    try:
        return validate_experiment(data, positions, str(path), Path(path).resolve().parent)
    except InputError as err:
        shown = " ".join(f"--set {o.text}" for o in overrides)
        err.hint = (err.hint + "; " if err.hint else "") + f"with {shown} applied"
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m grayctl.overrides FILE KEY=VALUE...``: print FILE with the overrides applied (YAML).

    For tools that need the overridden experiment as a file (playbooks/experiment.yml, AWX surveys);
    the result is validated exactly as ``grayctl run --set`` would validate it.
    """
    import sys

    from grayctl.source import load_yaml_document

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m grayctl.overrides EXPERIMENT [KEY=VALUE ...]", file=sys.stderr)
        return 2
    try:
        overrides = parse_overrides(args[1:])
        load_experiment_with(args[0], overrides)  # refuse what a run would refuse
        data, _ = load_yaml_document(args[0])
        print(yaml.safe_dump(apply_overrides(data, overrides), sort_keys=False), end="")
    except InputError as err:
        print(err.render(), file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
