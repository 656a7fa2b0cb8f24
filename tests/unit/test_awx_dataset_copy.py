"""playbooks/experiment/keep_dataset_tasks.yml: how an AWX job keeps a dataset beyond its container.

Real ansible-playbook runs (local connection) of the task file on small datasets written here with
grayctl's own DatasetWriter: the copy lands with its run records, is checked against the manifest's
sizes and sha256, and is summarised for the job's artifacts; a copy that differs from the manifest,
an unlisted file, or a destination that holds the dataset already fail the job.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from grayctl.dataset.writer import DatasetWriter
from grayctl.paths import PROJECT_ROOT

TASKS = PROJECT_ROOT / "playbooks" / "experiment" / "keep_dataset_tasks.yml"


def _dataset(root: Path, run_id: str = "20250101T000000Z-t-0123abcd") -> Path:
    ds = root / "runs" / run_id
    w = DatasetWriter(ds, {"run_id": run_id, "run_status": "complete",
                           "experiment": {"name": "t", "topology": "gen1-monolith"}})
    w.begin()
    w.write_json("injection.json", [{"id": "f1"}])
    w.write_text("report.html", "<html></html>\n")
    w.finish("complete")
    records = ds.parent / f"{run_id}.run"
    (records / "logs").mkdir(parents=True)
    (records / "events.jsonl").write_text('{"kind": "run_start"}\n')
    return ds


def _keep(tmp: Path, ds: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    out = tmp / "kept.json"
    playbook = tmp / "keep.yml"
    playbook.write_text(json.dumps([{
        "name": "Keep one dataset", "hosts": "localhost", "gather_facts": False,
        "vars": {"gx_run": {"dataset_dest": str(dest), "dataset_host": "localhost"}},
        "tasks": [
            {"name": "Keep it", "ansible.builtin.include_tasks": str(TASKS), "vars": {"gx_dataset": str(ds)}},
            {"name": "Write the summary", "ansible.builtin.copy": {
                "content": "{{ gx_kept | to_json }}", "dest": str(out), "mode": "0644"}},
        ]}]))
    return subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_a_dataset_is_copied_with_its_records_checked_and_summarised(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    dest = tmp_path / "kept"
    proc = _keep(tmp_path, ds, dest)
    assert proc.returncode == 0, proc.stdout[-3000:]
    copy = dest / ds.name
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in ds.iterdir())
    assert all((copy / p.name).read_bytes() == p.read_bytes() for p in ds.iterdir())
    assert (dest / f"{ds.name}.run" / "events.jsonl").is_file()
    (kept,) = json.loads((tmp_path / "kept.json").read_text())
    manifest = json.loads((ds / "manifest.json").read_text())
    assert kept == {
        "run_id": ds.name, "status": "complete", "run_status": "complete", "experiment": "t",
        "topology": "gen1-monolith", "host": "localhost", "path": str(copy), "report": f"{copy}/report.html",
        "records": f"{copy}.run", "files": 2, "bytes": sum(f["bytes"] for f in manifest["files"].values()),
        "copied_and_checked": True}


def test_a_copy_that_differs_from_the_manifest_fails_the_job(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["files"]["report.html"]["sha256"] = "0" * 64  # what a corrupted transfer looks like
    (ds / "manifest.json").write_text(json.dumps(manifest))
    proc = _keep(tmp_path, ds, tmp_path / "kept")
    assert proc.returncode != 0 and "report.html differs from the manifest" in proc.stdout, proc.stdout[-3000:]


def test_a_file_the_manifest_does_not_list_fails_the_job(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    (ds / ".tmp-features.parquet").write_bytes(b"half")  # a crash's leftover
    proc = _keep(tmp_path, ds, tmp_path / "kept")
    assert proc.returncode != 0 and "does not list" in proc.stdout and ".tmp-features" in proc.stdout, \
        proc.stdout[-3000:]


def test_a_dataset_already_at_the_destination_is_never_written_over(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    there = tmp_path / "kept" / ds.name
    there.mkdir(parents=True)
    (there / "manifest.json").write_text("{}")
    proc = _keep(tmp_path, ds, tmp_path / "kept")
    assert proc.returncode != 0 and "exists already" in proc.stdout, proc.stdout[-3000:]
    assert [p.name for p in there.iterdir()] == ["manifest.json"] and (there / "manifest.json").read_text() == "{}"
