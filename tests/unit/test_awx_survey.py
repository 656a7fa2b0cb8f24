"""The AWX survey (awx/survey.json) and the job templates made from it (awx/create_job_template.yml).

The survey is data read by both the create playbook and the lab test (tests/lab/test_awx.py); these
tests keep it honest: its choices are grayctl's own lists, AWX's survey_spec endpoint would accept
it, every answer lands in a variable playbooks/experiment.yml reads, and the create playbook calls
the real awx.awx modules (from the ``ansible`` package of the test extra) with options they have.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from grayctl.faults import FAULT_TYPES
from grayctl.paths import PROJECT_ROOT

SURVEY_FILE = PROJECT_ROOT / "awx" / "survey.json"
SURVEY = json.loads(SURVEY_FILE.read_text())
QUESTIONS = {q["variable"]: q for q in SURVEY["spec"]}
EXPERIMENT_PLAYBOOK = PROJECT_ROOT / "playbooks" / "experiment.yml"
CREATE_PLAYBOOK = PROJECT_ROOT / "awx" / "create_job_template.yml"

# AWX's survey_spec endpoint (api/views: JobTemplateSurveySpec): question types and their default's type
ALLOWED_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "textarea": (str,), "password": (str,), "multiplechoice": (str,), "multiselect": (str, list),
    "integer": (int,), "float": (float, int),
}


def awx_spec_problems(survey: dict[str, Any]) -> list[str]:
    """What AWX's POST /api/v2/job_templates/<id>/survey_spec/ would refuse (its _validate_spec_data)."""
    problems = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(survey.get(field), kind):
            problems.append(f"survey field {field!r} missing or not a {kind.__name__}")
    if problems or not survey["spec"]:
        return problems or ["'spec' doesn't contain any items"]
    seen: set[str] = set()
    for i, q in enumerate(survey["spec"]):
        for field, kind in (("type", str), ("question_name", str), ("variable", str), ("required", bool)):
            if not isinstance(q.get(field), kind):
                problems.append(f"question {i}: {field!r} missing or not a {kind.__name__}")
        if problems:
            continue
        if q["variable"] in seen:
            problems.append(f"question {i}: variable {q['variable']!r} duplicated")
        seen.add(q["variable"])
        if q["type"] not in ALLOWED_TYPES:
            problems.append(f"question {i}: type {q['type']!r} is not one AWX allows")
            continue
        if "default" in q and q["default"] != "" and not isinstance(q["default"], ALLOWED_TYPES[q["type"]]):
            problems.append(f"question {i}: default {q['default']!r} is not a {q['type']}")
        for key in ("min", "max"):
            if q.get(key) is not None and not isinstance(q[key], int):
                problems.append(f"question {i}: {key} must be an integer")
        if q["type"] in ("multiplechoice", "multiselect"):
            if "choices" not in q:
                problems.append(f"question {i}: a {q['type']} question needs choices")
                continue
            choices = q["choices"].splitlines() if isinstance(q["choices"], str) else q["choices"]
            defaults = [d for d in str(q.get("default", "")).splitlines() if d.strip()]
            if q["type"] == "multiplechoice" and len(defaults) > 1:
                problems.append(f"question {i}: a multiplechoice question has one default")
            if any(d not in choices for d in defaults):
                problems.append(f"question {i}: default {q.get('default')!r} is not one of the choices")
    return problems


def test_the_fault_type_choices_are_the_fault_catalog() -> None:
    assert QUESTIONS["gx_fault_type"]["choices"] == list(FAULT_TYPES)


def test_the_topology_choices_are_the_shipped_topologies() -> None:
    names = sorted(yaml.safe_load(p.read_text())["name"] for p in (PROJECT_ROOT / "topologies").glob("*.yaml"))
    assert QUESTIONS["gx_topology"]["choices"] == names


def test_awx_would_accept_the_survey() -> None:
    assert awx_spec_problems(SURVEY) == []


def test_the_spec_check_refuses_what_awx_refuses() -> None:
    """The check above can fail: each of these is a spec AWX's endpoint answers with a 400."""
    bad_default = {**QUESTIONS["gx_accept_drift"], "default": "maybe"}
    duplicated = [QUESTIONS["gx_delay"], QUESTIONS["gx_delay"]]
    no_choices = {k: v for k, v in QUESTIONS["gx_fault_type"].items() if k != "choices"}
    for spec in ([bad_default], duplicated, [no_choices], [{**QUESTIONS["gx_rate"], "required": "no"}], []):
        assert awx_spec_problems({**SURVEY, "spec": spec}), spec


