"""Experiment files: the seed form, defaults, normalisation, cross-checks and the documented examples."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from grayctl.errors import InputError
from grayctl.experiment import load_experiment, validate_experiment
from grayctl.faults import CATALOG, FAULT_TYPES
from grayctl.source import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]


def _load(text: str, tmp_path: Path, name: str = "exp.yaml"):
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return load_experiment(f)


def _problems(text: str, tmp_path: Path) -> list:
    with pytest.raises(InputError) as info:
        _load(text, tmp_path)
    return info.value.problems


SEED = """\
topology: "gen3-disaggregated"
chaos_injection:
  type: "network-latency"
  target_service: "social-graph-service"
  parameters:
    delay: "200ms"
    jitter: "50ms"
"""


def test_the_seed_five_line_form_validates_unchanged() -> None:
    assert (ROOT / "experiments" / "seed.yaml").read_text() == SEED
    exp = load_experiment(ROOT / "experiments" / "seed.yaml")
    (fault,) = exp.faults
    assert (fault.type, fault.target_service, fault.service) == ("network-latency", "social-graph-service",
                                                                 "social-graph-service")
    assert fault.parameters["delay"].seconds == pytest.approx(0.2)
    assert fault.parameters["jitter"].to_tc() == "50ms"


def test_defaults_are_filled_in_and_documented_values(tmp_path: Path) -> None:
    exp = _load(SEED, tmp_path, "My Seed.yaml")
    d = exp.to_dict()
    assert d["name"] == "my-seed"
    assert d["lab"] == "local"
    assert d["schedule"] == {"warmup": "10s", "baseline": "30s", "fault": "1m", "recovery": "30s"}
    assert d["workload"]["mix"] == {"read-home-timeline": "60%", "read-user-timeline": "30%", "compose-post": "10%"}
    assert d["workload"]["rate"] == "50/s" and d["workload"]["arrival"] == "poisson" and d["workload"]["seed"] == 1
    assert d["slo"] == {"latency_p99": "auto", "error_rate": "auto"}
    (f,) = d["chaos_injections"]
    assert f["id"] == "f1" and f["offset"] == "0s" and f["duration"] == "1m" and f["backend"] == "auto"
    assert f["parameters"] == {"delay": "200ms", "jitter": "50ms", "correlation": "0%", "distribution": "normal"}
    assert f["scope"] == {"peers": "all", "direction": "egress", "fraction": "100%"}


def test_fault_times_are_absolute_within_the_fault_phase(tmp_path: Path) -> None:
    exp = _load("""\
        topology: three-tier
        schedule: {warmup: 5s, baseline: 20s, fault: 60s, recovery: 10s}
        chaos_injections:
          - {type: network-loss, target_service: api, parameters: {percent: 5%}, offset: 15s, duration: 30s}
        """, tmp_path)
    (f,) = exp.faults
    assert (f.start_s, f.end_s) == (40.0, 70.0)
    assert [p[0] for p in exp.schedule.phases()] == ["warmup", "baseline", "fault", "recovery"]
    assert exp.schedule.total_s == 95.0


def test_to_dict_round_trips_through_validation(tmp_path: Path) -> None:
    exp = load_experiment(ROOT / "experiments" / "full-example.yaml")
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(exp.to_dict(), sort_keys=False))
    assert load_experiment(again).to_dict() == exp.to_dict()


def test_a_component_name_resolves_to_its_hosting_service(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    exp = _load("""\
        topology: ../monolith.yaml
        chaos_injection: {type: process-kill, target_service: db, scope: {widen: process}}
        """, tmp_path / "sub")
    assert exp.faults[0].service == "monolith"  # widened on request: without it, refused (test_realise)


@pytest.fixture(autouse=True)
def _monolith(tmp_path: Path) -> None:
    src = ROOT / "tests" / "corpus" / "topologies" / "good" / "monolith.yaml"
    (tmp_path / "monolith.yaml").write_text(src.read_text())


def test_both_singular_and_plural_injections_is_an_error(tmp_path: Path) -> None:
    probs = _problems(SEED + "chaos_injections: []\n", tmp_path)
    assert any("both 'chaos_injection' and 'chaos_injections'" in p.message for p in probs)


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    probs = _problems("""\
        topology: three-tier
        repetitions: 0
        schedule: {warmup: 10}
        workload: {arrival: random}
        """, tmp_path)
    paths = {p.path for p in probs}
    assert {"repetitions", "schedule.warmup", "workload.arrival"} <= paths
    assert all(p.line and p.column and p.file for p in probs)


def test_missing_field_is_reported_at_the_parent_mapping(tmp_path: Path) -> None:
    (p,) = _problems("topology: three-tier\nchaos_injection:\n  type: process-kill\n", tmp_path)
    assert p.message == "missing required field 'target_service'"
    assert (p.line, p.path) == (3, "chaos_injection.target_service")


def test_a_fault_without_duration_runs_to_the_end_of_the_phase(tmp_path: Path) -> None:
    exp = _load("""\
        topology: three-tier
        schedule: {fault: 2m}
        chaos_injection: {type: cpu-stress, target_service: api, offset: 30s}
        """, tmp_path)
    assert exp.faults[0].duration.seconds == 90.0


def test_the_mix_must_name_the_topologys_request_types(tmp_path: Path) -> None:
    probs = _problems("topology: three-tier\nworkload: {mix: {browse: 50%, chekout: 50%}}\n", tmp_path)
    assert probs[0].suggestion == "checkout"


@pytest.mark.parametrize("value", ["a;b", "$(id)", "`id`", "a|b", "a&b", "-x", "a b", "A\nB"])
def test_shell_syntax_in_a_target_is_rejected_and_says_so(value: str, tmp_path: Path) -> None:
    data = {"topology": "three-tier", "chaos_injection": {"type": "process-kill", "target_service": value}}
    f = tmp_path / "x.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as info:
        load_experiment(f)
    msg = info.value.problems[0].message
    assert "shell syntax" in msg or "leading '-'" in msg


def test_all_thirteen_fault_types_are_in_the_catalog_as_data() -> None:
    assert len(FAULT_TYPES) == 13
    assert set(CATALOG["network-latency"].param_map) == {"delay", "jitter", "correlation", "distribution"}
    assert CATALOG["network-latency"].param_map["distribution"].choices == ("normal", "pareto", "paretonormal",
                                                                            "uniform")


def test_check_tolerances_parse_to_numbers(tmp_path: Path) -> None:
    exp = _load("""\
        topology: three-tier
        checks:
          - {name: a, query: up, tolerance: {max: 250ms}}
          - {name: b, query: up, tolerance: {min: 99%}, phase: fault, fail_run: true}
          - {name: c, query: up, tolerance: {relative_to_baseline: ">=0.8x"}}
        """, tmp_path)
    a, b, c = exp.checks
    assert a.tolerance.value == pytest.approx(0.25) and a.phase == "all"
    assert b.tolerance.value == pytest.approx(0.99) and b.fail_run
    assert (c.tolerance.op, c.tolerance.value) == (">=", 0.8)


def test_validate_experiment_works_on_loaded_data() -> None:
    data, pos = load_yaml_text("topology: three-tier\n", "inline.yaml")
    assert validate_experiment(data, pos, "inline.yaml").topology.name == "three-tier"


# -- documentation examples ------------------------------------------------------------

def _doc_blocks(doc: str, kind: str) -> list[str]:
    text = (ROOT / "docs" / doc).read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if b.startswith(f"# file: {kind}")]


@pytest.mark.parametrize("doc", ["experiment-format.md", "fault-catalog.md"])
def test_experiment_examples_in_the_docs_validate(doc: str, tmp_path: Path) -> None:
    blocks = _doc_blocks(doc, "experiment")
    assert blocks, f"docs/{doc} has no '# file: experiment' examples"
    for i, block in enumerate(blocks):
        f = tmp_path / f"example{i}.yaml"
        f.write_text(block)
        load_experiment(f)


def test_the_fault_catalog_page_names_every_type_and_parameter() -> None:
    text = (ROOT / "docs" / "fault-catalog.md").read_text()
    for name, ft in CATALOG.items():
        assert f"### `{name}`" in text
        for p in ft.params:
            assert f"| `{p.name}`" in text, f"{name}.{p.name} missing from docs/fault-catalog.md"


def test_the_load_generators_keep_up_bound_reaches_the_workload_step(tmp_path: Path) -> None:
    from grayctl.lab.definition import load_lab
    from grayctl.plan import build_plan

    exp = _load(SEED, tmp_path)
    assert exp.workload.keep_up.bound() == {"rate_pct": 1.0, "send_error_p99_ms": 100.0}  # the documented defaults
    exp = _load(SEED + "workload:\n  keep_up: {rate: 2%, send_lateness_p99: 5ms}\n", tmp_path)
    assert exp.to_dict()["workload"]["keep_up"] == {"rate": "2%", "send_lateness_p99": "5ms"}
    plan = build_plan(exp, load_lab("local"))
    step = next(s for s in plan.steps if s.name == "prepare")  # the load generator starts last in prepare
    assert step.extravars["workload_keep_up_bound"] == {"rate_pct": 2.0, "send_error_p99_ms": 5.0}


def test_a_bad_keep_up_bound_is_refused_at_its_field(tmp_path: Path) -> None:
    problems = _problems(SEED + "workload:\n  keep_up: {rate: fast, send_lateness: 5ms}\n", tmp_path)
    paths = {p.path for p in problems}
    assert {"workload.keep_up.rate", "workload.keep_up.send_lateness"} <= paths, paths
    assert all(p.line for p in problems)
