"""The netns lab with real namespaces, links, cgroups and sshds, reached over real SSH.

Each lab here has its own name (``t<pid>...``), its own address ranges (10.214.x) and its lab
home under a tmp dir (GRAYCTL_LAB_HOME), so a user's ``local`` lab is never touched. Every lab is
removed in a fixture finalizer, also when a test fails.

Other sessions may use this machine at the same time, so "nothing left behind" compares
snapshots taken before ``up`` and after ``down`` and attributes each difference by this lab's
identifiers (name, link id, lab dir, address ranges); host firewall rules are compared exactly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grayctl.lab.definition import load_lab
from grayctl.node_runtime import RUNTIME_ROOT
from grayctl.paths import PROJECT_ROOT

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

SHARED = {"suffix": "", "management": "10.214.0.0/24", "data": "10.214.64.0/24"}


def _name(suffix: str) -> str:
    return f"t{os.getpid() % 100000}{suffix}"


class Lab:
    def __init__(self, tmp: Path, suffix: str, management: str, data: str, count: int = 3) -> None:
        self.name = _name(suffix)
        self.file = tmp / f"{self.name}.yml"
        self.file.write_text(yaml.safe_dump({
            "name": self.name, "nodes": {"count": count},
            "networks": {"management": management, "data": data},
            "limits": {"cpu": "50%", "memory": "256MiB"},
        }))
        # The Ansible beside this interpreter, as grayctl itself runs it (a venv need not be active).
        self.env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp / "labs"),
                    "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
        os.environ["GRAYCTL_LAB_HOME"] = self.env["GRAYCTL_LAB_HOME"]  # for load_lab below
        self.defn = load_lab(str(self.file))
        self.dir = self.defn.lab_dir
        self.inventory = self.defn.inventory_path
        self.ranges = (management.rsplit(".", 1)[0] + ".", data.rsplit(".", 1)[0] + ".")

    # -- driving -------------------------------------------------------------
    def grayctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "grayctl", *args, "--lab", str(self.file)],
                              env=self.env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"grayctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def playbook(self, name: str, *extra: str, env: dict[str, str] | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["ansible-playbook", f"playbooks/{name}", "-e", f"netns_lab_definition={self.file}", *extra]
        proc = subprocess.run(argv, env=env or self.env, capture_output=True, text=True, cwd=PROJECT_ROOT,
                              timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"{name} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        return proc

    def ssh(self, node_ip: str, command: str) -> str:
        argv = ["ssh", "-i", str(self.dir / "ssh" / "id_ed25519"),
                "-o", f"UserKnownHostsFile={self.dir / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                f"root@{node_ip}", command]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout

    def state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def teardown(self) -> None:
        """down through the CLI; if that fails, through the role directly. Both work from the record."""
        if not (self.dir / "state.json").exists():
            return
        if self.grayctl("lab", "down", check=False).returncode != 0:
            self.playbook("lab_down.yml", "-e", f"netns_lab_home={self.dir}", check=False)

    def mine(self, text: str) -> bool:
        """Whether a snapshot line belongs to this lab."""
        return any(key in text for key in (f"gc-{self.name}-", self.defn.lab_id, str(self.dir),
                                          f"/grayctl/{self.name}", *self.ranges))


def snapshot() -> dict[str, set[str]]:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    cgroups = set()
    for root in Path("/sys/fs/cgroup").iterdir():
        base = root / "grayctl"
        if base.is_dir():
            cgroups |= {str(p) for p in base.rglob("*") if p.is_dir()} | {str(base)}
    procs = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # PID 1 here reaps orphans only every few seconds
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cg = Path(f"/proc/{pid}/cgroup").read_text().replace("\n", " ")
        except OSError:
            continue
        procs.add(f"{pid} {cmd} [{cg}]")
    return {
        "netns": set(out("ip", "netns", "list").split("\n")) - {""},
        "links": {line.split(":")[1].strip().split("@")[0] for line in out("ip", "-o", "link").splitlines()},
        "bridges": set(out("ip", "-o", "link", "show", "type", "bridge").splitlines()),
        "addresses": {re.sub(r"\s+", " ", line) for line in out("ip", "-o", "-4", "addr").splitlines()},
        "cgroups": cgroups,
        "processes": procs,
        "mounts": {" ".join(line.split()[3:5]) for line in Path("/proc/self/mountinfo").read_text().splitlines()},
        "nft": {out("nft", "list", "ruleset")},
        "iptables": {re.sub(r"(?m)^#.*$", "", out("iptables-save"))},
    }


def leftovers(lab: Lab, before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, list[str]]:
    found = {}
    for key in before:
        new = after[key] - before[key]
        if key in ("nft", "iptables"):
            bad = sorted(new)  # the host's rules: grayctl never touches them, compared exactly
        else:
            bad = sorted(x for x in new if lab.mine(x))
        if bad:
            found[key] = bad
    return found


def wait_clean(lab: Lab, before: dict[str, set[str]], seconds: float = 5.0) -> dict[str, list[str]]:
    """Leftovers after down; ssh ControlPersist masters of earlier runs may take a moment to exit."""
    deadline = time.time() + seconds
    while True:
        found = leftovers(lab, before, snapshot())
        if not found or time.time() > deadline:
            return found
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# One 3-node lab shared by the tests that only look at (or dirty and reset) a running lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab(tmp_path_factory.mktemp("netns-lab"), **SHARED)
    try:
        lab.grayctl("lab", "up")
        yield lab
    finally:
        lab.teardown()


def test_up_makes_nodes_that_ansible_reaches_over_ssh(lab: Lab) -> None:
    proc = subprocess.run(["ansible", "-i", str(lab.inventory), "lab_nodes", "-m", "ansible.builtin.ping"],
                          env=lab.env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == 3
    inventory = yaml.safe_load(lab.inventory.read_text())
    groups = inventory["all"]["children"]
    assert set(groups["lab_nodes"]["hosts"]) == {"node01", "node02", "node03"}
    assert list(groups["client"]["hosts"]) == ["node03"] and list(groups["monitor"]["hosts"]) == ["node02"]
    host = groups["lab_nodes"]["hosts"]["node01"]
    assert host["ansible_host"] == "10.214.0.2" and host["grayctl_data_ip"] == "10.214.64.2"
    assert "StrictHostKeyChecking=yes" in groups["lab_nodes"]["vars"]["ansible_ssh_common_args"]
    assert (lab.dir / "ssh" / "id_ed25519").stat().st_mode & 0o777 == 0o600


def test_node_has_its_hostname_only_its_links_and_sshd_on_mgmt_only(lab: Lab) -> None:
    assert lab.ssh("10.214.0.3", "hostname").strip() == "node02"
    links = lab.ssh("10.214.0.3", "ip -o link").splitlines()
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links) == ["data", "lo", "mgmt"]
    listening = lab.ssh("10.214.0.3", "ss -Hltn").split()
    local = [w for w in listening if w.endswith(":22")]
    assert local == ["10.214.0.3:22"], listening
    # nothing listens on the data address, and the host has no data address at all
    assert not any("10.214.64." in line for line in subprocess.run(
        ["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout.splitlines())


def test_node_cgroup_limits_hold_for_everything_started_over_ssh(lab: Lab) -> None:
    inv = yaml.safe_load(lab.inventory.read_text())["all"]["children"]["lab_nodes"]["hosts"]["node01"]
    cgroup = Path(inv["grayctl_node_cgroup"])
    assert (cgroup / "cpu.pressure").exists() and (cgroup / "cgroup.kill").exists()
    rel = "/" + str(cgroup.relative_to("/sys/fs/cgroup/unified")) if "unified" in str(cgroup) else None
    own = lab.ssh("10.214.0.2", "cat /proc/self/cgroup")
    if rel:
        assert f"0::{rel}" in own
    if Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists():
        v1 = Path("/sys/fs/cgroup/cpu/grayctl") / lab.name / "node01"
        assert (v1 / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (v1 / "cpu.cfs_period_us").read_text().strip() == "100000"
        mem = Path("/sys/fs/cgroup/memory/grayctl") / lab.name / "node01" / "memory.limit_in_bytes"
        assert mem.read_text().strip() == str(256 * 1024**2)
        assert f"cpu:/grayctl/{lab.name}/node01" in own


# The flake (a second up reporting changed=1, issue 19): not reproduced on 2026-12-08 in 3 runs of
# this test and test_up_makes under stress-ng (2 CPU + 1 I/O hogs, load average 3.4-4.7 on 2 cores),
# nor in the lab tier run before them. An earlier cause was another Ansible's interpreter
# rewriting the inventory (fixed: the lab's own node runtime is named there). Found by reading the
# module: a namespace whose sysctls could not be read on the first up was not recorded, yet
# reported as a change, and so was every later up's attempt (record_netns_defaults now reports
# only what it recorded). The module now says why it changed (``why_changed``): if it happens
# again, the assertion shows it.
def test_up_twice_changes_nothing(lab: Lab) -> None:
    proc = lab.playbook("lab_up.yml", "-v")  # -v: the module's result, with what it changed and why
    why = re.findall(r'"why_changed": \[[^\]]*\]', proc.stdout)
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0", proc.stdout), (why, proc.stdout[-1500:])


def test_nodes_run_grayctl_from_the_node_runtime_not_from_a_checkout(lab: Lab) -> None:
    """grayctl_python is the lab's node runtime (an installed copy, grayctl.node_runtime): a node
    imports grayctl and every node requirement from it, and sees nothing of the host's /root."""
    node_vars = yaml.safe_load(lab.inventory.read_text())["all"]["children"]["lab_nodes"]["vars"]
    python = node_vars["grayctl_python"]
    assert python == str(lab.dir / "runtime" / "bin" / "python")
    out = lab.ssh("10.214.0.2", f"{python} -c 'import grayctl, aiohttp, uvloop, hdrh, netfilterqueue, pyarrow;"
                                " import os; print(os.path.realpath(grayctl.__file__))' && ls -A /root")
    where, *home = out.strip().splitlines()
    assert where.startswith(str(RUNTIME_ROOT) + "/") and "/site-packages/grayctl/" in where, where
    assert not any(entry.startswith("work") or entry.startswith(".pyenv") for entry in home), home


