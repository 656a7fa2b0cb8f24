"""Reimage backends (playbooks/reimage.yml, roles/reimage*) against stand-ins that really reimage a
netns node.

One 1-node netns lab (10.248.x, name ``p<pid>``) plays the physical server. For each backend the
test writes an inventory that names the backend and its BMC/hypervisor, as a physical lab's
inventory would, and runs the real playbooks over real SSH:

  redfish  a fake BMC on loopback, HTTPS + basic auth (tests/standins/redfish_bmc.py)
  ipmi     the real protocol: OpenIPMI's ipmi_sim + ipmitool -I lanplus; its chassis control
           program powers the node (tests/standins/ipmi_bmc.py)
  pxe      the same, named pxe with grayctl_bmc_protocol ipmi
  proxmox  a fake Proxmox VE API on loopback, HTTPS, token and ticket auth (tests/standins/proxmox_api.py)
  libvirt  a real libvirtd (session mode, user nobody, private root) with a TCG guest and a real
           snapshot; the guest's lifecycle events power the node (tests/standins/libvirt_hypervisor.py)
  none     no stand-in: the node is converged in place

"Reimaged" is shown the same way each time: a file written into the node's state directory is
gone afterwards and playbooks/baseline.yml verifies the node against the golden record of
``lab up``. Failures (wrong credentials, BMC down, missing snapshot) must name the host, the
backend and the step. Drift: ``lab reset`` refuses with a per node, per check diff (exit 5) and
``--accept-drift`` returns the deviation; the slow tier runs ``grayctl run --lab <inventory>``
and finds it in manifest.json. docs/reimage.md describes each stand-in.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grayctl.paths import PROJECT_ROOT

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

STANDINS = PROJECT_ROOT / "tests" / "standins"
sys.path.insert(0, str(STANDINS))
MGMT, DATA = "10.248.0.0/24", "10.248.64.0/24"
NODE, NODE_IP = "node01", "10.248.0.2"
USER, PASSWORD = "grayctl", "s3cret-bmc"


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PhysLab:
    """The netns lab that stands in for a physical one, and the inventories that describe it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.name = f"p{os.getpid() % 100000}"
        self.file = tmp / f"{self.name}.yml"
        self.file.write_text(yaml.safe_dump({"name": self.name, "nodes": {"count": 1},
                                             "networks": {"management": MGMT, "data": DATA},
                                             "limits": {"cpu": "50%", "memory": "256MiB"}}))
        self.home = tmp / "labs" / self.name
        self.env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp / "labs")}
        self.procs: list[subprocess.Popen] = []

    def grayctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "grayctl", *args], env=self.env, check=False, capture_output=True,
                              text=True, cwd=PROJECT_ROOT, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"grayctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def inventory(self, name: str, **hostvars: object) -> Path:
        """The lab's own inventory with the node's reimage backend and its variables added."""
        inv = yaml.safe_load((self.home / "inventory.yml").read_text())
        inv["all"]["children"]["lab_nodes"]["hosts"][NODE].update(hostvars)
        path = self.tmp / f"inventory-{name}.yml"
        path.write_text(yaml.safe_dump(inv))
        return path

    def playbook(self, inventory: Path, name: str, env: dict[str, str] | None = None,
                 *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), f"playbooks/{name}", *extra]
        return subprocess.run(argv, env={**self.env, **(env or {})}, check=False, capture_output=True, text=True,
                              cwd=PROJECT_ROOT, timeout=600)

    def ssh(self, command: str) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-i", str(self.home / "ssh" / "id_ed25519"), "-o", f"UserKnownHostsFile={self.home / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                "-o", "ConnectTimeout=5", f"root@{NODE_IP}", command]
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)

    @property
    def state_dir(self) -> str:
        inv = yaml.safe_load((self.home / "inventory.yml").read_text())
        return inv["all"]["children"]["lab_nodes"]["hosts"][NODE]["grayctl_state_dir"]

    def dirty(self) -> str:
        """Write a marker file on the node (its state directory: the netns node's own disk)."""
        marker = f"{self.state_dir}/written-before-reimage"
        assert self.ssh(f"echo before > {marker} && test -s {marker}").returncode == 0
        return marker

    def start(self, argv: list[str], ready_port: int, udp: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        self.procs.append(proc)
        deadline = time.time() + 15
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited: {proc.stdout.read().decode() if proc.stdout else ''}")
            if udp or _listening(ready_port):
                return proc
            time.sleep(0.1)
        raise AssertionError(f"{argv} did not listen on {ready_port}")

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def phys(tmp_path_factory: pytest.TempPathFactory):
    lab = PhysLab(tmp_path_factory.mktemp("reimage"))
    try:
        lab.grayctl("lab", "up", "--lab", str(lab.file))
        yield lab
    finally:
        for p in lab.procs:
            lab.stop(p)
        if (lab.home / "state.json").exists():
            lab.grayctl("lab", "down", "--lab", str(lab.file), check=False)


def _assert_reimaged(phys: PhysLab, inventory: Path, marker: str, env: dict[str, str] | None = None) -> None:
    t0 = time.monotonic()
    res = phys.playbook(inventory, "reimage.yml", env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    took = time.monotonic() - t0
    gone = phys.ssh(f"test ! -e {marker}")
    assert gone.returncode == 0, f"{marker} survived the reimage ({took:.1f}s)"
    verify = phys.playbook(inventory, "baseline.yml")
    assert verify.returncode == 0, verify.stdout[-4000:]


def _assert_failed_at(res: subprocess.CompletedProcess[str], backend: str, step: str, *why: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert f"reimage of {NODE} ({backend}) failed at step '{step}'" in out, out[-3000:]
    for w in why:
        assert w in out, out[-3000:]


# -- Redfish ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redfish(phys: PhysLab):
    from httpfake import make_cert

    cert, key = make_cert(phys.tmp / "tls")
    port = _free_port()
    log = phys.tmp / "redfish.jsonl"
    proc = phys.start([sys.executable, str(STANDINS / "redfish_bmc.py"), "--port", str(port), "--cert", str(cert),
                       "--key", str(key), "--username", USER, "--password", PASSWORD, "--lab-file", str(phys.file),
                       "--lab-home", str(phys.home), "--node", NODE, "--log", str(log)], port)
    yield {"port": port, "log": log, "proc": proc}
    phys.stop(proc)


def _redfish_inventory(phys: PhysLab, port: int, **extra: object) -> Path:
    return phys.inventory("redfish", grayctl_reimage="redfish", grayctl_bmc_address=f"127.0.0.1:{port}",
                          reimage_redfish_validate_certs=False, **extra)


def test_redfish_reimages_the_node_through_the_bmc(phys: PhysLab, redfish: dict) -> None:
    marker = phys.dirty()
    inv = _redfish_inventory(phys, redfish["port"])
    _assert_reimaged(phys, inv, marker, {"GRAYCTL_BMC_USERNAME": USER, "GRAYCTL_BMC_PASSWORD": PASSWORD})
    asked = [(e["method"], e["path"], e.get("body")) for e in _events(redfish["log"]) if "method" in e]
    writes = [a for a in asked if a[0] in ("PATCH", "POST")]
    assert writes == [
        ("PATCH", "/redfish/v1/Systems/1", {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}),
        ("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", {"ResetType": "ForceRestart"}),
    ], asked
    booted = [e for e in _events(redfish["log"]) if e.get("event") == "boot"]
    assert booted and booted[-1]["network"] is True and booted[-1]["rc"] == 0


def test_redfish_wrong_credentials_fail_naming_host_and_step(phys: PhysLab, redfish: dict) -> None:
    inv = _redfish_inventory(phys, redfish["port"])
    res = phys.playbook(inv, "reimage.yml", {"GRAYCTL_BMC_USERNAME": USER, "GRAYCTL_BMC_PASSWORD": "wrong"})
    _assert_failed_at(res, "redfish", "List the BMC's systems", "401")
    assert phys.ssh("true").returncode == 0, "a refused BMC request must not touch the node"


def test_redfish_bmc_down_fails_naming_host_and_step(phys: PhysLab) -> None:
    inv = _redfish_inventory(phys, _free_port())
    res = phys.playbook(inv, "reimage.yml", {"GRAYCTL_BMC_USERNAME": USER, "GRAYCTL_BMC_PASSWORD": PASSWORD})
    _assert_failed_at(res, "redfish", "Read the Redfish service root", "Connection refused")


def test_missing_credentials_are_refused_before_any_request(phys: PhysLab) -> None:
    inv = _redfish_inventory(phys, _free_port())
    env = {k: v for k, v in phys.env.items() if not k.startswith("GRAYCTL_BMC_")}
    res = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inv),
                          "playbooks/reimage.yml"], env=env, check=False, capture_output=True, text=True, cwd=PROJECT_ROOT,
                         timeout=300)
    _assert_failed_at(res, "redfish", "Assert the BMC address and credentials are set", "GRAYCTL_BMC_USERNAME")


