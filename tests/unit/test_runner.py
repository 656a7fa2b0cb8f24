"""A failed step says why: the module's msg, exit code and the last lines of the command's output,
from real ansible-runner events (a playbook run on localhost), on the console and in the JSON events."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from grayctl.errors import StepFailed
from grayctl.run.ansible import LINE_CHARS, TAIL_LINES, run_playbook
from grayctl.run.events import ConsoleProgress, Emitter, JsonEvents

# Each host fails its own way; one playbook run gives all the real runner_on_failed events.
_FAULTCTL_ANSWER = {"changed": True, "failed": True,
                    "msg": "the delayer did not start: Traceback (most recent call last):\n"
                           '  File "nfqdelay.py", line 40, in <module>\n'
                           "ModuleNotFoundError: No module named 'netfilterqueue'\n"}
_LONG = "x" * 1000 + " the end of a long line"
_PLAYBOOK = f"""\
- name: Fail in several ways
  hosts: all
  gather_facts: false
  tasks:
    - name: Write a reason to stderr and exit 4
      ansible.builtin.command:
        argv: [python3, -c, 'import sys; sys.stderr.write("boom\\n"); sys.exit(4)']
      changed_when: false
      when: inventory_hostname == 'stderr'
    - name: Answer in JSON on stdout like faultctl and exit 4
      ansible.builtin.command:
        argv: [python3, -c, 'import sys; print(open(sys.argv[1]).read()); sys.exit(4)', '{{{{ answer_file }}}}']
      register: answer
      changed_when: false
      failed_when: answer.rc != 0
      when: inventory_hostname == 'stdout'
    - name: Write many lines to stderr and exit 1
      ansible.builtin.command:
        argv: [python3, -c, 'import sys; [print("line", i, file=sys.stderr) for i in range(20)]; print("[error] {_LONG}", file=sys.stderr); sys.exit(1)']
      changed_when: false
      when: inventory_hostname == 'long'
    - name: Apply a spec the real node-side executor refuses
      ansible.builtin.command:
        argv: ['{{{{ ansible_playbook_python }}}}', -m, grayctl.faults.node.faultctl, apply, --dir, '{{{{ fault_dir }}}}',
               --spec, '{{"type": "network-latency", "id": "f1", "interface": "data"}}']
      register: refused
      changed_when: false
      failed_when: refused.rc != 0
      when: inventory_hostname == 'faultctl'
    - name: Fail on the second item of a loop
      ansible.builtin.command:
        argv: [python3, -c, 'import sys; sys.exit(0) if sys.argv[1] == "one" else sys.exit("item " + sys.argv[1] + " broke")', '{{{{ item }}}}']
      loop: [one, two]
      changed_when: false
      when: inventory_hostname == 'loop'
"""


@pytest.fixture(scope="module")
def failed(tmp_path_factory) -> tuple[StepFailed, list[dict]]:
    d: Path = tmp_path_factory.mktemp("boom")
    (d / "boom.yml").write_text(_PLAYBOOK)
    (d / "answer.json").write_text(json.dumps(_FAULTCTL_ANSWER))
    (d / "hosts.yml").write_text(textwrap.dedent("""\
        all:
          vars: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}
          hosts: {stderr: {}, stdout: {}, long: {}, loop: {}, faultctl: {}}
        """))
    events: list[dict] = []
    with pytest.raises(StepFailed) as caught:
        run_playbook(str(d / "boom.yml"), inventory=d / "hosts.yml", on_event=events.append,
                     extravars={"answer_file": str(d / "answer.json"), "fault_dir": str(d / "faults")})
    return caught.value, events


def _host_block(message: str, host: str) -> list[str]:
    lines = message.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {host}: failed in task"))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("      "):
            break
        block.append(line.strip())
    return block


def test_the_events_are_real_runner_on_failed_events_with_the_output(failed):
    _, events = failed
    res = {e["event_data"]["host"]: e["event_data"]["res"] for e in events if e["event"] == "runner_on_failed"}
    assert set(res) == {"stderr", "stdout", "long", "loop", "faultctl"}
    assert res["stderr"]["stderr"] == "boom" and res["stderr"]["msg"] == "non-zero return code"
    assert res["stdout"]["stderr"] == "" and "netfilterqueue" in res["stdout"]["stdout"]


def test_a_failure_names_msg_exit_code_and_the_stderr_reason(failed):
    err, _ = failed
    head, *detail = _host_block(err.message, "stderr")
    assert head.endswith("'Write a reason to stderr and exit 4': non-zero return code (exit code 4)")
    assert detail == ["boom"]


def test_stdout_stands_in_when_stderr_is_empty_and_a_json_answer_shows_its_msg(failed):
    err, _ = failed
    head, *detail = _host_block(err.message, "stdout")
    assert "(exit code 4)" in head
    assert detail[0] == "the delayer did not start: Traceback (most recent call last):"
    assert detail[-1] == "ModuleNotFoundError: No module named 'netfilterqueue'"
    assert not any('"failed": true' in line for line in detail)  # the msg, not the escaped JSON line


def test_the_real_executors_json_answer_shows_as_its_msg(failed):
    err, _ = failed
    head, *detail = _host_block(err.message, "faultctl")
    assert head.endswith("non-zero return code (exit code 3)")
    (reason,) = detail  # faultctl's msg (it refuses the spec's missing expiry), not its JSON line
    assert "must be" in reason and not reason.startswith("{")


def test_only_the_last_lines_are_kept_and_long_ones_keep_their_end(failed):
    err, _ = failed
    _, *detail = _host_block(err.message, "long")
    assert len(detail) == TAIL_LINES
    assert detail[:-1] == [f"line {i}" for i in range(16, 20)]
    assert len(detail[-1]) <= LINE_CHARS and detail[-1].startswith("[error] xxx")
    assert detail[-1].endswith("the end of a long line")


def test_a_loop_says_why_its_failed_item_failed(failed):
    err, _ = failed
    head, *detail = _host_block(err.message, "loop")
    assert head.endswith("non-zero return code (exit code 1)")  # not only "One or more items failed"
    assert detail == ["item two broke"]


def _step_failed(err: StepFailed) -> tuple[str, dict]:
    """The step_failed event as grayctl.run emits it, through the console and the JSON stream."""
    console_out, json_out = io.StringIO(), io.StringIO()
    console = ConsoleProgress(Console(file=console_out, width=400, force_terminal=False))
    emit = Emitter([console, JsonEvents(json_out)])
    emit("step_failed", step="inject:f1", phase="run", seconds=1.0, error=err.message, exit_code=err.exit_code)
    emit.close()
    return console_out.getvalue(), json.loads(json_out.getvalue())


def test_the_console_line_and_the_json_event_carry_the_reason(failed):
    err, _ = failed
    console, event = _step_failed(err)
    lines = console.splitlines()
    first = next(i for i, line in enumerate(lines) if "stderr: failed in task" in line)
    assert lines[first + 1].strip() == "boom"
    assert "ModuleNotFoundError: No module named 'netfilterqueue'" in console
    assert "[error] xxx" in console  # escaped: output is never taken for rich markup
    assert lines[0].startswith("  ✗ inject:f1: boom.yml failed on 5 host(s)")
    data = event["data"]
    assert event["kind"] == "step_failed" and data["exit_code"] == 4
    assert "non-zero return code (exit code 4)\n      boom" in data["error"]
    assert "ModuleNotFoundError: No module named 'netfilterqueue'" in data["error"]