def _play_vars() -> dict[str, Any]:
    plays = yaml.safe_load(EXPERIMENT_PLAYBOOK.read_text())
    return plays[0]["vars"]


def test_every_survey_answer_is_a_variable_experiment_yml_declares_and_uses() -> None:
    text = EXPERIMENT_PLAYBOOK.read_text()
    declared = _play_vars()
    for var in QUESTIONS:
        assert var in declared, f"{var}: not declared in playbooks/experiment.yml's play vars"
        uses = [m.start() for m in re.finditer(rf"\b{var}\b", text)]
        declaration = text.index(f"    {var}:")
        assert [u for u in uses if u != declaration + 4], f"{var}: declared but never read"
    # and no gx_* setting the playbook reads is missing from the survey
    assert sorted(v for v in declared if v.startswith("gx_")) == sorted(QUESTIONS)


def test_every_survey_default_is_one_awx_passes_on_and_experiment_yml_accepts() -> None:
    """AWX puts a default into the job's extra vars only if it passes the question's own checks."""
    declared = _play_vars()
    for var, q in QUESTIONS.items():
        if "default" not in q:
            assert not q["required"], f"{var}: required without a default"
            continue
        value = q["default"]
        if q["type"] == "text":
            assert q.get("min", 0) <= len(value) <= q["max"], var
        elif q["type"] == "multiplechoice":
            assert value in q["choices"], var
        # the playbook's own default is the survey's, so a run without AWX behaves the same — but
        # for the dataset copy: outside AWX grayctl_runs_dir is the repository's runs/ and persists
        assert declared[var] == ("" if var == "gx_dataset_dest" else value), var


def _tasks(playbook: Path) -> list[dict[str, Any]]:
    return [t for play in yaml.safe_load(playbook.read_text()) for t in play.get("tasks", [])]


def _module(task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (name,) = [k for k in task if "." in k]
    return name, task[name]


def test_the_create_playbook_makes_the_project_and_both_job_templates_with_awx_modules() -> None:
    calls = [_module(t) for t in _tasks(CREATE_PLAYBOOK) if any(k.startswith("awx.awx.") for k in t)]
    assert [m for m, _ in calls] == ["awx.awx.execution_environment", "awx.awx.project", "awx.awx.inventory",
                                     "awx.awx.host", "awx.awx.job_template", "awx.awx.job_template"]
    templates = {args["name"]: args for m, args in calls if m == "awx.awx.job_template"}
    experiment, cleanup = templates["grayctl experiment"], templates["grayctl cleanup"]
    assert experiment["survey_enabled"] is True and experiment["survey_spec"] == "{{ _gx_survey }}"
    play_vars = yaml.safe_load(CREATE_PLAYBOOK.read_text())[0]["vars"]
    assert "/survey.json" in play_vars["_gx_survey"] and "from_json" in play_vars["_gx_survey"]
    for jt in (experiment, cleanup):
        assert (PROJECT_ROOT / jt["playbook"]).is_file(), jt["playbook"]
        assert jt["credentials"] == "{{ grayctl_awx_credentials }}"  # by name, from a variable
        assert jt["allow_simultaneous"] is False and jt["ask_variables_on_launch"] is True
    assert experiment["playbook"] == "playbooks/experiment.yml"
    assert cleanup["playbook"] == "playbooks/experiment_cleanup.yml"
    assert isinstance(play_vars["grayctl_awx_credentials"], list)


def test_the_create_playbook_uses_only_options_the_awx_modules_have() -> None:
    """Against the installed awx.awx (the ansible package of the test extra): a misspelt option
    would only fail against a live AWX."""
    calls = [_module(t) for t in _tasks(CREATE_PLAYBOOK) if any(k.startswith("awx.awx.") for k in t)]
    names = sorted({m for m, _ in calls})
    doc = subprocess.run([str(Path(sys.executable).with_name("ansible-doc")), "--json", *names],
                         capture_output=True, text=True, timeout=120, check=False)
    assert doc.returncode == 0, f"awx.awx not resolvable (pip install -e '.[test]'): {doc.stderr[-2000:]}"
    options = {m: set(d["doc"]["options"]) for m, d in json.loads(doc.stdout).items()}
    assert set(options) == set(names)
    for module, args in calls:
        unknown = set(args) - options[module]
        assert not unknown, f"{module}: no option {sorted(unknown)}"