def test_reset_restores_a_dirtied_node_and_verification_passes(lab: Lab) -> None:
    state_dir = lab.dir / "nodes" / "node01" / "state"
    lab.ssh("10.214.0.2", "tc qdisc add dev data root tbf rate 1mbit burst 32kbit latency 400ms"
                          " && nft add table inet grayctl_dirt && ip link add ifb7 type ifb"
                          f" && touch {state_dir}/leftover"
                          " && (setsid sleep 1000 </dev/null >/dev/null 2>&1 &)")
    assert "tbf" in lab.ssh("10.214.0.2", "tc qdisc show dev data")
    proc = lab.grayctl("lab", "reset")
    assert "node01:" in proc.stdout and "deleted qdiscs" in proc.stdout, proc.stdout
    assert "tbf" not in lab.ssh("10.214.0.2", "tc qdisc show dev data")
    assert lab.ssh("10.214.0.2", "nft list ruleset").strip() == ""
    assert "ifb7" not in lab.ssh("10.214.0.2", "ip -o link")
    assert list(state_dir.iterdir()) == []
    assert "sleep 1000" not in lab.ssh("10.214.0.2", "ps -eo args")
    if (PROJECT_ROOT / "playbooks" / "baseline.yml").exists():
        assert "baseline verified" in proc.stdout, proc.stdout
    # and a second reset finds nothing to do on node01 (SSH sessions aside)
    again = lab.grayctl("lab", "reset")
    assert "qdisc" not in again.stdout


