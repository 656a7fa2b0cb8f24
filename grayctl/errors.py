"""The one exception root and the exit code of each family.

Every error a user can cause or meet is a ``GrayctlError``; the CLI prints its
``render()`` and exits with its ``exit_code``. A traceback appears only under
``--verbose`` — anything else reaching the top is a bug in grayctl.

Exit codes (docs/exit-codes.md):
  0  success
  1  internal error (a bug: please report with --verbose output)
  2  bad input: an experiment, topology, lab file or option is invalid
  3  lab/environment problem: not root, missing tool, lab not up, address clash
  4  a step failed on a host (Ansible reported failure or unreachable: NodeUnreachable, the run's
     dataset then marked incomplete)
  5  baseline drift: a node does not match its golden baseline
  6  dataset problem: a run directory is incomplete, corrupted or not a dataset
  7  a steady-state check marked fail_run failed (the dataset is complete)
  8  a fault was applied but had no effect on the host (FaultNoEffect)
  9  the load generator fell behind its schedule: the dataset is marked invalid-load (LoadInvalid)
  130 interrupted (Ctrl-C / SIGTERM), after cleanup
"""

from __future__ import annotations

from dataclasses import dataclass, field


class GrayctlError(Exception):
    exit_code = 1
    title = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"{self.title}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


@dataclass
class Problem:
    """One thing wrong with one place in one input file."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    path: str | None = None  # field path, e.g. "chaos_injection.parameters.delay"
    expected: str | None = None
    suggestion: str | None = None

    def render(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        head = f"{where}: "
        if self.path:
            head += f"{self.path}: "
        lines = [head + self.message]
        if self.expected:
            lines.append(f"    expected: {self.expected}")
        if self.suggestion:
            lines.append(f"    did you mean: {self.suggestion}")
        return "\n".join(lines)


MAX_PROBLEMS_SHOWN = 8  # one screen


@dataclass
class _ProblemList:
    items: list[Problem] = field(default_factory=list)


class InputError(GrayctlError):
    """A user-written file or option is invalid. Nothing was changed."""

    exit_code = 2
    title = "invalid input"

    def __init__(self, problems: list[Problem] | Problem, *, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        first = self.problems[0].render() if self.problems else "invalid input"
        super().__init__(first, hint=hint)

    def render(self) -> str:
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        body = "\n".join(p.render() for p in shown)
        more = len(self.problems) - len(shown)
        if more > 0:
            body += f"\n  … and {more} more problem(s)"
        text = f"{self.title}:\n{body}" if len(shown) > 1 else f"{self.title}: {body}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class LabError(GrayctlError):
    """The lab or this machine is not in a state to do what was asked."""

    exit_code = 3
    title = "lab error"


class StepFailed(GrayctlError):
    """A playbook step failed on a host."""

    exit_code = 4
    title = "step failed"


class NodeUnreachable(StepFailed):
    """A playbook step could not reach a host at all: the management path (its link, or SSH) is
    lost. Its faults still end at their on-host expiry; what the run collected lacks that node, so
    a run's dataset is marked ``incomplete`` (never ``complete``). Exit 4, like any failed step."""

    title = "node unreachable"

    def __init__(self, message: str, *, hosts: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.hosts = sorted(hosts)


# The words faultctl's answer carries when an apply shows no effect (grayctl.faults.node.faultctl).
NO_EFFECT_MARK = "shows no effect within"


class FaultNoEffect(StepFailed):
    """A fault was applied but its effect was not seen on the host, so its step failed (it was reverted)."""

    exit_code = 8
    title = "fault showed no effect"


class DriftError(GrayctlError):
    """A node differs from its golden baseline."""

    exit_code = 5
    title = "baseline drift"


class DatasetError(GrayctlError):
    """A run directory is not a whole, verified dataset (or cannot be read or exported)."""

    exit_code = 6
    title = "dataset error"


class ChecksFailed(GrayctlError):
    """A steady-state check marked ``fail_run: true`` failed. The dataset is complete."""

    exit_code = 7
    title = "hypothesis failed"


class LoadInvalid(GrayctlError):
    """The load generator fell behind its schedule (grayctl.dataset.load_validity): the dataset is whole but
    marked ``invalid-load``, since its latencies and labels include a lagging instrument."""

    exit_code = 9
    title = "load generator fell behind"


class Interrupted(GrayctlError):
    exit_code = 130
    title = "interrupted"
