"""The plan: slots bound to lab nodes in order, faults resolved to nodes/interfaces, steps ordered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grayctl.errors import InputError
from grayctl.experiment import load_experiment
from grayctl.lab.definition import load_lab
from grayctl.plan import build_plan
from grayctl.plan.build import LEASE_MARGIN_S

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "experiments" / "seed.yaml"


def _lab(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(f"name: plantest\nprovider: netns\nnodes:\n  count: {count}\n")
    return path


def test_seed_plan_binds_every_gen3_service_to_its_own_app_node():
    plan = build_plan(load_experiment(SEED), load_lab("local"))
    services = {r.service for r in plan.replicas}
    assert "social-graph-service" in services
    nodes = [r.node for r in plan.replicas]
    assert len(set(nodes)) == len(plan.experiment.topology.slots())
    app = {n.name for n in plan.lab.nodes if "app" in n.roles}
    assert set(nodes) <= app


def test_seed_fault_resolves_to_the_social_graph_node_on_the_data_interface():
    plan = build_plan(load_experiment(SEED), load_lab("local"))
    (fault,) = plan.faults
    node = next(r.node for r in plan.replicas if r.service == "social-graph-service")
    assert fault.nodes == (node,)
    assert fault.interface == "data"
    assert fault.fault.start_s == plan.experiment.schedule.start_of("fault")


def test_steps_run_in_order_prepare_then_timed_then_collect_then_teardown():
    plan = build_plan(load_experiment(SEED), load_lab("local"))
    names = [s.name for s in plan.steps]
    assert names == ["reimage", "verify-baseline", "prepare", "inject:f1", "revert:f1", "collect", "reset"]
    assert [s.playbook for s in plan.steps if s.phase != "run"] == [
        "lab_reset.yml", "baseline.yml", "prepare.yml", "collect_run.yml", "lab_reset.yml"]
    assert all(s.available for s in plan.steps)
    inject = next(s for s in plan.steps if s.name == "inject:f1")
    assert inject.at_s < inject.until_s
    spec = inject.extravars["fault_spec"]  # one variable for playbooks/fault.yml, the family from the catalog
    assert (spec["type"], spec["family"], spec["interface"]) == ("network-latency", "network", "data")


def test_a_lab_too_small_for_the_topology_is_refused_with_the_command_that_fixes_it(tmp_path):
    with pytest.raises(InputError) as err:
        build_plan(load_experiment(SEED), load_lab(str(_lab(tmp_path, 4))))
    text = err.value.render()
    assert "app node" in text and "--nodes" in text


def test_plan_json_is_complete_and_touches_no_host():
    proc = subprocess.run([sys.executable, "-m", "grayctl", "plan", "--json", str(SEED)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["experiment"]["schedule"] and data["experiment"]["workload"]["seed"] is not None
    assert {"playbook", "hosts", "extravars", "at_s"} <= set(data["steps"][0])


def test_plan_text_lists_steps_with_playbooks_and_hosts():
    proc = subprocess.run([sys.executable, "-m", "grayctl", "plan", str(SEED)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "steps:" in proc.stdout and "lab_reset.yml" in proc.stdout and "hosts=" in proc.stdout


def test_netns_labs_end_with_a_reset_and_labs_with_vms_with_an_explicit_teardown_and_verify(tmp_path):
    netns = build_plan(load_experiment(SEED), load_lab("local"))
    assert netns.to_dict()["teardown"] == "reset"
    (reset,) = [s for s in netns.steps if s.phase == "teardown"]
    assert reset.extravars["netns_lab_state"] == "reset"
    path = tmp_path / "vmlab.yml"
    path.write_text("name: vmtest\nprovider: netns\nnodes:\n  count: 14\nproviders:\n  qemu: [node01]\n")
    vms = build_plan(load_experiment(SEED), load_lab(str(path)))
    assert vms.to_dict()["teardown"] == "undeploy"
    assert [(s.name, s.playbook) for s in vms.steps if s.phase == "teardown"] == [
        ("teardown", "teardown.yml"), ("verify-clean", "baseline.yml")]


def test_prepare_step_carries_deploy_monitor_and_workload_vars_without_clashes():
    plan = build_plan(load_experiment(SEED), load_lab("local"))
    prepare = next(s for s in plan.steps if s.name == "prepare")
    parts = [plan.part(n).extravars for n in ("deploy", "monitor", "workload")]
    # no key of one part hides another's; the run's own addition is the deployment's lease
    assert sum(len(p) for p in parts) + 1 == len(prepare.extravars)
    assert prepare.extravars["workload_state"] == "present" and prepare.extravars["monitor_state"] == "present"
    # the lease outlives the schedule by the margin; the collect renews it to the margin
    assert prepare.extravars["grayctl_lease_s"] == plan.duration_s + LEASE_MARGIN_S
    collect = next(s for s in plan.steps if s.name == "collect")
    assert collect.extravars["workload_state"] == "wait" and collect.extravars["collect_lease_s"] == LEASE_MARGIN_S
    assert collect.extravars["workload_targets"] == prepare.extravars["workload_targets"]


def test_deploy_step_carries_each_nodes_resolved_runtime_configs_and_workload_targets_the_entry():
    plan = build_plan(load_experiment(SEED), load_lab("local"))
    deploy = plan.part("deploy")
    services = deploy.extravars["topology_deploy_services"]
    assert deploy.extravars["topology_deploy_state"] == "present"
    for r in plan.replicas:
        (entry,) = [e for e in services[r.node] if e["name"] == r.service and e["replica"] == r.index]
        assert entry["config"]["listen"] == {"ip": r.data_ip, "port": r.port}
        assert entry["config"]["metrics"] == {"ip": r.mgmt_ip, "port": r.metrics_port}
    workload = plan.part("workload")
    frontend = next(r for r in plan.replicas if r.service == "nginx-frontend")
    targets = workload.extravars["workload_targets"]
    assert set(targets) == set(workload.extravars["workload_mix"])
    assert all(t["url"].startswith(f"http://{frontend.data_ip}:{frontend.port}/nginx-frontend/") for t in targets.values())
    assert workload.extravars["workload_duration"] == plan.duration_s
    undeploy = plan.part("undeploy")
    assert undeploy.extravars["topology_deploy_state"] == "absent"


def test_plan_set_overrides_fields_exactly_as_run_does():
    proc = subprocess.run([sys.executable, "-m", "grayctl", "plan", "--json", str(SEED),
                           "--set", "schedule.fault=20s", "--set", "chaos_injections.0.parameters.delay=100ms",
                           "--set", "workload.rate=7/s"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (fault,) = data["faults"]
    start, end = fault["window_s"]
    assert end - start == 20
    inject = next(s for s in data["steps"] if s["name"].startswith("inject:"))
    assert inject["extravars"]["fault_spec"]["parameters"]["delay"] == "100ms"
    assert data["experiment"]["workload"]["rate"] == "7/s"


def test_plan_set_with_an_unknown_field_is_an_input_error_naming_set():
    proc = subprocess.run([sys.executable, "-m", "grayctl", "plan", str(SEED), "--set", "schedul.fault=3s"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--set" in proc.stderr and "did you mean: schedule" in proc.stderr and "Traceback" not in proc.stderr


def test_the_run_announces_the_plans_steps_in_the_order_it_runs_them():
    from grayctl.run.flow import step_names

    plan = build_plan(load_experiment(SEED), load_lab("local"))
    assert step_names(plan, keep=False) == ["reimage", "prepare", "timeline", "collect", "metrics", "assemble", "reset"]
    assert step_names(plan, keep=True)[-1] == "assemble"  # --keep: no teardown


def test_a_late_apply_moves_the_revert_so_the_fault_keeps_its_length_but_never_past_the_schedule():
    from grayctl.plan import fault_edges, revert_aim_s

    assert revert_aim_s(13.5, (10.0, 40.0), 60.0) == 43.5
    assert revert_aim_s(9.0, (10.0, 40.0), 60.0) == 39.0  # early apply: same length, earlier revert
    assert revert_aim_s(45.0, (10.0, 55.0), 60.0) == 60.0  # capped at the schedule's end
    e = fault_edges((10.0, 40.0), 13.5, 44.0, 60.0)
    assert e["aim_end"] == 43.5 and e["lag"] == [3.5, 0.5] and e["held_s"] == 30.5
    never = fault_edges((10.0, 40.0), None, None, 60.0)
    assert never["lag"] == [None, None] and never["held_s"] is None and never["aim_end"] == 40.0