def test_status_reports_nodes_and_reachability(lab: Lab) -> None:
    data = json.loads(lab.grayctl("lab", "status", "--json").stdout)
    assert data["status"] == "up"
    assert [(n["name"], n["reachable"]) for n in data["nodes"]] == [
        ("node01", True), ("node02", True), ("node03", True)]


# ---------------------------------------------------------------------------
# Labs of their own: the full lifecycle, crashes and leaks


@pytest.fixture
def own_lab(tmp_path: Path):
    made: list[Lab] = []

    def make(suffix: str, management: str, data: str, count: int = 2) -> Lab:
        lab = Lab(tmp_path, suffix, management, data, count)
        made.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in made:
            lab.teardown()


def test_down_leaves_nothing_behind(own_lab) -> None:
    before = snapshot()
    lab = own_lab("d", "10.214.128.0/26", "10.214.192.0/26")
    lab.grayctl("lab", "up")
    subprocess.run(["ansible", "-i", str(lab.inventory), "lab_nodes", "-m", "ansible.builtin.ping"],
                   env=lab.env, check=True, capture_output=True, cwd=PROJECT_ROOT, timeout=300)
    lab.ssh("10.214.128.2", "(setsid sleep 1000 </dev/null >/dev/null 2>&1 &)")
    during = leftovers(lab, before, snapshot())
    assert during.get("netns") and during.get("cgroups") and during.get("processes")  # the comparison sees a lab
    # down under another lab home (as after a killed test run) finds no record: it says what it left, and where it looked
    elsewhere = lab.dir.parent.parent / "elsewhere"
    stray = subprocess.run([sys.executable, "-m", "grayctl", "lab", "down", "--lab", str(lab.file)],
                           env={**lab.env, "GRAYCTL_LAB_HOME": str(elsewhere)}, capture_output=True, text=True,
                           cwd=PROJECT_ROOT, timeout=300)
    assert stray.returncode == 3, stray.stdout + stray.stderr
    assert f"netns:gc-{lab.name}-node01" in stray.stderr and str(elsewhere) in stray.stderr, stray.stderr
    assert lab.ssh("10.214.128.2", "hostname").strip() == "node01"  # nothing of the lab was touched
    proc = lab.grayctl("lab", "down")
    assert "removed" in proc.stdout
    assert wait_clean(lab, before) == {}
    assert lab.state()["status"] == "down" and lab.state()["resources"] == []


