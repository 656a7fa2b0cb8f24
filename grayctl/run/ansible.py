"""The playbook driver: playbooks (and ad-hoc modules) through ansible-runner, observed as events.

``run_playbook`` is the only way grayctl touches a host. Each call gets a fresh
private data dir (ansible-runner persists env/extravars between runs otherwise),
owns SIGINT/SIGTERM through ``cancel_callback`` (ansible-runner would install its
own handlers and never restore them), and builds its result from events, because
``runner.stats`` can be empty.

A cancelled run SIGKILLs the ansible process group: no ``always``/handlers run.
Callers that applied something to hosts must run a separate revert afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grayctl.errors import NO_EFFECT_MARK, FaultNoEffect, Interrupted, LabError, NodeUnreachable, StepFailed
from grayctl.paths import (ANSIBLE_CFG, COLLECTIONS_DIR, CONTROLLER_INVENTORY, PLAYBOOKS_DIR, PROJECT_ROOT, ROLES_DIR,
                           require_content)

EventHandler = Callable[[dict[str, Any]], None]


@dataclass
class HostFailure:
    host: str
    task: str
    message: str  # the module's msg and exit code
    unreachable: bool = False
    # The last lines of the command's stderr (stdout when stderr is empty): usually the real reason,
    # where "non-zero return code" alone says nothing.
    detail: list[str] = field(default_factory=list)
    play: str = ""  # the play the task belongs to (a playbook of several: which one stopped)

    def render(self) -> str:
        what = "unreachable" if self.unreachable else "failed"
        return "\n".join([f"{self.host}: {what} in task '{self.task}': {self.message}"]
                         + [f"    {line}" for line in self.detail])


@dataclass
class PlaybookResult:
    playbook: str
    status: str  # successful | failed | canceled | timeout
    rc: int
    failures: list[HostFailure] = field(default_factory=list)
    # task name -> host -> module result (last one wins for loops)
    task_results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    artifact_dir: Path | None = None
    stdout: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0 and not self.failures

    def results(self, task_name: str) -> dict[str, dict[str, Any]]:
        """The module results of the task named ``task_name``, per host."""
        return self.task_results.get(task_name, {})


class _Cancel:
    """SIGINT/SIGTERM set a flag that ansible-runner polls; the previous handlers come back after."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Cancel:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __call__(self) -> bool:
        return self.requested


TAIL_LINES = 5  # of a failed command's output, shown with its failure
LINE_CHARS = 240  # longer lines keep their start and their end (where a traceback's reason is)


def _trim(line: str, limit: int = LINE_CHARS) -> str:
    if len(line) <= limit:
        return line
    head = limit // 3
    return f"{line[:head]} … {line[-(limit - head - 3):]}"


def _tail(text: str) -> list[str]:
    """The last non-empty lines of ``text``, trimmed. A JSON object with a ``msg`` (the node-side
    executors' answer, e.g. faultctl's) stands for its msg: one escaped line would hide the reason."""
    text = text.strip()
    if text.startswith("{"):
        try:
            answer = json.loads(text.splitlines()[-1])
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("msg"), str) and answer["msg"].strip():
            text = answer["msg"].strip()
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return [_trim(line) for line in lines[-TAIL_LINES:]]


def _failed_item(res: dict[str, Any]) -> dict[str, Any]:
    """A loop's result stands for its first failed item (its msg is only "One or more items failed")."""
    items = res.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and (item.get("failed") or item.get("unreachable")):
                return item
    return res


def _failure(res: dict[str, Any]) -> tuple[str, list[str]]:
    """(message, detail): the module's msg and exit code; the last lines of stderr, else of stdout."""
    res = _failed_item(res)
    parts = []
    for key in ("msg", "reason"):
        value = res.get(key)
        value = "; ".join(map(str, value)) if isinstance(value, list) else str(value or "")
        value = value.strip()
        if value and value not in parts:
            parts.append(_trim(value, 1500))
    if res.get("rc") not in (0, None):
        parts.append(f"(exit code {res['rc']})")
    detail: list[str] = []
    for out, err in (("stdout", "stderr"), ("module_stdout", "module_stderr")):
        text = str(res.get(err) or "").strip() or str(res.get(out) or "").strip()
        detail += [line for line in _tail(text) if line not in detail and line not in parts]
    message = " ".join(parts) if parts else "no message"
    return message, detail[-TAIL_LINES:] if detail else []


def _runner_env(verbose: bool) -> dict[str, str]:
    return {
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_DIR),  # holds ansible_collections/grayctl/lab (grayctl.paths)
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "1" if verbose else "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        # ansible-playbook must be the one installed beside this interpreter (a venv need not be active).
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    }