# -- IPMI (real protocol: ipmi_sim + ipmitool) -------------------------------------------------

@pytest.fixture(scope="module")
def ipmi(phys: PhysLab):
    if not (shutil.which("ipmi_sim") and shutil.which("ipmitool")):
        pytest.skip("ipmi_sim (openipmi) and ipmitool are needed: grayctl lab bootstrap installs them")
    from ipmi_bmc import write_config

    port = _free_port(socket.SOCK_DGRAM)
    d = phys.tmp / "ipmi"
    conf = write_config(d, port=port, username=USER, password=PASSWORD, lab_file=str(phys.file),
                        lab_home=str(phys.home), node=NODE)
    proc = phys.start(["ipmi_sim", "-c", str(conf), "-f", str(d / "sim.emu"), "-s", str(d / "state"), "-n"],
                      port, udp=True)
    time.sleep(0.5)
    yield {"port": port, "log": d / "chassis.jsonl", "proc": proc}
    phys.stop(proc)


def _ipmitool(port: int, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(port), "-U", USER,
                           "-P", password, *args], check=False, capture_output=True, text=True, timeout=60)


def test_pxe_over_ipmi_reimages_the_node_through_ipmi_sim(phys: PhysLab, ipmi: dict) -> None:
    """pxe with grayctl_bmc_protocol ipmi runs reimage_ipmi (the wrong-password test below names
    the ipmi backend directly)."""
    backend = "pxe"
    marker = phys.dirty()
    inv = phys.inventory(backend, grayctl_reimage=backend, grayctl_bmc_protocol="ipmi",
                         grayctl_bmc_address="127.0.0.1", grayctl_bmc_port=ipmi["port"])
    start = len(_events(ipmi["log"]))
    _assert_reimaged(phys, inv, marker, {"GRAYCTL_BMC_USERNAME": USER, "GRAYCTL_BMC_PASSWORD": PASSWORD})
    events = _events(ipmi["log"])[start:]
    sets = [e["args"] for e in events if e.get("verb") == "set"]
    assert sets[0] == ["boot", "pxe"] and ["power", "0"] in sets and ["power", "1"] in sets, sets
    assert sets.index(["power", "0"]) < sets.index(["power", "1"]), sets
    booted = [e for e in events if e.get("event") == "boot"]
    assert booted and booted[-1]["network"] is True and booted[-1]["rc"] == 0, events
    # the next-boot device applied once: the BMC says so to any IPMI client
    assert "Force PXE" not in _ipmitool(ipmi["port"], "chassis", "bootparam", "get", "5").stdout


