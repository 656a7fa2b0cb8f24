"""Every Ansible module and action plugin renders with ansible-doc and documents its real interface.

Modules are discovered in the collection grayctl.lab (plugins/modules), action plugins in
plugins/action. ansible-doc cannot document an action plugin itself: like ansible-core's own (debug,
template, ...), each one needs a module file of the same name in plugins/modules, either the module
it drives or a stub holding only the docs.

The real `ansible-doc` of this venv renders them all by their FQCN in one call (`--json`, the
collection found through the checkout's collections path); it must exit 0 with
nothing on stderr, and the rendered options must equal what the code accepts: the module's
module-level `ARGUMENT_SPEC` (name, type, required, default, choices, elements, aliases and
suboptions, key for key), plus, for an action plugin, the arguments it takes itself: its
`_VALID_ARGS` when it sets them (Ansible then refuses anything else), else the module's spec plus
its module-level `ACTION_ARGS`. EXAMPLES must be YAML tasks that call the module; RETURN values
need a description, a type and when they are returned.
"""

from __future__ import annotations

import importlib
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

from grayctl.paths import COLLECTIONS_DIR

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "grayctl.lab"
MODULE_GLOBS = ("plugins/modules/*.py",)
ACTION_GLOBS = ("plugins/action/*.py",)
# Fields a module's option may carry (Ansible's module format); anything else is a typo or a
# flow mapping that split a description at a comma.
OPTION_FIELDS = {"description", "type", "required", "default", "choices", "elements", "aliases",
                 "suboptions", "version_added", "no_log"}
RETURN_FIELDS = {"description", "returned", "type", "elements", "sample", "contains", "version_added"}


def _discover(globs: tuple[str, ...]) -> dict[str, Path]:
    """Plugin name -> its file."""
    return {path.stem: path for pattern in globs for path in sorted(REPO.glob(pattern)) if path.name != "__init__.py"}


MODULES = _discover(MODULE_GLOBS)
ACTIONS = _discover(ACTION_GLOBS)


def _load(path: Path) -> ModuleType:
    """Import a plugin as Ansible names it, so its ``ansible_collections...module_utils`` imports resolve."""
    if str(COLLECTIONS_DIR) not in sys.path:
        sys.path.append(str(COLLECTIONS_DIR))
    kind = path.parent.name  # modules or action
    return importlib.import_module(f"ansible_collections.{COLLECTION}.plugins.{kind}.{path.stem}")


def _ansible_doc(names: list[str]) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("ansible-doc")
    assert executable.is_file(), f"{executable} missing: ansible-core is a dependency of grayctl"
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR))
    return subprocess.run([str(executable), "--json", *(f"{COLLECTION}.{name}" for name in names)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


@cache
def _rendered_all() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = _ansible_doc(sorted(MODULES))
    return result, (json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {})


def _entry(docs: dict[str, Any], name: str) -> dict[str, Any]:
    return docs.get(f"{COLLECTION}.{name}") or {}


@cache
def _rendered(name: str) -> tuple[str, dict[str, Any]]:
    """(stderr, rendered entry) for one module: from the one call for all, or alone when that fails."""
    result, docs = _rendered_all()
    if result.returncode != 0 or result.stderr.strip():
        # One broken module makes ansible-doc fail the whole call: render alone to say which.
        result = _ansible_doc([name])
        docs = json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {}
        problem = result.stderr.strip() if result.returncode == 0 else f"rc {result.returncode}: {result.stderr}"
        return problem, _entry(docs, name)
    return "", _entry(docs, name)


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
    module = _load(MODULES[name])
    if hasattr(module, "ARGUMENT_SPEC"):
        spec = dict(module.ARGUMENT_SPEC)
    if name in ACTIONS:
        action = _load(ACTIONS[name])
        valid = getattr(action.ActionModule, "_VALID_ARGS", frozenset())
        own = set(valid) or set(getattr(action, "ACTION_ARGS", ()))
        assert own or spec, f"{name}: the action plugin sets neither _VALID_ARGS nor ACTION_ARGS"
        if valid:
            assert not spec, f"{name}: the action plugin takes only _VALID_ARGS, yet the module has a spec"
        return {"spec": spec, "action_only": sorted(own)}
    assert spec, f"{MODULES[name]}: no module-level ARGUMENT_SPEC to compare the docs with"
    return {"spec": spec, "action_only": []}


def test_there_are_modules_and_action_plugins() -> None:
    assert MODULES, f"no modules found under {MODULE_GLOBS}"
    assert ACTIONS, f"no action plugins found under {ACTION_GLOBS}"


def test_plugins_live_only_in_the_collection() -> None:
    # A role's library/ or a playbook directory's plugins would shadow the collection's for short
    # names and leave a role that breaks when installed on its own (links) or a copy that drifts.
    stray = sorted(str(p.relative_to(REPO)) for pattern in ("roles/*/library", "roles/*/action_plugins",
                                                            "roles/*/module_utils", "playbooks/library",
                                                            "playbooks/action_plugins", "playbooks/module_utils")
                   for p in REPO.glob(pattern))
    assert not stray, f"plugins outside plugins/ of grayctl.lab: {stray}"


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_action_plugin_has_doc_stub_next_to_it(name: str) -> None:
    assert name in MODULES, f"{ACTIONS[name].relative_to(REPO)}: no doc stub plugins/modules/{name}.py"


def test_ansible_doc_renders_all_without_error_or_warning() -> None:
    result, docs = _rendered_all()
    assert result.returncode == 0, f"ansible-doc failed (rc {result.returncode}):\n{result.stderr}"
    assert "[WARNING]" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    assert not result.stderr.strip(), result.stderr
    expected = sorted(f"{COLLECTION}.{name}" for name in MODULES)
    assert sorted(docs) == expected, f"rendered {sorted(docs)}, expected {expected}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_renders_from_its_own_file(name: str) -> None:
    doc = _doc(name)["doc"]
    assert doc.get("module") == name, f"{name}: DOCUMENTATION says module: {doc.get('module')!r}"
    assert os.path.realpath(doc["filename"]) == str(MODULES[name].resolve())
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
        fqcn = f"{COLLECTION}.{name}"
        assert fqcn in task, f"{name}: example {task['name']!r} does not call {fqcn}"
        unknown = set(task[fqcn] or {}) - set(_doc(name)["doc"].get("options") or {})
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
