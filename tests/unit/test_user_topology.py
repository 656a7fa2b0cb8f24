"""The user topology (the shop): one application file, two decompositions, the same fault file on both."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from grayctl.errors import InputError
from grayctl.experiment import load_experiment
from grayctl.lab.definition import load_lab
from grayctl.plan import build_plan
from grayctl.topology import load_topology

FAULT = """\
topology: {topology}
lab: local
chaos_injections:
  - id: slow-front
    type: network-latency
    target_service: storefront
    parameters: {{delay: 100ms}}
    # the storefront is the shop's front door in both: in the monolith its hop is the whole process's
    scope: {{widen: process}}
"""


def _exp(tmp_path: Path, topology: str, text: str = FAULT):
    f = tmp_path / f"{topology}.yaml"
    f.write_text(textwrap.dedent(text.format(topology=topology)))
    return load_experiment(f)


def test_both_decompositions_are_the_same_application() -> None:
    mono, split = load_topology("shop-monolith"), load_topology("shop-services")
    assert mono.to_dict()["application"] == split.to_dict()["application"]
    assert len(mono.services) == 1 and len(split.services) == 5


@pytest.mark.parametrize("topology", ["shop-monolith", "shop-services"])
def test_the_same_fault_file_plans_on_both_as_a_host_fault(tmp_path: Path, topology: str) -> None:
    plan = build_plan(_exp(tmp_path, topology), load_lab("local"))
    (fault,) = plan.to_dict()["faults"]
    assert fault["realisation"].startswith("host:"), fault
    assert fault["widened"] is (topology == "shop-monolith"), fault  # recorded: nothing silent


def test_a_pause_of_a_component_inside_the_monolith_is_realised_by_the_runtime_not_widened(tmp_path: Path) -> None:
    text = FAULT.replace("network-latency", "process-pause").replace("storefront", "catalog") \
        .replace("parameters: {{delay: 100ms}}", "parameters: {{}}").replace("    scope: {{widen: process}}\n", "")
    (fault,) = build_plan(_exp(tmp_path, "shop-monolith", text), load_lab("local")).faults
    assert fault.runtime is not None and not fault.widened
    assert fault.realisation.startswith("runtime: worker pool of catalog in service "), fault.realisation
    (own,) = build_plan(_exp(tmp_path, "shop-services", text), load_lab("local")).faults  # its own process there
    assert own.runtime is None and own.realisation.startswith("host: SIGSTOP")


def test_a_stress_of_a_component_inside_the_monolith_is_refused_not_widened(tmp_path: Path) -> None:
    text = FAULT.replace("network-latency", "cpu-stress").replace("storefront", "catalog") \
        .replace("parameters: {{delay: 100ms}}", "parameters: {{}}").replace("    scope: {{widen: process}}\n", "")
    with pytest.raises(InputError) as info:
        _exp(tmp_path, "shop-monolith", text)
    assert "catalog" in info.value.render() and "widen" in info.value.render()