def test_ipmi_power_cycle_without_network_boot_keeps_the_disk(phys: PhysLab, ipmi: dict) -> None:
    """The stand-in is faithful: a power cycle alone (no bootdev pxe) boots the old disk, so the
    role's boot override is what reimages."""
    marker = phys.dirty()
    assert _ipmitool(ipmi["port"], "power", "cycle").returncode == 0
    deadline = time.time() + 60
    while time.time() < deadline and phys.ssh("true").returncode != 0:
        time.sleep(1)
    time.sleep(1)
    assert phys.ssh(f"test -e {marker}").returncode == 0
    assert phys.ssh(f"rm -f {marker}").returncode == 0


def test_ipmi_wrong_password_fails_naming_host_and_step(phys: PhysLab, ipmi: dict) -> None:
    inv = phys.inventory("ipmi-bad", grayctl_reimage="ipmi", grayctl_bmc_address="127.0.0.1",
                         grayctl_bmc_port=ipmi["port"])
    res = phys.playbook(inv, "reimage.yml", {"GRAYCTL_BMC_USERNAME": USER, "GRAYCTL_BMC_PASSWORD": "wrong"})
    _assert_failed_at(res, "ipmi", "Read the node's power state through the BMC", "RMCP+")


# -- Proxmox ------------------------------------------------------------------------------------