def test_down_after_a_crash_in_the_middle_of_up_removes_everything(own_lab) -> None:
    before = snapshot()
    lab = own_lab("c", "10.214.128.64/26", "10.214.192.64/26")
    # the module SIGKILLs itself right after recording the veth phase: namespaces and UTS
    # mounts exist, the veths are recorded but not (all) made, no sshd yet
    env = {**lab.env, "GRAYCTL_NETNS_LAB_CRASH_AFTER_RECORDING": "veth"}
    proc = lab.playbook("lab_up.yml", env=env, check=False)
    assert proc.returncode != 0
    state = lab.state()
    assert state["status"] == "creating"
    kinds = {r["kind"] for r in state["resources"]}
    assert {"netns", "uts", "veth"} <= kinds and "sshd" not in kinds
    assert any(n.startswith(f"gc-{lab.name}-") for n in os.listdir("/run/netns"))
    doctor = lab.grayctl("lab", "doctor", check=False)
    assert doctor.returncode != 0 and "left behind" in doctor.stdout
    lab.grayctl("lab", "down")
    assert wait_clean(lab, before) == {}


def test_down_after_ansible_playbook_is_killed_removes_everything(own_lab) -> None:
    before = snapshot()
    lab = own_lab("k", "10.214.129.0/26", "10.214.193.0/26", count=4)
    argv = ["ansible-playbook", "playbooks/lab_up.yml", "-e", f"netns_lab_definition={lab.file}"]
    proc = subprocess.Popen(argv, env=lab.env, cwd=PROJECT_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = lab.dir / "state.json"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["resources"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)  # as ansible-runner's cancel does
    proc.wait()
    assert lab.state()["resources"], "the state file had entries when the run was killed"
    lab.grayctl("lab", "down")
    assert wait_clean(lab, before) == {}


def test_doctor_reports_what_down_must_not_touch(own_lab) -> None:
    lab = own_lab("l", "10.214.130.0/26", "10.214.194.0/26")
    lab.grayctl("lab", "up")
    assert lab.grayctl("lab", "doctor").returncode == 0
    lab.grayctl("lab", "down")
    leaked = f"gc-{lab.name}-node02"  # a namespace with this lab's name that its record does not hold
    subprocess.run(["ip", "netns", "add", leaked], check=True)
    try:
        doctor = lab.grayctl("lab", "doctor", check=False)
        assert doctor.returncode == 3 and f"netns:{leaked}" in doctor.stdout, doctor.stdout
        # down touches only what its record holds: with nothing recorded it names what it left (exit 3)
        down = lab.grayctl("lab", "down", check=False)
        assert down.returncode == 3 and f"netns:{leaked}" in down.stderr, down.stdout + down.stderr
        assert leaked in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", leaked], check=False)
    assert lab.grayctl("lab", "doctor").returncode == 0


def test_reset_restores_the_namespaces_sysctls_and_ip_rules(own_lab) -> None:
    lab = own_lab("s", "10.227.128.0/26", "10.227.192.0/26")
    lab.grayctl("lab", "up")
    ns = lab.defn.netns_of("node01")

    def node(*argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=True).stdout

    made = (node("sysctl", "-n", "net.core.somaxconn").strip(), node("sysctl", "-n", "net.ipv4.tcp_congestion_control")
            .strip(), node("ip", "rule", "show"))
    assert made[1] != "reno"
    node("sysctl", "-qw", "net.core.somaxconn=77", "net.ipv4.tcp_congestion_control=reno")
    node("ip", "rule", "add", "pref", "100", "from", "10.227.192.0/26", "lookup", "100")
    # the fingerprint sees both (the baseline lists those sysctls; the rules are a field of their own)
    doctor = lab.grayctl("lab", "doctor", check=False)
    assert doctor.returncode == 5, doctor.stdout + doctor.stderr
    assert "net.core.somaxconn" in doctor.stdout and "net.ipv4.tcp_congestion_control" in doctor.stdout
    assert "rules: golden=- now=inet priority=100" in doctor.stdout, doctor.stdout
    proc = lab.grayctl("lab", "reset")
    assert "restored sysctls" in proc.stdout and "net.core.somaxconn" in proc.stdout, proc.stdout
    assert "restored ip rules (inet): 1 removed" in proc.stdout, proc.stdout
    assert "baseline verified" in proc.stdout, proc.stdout
    assert (node("sysctl", "-n", "net.core.somaxconn").strip(), node("sysctl", "-n", "net.ipv4.tcp_congestion_control")
            .strip(), node("ip", "rule", "show")) == made
    assert lab.grayctl("lab", "doctor").returncode == 0


# SIGKILL of the whole ``grayctl lab up`` process group (grayctl, ansible-playbook, the module and
# whatever it is starting), right after the record first holds a resource of each kind below: the
# record is written before each phase is made, so the kill lands while that phase is being made (or
# just before). ``lab down`` must then remove everything up recorded, and nothing of the lab may be
# left. Where: "cgroup_parent" the lab's (and the shared grayctl/) cgroup directories, "cgroup" the
# node cgroups. The default tier kills at two points, the slow tier at every phase.
UP_KILL_POINTS = [
    pytest.param("cgroup_parent", 0),
    pytest.param("bridge", 1, marks=pytest.mark.slow),
    pytest.param("netns", 2, marks=pytest.mark.slow),
    pytest.param("uts", 3, marks=pytest.mark.slow),
    pytest.param("veth", 4, marks=pytest.mark.slow),
    pytest.param("cgroup", 5, marks=pytest.mark.slow),
    pytest.param("sshd", 6),
]


def _recorded_kinds(state_file: Path) -> set[str]:
    try:
        resources = json.loads(state_file.read_text())["resources"]
    except (OSError, ValueError, KeyError):
        return set()  # not written yet, or being replaced
    return {"cgroup_parent" if r["kind"] == "cgroup" and not r.get("node") else r["kind"] for r in resources}


@pytest.mark.parametrize(("kind", "n"), UP_KILL_POINTS)
def test_down_after_sigkill_of_lab_up_removes_everything_it_recorded(own_lab, kind: str, n: int) -> None:
    before = snapshot()
    lab = own_lab(f"u{n}", f"10.230.{n}.0/26", f"10.230.{64 + n}.0/26")
    proc = subprocess.Popen([sys.executable, "-m", "grayctl", "lab", "up", "--lab", str(lab.file)], env=lab.env,
                            cwd=PROJECT_ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = lab.dir / "state.json"
    deadline = time.time() + 600  # hang guard for a loaded machine
    while time.time() < deadline and proc.poll() is None and kind not in _recorded_kinds(state):
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"lab up ended by itself (exit {proc.returncode}) before {kind}"
    recorded = lab.state()
    assert kind in _recorded_kinds(state) and recorded["status"] == "creating", recorded
    during = leftovers(lab, before, snapshot())
    assert during, "the kill left nothing to remove: this check would see nothing"
    lab.grayctl("lab", "down")
    assert wait_clean(lab, before) == {}
    assert lab.state()["status"] == "down" and lab.state()["resources"] == []
