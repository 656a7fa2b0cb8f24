"""Every Ansible module and action plugin renders with ansible-doc and documents its real interface.

Modules are discovered under roles/*/library and playbooks/library, action plugins under
roles/*/action_plugins and playbooks/action_plugins. ansible-doc cannot document an action plugin
itself: like ansible-core's own (debug, template, ...), each one needs a module file of the same name
in the library directory next to it, either the module it drives or a stub holding only the docs.

The real `ansible-doc` of this venv renders them all in one call (`--json`); it must exit 0 with
nothing on stderr, and the rendered options must equal what the code accepts: the module's
module-level `ARGUMENT_SPEC` (name, type, required, default, choices, elements, aliases and
suboptions, key for key), plus, for an action plugin, the arguments it takes itself: its
`_VALID_ARGS` when it sets them (Ansible then refuses anything else), else the module's spec plus
its module-level `ACTION_ARGS`. EXAMPLES must be YAML tasks that call the module; RETURN values
need a description, a type and when they are returned.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[2]
MODULE_GLOBS = ("roles/*/library/*.py", "playbooks/library/*.py")
ACTION_GLOBS = ("roles/*/action_plugins/*.py", "playbooks/action_plugins/*.py")
# Fields a module's option may carry (Ansible's module format); anything else is a typo or a
# flow mapping that split a description at a comma.
OPTION_FIELDS = {"description", "type", "required", "default", "choices", "elements", "aliases",
                 "suboptions", "version_added", "no_log"}
RETURN_FIELDS = {"description", "returned", "type", "elements", "sample", "contains", "version_added"}


def _discover(globs: tuple[str, ...]) -> dict[str, list[Path]]:
    """Plugin name -> its paths (role library directories link shared modules, so one name has many)."""
    found: dict[str, list[Path]] = {}
    for pattern in globs:
        for path in sorted(REPO.glob(pattern)):
            if path.name != "__init__.py":
                found.setdefault(path.stem, []).append(path)
    return found


MODULES = _discover(MODULE_GLOBS)
ACTIONS = _discover(ACTION_GLOBS)


def _real(paths: list[Path]) -> Path:
    """The one real file behind a name's paths (asserted by test_one_real_file_per_name)."""
    return Path(os.path.realpath(paths[0]))


def _load(path: Path) -> ModuleType:
    """Import a plugin file by path under a private name (it is not on sys.path as a package)."""
    name = "_doc_check_" + "_".join(path.relative_to(REPO).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"{path}: not importable"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ansible_doc(names: list[str]) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("ansible-doc")
    assert executable.is_file(), f"{executable} missing: ansible-core is a dependency of grayctl"
    dirs = sorted({str(_real(MODULES[name]).parent) for name in names})
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(executable), "--json", "-M", os.pathsep.join(dirs), *names],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


@cache
def _rendered_all() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = _ansible_doc(sorted(MODULES))
    return result, (json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {})


@cache
def _rendered(name: str) -> tuple[str, dict[str, Any]]:
    """(stderr, rendered entry) for one module: from the one call for all, or alone when that fails."""
    result, docs = _rendered_all()
    if result.returncode != 0 or result.stderr.strip():
        # One broken module makes ansible-doc fail the whole call: render alone to say which.
        result = _ansible_doc([name])
        docs = json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {}
        problem = result.stderr.strip() if result.returncode == 0 else f"rc {result.returncode}: {result.stderr}"
        return problem, docs.get(name) or {}
    return "", docs.get(name) or {}


def _doc(name: str) -> dict[str, Any]:
    problem, entry = _rendered(name)
    assert not problem, f"ansible-doc {name}: {problem}"
    assert entry.get("doc"), f"ansible-doc {name}: no documentation rendered"
    return entry