TOKEN_ID, TOKEN_SECRET = "grayctl@pve!reimage", "0b7e-token-secret"


@pytest.fixture(scope="module")
def proxmox(phys: PhysLab):
    from httpfake import make_cert

    cert, key = make_cert(phys.tmp / "tls")
    port = _free_port()
    log = phys.tmp / "proxmox.jsonl"
    proc = phys.start([sys.executable, str(STANDINS / "proxmox_api.py"), "--port", str(port), "--cert", str(cert),
                       "--key", str(key), "--vmid", "104", "--snapshot", "golden", "--token-id", TOKEN_ID,
                       "--token-secret", TOKEN_SECRET, "--username", "grayctl@pve", "--password", PASSWORD,
                       "--lab-file", str(phys.file), "--lab-home", str(phys.home), "--node", NODE,
                       "--log", str(log)], port)
    yield {"port": port, "log": log}
    phys.stop(proc)


def _proxmox_inventory(phys: PhysLab, port: int, snapshot: str = "golden") -> Path:
    return phys.inventory("proxmox", grayctl_reimage="proxmox", grayctl_proxmox_api=f"https://127.0.0.1:{port}",
                          grayctl_proxmox_node="pve1", grayctl_proxmox_vmid=104, grayctl_proxmox_snapshot=snapshot,
                          reimage_proxmox_validate_certs=False, reimage_proxmox_poll_interval=1)


def test_proxmox_reimages_the_node_by_snapshot_rollback(phys: PhysLab, proxmox: dict) -> None:
    """Ticket auth (cookie + CSRF token on writes); the token is accepted in the missing-snapshot
    test below (the API answers 500 for the snapshot, not 401)."""
    marker = phys.dirty()
    env = {"GRAYCTL_PROXMOX_USERNAME": "grayctl@pve", "GRAYCTL_PROXMOX_PASSWORD": PASSWORD}
    start = len(_events(proxmox["log"]))
    _assert_reimaged(phys, _proxmox_inventory(phys, proxmox["port"]), marker, env)
    asked = [(e["method"], e["path"].split("/tasks/")[0]) for e in _events(proxmox["log"])[start:] if "method" in e]
    writes = [a for a in asked if a[0] == "POST"]
    assert writes[-2:] == [("POST", "/api2/json/nodes/pve1/qemu/104/snapshot/golden/rollback"),
                           ("POST", "/api2/json/nodes/pve1/qemu/104/status/start")], asked
    assert ("GET", "/api2/json/nodes/pve1") in asked, "the role must poll the tasks"


def test_proxmox_missing_snapshot_fails_naming_host_and_step(phys: PhysLab, proxmox: dict) -> None:
    res = phys.playbook(_proxmox_inventory(phys, proxmox["port"], snapshot="nope"), "reimage.yml",
                        {"GRAYCTL_PROXMOX_TOKEN_ID": TOKEN_ID, "GRAYCTL_PROXMOX_TOKEN_SECRET": TOKEN_SECRET})
    _assert_failed_at(res, "proxmox", "Roll the guest back to its golden snapshot", "500", "snapshot 'nope' does not exist")
    assert "401" not in res.stdout, "the token must be accepted"
    assert phys.ssh("true").returncode == 0


def test_proxmox_wrong_token_fails_naming_host_and_step(phys: PhysLab, proxmox: dict) -> None:
    res = phys.playbook(_proxmox_inventory(phys, proxmox["port"]), "reimage.yml",
                        {"GRAYCTL_PROXMOX_TOKEN_ID": TOKEN_ID, "GRAYCTL_PROXMOX_TOKEN_SECRET": "wrong"})
    _assert_failed_at(res, "proxmox", "Roll the guest back to its golden snapshot", "401")


# -- none: converge in place ----------------------------------------------------------------------

