"""How each fault is realised on gen1/gen2/gen3: refused on a component inside a shared process
unless scope.widen asks for the whole process, and the realisation recorded in the plan and spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from grayctl.errors import InputError
from grayctl.experiment import load_experiment
from grayctl.faults.catalog import CATALOG
from grayctl.faults.realise import TARGET_KINDS
from grayctl.lab.definition import load_lab
from grayctl.plan import build_plan

PARAMS = {
    "network-latency": "{delay: 100ms}", "network-loss": "{percent: 5%}", "network-bandwidth": "{rate: 1mbit}",
    "network-corruption": "{percent: 1%}", "network-duplication": "{percent: 1%}",
    "network-reorder": "{percent: 10%}", "network-partition": "{}", "network-flap": "{down: 1s, up: 2s}",
    "cpu-stress": "{}", "memory-stress": "{bytes: 64MiB}", "disk-io-stress": "{}", "process-pause": "{}",
    "process-kill": "{}",
}


def _experiment(tmp_path: Path, topology: str, ftype: str, target: str, scope: str = "") -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(f"topology: {topology}\nchaos_injection:\n  type: {ftype}\n  target_service: {target}\n"
                    f"  parameters: {PARAMS[ftype]}\n" + (f"  scope: {scope}\n" if scope else ""))
    return path


def _plan(tmp_path: Path, *args: str):
    return build_plan(load_experiment(_experiment(tmp_path, *args)), load_lab("local"))


def test_every_fault_type_declares_its_realisation_on_both_kinds_of_target():
    assert set(PARAMS) == set(CATALOG)
    for ft in CATALOG.values():
        assert set(ft.realisation) == set(TARGET_KINDS)
        assert ft.realisation["service"] == "host"
        assert ft.realisation["component"] in ("host", "refused", "runtime")
        assert ft.in_process_refusal
        assert "widen" in ft.scope_fields


@pytest.mark.parametrize("ftype", sorted(n for n, t in CATALOG.items() if not t.runtime_realisable))
@pytest.mark.parametrize("topology", ["gen1-monolith", "gen2-coarse"])
def test_a_fault_on_a_component_sharing_a_process_is_refused_with_line_and_field(tmp_path, topology, ftype):
    with pytest.raises(InputError) as err:
        load_experiment(_experiment(tmp_path, topology, ftype, "social-graph-service"))
    text = err.value.render() if hasattr(err.value, "render") else str(err.value)
    assert err.value.exit_code == 2
    assert "x.yaml:4:" in text and "target_service" in text
    assert "is a component inside service" in text and "widen: process" in text


@pytest.mark.parametrize("ftype", sorted(n for n, t in CATALOG.items() if t.runtime_realisable))
@pytest.mark.parametrize("topology", ["gen1-monolith", "gen2-coarse"])
def test_what_the_runtime_realises_on_a_component_is_planned_as_runtime_never_widened(tmp_path, topology, ftype):
    (ft,) = _plan(tmp_path, topology, ftype, "social-graph-service").faults
    assert ft.runtime is not None and ft.runtime["component"] == "social-graph-service" and not ft.widened
    assert ft.realisation.startswith("runtime: ") and "social-graph-service in service" in ft.realisation


def test_process_pause_on_social_graph_in_gen1_widened_on_request_is_recorded_as_widened(tmp_path):
    plan = _plan(tmp_path, "gen1-monolith", "process-pause", "social-graph-service", "{widen: process}")
    (ft,) = plan.faults
    assert ft.service == "monolith" and ft.widened
    assert ft.realisation == f"host: SIGSTOP of service monolith (widened from social-graph-service) on {ft.nodes[0]}"
    spec = next(s for s in plan.steps if s.name.startswith("inject:")).extravars["fault_spec"]
    assert spec["realisation"] == ft.realisation and spec["widened"] is True
    assert plan.experiment.faults[0].scope.to_dict()["widen"] == "process"
    assert plan.to_dict()["faults"][0]["realisation"] == ft.realisation


def test_cpu_stress_widened_in_gen2_names_the_hosting_service(tmp_path):
    plan = _plan(tmp_path, "gen2-coarse", "cpu-stress", "social-graph-service", "{widen: process}")
    (ft,) = plan.faults
    assert ft.widened and ft.realisation == (f"host: stress-ng in the node cgroup on {ft.nodes[0]}, for service "
                                            "user-graph (widened from social-graph-service)")
    assert ft.realisation.startswith("host: stress-ng")


def test_latency_on_a_gen3_service_is_a_host_fault_on_its_data_interface_not_widened(tmp_path):
    plan = _plan(tmp_path, "gen3-disaggregated", "network-latency", "social-graph-service")
    (ft,) = plan.faults
    assert not ft.widened
    assert ft.realisation == f"host: netem or fallback delayer (auto) egress on {ft.nodes[0]} data, peers all"


def test_widen_on_a_target_that_is_already_a_service_widens_nothing(tmp_path):
    plan = _plan(tmp_path, "gen3-disaggregated", "process-pause", "social-graph-service", "{widen: process}")
    (ft,) = plan.faults
    assert not ft.widened and "widened" not in ft.realisation


def test_widen_takes_only_process(tmp_path):
    with pytest.raises(InputError) as err:
        load_experiment(_experiment(tmp_path, "gen1-monolith", "process-pause", "social-graph-service",
                                    "{widen: node}"))
    assert "widen" in str(err.value.render() if hasattr(err.value, "render") else err.value)
