"""What a fault leaves on a netns lab node, read from the host, while a run is in its fault phase and
after it (tests/lab/test_kill.py, test_cut.py): the node's qdiscs, nft rules, cgroup limits, its
processes (the delayer, the expiry watchers, stress-ng) and the stopped ones; the fault records the
nodes keep; a run started so that its whole process group can be killed, and its event stream read
until its faults are applied. Everything is read from the host (a netns node shares its file
system and clock), so nothing here needs the node's management path: a cut node reads the same.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import yaml

from grayctl.faults.node import runtimectl
from grayctl.paths import PROJECT_ROOT
from runlab import RunLab  # tests/lab is on sys.path (rootdir-less test dir)

EXPIRY_SLACK_S = 5.0  # after the node's recorded expiry, the node must be clean
APPLY_GUARD_S = 900  # hang guard for the run to reach its fault phase (a loaded machine), not an expectation


# ---------------------------------------------------------------------------- reading a node

# One fault per class for the slow tier's matrices (test_kill's SIGKILL, test_cut's link cut) on three-tier.
MATRIX = {  # case -> (class, the fault): network faults on api (its calls to store are the traffic),
    # resource faults on frontend, process faults on store
    "delay": ("network", {"type": "network-latency", "target_service": "api", "parameters": {"delay": "30ms"}}),
    "loss": ("network", {"type": "network-loss", "target_service": "api", "parameters": {"percent": "30%"}}),
    "partition": ("network", {"type": "network-partition", "target_service": "api",
                              "parameters": {"peers": "all", "direction": "both"}}),
    "bandwidth": ("network", {"type": "network-bandwidth", "target_service": "api",
                              "parameters": {"rate": "1mbit", "burst": "4KiB", "limit": "64KiB"}}),
    "cpu": ("resource", {"type": "cpu-stress", "target_service": "frontend", "parameters": {"workers": 1, "load": "50%"}}),
    "memory": ("resource", {"type": "memory-stress", "target_service": "frontend",
                            "parameters": {"bytes": "32MiB", "workers": 1}}),
    "disk": ("resource", {"type": "disk-io-stress", "target_service": "frontend",
                          "parameters": {"workers": 1, "bytes": "8MiB"}}),
    "pause": ("process", {"type": "process-pause", "target_service": "store", "parameters": {}}),
    "stutter": ("process", {"type": "process-pause", "target_service": "store",
                            "parameters": {"stutter": {"pause": "100ms", "every": "300ms"}}}),
}


def node_var(lab: RunLab, node: str, key: str) -> str:
    inv = yaml.safe_load(lab.defn.inventory_path.read_text())["all"]["children"]["lab_nodes"]
    return {**inv["vars"], **inv["hosts"][node]}[key]


def in_netns(lab: RunLab, node: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", lab.defn.netns_of(node), *argv], capture_output=True, text=True,
                          check=False).stdout


def cgroup_limits(lab: RunLab, node: str) -> dict[str, str]:
    """The node cgroup's CPU and memory limits, v1 and v2 (whichever files this host has)."""
    rel = Path("grayctl") / lab.name / node
    files = [Path("/sys/fs/cgroup/cpu") / rel / "cpu.cfs_quota_us", Path("/sys/fs/cgroup/cpu") / rel / "cpu.cfs_period_us",
             Path("/sys/fs/cgroup/memory") / rel / "memory.limit_in_bytes"]
    v2 = Path(node_var(lab, node, "grayctl_node_cgroup"))
    files += [v2 / "cpu.max", v2 / "memory.max", v2 / "memory.high"]
    return {str(f): f.read_text().strip() for f in files if f.is_file()}


def processes(lab: RunLab, node: str) -> list[tuple[int, str, str]]:
    """(pid, state, argv) of every live process in the node's cgroup (and below)."""
    out = []
    for procs in Path(node_var(lab, node, "grayctl_node_cgroup")).rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if state not in "ZX":
                out.append((int(pid), state, argv.strip()))
    return out


def nft_rules(lab: RunLab, node: str, *, ignore_table: str | None = None) -> str:
    """The node's nft ruleset; without the table ``ignore_table`` (a test's own, e.g. a cut's block)."""
    if ignore_table is None:
        return in_netns(lab, node, "nft", "list", "ruleset").strip()
    tables = [t.split()[1:] for t in in_netns(lab, node, "nft", "list", "tables").splitlines() if t.startswith("table ")]
    return "\n".join(in_netns(lab, node, "nft", "list", "table", fam, name).strip() for fam, name in tables
                     if name != ignore_table)