def test_none_converges_the_node_in_place(phys: PhysLab) -> None:
    marker = phys.dirty()
    # a recorded grayctl process (pid and pid.cmd, as grayctl_process leaves them) and a qdisc on the data NIC
    proc_dir = f"{phys.state_dir}/workload"
    script = (f"import os, subprocess; os.makedirs({proc_dir!r}, exist_ok=True); "
              f"p = subprocess.Popen(['sleep', '600'], cwd={proc_dir!r}, start_new_session=True, "
              f"stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
              f"open({proc_dir!r} + '/pid.cmd', 'w').write('sleep' + chr(0) + '600'); "
              f"open({proc_dir!r} + '/pid', 'w').write('%d\\n' % p.pid); print(p.pid)")
    out = phys.ssh(f"python3 -c {shlex.quote(script)} && tc qdisc add dev data root handle 1: tbf rate 10mbit burst 32kbit latency 400ms")
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[-1])
    inv = phys.inventory("none", grayctl_reimage="none")
    _assert_reimaged(phys, inv, marker)
    assert not Path(f"/proc/{pid}").exists(), "the recorded process must be stopped"


# -- drift: refused with a readable diff, or accepted and recorded -----------------------------------

# The golden record says 33; the node, reset, has the kernel's 60 (DRIFTED_VALUE: what is seen).
SYSCTL, GOLDEN_VALUE, DRIFTED_VALUE = "net.ipv4.tcp_fin_timeout", "33", "60"


@pytest.fixture
def drifted(phys: PhysLab):
    """A node that cannot meet its golden record whatever the reset does — as a BIOS setting the golden
    image had and this machine lacks survives every reimage: the golden record says 33 for a
    per-namespace sysctl the netns reset puts back to the node's own 60 (it restores the namespace's
    sysctls, so changing the node's value would not survive the reset)."""
    golden = phys.home / "baseline" / "golden" / f"{NODE}.json"
    saved = golden.read_text()
    doc = json.loads(saved)
    assert doc["fingerprint"]["sysctls"][SYSCTL] == DRIFTED_VALUE, doc["fingerprint"]["sysctls"]
    doc["fingerprint"]["sysctls"][SYSCTL] = GOLDEN_VALUE
    golden.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    yield
    golden.write_text(saved)


def test_lab_reset_refuses_drift_with_a_per_node_per_check_diff(phys: PhysLab, drifted: None) -> None:
    res = phys.grayctl("lab", "reset", "--lab", str(phys.file), check=False)
    assert res.returncode == 5, res.stdout + res.stderr
    err = res.stderr
    assert "1 of 1 node(s) differ from their golden baseline after reset" in err, err
    assert f"  {NODE}:\n    sysctls.{SYSCTL}: {GOLDEN_VALUE} -> {DRIFTED_VALUE}" in err, err
    assert "--accept-drift" in err and "Traceback" not in err

    ok = phys.grayctl("lab", "reset", "--lab", str(phys.file), "--accept-drift", "--json")
    record = json.loads(ok.stdout)
    assert record["baseline"] == "drift accepted"
    assert record["drift"] == {NODE: [{"check": f"sysctls.{SYSCTL}", "golden": GOLDEN_VALUE, "seen": DRIFTED_VALUE,
                                       "why": "changed since golden"}]}