def run_playbook(
    playbook: str,
    *,
    inventory: str | Path | Sequence[str | Path] | None = None,
    extravars: dict[str, Any] | None = None,
    limit: str | None = None,
    check: bool = True,
    verbose: bool = False,
    on_event: EventHandler | None = None,
    log_dir: Path | None = None,
    forks: int | None = None,
) -> PlaybookResult:
    """Run ``playbooks/<playbook>``; raise StepFailed (when ``check``) naming host, task and why."""
    require_content()
    path = Path(playbook) if os.path.isabs(playbook) else PLAYBOOKS_DIR / playbook
    if not path.is_file():
        raise LabError(f"playbook not found: {path}")
    return _run(
        dict(playbook=str(path), inventory=inventories(inventory), extravars=extravars or {},
             limit=limit, forks=forks),
        label=path.name, check=check, verbose=verbose, on_event=on_event, log_dir=log_dir,
    )


def inventories(inventory: str | Path | Sequence[str | Path] | None) -> str | list[str]:
    """ansible-runner's inventory argument: one path, or a list (one -i each); the controller's by default."""
    if isinstance(inventory, (list, tuple)):
        return [str(i) for i in inventory]
    return str(inventory or CONTROLLER_INVENTORY)


def run_module(
    module: str,
    *,
    inventory: str | Path,
    pattern: str = "all",
    module_args: str = "",
    check: bool = True,
    verbose: bool = False,
) -> PlaybookResult:
    """Run one ad-hoc module (e.g. ``ansible.builtin.ping``) against ``pattern``."""
    return _run(
        dict(module=module, module_args=module_args, host_pattern=pattern, inventory=str(inventory)),
        label=module, check=check, verbose=verbose, on_event=None, log_dir=None,
    )


def _run(
    kwargs: dict[str, Any],
    *,
    label: str,
    check: bool,
    verbose: bool,
    on_event: EventHandler | None,
    log_dir: Path | None,
) -> PlaybookResult:
    import ansible_runner  # heavy import, only when a step runs

    result = PlaybookResult(playbook=label, status="unknown", rc=-1)
    private_dir = Path(tempfile.mkdtemp(prefix="grayctl-runner-"))

    def handle(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        kind = event.get("event", "")
        host = data.get("host")
        task = data.get("task") or ""
        res = data.get("res") or {}
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable") and host:
            result.task_results.setdefault(task, {})[host] = res
        unreachable = kind == "runner_on_unreachable"
        if unreachable or (kind == "runner_on_failed" and not data.get("ignore_errors")):
            message, detail = _failure(res)
            result.failures.append(HostFailure(host, task, message, unreachable=unreachable, detail=detail,
                                               play=str(data.get("play") or "")))
        if on_event is not None:
            on_event(event)
        return True  # False would drop the event from runner's own records

    try:
        with _Cancel() as cancel:
            runner = ansible_runner.run(
                private_data_dir=str(private_dir),
                project_dir=str(PROJECT_ROOT),
                envvars=_runner_env(verbose),
                quiet=not verbose,
                event_handler=handle,
                cancel_callback=cancel,
                suppress_env_files=True,
                verbosity=1 if verbose else None,
                **kwargs,
            )
        result.status = runner.status
        result.rc = runner.rc if runner.rc is not None else -1
        stdout = runner.stdout.read() if runner.stdout else ""
        result.stdout = stdout
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"{label}.log").write_text(stdout)
            result.artifact_dir = log_dir
        if cancel.requested or result.status == "canceled":
            raise Interrupted(f"{label} was interrupted")
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)

    if check:
        raise_for(result)
    return result


def raise_for(result: PlaybookResult) -> None:
    """StepFailed (FaultNoEffect for a fault that showed no effect, NodeUnreachable for a host that
    could not be reached at all) naming host, task and why, unless ok."""
    if not result.ok:
        no_effect = any(NO_EFFECT_MARK in line for f in result.failures for line in (f.message, *f.detail))
        lost = sorted({f.host for f in result.failures if f.unreachable})
        if lost and not no_effect:
            raise NodeUnreachable(f"lost the management path to {', '.join(lost)}: {result.playbook} could not "
                                  f"reach {'it' if len(lost) == 1 else 'them'} over SSH\n" + _failure_text(result),
                                  hosts=lost, hint=_hint(result))
        raise (FaultNoEffect if no_effect else StepFailed)(_failure_text(result), hint=_hint(result))


def _failure_text(result: PlaybookResult) -> str:
    if result.failures:
        lines = [f"{result.playbook} failed on {len({f.host for f in result.failures})} host(s)"]
        lines += [textwrap.indent(f.render(), "  ") for f in result.failures[:8]]
        return "\n".join(lines)
    tail = "\n".join(result.stdout.strip().splitlines()[-15:])
    return f"{result.playbook} ended with status {result.status} (rc {result.rc})\n{tail}"


def _hint(result: PlaybookResult) -> str | None:
    if any(f.unreachable for f in result.failures):
        return ("is the lab up, is the node's management link up and its SSH port open? 'grayctl lab status'; "
                "a node's faults end at their on-host expiry without the controller")
    return "re-run with --verbose for Ansible's full output"