def fault_state(lab: RunLab, node: str, *, ignore_table: str | None = None) -> dict:
    """What a fault can leave on a node: qdiscs, nft rules, cgroup limits; its processes (the delayer,
    the expiry watchers, stress-ng) and the stopped ones; runtime-realised faults acting on its replicas."""
    procs = processes(lab, node)
    return {
        "qdiscs": sorted(line.split(" refcnt")[0] for line in in_netns(lab, node, "tc", "qdisc", "show").splitlines()),
        "nft": nft_rules(lab, node, ignore_table=ignore_table),
        "limits": cgroup_limits(lab, node),
        "fault processes": sorted(a for _p, _s, a in procs if "grayctl.faults.node" in a or "stress-ng" in a),
        "stopped": sorted(f"{p} {a}" for p, s, a in procs if s in "Tt"),
        "runtime faults": runtime_faults(lab, node),
    }


def runtime_faults(lab: RunLab, node: str) -> list[str]:
    """The runtime-realised faults that act on the node's replicas now: live entries of their control files."""
    services = Path(node_var(lab, node, "grayctl_state_dir")) / "services"
    return sorted(f"{p.parent.name} {fid}" for p in services.glob(f"*/{runtimectl.CONTROL_FILE}")
                  for fid in runtimectl.live_entries(runtimectl.read_entries(p)))


def node_records(lab: RunLab) -> dict[str, dict]:
    """fault id (node side) -> its record on the node that holds it (the node's state dir's sibling)."""
    out = {}
    for node in lab.defn.node_names:
        for p in (Path(node_var(lab, node, "grayctl_state_dir")).parent / "faults").glob("*.json"):
            if p.name.count(".") == 1:  # <id>.json; <id>.expiry.json and the helpers' files are not records
                try:
                    out[p.stem] = {**json.loads(p.read_text()), "node": node}
                except ValueError:
                    pass  # being rewritten: read again on the next poll
    return out


def expiry_record(lab: RunLab, node: str, fid: str) -> dict | None:
    p = Path(node_var(lab, node, "grayctl_state_dir")).parent / "faults" / f"{fid}.expiry.json"
    return json.loads(p.read_text()) if p.is_file() else None


def drift(lab: RunLab) -> dict[str, list[dict]]:
    """Baseline verify of every node: node -> its drift entries (empty dict: every node verifies)."""
    ok = lab.baseline_verifies()
    out = {}
    for node in lab.defn.node_names:
        rec = json.loads((lab.dir / "baseline" / "last" / f"{node}.json").read_text())
        if rec.get("drift"):
            out[node] = rec["drift"]
    assert ok == (not out), (ok, out)
    return out


# ---------------------------------------------------------------------------- the test

def start_run(lab: RunLab, exp: Path, out: Path, stderr_name: str = "killed.stderr") -> subprocess.Popen:
    """``grayctl run --json`` in a session of its own (its process group can be killed whole)."""
    err = (lab.tmp / stderr_name).open("w")
    return subprocess.Popen(lab.argv("run", str(exp), "--out", str(out), "--json"), env=lab.env, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)


def until_applied(proc: subprocess.Popen, ids: set[str]) -> float:
    """Read the run's ``--json`` event stream until every fault in ``ids`` is applied; the run's t0
    (the timeline's start, epoch s). The rest of the stream is left unread (see ``drain``)."""
    applied: set[str] = set()
    t0 = None
    deadline = time.monotonic() + APPLY_GUARD_S
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        ev = json.loads(line)
        if ev["kind"] == "timeline_start":
            t0 = float(ev["data"]["t0"])
        if ev["kind"] == "fault" and ev["data"]["state"] == "applied":
            applied.add(ev["data"]["id"])
        elif ev["kind"] == "fault" and ev["data"]["state"] == "reverted":
            raise AssertionError(f"{ev['data']['id']} was reverted before every fault was applied: "
                                 "the fault phase is too short for this machine")
        if applied == ids:
            assert t0 is not None
            return t0
        assert time.monotonic() < deadline and ev["kind"] != "run_end", f"faults applied: {applied}; last {ev}"
    raise AssertionError(f"the run ended (exit {proc.wait()}) with faults applied: {applied}")


class Drain:
    """The rest of a running run's ``--json`` events, read in a thread (a full pipe would stall the
    run): ``events`` fills as the run goes on; ``join()`` once the run has exited makes it whole."""

    def __init__(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        self.events: list[dict] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), name="drain-run-events", daemon=True)
        self._thread.start()

    def _read(self, stdout) -> None:  # noqa: ANN001 - a text pipe
        for line in stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def join(self, timeout: float = 60.0) -> list[dict]:
        self._thread.join(timeout)
        return self.events


def session_gone(sid: int, guard_s: float = 60.0) -> bool:
    """No live process of the killed run's session is left (zombies wait for PID 1 to reap them)."""
    deadline = time.monotonic() + guard_s
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-s", str(sid), "-o", "stat="], capture_output=True, text=True, check=False)
        if not [s for s in ps.stdout.split() if not s.startswith("Z")]:
            return True
        time.sleep(0.5)
    return False
