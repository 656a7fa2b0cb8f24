"""--set key=value overrides: parsed as YAML values, applied to the raw experiment before validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from grayctl.errors import InputError
from grayctl.overrides import (
    apply_overrides,
    load_experiment_with,
    parse_override,
    parse_overrides,
)
from grayctl.paths import PROJECT_ROOT

SEED = PROJECT_ROOT / "experiments" / "seed.yaml"
LOSS = PROJECT_ROOT / "experiments" / "three-tier-loss.yaml"


def test_values_keep_their_units_as_text_and_numbers_as_numbers():
    assert parse_override("schedule.fault=20s").value == "20s"
    assert parse_override("workload.rate=30/s").value == "30/s"
    assert parse_override("repetitions=3").value == 3
    assert parse_override("chaos_injections.0.parameters.delay=100ms").path == (
        "chaos_injections", 0, "parameters", "delay")
    assert parse_override("checks.0.phase=fault").path[1] == 0
    assert parse_override("workload.mix=[a, b]").value == ["a", "b"]


@pytest.mark.parametrize("text", ["schedule.fault", "=3", "a..b=1", "0.x=1", "workload.rate=[unclosed"])
def test_a_malformed_override_is_an_input_error_naming_set_and_the_key(text):
    with pytest.raises(InputError) as e:
        parse_override(text)
    assert "--set" in e.value.render()


def test_overrides_are_applied_to_a_copy_in_order():
    data = {"topology": "three-tier", "schedule": {"fault": "60s"}}
    out = apply_overrides(data, parse_overrides(["schedule.fault=20s", "workload.rate=30/s",
                                                 "schedule.fault=25s"]))
    assert out == {"topology": "three-tier", "schedule": {"fault": "25s"}, "workload": {"rate": "30/s"}}
    assert data["schedule"]["fault"] == "60s"


def test_chaos_injections_0_reaches_the_seed_forms_single_fault():
    data = {"topology": "t", "chaos_injection": {"type": "network-latency", "parameters": {"delay": "200ms"}}}
    out = apply_overrides(data, parse_overrides(["chaos_injections.0.parameters.delay=100ms"]))
    assert out["chaos_injection"]["parameters"]["delay"] == "100ms" and "chaos_injections" not in out
    with pytest.raises(InputError, match="only chaos_injections.0"):
        apply_overrides(data, parse_overrides(["chaos_injections.1.type=network-loss"]))


def test_unknown_top_field_suggests_the_closest():
    with pytest.raises(InputError) as e:
        apply_overrides({"topology": "t"}, parse_overrides(["schedul.fault=3s"]))
    text = e.value.render()
    assert "--set" in text and "schedul" in text and "did you mean: schedule" in text


def test_indexing_past_the_end_or_into_a_scalar_is_refused():
    data = {"topology": "t", "chaos_injections": [{"type": "x"}], "name": "n"}
    with pytest.raises(InputError, match="has 1 item"):
        apply_overrides(data, parse_overrides(["chaos_injections.5.type=y"]))
    with pytest.raises(InputError, match="has no field"):
        apply_overrides(data, parse_overrides(["name.first=y"]))
    with pytest.raises(InputError, match="has no item"):
        apply_overrides(data, parse_overrides(["name.0=y"]))


def test_overridden_experiment_is_validated_like_a_file():
    exp = load_experiment_with(LOSS, parse_overrides(["schedule.fault=50s", "workload.rate=30/s",
                                                      "chaos_injections.0.parameters.percent=2%"]))
    assert exp.schedule.to_dict()["fault"] == "50s"
    assert exp.workload.rate.per_second == 30
    assert "2" in str(exp.faults[0].to_dict()["parameters"]["percent"])
    seed = load_experiment_with(SEED, parse_overrides(["chaos_injections.0.parameters.delay=100ms"]))
    assert str(seed.faults[0].to_dict()["parameters"]["delay"]) == "100ms"


def test_an_invalid_overridden_value_fails_validation_and_says_which_set():
    with pytest.raises(InputError) as e:
        load_experiment_with(LOSS, parse_overrides(["workload.rate=fast"]))
    assert "--set workload.rate=fast" in e.value.render()


def test_no_overrides_is_plain_loading(tmp_path: Path):
    assert load_experiment_with(SEED).name == "seed"
