"""Application files: ``application: {from: apps/social-network.yaml}`` in a topology.

Map:
  load_application(ck, app_raw, file, path) -> AppFile | None   check the reference, read the file
  AppFile(path, display, checker, data)                          what the validator walks next

The application may live in its own file, relative to the topology file, in the same directory or
below it, one level deep (an application file cannot itself use ``from``, which also rules out
include cycles). gen1/gen2/gen3 share one such file, so their per-request work is identical by
construction. Problems inside the application file go to the AppFile's own checker, so they are
reported with that file's name, line and column; the validator adds one problem at the ``from:``
line of the topology that included it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grayctl.errors import InputError
from grayctl.source import Checker, FieldPath, ValueProblem, load_yaml_document, suggest

__all__ = ["AppFile", "load_application"]

APP_REF_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*\.ya?ml\Z")


@dataclass(frozen=True)
class AppFile:
    """An included application file: where it is, how messages name it, its checker and its data.

    ``data`` is None when the file could not be read or is not an application file; the reason is
    already a problem on ``checker``.
    """

    path: Path
    display: str
    checker: Checker
    data: dict[str, Any] | None


def load_application(ck: Checker, app_raw: dict[str, Any], file: str, path: Path | None) -> AppFile | None:
    """Read the application file named by ``application.from`` of the topology ``file`` (at ``path``).

    None when no file could be named (the problem is recorded on the topology's checker ``ck``);
    otherwise an AppFile, whose ``data`` is None when the file could not be used.
    """
    fpath: FieldPath = ("application", "from")
    for key in app_raw:
        if key != "from":
            ck.problem(("application", key), f"'{key}' next to 'from': the application comes either from "
                       "a file or inline, not both", at_key=True,
                       expected="application: {from: apps/<name>.yaml} alone, or components and requests inline")
    rel = ck.convert(app_raw["from"], fpath, _parse_app_ref)
    if rel is None:
        return None
    topo_file = path if path is not None else Path(file)
    base = topo_file.parent
    target = base / rel
    shown = os.path.normpath(os.path.join(os.path.dirname(file), rel))
    if not target.resolve().is_relative_to(base.resolve()):
        ck.problem(fpath, f"application file {rel!r} resolves outside the topology's directory "
                   f"(through a symbolic link): {target.resolve()}",
                   expected="a file in the topology's directory or below it")
        return None
    if target.resolve() == topo_file.resolve():
        ck.problem(fpath, f"include cycle: {topo_file.name} takes its application from itself",
                   expected="a separate application file (components and requests)")
        return None
    if not target.is_file():
        folder = target.parent
        files = {p.stem: p.name for p in folder.glob("*.y*ml")} if folder.is_dir() else {}
        near = suggest(target.stem, files)
        ck.problem(fpath, f"application file {rel!r} not found (looked for {shown})",
                   expected="an existing YAML file, relative to the topology file",
                   suggestion=str(Path(rel).parent / files[near]) if near else None)
        return None
    try:
        data, positions = load_yaml_document(shown if Path(shown).resolve() == target.resolve() else target)
    except InputError as err:
        app_ck = Checker(shown)
        app_ck.problems.extend(err.problems)
        return AppFile(target, shown, app_ck, None)
    app_ck = Checker(shown, positions)
    if "from" in data:
        app_ck.problem(("from",), "an application file cannot itself use 'from': includes are one level "
                       "deep (which also rules out include cycles)", at_key=True,
                       expected="components and requests written out in this file")
        return AppFile(target, shown, app_ck, None)
    topo_keys = [k for k in data if k in ("decomposition", "placement", "application")]
    if topo_keys:
        app_ck.problem((topo_keys[0],), f"{shown} is a topology file, not an application file", at_key=True,
                       expected="a file with components and requests (and optional name, "
                                "description, defaults)")
        return AppFile(target, shown, app_ck, None)
    return AppFile(target, shown, app_ck, data)


def _parse_app_ref(value: Any) -> str:
    """``application.from``: a relative path to a .yaml file in the topology's directory or below."""
    form = "a relative path to a .yaml file in the topology's directory or below, e.g. apps/social-network.yaml"
    if not isinstance(value, str):
        raise ValueProblem(f"expected a file path, got {type(value).__name__}", form)
    if value.startswith("/"):
        raise ValueProblem(f"{value!r} is an absolute path", form)
    if ".." in value.split("/"):
        raise ValueProblem(f"{value!r} leaves the topology's directory ('..'); an application file must sit "
                           "beside the topology or below it", form)
    if not APP_REF_RE.match(value):
        raise ValueProblem(f"{value!r} is not a plain relative .yaml path", form)
    return value
