"""The lab definition: defaults, roles, addresses, validation, and agreement with the netns module."""

from __future__ import annotations

import importlib
import ipaddress
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from grayctl.errors import InputError
from grayctl.lab.definition import LabDefinition, load_lab
from grayctl.paths import COLLECTIONS_DIR


def lab_module(name: str) -> ModuleType:
    """A module of grayctl.lab, imported as Ansible names it (its module_utils import the same way)."""
    if str(COLLECTIONS_DIR) not in sys.path:
        sys.path.append(str(COLLECTIONS_DIR))
    return importlib.import_module(f"ansible_collections.grayctl.lab.plugins.modules.{name}")


@pytest.fixture(scope="module")
def netns_module() -> ModuleType:
    return lab_module("grayctl_netns_lab")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as err:
        load_lab(str(write(tmp_path, text)))
    return err.value.render()


def test_the_local_lab_has_gen3_nodes_plus_client_and_monitor(monkeypatch) -> None:
    monkeypatch.delenv("GRAYCTL_LAB_HOME", raising=False)
    lab = load_lab("local")
    nodes = lab.nodes
    assert lab.name == "local" and len(nodes) == 14
    assert [n.name for n in nodes][:2] == ["node01", "node02"] and nodes[-1].name == "node14"
    assert nodes[-1].roles == ("client",) and nodes[-2].roles == ("monitor",)
    assert all(n.roles == ("app",) for n in nodes[:-2])
    assert (nodes[0].mgmt_ip, nodes[0].data_ip) == ("10.213.0.2", "10.213.64.2")
    assert lab.host_mgmt_ip == "10.213.0.1"
    assert lab.lab_dir == Path("/var/lib/grayctl/labs/local")
    assert lab.inventory_path == lab.lab_dir / "inventory.yml" and lab.state_path == lab.lab_dir / "state.json"
    assert (lab.cpu_quota_us, lab.memory_bytes) == (50_000, 512 * 1024**2)


def test_grayctl_lab_home_moves_the_default_lab_dir(monkeypatch) -> None:
    monkeypatch.setenv("GRAYCTL_LAB_HOME", "/tmp/labs")
    assert load_lab("local").lab_dir == Path("/tmp/labs/local")


@pytest.mark.parametrize("count, roles", [
    (1, [("app", "client", "monitor")]),
    (2, [("app", "monitor"), ("client",)]),
    (3, [("app",), ("monitor",), ("client",)]),
])
def test_roles_share_nodes_below_three(count: int, roles) -> None:
    assert [n.roles for n in LabDefinition(name="x").with_count(count).nodes] == roles


def test_explicit_roles_and_unlisted_nodes_are_app(tmp_path: Path) -> None:
    lab = load_lab(str(write(tmp_path, "name: x\nnodes: {count: 3}\nroles: {node01: [client, monitor]}\n")))
    assert [n.roles for n in lab.nodes] == [("client", "monitor"), ("app",), ("app",)]


def test_with_count_refuses_more_nodes_than_the_networks_hold() -> None:
    lab = LabDefinition(name="x", management=ipaddress.IPv4Network("10.9.0.0/28"),
                        data=ipaddress.IPv4Network("10.9.1.0/28"))
    assert len(lab.with_count(13).nodes) == 13
    with pytest.raises(InputError, match="do not fit"):
        lab.with_count(14)


@pytest.mark.parametrize("text, expected", [
    ("name: Bad_Name\n", "lab name"),
    ("name: x\nnodez: {count: 3}\n", "did you mean: nodes"),
    ("name: x\nnodes: {count: 0}\n", "out of range"),
    ("name: x\nnodes: {count: 300}\n", "out of range"),
    ("name: x\nnetworks: {management: 10.1.0.0/24, data: 10.1.0.128/25}\n", "overlaps"),
    ("name: x\nnodes: {count: 20}\nnetworks: {management: 10.1.0.0/28, data: 10.2.0.0/24}\n", "room for 13"),
    ("name: x\nnetworks: {management: 10.1.0.1/24}\n", "host bits"),
    ("name: x\nnetworks: {management: 8.8.8.0/24}\n", "not a private range"),
    ("name: x\nlimits: {cpu: half}\n", "CPU share"),
    ("name: x\nlimits: {memory: 1MiB}\n", "too little"),
    ("name: x\nlimits: {memory: 512}\n", "limits.memory"),
    ("name: x\nroles: {node99: [app]}\n", "no node 'node99'"),
    ("name: x\nroles: {node01: [all]}\n", "group name"),
    ("name: x\nhome: relative/dir\n", "absolute path"),
    ("name: x\nprovider: qemu\n", "provider"),
    ("name: x\nproviders: {qemu: [node99]}\n", "no node 'node99'"),
    ("name: x\nproviders: {kvm: [node01]}\n", "providers.kvm"),
    ("name: x\nproviders: {qemu: [node01]}\nqemu: {accel: xen}\n", "qemu.accel"),
    ("name: x\nproviders: {qemu: [node01]}\nqemu: {memory: 64MiB}\n", "too little for a VM node"),
    ("name: x\nproviders: {qemu: [node01]}\nqemu: {image: ../x}\n", "qemu.image"),
])
def test_bad_definitions_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    rendered = problems(tmp_path, text)
    assert expected in rendered
    assert "lab.yml:" in rendered  # the file, with a line number


