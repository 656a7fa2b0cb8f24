"""One AWX job, run the way an AWX execution node runs it (driven by tests/lab/test_awx.py).

    python tests/lab/awxjob.py JOB.json

JOB.json: ``private_data_dir`` (fresh, with ``project/`` and ``env/extravars`` — JSON, as AWX
writes them — already in it), ``playbook``, ``inventory`` (a mapping) and ``result`` (where the
outcome is written). The test starts this process with stdin closed and in its own session: no TTY.

SIGTERM is AWX's cancel: ``receptorctl work cancel`` signals the ansible-runner worker, whose
cancel_callback then returns True and ansible-runner SIGKILLs the ansible-playbook process group —
``grayctl run`` inside it included, so none of grayctl's own cleanup runs.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import ansible_runner


def survey_defaults(survey: dict[str, Any]) -> dict[str, Any]:
    """The extra vars AWX takes from a survey nobody answered: each question's default that passes
    the question's own checks (AWX: SurveyJobTemplateMixin._update_unified_job_kwargs)."""
    out: dict[str, Any] = {}
    for q in survey["spec"]:
        value = q.get("default")
        if value is None:
            continue
        if q["type"] in ("multiplechoice", "multiselect"):
            choices = q["choices"].split("\n") if isinstance(q["choices"], str) else q["choices"]
            if value not in choices:
                continue
        elif q["type"] in ("text", "textarea", "password"):
            if not isinstance(value, str) or len(value) < int(q.get("min") or 0) or (
                    q.get("max") not in (None, "") and len(value) > int(q["max"])):
                continue
        elif q["type"] == "integer" and not isinstance(value, int):
            continue
        out[q["variable"]] = value
    return out


def main(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda _n, _f: cancel.set())
    failed: list[dict[str, Any]] = []
    artifacts: dict[str, Any] = {}

    def on_event(ev: dict[str, Any]) -> bool:
        data = ev.get("event_data") or {}
        if ev.get("event") == "runner_on_failed" and not data.get("ignore_errors"):
            res = data.get("res") or {}
            failed.append({"task": data.get("task"), "msg": res.get("msg"), "stderr": str(res.get("stderr", ""))[-2000:]})
        elif ev.get("event") == "playbook_on_stats":
            artifacts.update(data.get("artifact_data") or {})
        return True  # False (or None) would drop the event

    runner = ansible_runner.run(private_data_dir=job["private_data_dir"], playbook=job["playbook"],
                                inventory=job["inventory"], event_handler=on_event, cancel_callback=cancel.is_set,
                                quiet=True)
    stdout = runner.stdout.read() if runner.stdout else ""
    Path(job["result"]).write_text(json.dumps({
        "status": runner.status, "rc": runner.rc, "canceled": runner.canceled, "failed": failed,
        "artifacts": artifacts, "stdout": stdout[-20000:]}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
