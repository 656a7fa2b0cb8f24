"""The fault catalog is the one list of fault types: docs, exports, node defaults and specs derive from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grayctl.dataset.export import rcaeval_fault_name
from grayctl.faults import CATALOG, FAULT_TYPES
from grayctl.faults.catalog import FAMILIES, types_of
from grayctl.faults.doc import DOC, render_doc
from grayctl.faults.spec import EFFECT_MODES, FaultRefused, load_spec, resolve_parameters, to_spec
from grayctl.units import Duration, Percent

ROLE = Path(__file__).resolve().parents[2] / "roles" / "fault"


def test_the_catalog_page_is_the_catalog_rendered() -> None:
    text = DOC.read_text()
    assert render_doc(text) == text, "docs/fault-catalog.md differs from the catalog: python -m grayctl.faults.doc"


def test_a_changed_catalog_makes_the_page_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text()
    monkeypatch.setitem(CATALOG, "network-latency", CATALOG["network-latency"].__class__(
        **{**CATALOG["network-latency"].__dict__, "doc": "Something else."}))
    assert render_doc(text) != text


def test_every_type_has_a_family_backends_and_a_unique_export_name() -> None:
    assert set(FAULT_TYPES) == {t for f in FAMILIES for t in types_of(f)}
    names = [rcaeval_fault_name(t) for t in FAULT_TYPES]
    assert len(set(names)) == len(names)
    assert (rcaeval_fault_name("network-latency"), rcaeval_fault_name("memory-stress")) == ("delay", "mem")
    for ft in CATALOG.values():
        assert ft.backends and not set(ft.refused) & set(ft.backends), ft.name


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_its_task_file_in_the_fault_role(family: str) -> None:
    assert (ROLE / "tasks" / f"{family}.yml").is_file()


def _spec_options() -> dict:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]["fault_spec"]["options"]


def test_the_roles_argument_spec_knows_the_families_and_every_field_the_plan_writes() -> None:
    options = _spec_options()
    assert tuple(options["family"]["choices"]) == FAMILIES
    net = to_spec("f1", "network-latency", {"delay": "1ms"}, expire_after_s=9, interface="data",
                  realisation="host: netem egress on node01 data, peers all")
    assert set(net) | {"seed", "runtime"} == set(options)
    # a fault the runtime realises carries runtime too, every field of it in the spec's options
    rt = to_spec("f1", "network-latency", {"delay": "1ms"}, expire_after_s=9, interface="data",
                 realisation="runtime: in-process calls into db in service app on node01",
                 runtime={"component": "db", "in_process": True, "peers": [], "peer_addresses": []})
    assert set(rt) | {"seed"} == set(options)
    assert set(rt["runtime"]) == set(options["runtime"]["options"])
    assert tuple(options["effect"]["choices"]) == EFFECT_MODES


def test_the_node_fills_defaults_from_the_catalog_and_parses_with_units() -> None:
    v = resolve_parameters("network-latency", {"delay": "200ms"})
    assert v["delay"] == Duration(0.2) and v["jitter"] == Duration(0.0) and v["distribution"] == "normal"
    assert v["correlation"] == Percent(0.0)
    assert resolve_parameters("network-reorder", {"percent": "10%"})["gap"] == 5
    with pytest.raises(FaultRefused, match="'delay' is required"):
        resolve_parameters("network-latency", {})
    with pytest.raises(FaultRefused, match="out of range"):
        resolve_parameters("network-latency", {"delay": "2h"})


def test_the_plans_spec_round_trips_through_the_nodes_validation() -> None:
    net = to_spec("f1", "network-loss", {"percent": "5%"}, expire_after_s=90, interface="data", peers=["10.0.0.2"],
                  scope={"direction": "ingress", "fraction": "30%"})
    spec = load_spec({**net, "data_iface": "data"})
    assert (spec.family, spec.direction, spec.fraction, spec.peers) == ("network", "ingress", 0.3, ("10.0.0.2/32",))
    cpu = to_spec("f2", "cpu-stress", {"workers": 2}, expire_after_s=60, scope={"fraction": "50%"})
    assert "fraction" not in cpu and "interface" not in cpu  # the plan picked the nodes instead
    assert load_spec(cpu).values["load"] == Percent(100.0)


def test_a_spec_whose_family_contradicts_the_catalog_is_refused() -> None:
    with pytest.raises(FaultRefused, match="is a resource fault"):
        load_spec({**to_spec("f3", "cpu-stress", {}, expire_after_s=60), "family": "network"})