@pytest.mark.slow
def test_run_on_a_physical_inventory_reimages_and_records_accepted_drift(phys: PhysLab, drifted: None) -> None:
    """grayctl run --lab <inventory>: the reimage step is playbooks/reimage.yml (here backend
    none); the drifted node is refused, then run with --accept-drift and the deviation lands in
    manifest.json under baseline. (Two runs: the slow tier.)"""
    # grayctl_provider stays netns: the roles then supervise processes without systemd, which
    # this machine lacks; grayctl treats the lab as physical because it is given as an inventory.
    inv = phys.inventory("physical-run", grayctl_reimage="none")
    marker = phys.dirty()
    out = phys.tmp / "runs"
    run = ["run", "experiments/seed.yaml", "--lab", str(inv), "--out", str(out), "--quiet",
           "--set", "topology=gen1-monolith", "--set", "chaos_injection.target_service=monolith",
           "--set", "workload.rate=5/s", "--set", "schedule.warmup=1s", "--set", "schedule.baseline=2s",
           "--set", "schedule.fault=2s", "--set", "schedule.recovery=1s"]
    refused = phys.grayctl(*run, check=False)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert f"sysctls.{SYSCTL}: {GOLDEN_VALUE} -> {DRIFTED_VALUE}" in refused.stdout + refused.stderr
    assert phys.ssh(f"test ! -e {marker}").returncode == 0, "the reimage step ran before the verify refused"

    accepted = phys.grayctl(*run, "--accept-drift", check=False)
    assert accepted.returncode == 0, accepted.stdout[-3000:] + accepted.stderr[-3000:]
    manifests = sorted(out.glob("*/manifest.json"))
    manifest = json.loads(manifests[-1].read_text())
    base = manifest["baseline"]
    assert base["drift_policy"] == "accept"
    assert base["drift_accepted"] == {NODE: [{"check": f"sysctls.{SYSCTL}", "golden": GOLDEN_VALUE,
                                              "seen": DRIFTED_VALUE, "why": "changed since golden"}]}
    assert base["nodes"][NODE]["verified"] is False
    assert phys.grayctl("dataset", "verify", str(manifests[-1].parent)).returncode == 0
    plan = json.loads((out / (manifests[-1].parent.name + ".run") / "raw" / "plan.json").read_text())
    assert plan["steps"][0]["playbook"] == "reimage.yml" and plan["lab"]["provider"] == "physical"


# -- libvirt (real libvirtd, session mode as nobody; its domain's events power the node) -------------

@pytest.fixture(scope="module")
def libvirt(phys: PhysLab):
    if not (shutil.which("libvirtd") and shutil.which("virsh") and shutil.which("qemu-system-x86_64")):
        pytest.skip("libvirtd, virsh and qemu are needed: grayctl lab bootstrap installs them")
    from libvirt_hypervisor import Hypervisor

    hv = Hypervisor(Path("/tmp") / f"grayctl-libvirt-{phys.name}")
    try:
        hv.start()
        hv.make_domain(f"grayctl-{phys.name}-{NODE}")
        log = phys.tmp / "libvirt.jsonl"
        bridge = subprocess.Popen([sys.executable, str(STANDINS / "libvirt_hypervisor.py"), "bridge", "--uri", hv.uri,
                                   "--domain", f"grayctl-{phys.name}-{NODE}", "--lab-file", str(phys.file),
                                   "--lab-home", str(phys.home), "--node", NODE, "--log", str(log)],
                                  cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, start_new_session=True, env=phys.env)
        phys.procs.append(bridge)
        deadline = time.time() + 15
        while time.time() < deadline and not _events(log):
            time.sleep(0.1)
        time.sleep(1.0)  # virsh event subscribes after it printed nothing yet: give it a moment
        yield {"hv": hv, "log": log, "domain": f"grayctl-{phys.name}-{NODE}"}
        phys.stop(bridge)
    finally:
        hv.stop()


def test_libvirt_reimages_the_node_by_snapshot_revert(phys: PhysLab, libvirt: dict) -> None:
    marker = phys.dirty()
    inv = phys.inventory("libvirt", grayctl_reimage="libvirt", grayctl_libvirt_uri=libvirt["hv"].uri,
                         grayctl_libvirt_domain=libvirt["domain"], grayctl_libvirt_snapshot="golden")
    _assert_reimaged(phys, inv, marker)
    seen = [e.get("lifecycle") for e in _events(libvirt["log"]) if e.get("lifecycle") not in (None, "bridge up")]
    assert "Stopped Snapshot" in seen and "Started Snapshot" in seen, seen
    assert libvirt["hv"].virsh("domstate", libvirt["domain"]).stdout.strip() == "running"


def test_libvirt_missing_snapshot_fails_naming_host_and_step(phys: PhysLab, libvirt: dict) -> None:
    inv = phys.inventory("libvirt-bad", grayctl_reimage="libvirt", grayctl_libvirt_uri=libvirt["hv"].uri,
                         grayctl_libvirt_domain=libvirt["domain"], grayctl_libvirt_snapshot="nope")
    res = phys.playbook(inv, "reimage.yml")
    _assert_failed_at(res, "libvirt", "Check that the golden snapshot exists", "nope")