@pytest.mark.parametrize("doc, count", [
    ({}, 0),
    ({"name": "a", "nodes": {"count": 3}}, 0),
    ({"name": "b", "nodes": {"count": 5, "prefix": "n"}, "networks": {"management": "10.50.0.0/24",
                                                                    "data": "192.168.7.0/24"}}, 0),
    ({"name": "c", "roles": {"node02": ["client"], "node01": "monitor"},
      "limits": {"cpu": "150%", "memory": "1GiB"}, "home": "/srv/labs/c"}, 4),
    ({"name": "d", "nodes": {"count": 250}, "networks": {"management": "10.60.0.0/16", "data": "10.61.0.0/16"}}, 0),
])
def test_the_netns_module_resolves_a_definition_like_labdef(tmp_path: Path, netns_module, doc, count,
                                                          monkeypatch) -> None:
    monkeypatch.setenv("GRAYCTL_LAB_HOME", "/tmp/lh")
    doc = {"name": "local", **doc}
    lab = load_lab(str(write(tmp_path, yaml.safe_dump(doc))))
    if count:
        lab = lab.with_count(count)
    plan = netns_module.resolve(lab.to_dict(), 0, "", env={"GRAYCTL_LAB_HOME": "/tmp/lh"})
    assert plan["lab_dir"] == str(lab.lab_dir)
    assert plan["lab_id"] == lab.lab_id
    assert (plan["cpu_quota_us"], plan["memory_bytes"]) == (lab.cpu_quota_us, lab.memory_bytes)
    assert plan["host_mgmt_ip"] == lab.host_mgmt_ip
    assert [(n["name"], tuple(n["roles"]), n["mgmt_ip"], n["data_ip"], n["netns"]) for n in plan["nodes"]] == [
        (n.name, n.roles, n.mgmt_ip, n.data_ip, lab.netns_of(n.name)) for n in lab.nodes]
    # and from the raw file too (what plain ansible-playbook passes)
    raw = netns_module.resolve(doc, count, "", env={"GRAYCTL_LAB_HOME": "/tmp/lh"})
    assert raw["nodes"] == plan["nodes"]


def test_the_netns_module_rejects_a_bad_cpu_share_readably(netns_module) -> None:
    with pytest.raises(ValueError, match=r"such as 50% or 200% \(1% or more\), got 'half'"):
        netns_module.resolve({"name": "x", "limits": {"cpu": "half"}})


def test_link_names_fit_ifnamsiz(netns_module) -> None:
    plan = netns_module.resolve({"name": "a-long-lab-name1", "nodes": {"count": 250, "prefix": "verylongprefix12"},
                                 "networks": {"management": "10.60.0.0/16", "data": "10.61.0.0/16"}}, 0, "/x")
    names = [plan["mgmt_bridge"], plan["data_bridge"]]
    names += [n[k] for n in plan["nodes"] for k in ("mgmt_veth", "data_veth")]
    assert max(len(n) for n in names) <= 15


@pytest.mark.parametrize("command", ["up", "status", "reset", "down", "doctor", "bootstrap"])
def test_lab_commands_say_plainly_that_they_need_root(monkeypatch, command: str) -> None:
    from click.testing import CliRunner

    from grayctl.cli import cli

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["lab", command], obj={})
    assert result.exit_code == 3
    assert f"'lab {command}' needs root" in result.output


def test_an_unknown_lab_name_is_bad_input() -> None:
    from click.testing import CliRunner

    from grayctl.cli import cli

    result = CliRunner().invoke(cli, ["lab", "up", "--lab", "nosuchlab"], obj={})
    assert result.exit_code == 2 and "no lab named 'nosuchlab'" in result.output


def test_vm_nodes_resolve_alike_in_labdef_and_both_modules(tmp_path: Path, netns_module) -> None:
    qemu_module = lab_module("grayctl_qemu_lab")
    doc = {"name": "vx", "nodes": {"count": 4}, "providers": {"qemu": ["node02", "node04"]},
           "qemu": {"memory": "768MiB"}, "networks": {"management": "10.240.0.0/24", "data": "10.240.64.0/24"}}
    lab = load_lab(str(write(tmp_path, yaml.safe_dump(doc))))
    assert lab.vm_nodes == ("node02", "node04") and lab.qemu == {"image": "debian12", "memory": "768MiB",
                                                                 "cpus": 1, "accel": "auto"}
    assert [n.provider for n in lab.nodes] == ["netns", "qemu", "netns", "qemu"]
    env = {"GRAYCTL_LAB_HOME": "/tmp/lh"}
    ns = netns_module.resolve(lab.to_dict(), 0, "", env=env)
    vm = qemu_module.resolve(lab.to_dict(), 0, "", env=env)
    assert [n["name"] for n in ns["nodes"]] == ["node01", "node03"]  # the netns module makes only these
    assert [(n["name"], n["mgmt_ip"], n["data_ip"], tuple(n["roles"])) for n in ns["vm_nodes"]] == [
        (n.name, n.mgmt_ip, n.data_ip, n.roles) for n in lab.nodes if n.provider == "qemu"]
    assert [(v["name"], v["mgmt_ip"], v["data_ip"]) for v in vm["vms"]] == [
        (n.name, n.mgmt_ip, n.data_ip) for n in lab.nodes if n.provider == "qemu"]
    assert (vm["lab_id"], vm["lab_dir"], vm["mgmt_bridge"]) == (lab.lab_id, ns["lab_dir"], ns["mgmt_bridge"])
    assert vm["qemu"]["memory_mib"] == 768
    taps = [v[k] for v in vm["vms"] for k in ("mgmt_tap", "data_tap")]
    veths = [n[k] for n in ns["nodes"] for k in ("mgmt_veth", "data_veth")]
    assert max(len(t) for t in taps) <= 15 and not set(taps) & set(veths)
