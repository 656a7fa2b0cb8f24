"""Every role documents its interface: meta/argument_specs.yml mirrors defaults/main.yml.

House style: `<role>_*` public variables live in defaults/main.yml, and the `main` entry point of
meta/argument_specs.yml lists exactly those keys, each with a type and a description (and, when
it states a default, the same default). Every role also has a README.md and a tasks/main.yml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir()) if (REPO / "roles").is_dir() else []


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def _defaults(role: Path) -> dict[str, Any]:
    path = role / "defaults" / "main.yml"
    return (_load(path) or {}) if path.is_file() else {}


def _options(role: Path) -> dict[str, Any]:
    spec = _load(role / "meta" / "argument_specs.yml") or {}
    return (spec.get("argument_specs", {}).get("main") or {}).get("options") or {}


@pytest.fixture(params=ROLES, ids=[r.name for r in ROLES])
def role(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_there_are_roles_to_check() -> None:
    assert ROLES, "no roles found under roles/"


def test_role_has_readme_and_tasks_main(role: Path) -> None:
    assert (role / "README.md").is_file(), f"{role.name}: README.md missing"
    assert (role / "tasks" / "main.yml").is_file(), f"{role.name}: tasks/main.yml missing"


def test_role_has_argument_specs_with_main_entry_point(role: Path) -> None:
    path = role / "meta" / "argument_specs.yml"
    assert path.is_file(), f"{role.name}: meta/argument_specs.yml missing"
    spec = _load(path) or {}
    assert "main" in spec.get("argument_specs", {}), f"{role.name}: no 'main' entry point"


def test_argument_specs_mirror_defaults_key_for_key(role: Path) -> None:
    defaults, options = set(_defaults(role)), set(_options(role))
    assert defaults == options, (
        f"{role.name}: only in defaults/main.yml: {sorted(defaults - options)}; "
        f"only in meta/argument_specs.yml: {sorted(options - defaults)}"
    )


def test_every_option_has_type_and_description(role: Path) -> None:
    for name, option in _options(role).items():
        assert option.get("type"), f"{role.name}: option {name} has no type"
        assert option.get("description"), f"{role.name}: option {name} has no description"


def test_stated_spec_defaults_equal_role_defaults(role: Path) -> None:
    defaults = _defaults(role)
    for name, option in _options(role).items():
        if "default" in option and name in defaults:
            assert option["default"] == defaults[name], (
                f"{role.name}: {name} defaults to {defaults[name]!r} in defaults/main.yml "
                f"but {option['default']!r} in meta/argument_specs.yml"
            )


def test_public_variables_carry_the_role_prefix(role: Path) -> None:
    prefix = f"{role.name}_"
    stray = [name for name in _defaults(role) if not name.startswith(prefix)]
    assert not stray, f"{role.name}: defaults without the '{prefix}' prefix: {stray}"
