"""The on-host expiry is bounded: a fault never outlives its planned window by more than the margin.

Where a user sets what the expiry follows from (the fault's window: ``schedule.fault``, a fault's
``duration``; ``grayctl fault inject --duration`` and ``--expire-margin``), an expiry out of bounds is
refused before anything runs: exit 2, the file, line and field (or the option), through the real CLI.
On the node, an apply's expiry is also capped by the run's schedule end + the margin (faultctl
``--expire-by``), so a late apply does not carry a fault past the schedule either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grayctl.experiment import load_experiment
from grayctl.faults.spec import EXPIRY_MARGIN_S, MAX_EXPIRE_AFTER_S, FaultRefused, load_spec
from grayctl.lab.definition import load_lab
from grayctl.paths import PROJECT_ROOT
from grayctl.plan import build_plan

FAULT = {"id": "lat-x", "type": "network-latency", "target_service": "monolith", "parameters": {"delay": "30ms"}}


def _experiment(tmp_path: Path, fault_s: str, **fault) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump({"name": "bound", "topology": "gen1-monolith",
                                 "schedule": {"warmup": "0s", "baseline": "0s", "fault": fault_s, "recovery": "0s"},
                                 "chaos_injections": [{**FAULT, **fault}]}, sort_keys=False))
    return p


def _lab(tmp_path: Path) -> Path:
    p = tmp_path / "lab.yml"
    p.write_text("name: boundt\nprovider: netns\nnodes:\n  count: 3\n"
                 "networks: {management: 10.227.250.0/26, data: 10.227.250.64/26}\n")
    return p


def _grayctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp_path / "labs")}
    return subprocess.run([sys.executable, "-m", "grayctl", *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT_ROOT, timeout=120, check=False)


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_plan_sets_each_faults_expiry_to_its_window_plus_the_margin(tmp_path):
    exp = _experiment(tmp_path, "40s", offset="5s", duration="20s")
    plan = build_plan(load_experiment(exp), load_lab(str(_lab(tmp_path))))
    (inject,) = [s for s in plan.steps if s.name == "inject:lat-x"]
    assert inject.extravars["fault_spec"]["expire_after_s"] == 20 + EXPIRY_MARGIN_S


def test_a_fault_phase_whose_expiry_passes_the_nodes_ceiling_is_refused_at_validate(tmp_path):
    # 168h is a valid phase length, but its expiry (168h + 30 s) is one the node refuses: before
    # this check the run failed at the apply, mid-run, on the node
    exp = _experiment(tmp_path, "168h")
    proc = _grayctl(tmp_path, "validate", str(exp))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{exp}:{_line_of(exp, 'fault: 168h')}:" in proc.stderr and "schedule.fault:" in proc.stderr, proc.stderr
    assert "on-host expiry" in proc.stderr and "Traceback" not in proc.stderr
    spec = {"id": "lat_x", "type": "network-latency", "family": "network", "parameters": {"delay": "30ms"},
            "interface": "data", "expire_after_s": 168 * 3600 + EXPIRY_MARGIN_S}
    with pytest.raises(FaultRefused, match="expire_after_s"):
        load_spec(spec)


def test_an_explicit_fault_duration_is_refused_at_its_own_line_and_the_bound_itself_is_accepted(tmp_path):
    limit = int(MAX_EXPIRE_AFTER_S - EXPIRY_MARGIN_S)
    over = _experiment(tmp_path, "168h", duration=f"{limit + 1}s")
    proc = _grayctl(tmp_path, "plan", str(over), "--lab", str(_lab(tmp_path)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{over}:{_line_of(over, 'duration:')}:" in proc.stderr, proc.stderr
    assert "chaos_injections[0].duration:" in proc.stderr and f"at most {limit}s" in proc.stderr
    at = _experiment(tmp_path, "168h", duration=f"{limit}s")
    plan = build_plan(load_experiment(at), load_lab(str(_lab(tmp_path))))
    (inject,) = [s for s in plan.steps if s.name == "inject:lat-x"]
    spec = {**inject.extravars["fault_spec"], "interface": "data"}
    assert load_spec(spec).expire_after_s == MAX_EXPIRE_AFTER_S  # the node takes what validate lets through


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="grayctl fault inject refuses to start without root")


@root_only
def test_fault_inject_refuses_a_hold_past_a_faults_window_naming_the_line_it_would_outlive(tmp_path):
    exp = _experiment(tmp_path, "60s", duration="20s")
    lab = _lab(tmp_path)
    proc = _grayctl(tmp_path, "fault", "inject", str(exp), "--lab", str(lab), "--duration", "21")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{exp}:{_line_of(exp, 'duration:')}:" in proc.stderr and "chaos_injections[0].duration:" in proc.stderr
    assert "--duration 21 holds fault 'lat-x' 1 s past its window (20s)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "labs").exists()  # refused before anything ran: no record dir, no playbook


@root_only
@pytest.mark.parametrize("margin", ["31", "0", "-5"])
def test_fault_inject_refuses_an_expire_margin_outside_the_bound(tmp_path, margin):
    exp = _experiment(tmp_path, "60s")
    proc = _grayctl(tmp_path, "fault", "inject", str(exp), "--lab", str(_lab(tmp_path)), "--expire-margin", margin)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--expire-margin:" in proc.stderr and f"0 < --expire-margin <= {EXPIRY_MARGIN_S:g}" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "labs").exists()


def test_the_node_refuses_an_apply_whose_expiry_bound_is_already_past_and_leaves_nothing(tmp_path):
    """faultctl apply --expire-by (grayctl run: the schedule's end + the margin): past it, nothing applies."""
    from grayctl.faults.node.faultctl import Store, apply_fault
    from grayctl.faults.spec import to_spec

    spec = {**to_spec("cpu_x", "cpu-stress", {"workers": 1, "load": "10%"}, expire_after_s=60.0), "python": sys.executable}
    store = Store(tmp_path)
    with pytest.raises(FaultRefused, match="expiry bound .* already past"):
        apply_fault(store, spec, expire_by_ns=time.time_ns() - 1)
    with pytest.raises(FaultRefused, match="expiry bound .* already past"):  # scheduled past the bound
        apply_fault(store, spec, not_before_ns=time.time_ns() + 5 * 10**9, expire_by_ns=time.time_ns() + 10**9)
    assert list(tmp_path.iterdir()) == []


_HANGUP = r"""
import json, os, signal, sys
from pathlib import Path
from grayctl.faults.node import faultctl
from grayctl.faults.spec import to_spec

def hang_up(*_args):  # the SSH session's pty goes (its controller SIGKILLed) while the node is mid-change
    os.kill(os.getpid(), signal.SIGHUP)
    return []

faultctl.APPLY["resource"] = lambda store, spec, rec, python, expire_at: hang_up()
faultctl._leftovers = hang_up
store = faultctl.Store(Path(sys.argv[1]))
spec = {**to_spec("cpu_x", "cpu-stress", {"workers": 1}, expire_after_s=5.0), "python": sys.executable}
applied = faultctl.apply_fault(store, spec)["record"]["status"]
reverted = faultctl.revert_fault(store, "cpu_x")["record"]["status"]
print(json.dumps([applied, reverted]))
"""


def test_a_hangup_of_the_ssh_session_does_not_stop_an_apply_or_a_revert_half_way(tmp_path):
    """Between changing the node and starting (apply) or finishing (revert) what reverts it, faultctl
    outlives its session's SIGHUP (a killed controller's pty): else a fault could stay with no expiry."""
    proc = subprocess.run([sys.executable, "-c", _HANGUP, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert json.loads(proc.stdout.splitlines()[-1]) == ["active", "reverted"]
