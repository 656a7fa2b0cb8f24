"""playbooks/experiment.yml as an AWX job runs it, on a private 3-node netns lab (gen1-monolith).

A job is what an AWX execution node does (tests/lab/awxjob.py): a fresh private data dir holding a
copy of the project and ``env/extravars`` — the job template's extra vars, the survey's defaults
(read from awx/survey.json, applied as AWX applies them) and the launch-time answers, as JSON —
then ``ansible_runner.run`` with an event handler that returns True, in a process with no TTY and
stdin closed. The job's own files are ephemeral (TMPDIR inside the private data dir), and the test
deletes the private data dir afterwards, as AWX does with the job's container: what the user keeps
is what the job copied to gx_dataset_dest.

Cancel is AWX's: SIGTERM to the worker, whose cancel_callback then makes ansible-runner SIGKILL the
ansible process group (grayctl run included; no cleanup runs). The fault then stays until its
on-host expiry (fault window + 30 s), and the lab until playbooks/experiment_cleanup.yml — the
"grayctl cleanup" job template — resets it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from awxjob import survey_defaults  # tests/lab is on sys.path (rootdir-less test dir)
from grayctl.paths import PROJECT_ROOT
from grayctl.run.timeline import MAX_LEAD_S
from runlab import RunLab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

TOPOLOGY = "gen1-monolith"
# Prompted at launch (ask_variables_on_launch): a short schedule on the small topology; the survey
# answers are the survey's own defaults plus the dataset destination.
EXPERIMENT: dict[str, Any] = {
    "name": "awx-job",
    "topology": TOPOLOGY,
    "workload": {"rate": "15/s", "arrival": "constant", "seed": 3},
    "schedule": {"warmup": "2s", "baseline": "4s", "fault": "6s", "recovery": "8s"},
    "chaos_injection": {"type": "network-latency", "target_service": "monolith", "parameters": {"delay": "80ms"}},
}
# The cancelled job's fault window. grayctl starts a revert play up to MAX_LEAD_S early and the node
# then waits for the planned end itself (faultctl --not-before), so a revert already on its way
# survives the cancel; the cancel must land before that for the expiry to be what reverts.
FAULT_S = 40
EXPIRY_MARGIN_S = 30  # grayctl.plan: fault_expire_after_s = window + 30 s
JOB_GUARD_S = 900  # hang guard for one job on a loaded machine, not an expectation
SURVEY = json.loads((PROJECT_ROOT / "awx" / "survey.json").read_text())
PROJECT_COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", ".ansible", ".cache", ".pytest_cache", "runs",
                                             "*.egg-info", "__pycache__", "build", "dist")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = RunLab(tmp_path_factory.mktemp("awx-lab"), prefix="w", count=3, network="10.253")
    try:
        lab.grayctl("lab", "up", "--lab", str(lab.file))
        yield lab
    finally:
        lab.down(TOPOLOGY)


class Job:
    """One AWX job's private data dir and worker process."""

    def __init__(self, lab: RunLab, name: str, playbook: str, extravars: dict[str, Any]) -> None:
        self.pdd = lab.tmp / name
        # the project update (symlinks kept: collections/ansible_collections/grayctl/lab links to the root)
        shutil.copytree(PROJECT_ROOT, self.pdd / "project", symlinks=True, ignore=PROJECT_COPY_IGNORE)
        (self.pdd / "env").mkdir()
        (self.pdd / "env" / "extravars").write_text(json.dumps(extravars))
        (self.pdd / "tmp").mkdir()
        self.result = lab.tmp / f"{name}.result.json"
        spec = {"private_data_dir": str(self.pdd), "playbook": playbook, "result": str(self.result),
                # AWX's "grayctl controller" inventory (awx/create_job_template.yml)
                "inventory": {"all": {"hosts": {"localhost": {
                    "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}}
        job_file = lab.tmp / f"{name}.job.json"
        job_file.write_text(json.dumps(spec))
        venv_bin = str(Path(sys.executable).parent)  # the EE has grayctl on PATH
        env = {**lab.env, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "TMPDIR": str(self.pdd / "tmp")}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("awxjob.py")), str(job_file)],
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)

    @property
    def runs(self) -> Path:
        return self.pdd / "project" / "runs"  # grayctl_runs_dir's default: inside the job's project copy

    def wait(self) -> dict[str, Any]:
        try:
            _, err = self.proc.communicate(timeout=JOB_GUARD_S)
        except subprocess.TimeoutExpired:
            self.cancel()
            _, err = self.proc.communicate(timeout=120)
            raise AssertionError(f"the job took over {JOB_GUARD_S} s; cancelled") from None
        assert self.proc.returncode == 0 and self.result.is_file(), err[-3000:]
        return json.loads(self.result.read_text())

    def cancel(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def processes(self) -> list[str]:
        """Processes still running from this job's files (grayctl run, its step playbooks)."""
        ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
        return [line for line in ps.splitlines() if str(self.pdd) in line and "ps -eo" not in line]

    def discard(self) -> None:
        """What AWX does with the job's container: everything in it goes."""
        shutil.rmtree(self.pdd)


def extravars(lab: RunLab, experiment: dict[str, Any], dest: Path) -> dict[str, Any]:
    """Job template extra vars -> survey defaults -> launch-time vars (AWX's precedence)."""
    return {"grayctl_lab": str(lab.file), **survey_defaults(SURVEY),
            "grayctl_experiment": {**experiment, "lab": str(lab.file)}, "gx_dataset_dest": str(dest)}


def _fault_leftovers(lab: RunLab) -> list[str]:
    """What a fault leaves on a node: qdiscs, nftables tables, fault helper processes."""
    return [x for x in lab.leftovers() if ": qdisc" in x or ": nft " in x or "grayctl.faults." in x]


def _fault_records(lab: RunLab) -> list[dict[str, Any]]:
    """The nodes' own fault records (<id>.json; not the .expiry/.stats side files)."""
    return [json.loads(p.read_text()) for p in lab.dir.glob("nodes/*/faults/*.json") if p.name.count(".") == 1]


def _applied(lab: RunLab) -> bool:
    """The node has applied the fault (its own record, written at the apply: sooner than the run's
    event, which waits for the rest of the inject play)."""
    try:
        return any(r.get("status") == "active" and r.get("start_ns") for r in _fault_records(lab))
    except json.JSONDecodeError:  # a record being replaced
        return False


def test_a_job_keeps_a_verified_dataset_at_the_destination_after_its_container_is_gone(lab: RunLab) -> None:
    dest = lab.tmp / "datasets"
    job = Job(lab, "job-ok", "playbooks/experiment.yml", extravars(lab, EXPERIMENT, dest))
    result = job.wait()
    assert result["status"] == "successful" and result["rc"] == 0, (result["failed"], result["stdout"][-8000:])
    (kept,) = result["artifacts"]["grayctl_datasets"]  # set_stats: the job's artifacts in AWX
    assert kept["status"] == "complete" and kept["copied_and_checked"] is True, kept
    assert kept["host"] == "localhost" and Path(kept["path"]).parent == dest
    assert kept["report"] == f"{kept['path']}/report.html" and kept["files"] > 5
    assert job.processes() == []
    job.discard()
    ds = Path(kept["path"])
    verify = lab.grayctl("dataset", "verify", str(ds))
    assert "ok" in verify.stdout
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["run_id"] == kept["run_id"] == ds.name
    assert manifest["experiment"]["topology"] == TOPOLOGY
    # the run's records came along: the per-step Ansible logs AWX shows as one long task
    assert (dest / f"{ds.name}.run" / "events.jsonl").is_file()
    assert lab.leftovers() == []


def test_a_cancelled_job_leaves_its_fault_to_the_expiry_and_its_lab_to_the_cleanup_job(lab: RunLab) -> None:
    dest = lab.tmp / "datasets-cancel"
    doc = {**EXPERIMENT, "name": "awx-cancel", "schedule": {**EXPERIMENT["schedule"], "fault": f"{FAULT_S}s"}}
    job = Job(lab, "job-cancel", "playbooks/experiment.yml", extravars(lab, doc, dest))
    deadline = time.monotonic() + JOB_GUARD_S
    while not _applied(lab):
        assert job.proc.poll() is None, "the job ended before its fault was applied"
        assert time.monotonic() < deadline, "no fault was applied in time"
        time.sleep(0.5)
    job.cancel()
    result = job.wait()
    assert result["status"] == "canceled" and result["canceled"], result["status"]
    assert job.processes() == []  # grayctl run died with the job's process group
    # the fault outlived the job: nothing of grayctl's cleanup ran
    (record,) = [r for r in _fault_records(lab) if r.get("status") == "active"]
    applied_at = record["start_ns"] / 1e9  # host-measured
    assert time.time() < applied_at + FAULT_S - MAX_LEAD_S, "the cancel came after the revert play could start"
    assert _fault_leftovers(lab), lab.leftovers()
    # the dataset the run began is marked incomplete, and nothing was copied
    (ds,) = [p for p in job.runs.iterdir() if p.is_dir() and not p.name.endswith(".run")]
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["run_status"] == "running"
    verify = lab.grayctl("dataset", "verify", str(ds), check=False)
    assert verify.returncode == 6 and "incomplete" in (verify.stdout + verify.stderr)
    assert not dest.exists()
    job.discard()
    # the on-host expiry reverts the fault by itself, at the fault window + 30 s
    expiry = applied_at + FAULT_S + EXPIRY_MARGIN_S
    while _fault_leftovers(lab) and time.time() < expiry + 30:
        time.sleep(1)
    assert _fault_leftovers(lab) == [], lab.leftovers()
    assert time.time() > expiry - 5, "the fault went before its expiry: something else reverted it"
    # the expiry's own record beside the fault's (the fault's record is reconciled by the next revert)
    (expiry_file,) = lab.dir.glob(f"nodes/*/faults/{record['fault_id']}.expiry.json")
    expired = json.loads(expiry_file.read_text())
    assert expired["reason"] == "expired" and expired["clean"] is True and expired["left"] == [], expired
    # the deployed service and load generator are still up: the cleanup job resets the lab
    assert lab.leftovers() != []
    cleanup = Job(lab, "job-cleanup", "playbooks/experiment_cleanup.yml", {"grayctl_lab": str(lab.file)})
    result = cleanup.wait()
    assert result["status"] == "successful", (result["failed"], result["stdout"][-8000:])
    cleanup.discard()
    assert lab.leftovers() == []
    assert lab.baseline_verifies()
