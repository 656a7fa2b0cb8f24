"""Leases (plugins/module_utils/lease.py) through grayctl_process and grayctl_collect, on real processes.

A process started with a lease ends by itself at its deadline, its run directory and every empty
parent below the state directory removed, then the lease directory: the state directory ends empty,
as the golden baseline declares it. A stop releases the lease and ends the idle watchdog at once; a
collect renews every lease. No root, no SSH: the modules run as Ansible runs them, on this host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from module_run import run_module


def sleeper(state: Path, name: str) -> dict:
    d = state / "services" / name
    return {"name": name, "dir": str(d), "argv": [sys.executable, "-c", "import time; time.sleep(600)", str(d)]}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def watchdogs(lease_dir: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-f", str(lease_dir)], check=False, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


def wait_for(cond, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_a_leased_process_ends_at_its_deadline_and_leaves_the_state_directory_empty(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    lease_dir = state / ".lease"
    res = run_module("grayctl_process", tmp_path, {"processes": [sleeper(state, "a-0"), sleeper(state, "b-0")],
                                                   "dir_mode": "0755", "lease": 1.5, "lease_dir": str(lease_dir)})
    assert not res.get("failed"), res
    assert res["lease_watchdog_started"] is True
    pids = [r["pid"] for r in res["results"]]
    assert all(alive(p) for p in pids) and len(list(lease_dir.glob("*.json"))) == 2
    entry = json.loads(next(lease_dir.glob("*.json")).read_text())
    assert entry["dir"].startswith(str(state / "services")) and entry["deadline"] > time.monotonic()
    assert wait_for(lambda: not any(alive(p) for p in pids)), "the lease did not end the processes"
    assert wait_for(lambda: not lease_dir.exists() and not watchdogs(lease_dir))
    assert list(state.iterdir()) == []  # run dirs, their empty parent and the lease directory: gone


def test_a_stop_releases_the_lease_and_ends_the_idle_watchdog(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    lease_dir = state / ".lease"
    proc = sleeper(state, "a-0")
    started = run_module("grayctl_process", tmp_path, {"processes": [proc], "dir_mode": "0755", "lease": 300,
                                                       "lease_dir": str(lease_dir)})
    assert not started.get("failed"), started
    assert wait_for(lambda: len(watchdogs(lease_dir)) == 1)
    stopped = run_module("grayctl_process", tmp_path, {"processes": [proc], "state": "stopped",
                                                       "lease_dir": str(lease_dir)})
    assert not stopped.get("failed"), stopped
    assert not lease_dir.exists() and watchdogs(lease_dir) == []  # at once: a verify right after sees nothing


def test_collect_renews_every_lease_and_a_reused_pid_is_spared(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    lease_dir = state / ".lease"
    proc = sleeper(state, "a-0")
    res = run_module("grayctl_process", tmp_path, {"processes": [proc], "dir_mode": "0755", "lease": 2.0,
                                                   "lease_dir": str(lease_dir)})
    assert not res.get("failed"), res
    pid = res["results"][0]["pid"]
    renewed = run_module("grayctl_collect", tmp_path, {"dir": str(state / "services"), "send": False,
                                                       "renew_lease": 300, "lease_dir": str(lease_dir)})
    assert renewed["leases_renewed"] == 1
    time.sleep(3.0)
    assert alive(pid), "a renewed lease ended its process at the old deadline"
    # the recorded command no longer matches (as after a pid reuse): the watchdog must not signal it
    cmd = Path(proc["dir"]) / "pid.cmd"
    cmd.write_text("something\0else")
    run_module("grayctl_collect", tmp_path, {"dir": str(state), "send": False, "renew_lease": 0.2,
                                             "lease_dir": str(lease_dir)})
    assert wait_for(lambda: not lease_dir.exists())
    assert alive(pid)
    os.kill(pid, 9)
