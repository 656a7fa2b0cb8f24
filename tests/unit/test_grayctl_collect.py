"""grayctl_collect (grayctl.lab's module + action plugin) and grayctl_clock's write mode, on real files and processes.

The module runs as a script with an args file (as AnsiballZ does); the action plugins run under a real
ansible-playbook on localhost (local connection): no root, no SSH. Every process a test starts is gone
at its end.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from module_run import COLLECTIONS_DIR, run_module


def run(tmp: Path, **args: Any) -> dict[str, Any]:
    return run_module("grayctl_collect", tmp, args)


def tree(root: Path) -> None:
    (root / "a-0").mkdir(parents=True)
    (root / "b-0" / "deep").mkdir(parents=True)
    (root / "a-0" / "spans.jsonl").write_text('{"x": 1}\n' * 1000)
    (root / "a-0" / "runtime.jsonl").write_text('{"ts": "t"}\n')
    (root / "a-0" / "config.json").write_text("{}")
    (root / "b-0" / "spans.jsonl").write_text("")
    (root / "b-0" / "deep" / "spans.jsonl").write_text("too deep\n")
    (root / "summary.json").write_text(json.dumps({"valid": True, "sent": 3}))


def record(d: Path, proc: subprocess.Popen) -> None:
    """What grayctl_process leaves: the pid and the command it ran."""
    (d / "pid").write_text(f"{proc.pid}\n")
    (d / "pid.cmd").write_text("\0".join(proc.args))


def test_finds_matching_files_to_the_depth_and_returns_their_content(tmp_path: Path) -> None:
    root = tmp_path / "services"
    tree(root)
    res = run(tmp_path, dir=str(root), patterns=["spans.jsonl", "runtime.jsonl"], depth=1)
    assert not res.get("failed"), res
    files = {f["path"]: f for f in res["files"]}
    assert set(files) == {"a-0/spans.jsonl", "a-0/runtime.jsonl", "b-0/spans.jsonl"}
    data = zlib.decompress(base64.b64decode(files["a-0/spans.jsonl"]["data"]))
    assert data == (root / "a-0" / "spans.jsonl").read_bytes()
    assert files["b-0/spans.jsonl"]["size"] == 0


def test_a_missing_directory_holds_no_files_but_a_required_file_fails_naming_it(tmp_path: Path) -> None:
    assert run(tmp_path, dir=str(tmp_path / "none"), patterns=["*.jsonl"], depth=1)["files"] == []
    tree(tmp_path / "w")
    res = run(tmp_path, dir=str(tmp_path / "w"), patterns=["summary.json"], required=["requests.parquet"])
    assert res["failed"] and "requests.parquet" in res["msg"]


def test_read_returns_the_json_and_large_files_are_left_to_the_action(tmp_path: Path) -> None:
    tree(tmp_path / "w")
    res = run(tmp_path, dir=str(tmp_path / "w"), patterns=["*.jsonl"], depth=1, read=["summary.json"], inline_max=100)
    assert res["contents"] == {"summary.json": {"valid": True, "sent": 3}}
    big = next(f for f in res["files"] if f["path"] == "a-0/spans.jsonl")
    assert "data" not in big and big["abs"] == str(tmp_path / "w" / "a-0" / "spans.jsonl")


def test_waits_for_the_recorded_process_then_finds_what_it_wrote(tmp_path: Path) -> None:
    d = tmp_path / "workload"
    d.mkdir()
    # long enough that the module is waiting before the file appears, even on a loaded machine
    body = "import sys, time, pathlib; time.sleep(3); pathlib.Path(sys.argv[1], 'summary.json').write_text('{}')"
    proc = subprocess.Popen([sys.executable, "-c", body, str(d)])
    record(d, proc)
    res = run(tmp_path, dir=str(d), read=["summary.json"], wait_pid_file=str(d / "pid"), wait_timeout=30,
              absent_cmdline=f"-c {body} {d}")
    proc.wait(timeout=10)
    assert not res.get("failed"), res
    assert res["waited_s"] >= 0.3 and res["contents"] == {"summary.json": {}} and not res["changed"]


def test_stop_sends_sigterm_and_a_process_left_fails_with_its_command_line(tmp_path: Path) -> None:
    d = tmp_path / "workload"
    d.mkdir()
    body = "import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", body, str(d)], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", body, str(d), "stray"])
    try:
        record(d, proc)
        res = run(tmp_path, dir=str(d), wait_pid_file=str(d / "pid"), wait_timeout=0.3, wait_required=True)
        assert res["failed"] and "still running" in res["msg"]
        res = run(tmp_path, dir=str(d), wait_pid_file=str(d / "pid"), stop=True, wait_timeout=10,
                  absent_cmdline=f"{d} stray")
        assert res["stopped"] and res["changed"] and proc.wait(timeout=10) == -15
        assert res["failed"] and str(other.pid) in res["msg"]
    finally:
        for p in (proc, other):
            p.kill()
            p.wait()


def _playbook(tmp: Path, tasks: list[dict[str, Any]]) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run ``tasks`` on localhost; the process and each task's registered result."""
    out = tmp / "results.json"
    out.unlink(missing_ok=True)
    named = [{**t, "register": f"r{i}"} for i, t in enumerate(tasks)]
    names = ", ".join(f"r{i}" for i in range(len(tasks)))
    named.append({"ansible.builtin.copy": {"content": "{{ [%s] | to_json }}" % names, "dest": str(out)}})
    pb = tmp / "pb.yml"
    pb.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": named}]))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_DIR), "ANSIBLE_CONFIG": str(tmp / "none.cfg")}
    proc = subprocess.run([sys.executable, "-m", "ansible", "playbook", "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(pb)],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc, (json.loads(out.read_text()) if out.exists() else [])


def test_the_action_writes_the_files_on_the_controller_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    root, dest = tmp_path / "services", tmp_path / "dest"
    tree(root)
    task = {"grayctl.lab.grayctl_collect": {"dir": str(root), "patterns": ["spans.jsonl", "runtime.jsonl"], "depth": 1,
                                "inline_max": 2000, "dest": str(dest)}}
    first, results = _playbook(tmp_path, [task])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    res = results[0]
    assert res["changed"] and all("data" not in f for f in res["files"])
    for rel in ("a-0/spans.jsonl", "a-0/runtime.jsonl", "b-0/spans.jsonl"):  # a-0/spans.jsonl: over inline_max
        assert (dest / rel).read_bytes() == (root / rel).read_bytes()
    assert not (dest / "a-0" / "config.json").exists() and not (dest / "b-0" / "deep").exists()
    again, results = _playbook(tmp_path, [task])
    assert again.returncode == 0 and not results[0]["changed"]


def test_clock_write_mode_writes_the_offsets_json_without_touching_a_host(tmp_path: Path) -> None:
    out = tmp_path / "clock.json"
    offsets = {"node01": {"offset_ns": 5, "rtt_ns": 100, "at": "x", "samples": []}}
    started = time.time()
    done, results = _playbook(tmp_path, [{"grayctl.lab.grayctl_clock": {"samples": 1}},
                                         {"grayctl.lab.grayctl_clock": {"write": str(out), "offsets": offsets}}])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    measured = results[0]
    assert abs(measured["offset_ns"]) < 5e9 and measured["rtt_ns"] < (time.time() - started) * 1e9
    assert json.loads(out.read_text()) == offsets
    bad, _ = _playbook(tmp_path, [{"grayctl.lab.grayctl_clock": {"write": "relative.json", "offsets": offsets}}])
    assert bad.returncode != 0 and "absolute" in bad.stdout
