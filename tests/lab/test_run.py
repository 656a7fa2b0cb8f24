"""``grayctl run`` and ``grayctl sweep`` end to end on a private netns lab, as real subprocesses.

One 6-node lab (4 app nodes for gen2-coarse, a monitor, a client) with its own name, addresses
(10.236.x) and lab home under a tmp dir, removed in a finalizer (after undeploy and a fault revert,
also when a test fails). Schedules are a few seconds long: these tests are about the run's
machinery (steps, timeline, cleanup, resume), not about the figures.

Budget: the run's fixed cost (about a dozen playbook runs) dominates on a loaded 2-core machine;
see docs/benchmarks.md for the measured overhead per step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grayctl.paths import PROJECT_ROOT
from runlab import RunLab, dataset_dir  # tests/lab is on sys.path (rootdir-less test dir)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

EXPERIMENT = {
    "name": "run-test",
    "topology": "gen2-coarse",
    "workload": {"rate": "15/s", "arrival": "constant", "seed": 5},
    # recovery long enough that the revert (several seconds of Ansible on a loaded machine) ends in the run
    "schedule": {"warmup": "2s", "baseline": "6s", "fault": "8s", "recovery": "10s"},
    "chaos_injections": [{"id": "ug-latency", "type": "network-latency", "target_service": "user-graph",
                          "parameters": {"delay": "80ms"}}],
}
TINY = {**EXPERIMENT, "name": "sweep-test",
        "schedule": {"warmup": "2s", "baseline": "4s", "fault": "4s", "recovery": "2s"}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = RunLab(tmp_path_factory.mktemp("run-lab"), prefix="r", count=6, network="10.236")
    try:
        lab.grayctl("lab", "up", "--lab", str(lab.file))
        yield lab
    finally:
        lab.down("gen2-coarse")


def test_a_latency_experiment_runs_end_to_end_and_leaves_the_lab_clean(lab: RunLab) -> None:
    exp = lab.experiment(EXPERIMENT, "e2e")
    out = lab.tmp / "runs"
    proc = lab.grayctl("run", str(exp), "--out", str(out))  # with the console's lines (stderr: not a terminal)
    ds = dataset_dir(proc.stdout)
    assert "report:" in proc.stdout and (ds / "report.html").is_file()
    verify = lab.grayctl("dataset", "verify", str(ds))
    assert "ok" in verify.stdout
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["teardown"]["verify_clean"]["ok"] is True
    # labels' fault window matches the host-measured injection times within a second
    inj = json.loads((ds / "injection.json").read_text())
    assert inj and all(f["revert_verified"] for f in inj)
    run_end = int(manifest["times"]["end_ns"])
    start = min(int(f["start_ns"]) for f in inj)
    end = min(max(int(f["end_ns"]) for f in inj), run_end)  # labels cover the run window only
    labels = pd.read_parquet(ds / "labels.parquet")
    active = labels[labels["fault_active"]]
    first = active["ts"].min().value
    last = active["ts"].max().value + 1_000_000_000
    assert abs(first - start) <= 1_000_000_000 and abs(last - end) <= 1_000_000_000, (first, start, last, end)
    # the caller's view of each service edge, per second, from the runtime's own client-side measurements
    edges = pd.read_parquet(ds / "edges.parquet")
    fr = edges[(edges["caller"] == "frontend") & (edges["callee"] == "read-path")]
    assert len(fr) > 10 and fr["calls"].max() > 0 and fr["latency_p99_s"].notna().any()
    # a peer cohort: read-path's three replicas each have their own series
    metrics = pd.read_parquet(ds / "metrics.parquet")
    cohort = metrics[(metrics["layer"] == "replica") & (metrics["metric"] == "request_rate")
                     & metrics["entity"].str.startswith("read-path/")]
    assert cohort["entity"].nunique() == 3, cohort["entity"].unique()
    # every fault window has an impact class; the generator's verdict is in the manifest
    # (keyed as the labels' fault_ids and injection.json: the node records' ids, "-" written "_")
    assert set(manifest["impact"]) == {"ug_latency"} and manifest["impact"]["ug_latency"] in ("none", "gray", "visible")
    assert manifest["load"]["valid"] is True, manifest["load"]
    # one truth: the console's phase lines and its closing summary count users as the dataset does
    from grayctl.dataset.labels import user_latency_ns
    from grayctl.phases import figures_by_phase
    from grayctl.run.events import phase_line

    requests = pd.read_parquet(ds / "requests.parquet")
    phases = [(p["phase"], p["start_s"], p["end_s"]) for p in manifest["times"]["phases"]]
    truth = figures_by_phase(requests["intended_ns"].astype("int64").to_numpy(), user_latency_ns(requests),
                             requests["error_kind"].notna().to_numpy(), manifest["times"]["start_ns"], phases)
    assert manifest["user_by_phase"] == truth
    for name, fig in truth.items():
        assert f"users, {phase_line(name, fig)}" in proc.stdout, (name, proc.stdout)
    live = [line.split("◂", 1)[1].strip() for line in proc.stderr.splitlines() if "◂ phase" in line]
    for name in ("warmup", "baseline", "fault"):  # recovery ends with the generator: the summary has it
        mine = next(x for x in live if x.startswith(f"phase {name}:"))
        assert mine == phase_line(name, truth[name]), (mine, truth[name])
    # the run's own records sit next to the dataset: events and the Ansible log of each step
    records = ds.parent / f"{ds.name}.run"
    kinds = [json.loads(line)["kind"] for line in (records / "events.jsonl").read_text().splitlines()]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and "fault" in kinds
    assert list((records / "logs").glob("*-prepare/prepare.yml.log"))
    # the netns path: the run ends with a lab reset (it stops everything), recorded as such
    assert manifest["teardown"]["path"] == "reset" and manifest["teardown"]["verify_clean"]["via"] == "lab reset"
    steps = [s["name"] for s in manifest["teardown"]["steps"]]
    assert steps == ["reimage", "prepare", "inject:ug-latency", "revert:ug-latency", "collect", "metrics",
                     "assemble", "reset"]
    assert lab.leftovers() == []
    assert lab.baseline_verifies()


def test_a_rate_the_generator_cannot_sustain_is_invalid_load_and_keeps_its_records(lab: RunLab) -> None:
    # 6000/s on one client node of a 2-core machine: the generator falls behind (the bare generator
    # tops out near 3,500/s here, docs/benchmarks.md), whatever the services do with it
    exp = lab.experiment({**TINY, "name": "over-rate", "workload": {"rate": "6000/s", "arrival": "constant", "seed": 5},
                          "schedule": {"warmup": "1s", "baseline": "3s", "fault": "3s", "recovery": "2s"}},
                         "over-rate")
    proc = lab.grayctl("run", str(exp), "--out", str(lab.tmp / "runs"), "--quiet", check=False)
    assert proc.returncode == 9, proc.stdout + proc.stderr
    assert "load: INVALID" in proc.stdout and "fell behind" in proc.stderr
    ds = dataset_dir(proc.stdout)
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == manifest["run_status"] == "invalid-load"
    load = manifest["load"]
    assert load["valid"] is False and load["reason"] and load["achieved_rate"] < load["scheduled_rate"]
    # what was sent is kept, request by request, and adds up with what was dropped
    requests = pd.read_parquet(ds / "requests.parquet")
    assert len(requests) == load["sent"] > 0 and load["sent"] + load["dropped"] == load["scheduled"]
    labels = pd.read_parquet(ds / "labels.parquet")
    assert (labels["load_ok"] == False).any()  # noqa: E712 - nullable: the seconds it fell behind in
    verify = lab.grayctl("dataset", "verify", str(ds), check=False)
    assert verify.returncode == 6 and "invalid-load" in verify.stdout + verify.stderr
    assert lab.leftovers() == []


def test_the_same_fault_file_runs_on_both_decompositions_of_a_user_topology(lab: RunLab) -> None:
    # the shop (topologies/apps/shop.yaml) as a monolith and as services: one file, --set topology
    exp = lab.experiment({"name": "shop-latency", "topology": "shop-monolith",
                          "workload": {"rate": "15/s", "arrival": "constant", "seed": 3},
                          "schedule": {"warmup": "2s", "baseline": "5s", "fault": "6s", "recovery": "5s"},
                          "chaos_injections": [{"id": "slow-front", "type": "network-latency",
                                                "target_service": "storefront", "parameters": {"delay": "100ms"},
                                                "scope": {"widen": "process"}}]}, "shop")
    rise = {}
    for topology in ("shop-monolith", "shop-services"):
        proc = lab.grayctl("run", str(exp), "--set", f"topology={topology}", "--out", str(lab.tmp / "runs"), "--quiet")
        ds = dataset_dir(proc.stdout)
        manifest = json.loads((ds / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["experiment"]["topology"] == topology
        (inj,) = json.loads((ds / "injection.json").read_text())
        assert inj["effect"]["verified"] is True and inj["realisation"].startswith("host:"), inj
        assert inj["widened"] is (topology == "shop-monolith")
        users = manifest["user_by_phase"]
        rise[topology] = users["fault"]["p50_s"] - users["baseline"]["p50_s"]
    # users see the 100 ms on both (on the services the storefront's calls to its backends leave the
    # delayed node too, so they see more: topology is the variable)
    assert all(r > 0.07 for r in rise.values()), rise
    assert lab.leftovers() == []


def test_repetitions_run_each_from_the_baseline_into_their_own_datasets(lab: RunLab) -> None:
    exp = lab.experiment({**TINY, "name": "reps"}, "reps")
    out = lab.tmp / "runs-reps"
    proc = lab.grayctl("run", str(exp), "--out", str(out), "--quiet", "--repetitions", "2")
    datasets = [Path(line.split("dataset:", 1)[1].strip()) for line in proc.stdout.splitlines()
                if line.strip().startswith("dataset:")]
    assert len(datasets) == 2 and datasets[0] != datasets[1], proc.stdout
    manifests = [json.loads((ds / "manifest.json").read_text()) for ds in datasets]
    for manifest in manifests:
        assert manifest["status"] == "complete"
        assert manifest["teardown"]["steps"][0]["name"] == "reimage"  # each from the golden baseline
        assert manifest["teardown"]["verify_clean"]["ok"] and manifest["baseline"]["nodes"]
    # the first finds the lab as the previous test's end reset left it, verified clean: no reset;
    # the second starts from the first one's verified end reset, moments before: not even a verify
    assert [m["baseline"]["reset"] for m in manifests] == ["verified", "reused"]
    assert manifests[1]["baseline"]["reset_by"] == manifests[0]["run_id"]
    assert lab.leftovers() == []


def test_a_dirty_node_is_found_by_the_verify_and_reset_before_the_run(lab: RunLab) -> None:
    """Verify first, reset on drift: a stray file in one node's state directory (drift the verify
    sees, a reset removes) makes the run reset the lab, say so, and start from a verified baseline."""
    stray = lab.dir / "nodes" / lab.defn.node_names[1] / "state" / "stray-from-a-user"
    stray.write_text("left behind\n")
    exp = lab.experiment({**TINY, "name": "dirty", "chaos_injections": []}, "dirty")
    proc = lab.grayctl("run", str(exp), "--out", str(lab.tmp / "runs-dirty"))
    manifest = json.loads((dataset_dir(proc.stdout) / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["baseline"]["reset"] == "reset"
    out = proc.stdout + proc.stderr
    assert "resetting the lab" in out and "differ from their golden baseline" in out and lab.defn.node_names[1] in out
    assert not stray.exists() and all(n["verified"] for n in manifest["baseline"]["nodes"].values())
    assert lab.leftovers() == []


def test_keep_leaves_the_topology_up_and_refuses_repetitions(lab: RunLab) -> None:
    exp = lab.experiment({**TINY, "name": "keep", "chaos_injections": []}, "keep")
    refused = lab.grayctl("run", str(exp), "--keep", "--repetitions", "2", check=False)
    assert refused.returncode != 0 and "--keep" in refused.stderr and "Traceback" not in refused.stderr
    proc = lab.grayctl("run", str(exp), "--out", str(lab.tmp / "runs-keep"), "--keep")
    ds = dataset_dir(proc.stdout)
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["teardown"]["keep"] is True
    assert manifest["teardown"]["path"] is None
    try:
        up = subprocess.run(["pgrep", "-af", "grayctl[.]runtime|prometheus"], capture_output=True, text=True,
                            check=False).stdout
        assert sum(str(lab.dir) in line for line in up.splitlines()) >= 5, up  # 4 replicas + Prometheus
    finally:
        lab.grayctl("lab", "reset", "--lab", str(lab.file))
    assert lab.leftovers() == []


def test_sigint_in_the_fault_window_reverts_resets_and_keeps_an_incomplete_dataset(lab: RunLab) -> None:
    doc = {**EXPERIMENT, "name": "sigint", "schedule": {**EXPERIMENT["schedule"], "fault": "30s"}}
    exp = lab.experiment(doc, "sigint")
    out = lab.tmp / "runs-int"
    proc = subprocess.Popen(lab.argv("run", str(exp), "--out", str(out), "--json"), env=lab.env, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    applied = False
    deadline = time.monotonic() + 600
    assert proc.stdout is not None
    for line in proc.stdout:  # --json: one event per line
        ev = json.loads(line)
        if ev["kind"] == "fault" and ev["data"]["state"] == "applied":
            applied = True
            time.sleep(2)
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "no fault was applied in time"
    assert applied
    rest, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, (rest[-3000:], err[-3000:])
    events = [json.loads(x) for x in rest.splitlines() if x.startswith("{")]
    cleanup = {e["step"]: e["data"]["ok"] for e in events if e["kind"] == "cleanup"}
    assert cleanup.get("revert-faults") and cleanup.get("lab-reset"), cleanup
    end = events[-1]
    assert end["kind"] == "run_end" and end["data"]["status"] == "incomplete" and end["data"]["exit_code"] == 130
    (ds,) = [p for p in out.iterdir() if p.is_dir() and not p.name.endswith(".run")]
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["run_status"] == "incomplete"
    assert (ds / "labels.parquet").is_file()  # what was collected is kept
    verify = lab.grayctl("dataset", "verify", str(ds), check=False)
    assert verify.returncode == 6 and "incomplete" in (verify.stdout + verify.stderr)
    assert lab.leftovers() == []
    assert lab.baseline_verifies()


# ~18 min on a quiet 2-core machine, ~35 min under load (8 runs at 2-4 min of Ansible overhead each):
# the slow tier. Timeouts here are hang guards sized for a loaded machine, not expectations.
RUN_GUARD_S = 900  # one sweep run, including its cleanup


@pytest.mark.slow
def test_a_2x2_sweep_is_interrupted_resumed_and_indexed(lab: RunLab) -> None:
    base = lab.experiment(TINY, "tiny")
    sweep_file = lab.tmp / "grid.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "grid", "base": str(base), "lab": str(lab.file),
        "axes": {"chaos_injections.0.parameters.delay": ["20ms", "60ms"], "workload.rate": ["10/s", "15/s"]},
        "repetitions": 2, "order": "sequential"}))
    out = lab.tmp / "sweeps"
    # --json: the run events show when the third run is on the lab; SIGTERM then makes it incomplete,
    # which the resume must redo (stderr to a file: an unread pipe could fill and stall the sweep)
    with (lab.tmp / "sweep-1.stderr").open("w+") as err:
        proc = subprocess.Popen(lab.argv("sweep", str(sweep_file), "--out", str(out), "--json"), env=lab.env,
                                cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        complete = 0
        for line in proc.stdout:
            ev = json.loads(line)
            if ev["kind"] == "run_end" and ev["data"]["status"] == "complete":
                complete += 1
            elif complete == 2 and ev["kind"] == "step_start" and ev["step"] == "prepare":
                proc.send_signal(signal.SIGTERM)
                break
        proc.communicate(timeout=RUN_GUARD_S)
        err.seek(0)
        assert proc.returncode == 130, err.read()[-3000:]
    (root,) = [p for p in out.iterdir() if p.is_dir()]
    first = pd.read_parquet(root / "index.parquet")
    assert list(first["status"]) == ["complete", "complete", "incomplete"]
    complete_before = set(first.loc[first["status"] == "complete", "run_id"])
    cut = first.iloc[2]
    assert int(cut["exit_code"]) == 130
    assert lab.leftovers() == []  # the interrupted run reverted and reset the lab

    left = 8 - len(complete_before)
    again = lab.grayctl("sweep", str(sweep_file), "--out", str(out), "--quiet", timeout=RUN_GUARD_S * left)
    assert f"{len(complete_before)} complete run(s) skipped" in again.stdout, again.stdout
    index = pd.read_parquet(root / "index.parquet")
    latest = index.groupby(["cell", "repetition"]).tail(1)
    assert len(latest) == 8 and set(latest["status"]) == {"complete"}
    assert complete_before <= set(latest["run_id"])  # skipped, not re-run
    assert len(index) == 9 and cut["run_id"] not in set(latest["run_id"])  # the incomplete run was redone
    assert set(index["axis:workload.rate"]) == {"10/s", "15/s"}
    for ds in latest["dataset"]:
        assert lab.grayctl("dataset", "verify", ds, check=False).returncode == 0
    assert latest["baseline_p50_ms"].notna().all() and latest["fault_p99_ms"].notna().all()
    cells = pd.read_csv(root / "cells.csv")
    assert len(cells) == 4 and cells["baseline_p50_cv"].notna().all()
    assert lab.leftovers() == []
