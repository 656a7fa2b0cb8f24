"""A lab given as an Ansible inventory (grayctl/lab/physical.py): read through Ansible, planned with
the reimage backends' playbook. No host is touched (Ansible's debug runs on the controller)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from grayctl.errors import InputError, LabError
from grayctl.lab.definition import _locate, load_lab
from grayctl.lab.physical import PhysicalLab, is_inventory
from grayctl.paths import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "inventories" / "example-physical" / "hosts.yml"

needs_ansible = pytest.mark.skipif(shutil.which("ansible-inventory") is None
                                   and not Path(sys.executable).with_name("ansible-inventory").exists(),
                                   reason="ansible-core is not installed")


def test_inventories_and_lab_definitions_are_told_apart(tmp_path: Path) -> None:
    assert is_inventory(EXAMPLE)
    assert is_inventory(EXAMPLE.parent)  # a directory with hosts.yml and no lab.yml
    assert not is_inventory(PROJECT_ROOT / "inventories" / "local" / "lab.yml")
    ini = tmp_path / "hosts.ini"
    ini.write_text("[lab_nodes]\nnode1 ansible_host=192.0.2.1\n")
    assert is_inventory(ini)


def test_a_lab_file_nested_too_deeply_is_refused_with_its_line_not_a_traceback(tmp_path: Path) -> None:
    """Found by tests/unit/test_fuzz_loaders.py: is_inventory's PyYAML read hit a RecursionError."""
    lab = tmp_path / "lab.yml"
    lab.write_text("name: deep\nnodes: " + "[" * 3000 + "]" * 3000 + "\n")
    assert not is_inventory(lab)
    # The bench found the same as a top-level list: PyYAML's scan alone ran past 20 s on a loaded machine.
    lab.write_text("- " + "[" * 20000 + "]" * 20000 + "\n")
    assert not is_inventory(lab)
    with pytest.raises(InputError) as info:
        load_lab(str(lab))
    assert info.value.problems[0].line is not None and "nested too deeply" in info.value.problems[0].message


def test_a_broken_yaml_lab_file_is_not_taken_for_an_ini_inventory(tmp_path: Path) -> None:
    """Found by tests/unit/test_fuzz_loaders.py: a lab.yml with a syntax error and a line starting with '['
    went to ansible-inventory (seconds, and an error with no line) instead of the YAML error at its line."""
    lab = tmp_path / "lab.yml"
    lab.write_text("name: x\nnodes: 3\n[lab_nodes]\n  bad: indent\n")
    assert not is_inventory(lab)
    with pytest.raises(InputError) as info:
        load_lab(str(lab))
    assert info.value.problems[0].line is not None and "YAML" in info.value.problems[0].message
    ini = tmp_path / "hosts"
    ini.write_text("[lab_nodes]\nnode1 ansible_host=192.0.2.1\n")
    assert is_inventory(ini)


@pytest.fixture(scope="module")
def example() -> PhysicalLab:
    if shutil.which("ansible-inventory") is None and not Path(sys.executable).with_name("ansible-inventory").exists():
        pytest.skip("ansible-core is not installed")
    return load_lab(str(EXAMPLE))  # type: ignore[return-value]


def test_example_inventory_loads_as_a_physical_lab_in_inventory_order(example: PhysicalLab) -> None:
    lab = example
    assert isinstance(lab, PhysicalLab) and lab.provider == "physical"
    assert lab.name == "example-physical" and lab.inventory_path == EXAMPLE.resolve()
    assert lab.lab_dir == PROJECT_ROOT / "runs" / "labs" / "example-physical"  # rendered by Ansible
    assert [n.name for n in lab.nodes] == ["rack1-app1", "rack1-app2", "rack1-client1", "rack1-monitor1"]
    assert [n.roles for n in lab.nodes] == [("app",), ("app",), ("client",), ("monitor",)]
    assert lab.nodes[0].mgmt_ip == "192.0.2.11" and lab.nodes[0].data_ip == "198.51.100.11"
    assert lab.reimage == {"rack1-app1": "ipmi", "rack1-app2": "redfish", "rack1-client1": "pxe",
                           "rack1-monitor1": "libvirt"}
    assert _locate("example-physical") == EXAMPLE  # by name: inventories/<name>/hosts.yml, no lab.yml


@needs_ansible
def test_a_node_without_the_lab_variables_is_refused_naming_file_host_and_variable(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  children:\n    lab_nodes:\n      hosts:\n        box1:\n          ansible_host: 192.0.2.9\n")
    with pytest.raises(InputError) as err:
        load_lab(str(inv))
    text = err.value.render()
    assert str(inv) in text and "box1" in text and "grayctl_lab_dir" in text


def test_plan_on_a_physical_lab_reimages_through_reimage_yml(example: PhysicalLab) -> None:
    from grayctl.overrides import load_experiment_with, parse_overrides
    from grayctl.plan import build_plan

    exp = load_experiment_with(PROJECT_ROOT / "experiments" / "seed.yaml", parse_overrides(
        ["topology=gen1-monolith", "chaos_injection.target_service=monolith"]))
    plan = build_plan(exp, example)
    first = plan.steps[0]
    assert (first.name, first.playbook, first.hosts, first.extravars) == ("reimage", "reimage.yml", "lab_nodes", {})
    assert (PROJECT_ROOT / "playbooks" / "reimage.yml").is_file()
    assert plan.binding == {"app1": "rack1-app1"}


def test_lab_up_and_down_refuse_an_inventory(example: PhysicalLab) -> None:
    from grayctl.lab.lifecycle import run_lab_down, run_lab_up

    for fn in (run_lab_up, run_lab_down):
        with pytest.raises(LabError, match="does not create or remove"):
            fn(example)
