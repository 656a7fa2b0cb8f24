"""grayctl_process (plugins/modules of grayctl.lab), run the way Ansible runs it, on real processes.

The module is executed as a script with an args file (as AnsiballZ does, its module_utils importable
from the checkout's collections path), starting real Python
processes in a temporary directory; no root, no SSH. Each test stops what it started (state
stopped with prune), and the fixture checks that no process of the test is left.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from module_run import run_module


def run(tmp: Path, **args: Any) -> dict[str, Any]:
    return run_module("grayctl_process", tmp, args)


def matching(fragment: str) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-f", fragment], check=False, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Path]:
    """A services directory; everything recorded in it is stopped and removed afterwards."""
    base = tmp_path / "svc"
    yield base
    run(tmp_path, processes=[], state="stopped", prune=str(base))
    assert matching(str(base)) == []


def python_proc(base: Path, name: str, body: str, **extra: Any) -> dict[str, Any]:
    """An entry whose command line names its directory (so ``exclusive`` can find it)."""
    d = base / name
    return {"name": name, "dir": str(d), "argv": [sys.executable, "-c", body, str(d)], **extra}


def ready_after(base: Path, name: str, seconds: float) -> dict[str, Any]:
    body = (f"import pathlib, sys, time; time.sleep({seconds}); "
            "pathlib.Path(sys.argv[1], 'ready').touch(); time.sleep(600)")
    return python_proc(base, name, body, ready_file=str(base / name / "ready"))


def actions(result: dict[str, Any]) -> dict[str, str]:
    return {r["name"]: r["action"] for r in result["results"]}


def test_a_list_starts_together_and_converges_idempotently(svc: Path, tmp_path: Path) -> None:
    procs = [ready_after(svc, "a-0", 1.0), ready_after(svc, "b-0", 1.0),
             python_proc(svc, "c-0", "import time; time.sleep(600)", files={"config.json": {"x": 1}})]
    args = {"processes": procs, "dir_mode": "0755", "prune": str(svc), "exclusive": str(svc), "ready_timeout": 20}
    first = run(tmp_path, **args)
    assert not first.get("failed"), first
    assert actions(first) == {"a-0": "started", "b-0": "started", "c-0": "started"}
    assert json.loads((svc / "c-0" / "config.json").read_text()) == {"x": 1}
    assert len(first["matching"]) == 3
    again = run(tmp_path, **args)
    assert not again["changed"] and set(actions(again).values()) == {"none"}, again
    # a changed file restarts that process only
    procs[2]["files"] = {"config.json": {"x": 2}}
    third = run(tmp_path, **args)
    assert actions(third) == {"a-0": "none", "b-0": "none", "c-0": "restarted"}
    assert third["results"][2]["pid"] != first["results"][2]["pid"]


def test_prune_stops_and_removes_a_directory_no_longer_listed(svc: Path, tmp_path: Path) -> None:
    old = python_proc(svc, "old-0", "import time; time.sleep(600)")
    new = python_proc(svc, "new-0", "import time; time.sleep(600)")
    assert not run(tmp_path, processes=[old, new], dir_mode="0755").get("failed")
    result = run(tmp_path, processes=[new], prune=str(svc), exclusive=str(svc))
    assert not result.get("failed"), result
    assert result["pruned"] == [str(svc / "old-0")] and result["changed"]
    assert not (svc / "old-0").exists()
    assert [m.split()[0] for m in matching(str(svc))] == [str(result["results"][0]["pid"])]


def test_stopped_with_prune_leaves_nothing(svc: Path, tmp_path: Path) -> None:
    procs = [python_proc(svc, n, "import time; time.sleep(600)") for n in ("a-0", "b-0")]
    assert not run(tmp_path, processes=procs, dir_mode="0700").get("failed")
    result = run(tmp_path, processes=[], state="stopped", prune=str(svc), exclusive=str(svc))
    assert not result.get("failed"), result
    assert result["changed"] and not svc.exists() and matching(str(svc)) == []


def test_exclusive_names_a_process_that_is_not_listed(svc: Path, tmp_path: Path) -> None:
    svc.mkdir()
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", str(svc / "stray")])
    try:
        result = run(tmp_path, processes=[python_proc(svc, "a-0", "import time; time.sleep(600)")],
                     dir_mode="0755", exclusive=str(svc))
        assert result.get("failed") and "not listed" in result["msg"] and str(stray.pid) in result["msg"]
    finally:
        stray.kill()
        stray.wait()


def test_failures_name_the_process_and_keep_the_others(svc: Path, tmp_path: Path) -> None:
    crash = python_proc(svc, "crash-0", "import sys; print('bad flag', file=sys.stderr); sys.exit(3)",
                        ready_file=str(svc / "crash-0" / "ready"))
    late = ready_after(svc, "late-0", 30)
    good = ready_after(svc, "good-0", 0.2)
    result = run(tmp_path, processes=[crash, late, good], dir_mode="0755", ready_timeout=2, stop_timeout=1)
    assert result.get("failed")
    assert "crash-0 exited with 3 during startup; stderr: bad flag" in result["msg"]
    assert "late-0 not ready after 2s (stopped it)" in result["msg"]
    assert {r["name"]: r["pid"] is not None for r in result["results"]} == {
        "crash-0": False, "late-0": False, "good-0": True}


def test_health_urls_are_checked_on_start(svc: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = {"name": "web-0", "dir": str(svc / "web-0"),
              "argv": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(svc)],
              "health_url": [f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/web-0/"]}
    result = run(tmp_path, processes=[server], dir_mode="0755", ready_timeout=20)
    assert not result.get("failed") and result["results"][0]["health"] == 200, result
    missing = {**server, "health_url": f"http://127.0.0.1:{port}/nothing-here"}
    result = run(tmp_path, processes=[missing], ready_timeout=1)
    assert result.get("failed") and "did not answer 200 within 1s" in result["msg"]
    stopped = run(tmp_path, processes=[server], state="stopped", closed_ports=[f"127.0.0.1:{port}"])
    assert not stopped.get("failed") and stopped["results"][0]["action"] == "stopped", stopped


def test_closed_ports_names_an_address_that_still_accepts(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        address = f"127.0.0.1:{s.getsockname()[1]}"
        result = run(tmp_path, processes=[], state="stopped", closed_ports=[address])
    assert result.get("failed") and result["msg"] == "still accepting connections after the stop: " + address


def test_the_single_process_interface_is_unchanged(svc: Path, tmp_path: Path) -> None:
    one = ready_after(svc, "one-0", 0.2)
    result = run(tmp_path, dir_mode="0700", **one)
    assert not result.get("failed") and result["action"] == "started" and result["pid"], result
    assert "results" not in result
    assert run(tmp_path, **one)["action"] == "none"
    stopped = run(tmp_path, name="one-0", dir=one["dir"], state="stopped")
    assert stopped["action"] == "stopped" and stopped["changed"] and stopped["pid"] is None
    assert not (svc / "one-0" / "pid").exists()
    # a finite job: done once its done file exists, never run again
    job = python_proc(svc, "job-0", "import pathlib, sys, time; time.sleep(0.5); pathlib.Path(sys.argv[1], 'done').touch()",
                      done_file=str(svc / "job-0" / "done"), settle=0.0)
    assert run(tmp_path, dir_mode="0700", **job)["action"] == "started"
    assert run(tmp_path, name="job-0", dir=job["dir"], state="finished", wait_timeout=10)["action"] == "finished"
    assert run(tmp_path, **job)["action"] == "done"


def test_bad_input_is_a_clear_failure(tmp_path: Path) -> None:
    assert "needs name and dir" in run(tmp_path, argv=["true"])["msg"]
    result = run(tmp_path, processes=[{"name": "x", "dir": str(tmp_path / "x")}])
    assert result.get("failed") and "x: argv is required" in result["msg"]
    result = run(tmp_path, processes=[{"name": "x", "dir": str(tmp_path / "x"), "argv": ["true"], "files": {"../e": 1}}])
    assert "is not a plain file name" in result["msg"]