def _normal(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """An argument spec or a rendered options mapping in one comparable form, with Ansible's defaults."""
    out = {}
    for key, option in spec.items():
        unknown = set(option) - OPTION_FIELDS - {"options"}
        assert not unknown, f"{where}: option {key} has unknown fields {sorted(unknown)}"
        default = option.get("default")
        out[key] = {
            "type": option.get("type") or "str",
            "required": bool(option.get("required", False)),
            # 30 documents 30.0, but neither True nor "30" documents 1 or 30.
            "default": None if default is None else (isinstance(default, bool), default),
            "choices": option.get("choices"),
            "elements": option.get("elements"),
            "aliases": sorted(option.get("aliases") or []),
            "options": _normal(option.get("options") or option.get("suboptions") or {}, f"{where}.{key}"),
        }
    return out


def _documented_args(name: str) -> dict[str, Any]:
    """What the code accepts under this name, as a spec (action-only arguments have no types)."""
    spec: dict[str, Any] = {}
    module = _load(_real(MODULES[name]))
    if hasattr(module, "ARGUMENT_SPEC"):
        spec = dict(module.ARGUMENT_SPEC)
    if name in ACTIONS:
        action = _load(_real(ACTIONS[name]))
        valid = getattr(action.ActionModule, "_VALID_ARGS", frozenset())
        own = set(valid) or set(getattr(action, "ACTION_ARGS", ()))
        assert own or spec, f"{name}: the action plugin sets neither _VALID_ARGS nor ACTION_ARGS"
        if valid:
            assert not spec, f"{name}: the action plugin takes only _VALID_ARGS, yet the module has a spec"
        return {"spec": spec, "action_only": sorted(own)}
    assert spec, f"{_real(MODULES[name])}: no module-level ARGUMENT_SPEC to compare the docs with"
    return {"spec": spec, "action_only": []}


def test_there_are_modules_and_action_plugins() -> None:
    assert MODULES, f"no modules found under {MODULE_GLOBS}"
    assert ACTIONS, f"no action plugins found under {ACTION_GLOBS}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_one_real_file_per_name(name: str) -> None:
    # Two different files of one name would render (and run) whichever comes first in the path.
    real = sorted({os.path.realpath(p) for p in MODULES[name]})
    assert len(real) == 1, f"{name}: different files share the name: {real}"


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_action_plugin_has_doc_stub_next_to_it(name: str) -> None:
    for path in ACTIONS[name]:
        stub = path.parent.parent / "library" / path.name
        assert stub.is_file(), f"{path.relative_to(REPO)}: no doc stub {stub.relative_to(REPO)}"


def test_ansible_doc_renders_all_without_error_or_warning() -> None:
    result, docs = _rendered_all()
    assert result.returncode == 0, f"ansible-doc failed (rc {result.returncode}):\n{result.stderr}"
    assert "[WARNING]" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    assert not result.stderr.strip(), result.stderr
    assert sorted(docs) == sorted(MODULES), f"rendered {sorted(docs)}, expected {sorted(MODULES)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_renders_from_its_own_file(name: str) -> None:
    doc = _doc(name)["doc"]
    assert doc.get("module") == name, f"{name}: DOCUMENTATION says module: {doc.get('module')!r}"
    assert os.path.realpath(doc["filename"]) == str(_real(MODULES[name]))
    assert doc.get("short_description"), f"{name}: no short_description"
    assert doc.get("description"), f"{name}: no description"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_documented_options_equal_the_argument_spec(name: str) -> None:
    accepted = _documented_args(name)
    options = _doc(name)["doc"].get("options") or {}
    for key, option in options.items():
        assert option.get("description"), f"{name}: option {key} has no description"
    spec = _normal(accepted["spec"], f"{name} ARGUMENT_SPEC")
    documented = _normal(options, f"{name} DOCUMENTATION")
    accepted_keys = set(spec) | set(accepted["action_only"])
    extra, missing = sorted(set(documented) - accepted_keys), sorted(accepted_keys - set(documented))
    assert not extra and not missing, (
        f"{name}: documented but not accepted: {extra}; accepted (argument spec or action plugin) "
        f"but undocumented: {missing}"
    )
    for key in spec:
        assert documented[key] == spec[key], (
            f"{name}: option {key} documented as {documented[key]} but the argument spec says {spec[key]}"
        )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_examples_are_tasks_that_call_the_module(name: str) -> None:
    text = _doc(name).get("examples") or ""
    assert text.strip(), f"{name}: no EXAMPLES"
    tasks = yaml.safe_load(text)
    assert isinstance(tasks, list) and tasks, f"{name}: EXAMPLES is not a list of tasks"
    for task in tasks:
        assert isinstance(task, dict) and task.get("name"), f"{name}: an example task without a name: {task}"
        assert name in task, f"{name}: example {task['name']!r} does not call {name}"
        unknown = set(task[name] or {}) - set(_doc(name)["doc"].get("options") or {})
        assert not unknown, f"{name}: example {task['name']!r} passes undocumented options {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_return_values_are_described(name: str) -> None:
    values = _doc(name).get("return") or {}
    assert values, f"{name}: no RETURN"
    for key, value in values.items():
        unknown = set(value) - RETURN_FIELDS
        assert not unknown, f"{name}: return value {key} has unknown fields {sorted(unknown)}"
        for field in ("description", "type", "returned"):
            assert value.get(field), f"{name}: return value {key} has no {field}"
