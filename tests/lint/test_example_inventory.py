"""The example physical inventory parses and gives every node what the roles need."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "example-physical" / "hosts.yml"

# What the roles read from every lab node (connection, lab, networks, state, reimage).
REQUIRED = {
    "ansible_host",
    "ansible_user",
    "ansible_python_interpreter",
    "grayctl_lab",
    "grayctl_lab_dir",
    "grayctl_provider",
    "grayctl_mgmt_ip",
    "grayctl_data_ip",
    "grayctl_mgmt_iface",
    "grayctl_data_iface",
    "grayctl_state_dir",
    "grayctl_reimage",
}
REIMAGE = {"pxe", "ipmi", "redfish", "libvirt", "proxmox", "none"}


@pytest.fixture(scope="module")
def inventory() -> dict:
    binary = shutil.which("ansible-inventory")
    if binary is None:
        pytest.skip("ansible-inventory is not installed")
    result = subprocess.run(
        [binary, "-i", str(INVENTORY), "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def _hosts(inventory: dict, group: str) -> set[str]:
    entry = inventory.get(group, {})
    hosts = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts |= _hosts(inventory, child)
    return hosts


def test_example_inventory_has_the_lab_groups(inventory: dict) -> None:
    for group in ("lab_nodes", "app", "client", "monitor"):
        assert _hosts(inventory, group), f"group {group} is missing or empty"


def test_every_role_group_member_is_a_lab_node(inventory: dict) -> None:
    nodes = _hosts(inventory, "lab_nodes")
    for group in ("app", "client", "monitor"):
        assert _hosts(inventory, group) <= nodes


def test_every_lab_node_has_the_variables_the_roles_need(inventory: dict) -> None:
    hostvars = inventory["_meta"]["hostvars"]
    for host in sorted(_hosts(inventory, "lab_nodes")):
        missing = REQUIRED - set(hostvars[host])
        assert not missing, f"{host} lacks {sorted(missing)}"


def test_nodes_use_separate_management_and_data_networks(inventory: dict) -> None:
    hostvars = inventory["_meta"]["hostvars"]
    for host in sorted(_hosts(inventory, "lab_nodes")):
        v = hostvars[host]
        assert v["ansible_host"] == v["grayctl_mgmt_ip"], f"{host}: SSH must use the mgmt address"
        assert v["grayctl_mgmt_ip"] != v["grayctl_data_ip"], host
        assert v["grayctl_mgmt_iface"] != v["grayctl_data_iface"], host
        assert v["grayctl_reimage"] in REIMAGE, f"{host}: grayctl_reimage={v['grayctl_reimage']!r}"
        assert v["ansible_python_interpreter"] == "/usr/bin/python3", host


# What each reimage backend reads from the inventory (docs/reimage.md); credentials are never there.
BACKEND_VARS = {
    "pxe": {"grayctl_bmc_address"},
    "ipmi": {"grayctl_bmc_address"},
    "redfish": {"grayctl_bmc_address"},
    "libvirt": {"grayctl_libvirt_uri", "grayctl_libvirt_domain", "grayctl_libvirt_snapshot"},
    "proxmox": {"grayctl_proxmox_api", "grayctl_proxmox_node", "grayctl_proxmox_vmid", "grayctl_proxmox_snapshot"},
    "none": set(),
}


def test_every_node_has_what_its_reimage_backend_needs_and_no_credentials(inventory: dict) -> None:
    hostvars = inventory["_meta"]["hostvars"]
    for host in sorted(_hosts(inventory, "lab_nodes")):
        v = hostvars[host]
        missing = BACKEND_VARS[v["grayctl_reimage"]] - set(v)
        assert not missing, f"{host} ({v['grayctl_reimage']}) lacks {sorted(missing)}"
        if v["grayctl_reimage"] == "pxe":
            assert v.get("grayctl_bmc_protocol", "ipmi") in ("ipmi", "redfish"), host
        secrets = [k for k in v if any(w in k for w in ("password", "secret", "token"))]
        assert not secrets, f"{host}: credentials belong in a vault or the environment, not the inventory: {secrets}"
