"""What a run reports while it runs: one event model, and the handlers that observe it.

Map:
  RunEvent(kind, at, step, phase, data)   one thing that happened (``at``: UTC epoch seconds)
  Emitter(handlers)                        fans an event out; a failing handler is dropped, never the run
  JsonEvents(stream)                       one JSON object per line (``grayctl run --json``)
  RunLog(path)                             the same lines appended to ``<records>/events.jsonl``
  ConsoleProgress(console)                 a live display for people (rich): the current step and
                                           phase with time left, a bar for the whole run, live user
                                           figures from Prometheus; plain lines when not on a terminal

The run (``grayctl.run``) only emits; nothing here feeds back into the run. Kinds:

  run_start       data: run_id, run_dir, records_dir, experiment, topology, lab, schedule_s, steps,
                  teardown (reset|undeploy, None with --keep)
  step_start      step: name; phase: prepare|run|collect|teardown|cleanup; data: why
  step_end        data: seconds
  step_failed     data: seconds, error (per host: task, the module's msg and exit code, then the
                  last lines of its stderr, or stdout when stderr is empty), exit_code
  monitor_ready   data: url (Prometheus), workload_url (the load generator: /metrics, /phases)
  timeline_start  data: t0 (UTC epoch s: the load generator's anchor, or an estimate: t0_source), schedule_s, load1 (load average then), phases [{phase, start_s, end_s}]
  phase           phase: warmup|baseline|fault|recovery; data: start_s, end_s
  fault           step: inject:<id>|revert:<id>; data: id, state (applied|reverted), planned_s, aim_s
                  (a revert is aimed at the apply + the planned length), at_s (host-measured; s since
                  the estimated t0)
  fault_timing    data: faults [{id, planned, actual, aim_end, lag, held_s}] (plan.fault_edges), from the
                  exact t0 once the load generator's records are in: the report's figures
  timeline_end    data: seconds
  cleanup         step: the cleanup step; data: ok, error, seconds
  warning         data: message
  run_end         data: status, exit_code, dataset, report, error, checks_failed, checks_unverified
                  (no data or not evaluated), seconds
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["ConsoleProgress", "Emitter", "EventHandler", "JsonEvents", "RunEvent", "RunLog", "phase_line"]

PHASE_WAIT_S = 12.0  # how long an ended phase's line waits for its last requests to be answered


def phase_line(name: str, fig: dict[str, Any]) -> str:
    """One phase's users in words: the console's phase lines and the closing summary say it alike."""
    if not fig.get("requests"):
        return f"phase {name}: no requests answered"
    err = fig.get("error_rate") or 0.0
    return (f"phase {name}: {fig['requests']} requests, p50 {_ms(fig.get('p50_s'))}, p99 {_ms(fig.get('p99_s'))}, "
            f"errors {err * 100:.2f}%")


@dataclass(frozen=True)
class RunEvent:
    kind: str
    at: float = field(default_factory=time.time)
    step: str | None = None
    phase: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": round(self.at, 6), "step": self.step, "phase": self.phase,
                "data": self.data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str, sort_keys=False)


EventHandler = Callable[[RunEvent], None]


class Emitter:
    """Calls every handler with every event. A handler that raises is reported once and dropped:
    an observer must never be the reason a fault stays applied."""

    def __init__(self, handlers: Iterable[EventHandler] = ()) -> None:
        self.handlers: list[EventHandler] = list(handlers)
        self._lock = threading.Lock()

    def add(self, handler: EventHandler) -> None:
        self.handlers.append(handler)

    def __call__(self, kind: str, *, step: str | None = None, phase: str | None = None, **data: Any) -> RunEvent:
        from grayctl.errors import Interrupted

        event = RunEvent(kind, time.time(), step, phase, data)
        interrupted: Interrupted | None = None
        with self._lock:
            for handler in list(self.handlers):
                try:
                    handler(event)
                except Interrupted as err:
                    # SIGINT/SIGTERM landed while a handler ran: not the handler's failure. It stays,
                    # the others still see the event, and the run gets its interrupt.
                    interrupted = interrupted or err
                except Exception as err:  # noqa: BLE001 - observers are outside the main flow
                    self.handlers.remove(handler)
                    print(f"grayctl: event handler {handler!r} failed and was dropped: {err}", file=sys.stderr)
        if interrupted is not None:
            raise interrupted
        return event

    def close(self) -> None:
        for handler in self.handlers:
            close = getattr(handler, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001, S110 - closing an observer must not fail the run
                    pass


class JsonEvents:
    """One JSON object per line on ``stream`` (stdout by default), flushed at once for pipes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: RunEvent) -> None:
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()


class RunLog:
    """Appends every event to ``path`` (JSON lines); the file is the run's own account of itself."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __call__(self, event: RunEvent) -> None:
        self._f.write(event.to_json() + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


# -- the console ---------------------------------------------------------------------------

NOMINAL_STEP_S = 5.0  # weight of one playbook step in the whole-run bar (the schedule counts in seconds)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}" if seconds >= 60 else f"{seconds:.0f}s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


class ConsoleProgress:
    """The run as a person follows it, on stderr. Uses a live display on a terminal, lines otherwise.

    The live user figures come from a ``LivePoller`` started on ``monitor_ready`` and stopped at
    ``timeline_end``: reading Prometheus is this handler's business, not the run's.
    """

    def __init__(self, console: Any = None, *, live_interval: float = 2.0) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.live_interval = live_interval
        self.interactive = bool(self.console.is_terminal)
        self.steps_total = 0
        self.steps_done = 0
        self.schedule_s = 0.0
        self.t0: float | None = None
        self.approx = "≈"  # t0 is an estimate unless the load generator's anchor was read
        self.step: str | None = None
        self.step_phase: str | None = None
        self.step_started = 0.0
        self.phase: str | None = None
        self.phase_end_s: float | None = None
        self.timeline_done = False
        self.figures: Any = None
        self.title = ""
        self._poller: Any = None
        self._live: Any = None
        self._url: str | None = None
        self._workload_url: str | None = None
        self._phases: list[tuple[str, float, float]] = []
        self._phase_threads: list[threading.Thread] = []

    # -- event handling ------------------------------------------------------------------
    def __call__(self, ev: RunEvent) -> None:
        d = ev.data
        if ev.kind == "run_start":
            self.steps_total = len(d.get("steps") or [])
            self.schedule_s = float(d.get("schedule_s") or 0.0)
            self.title = f"{d.get('experiment')} ({d.get('topology')}) on lab {d.get('lab')} · run {d.get('run_id')}"
            self._print(f"[bold]grayctl run[/] {self.title}")
            if self.interactive:
                from rich.live import Live

                self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
                self._live.start()
        elif ev.kind == "step_start":
            self.step, self.step_phase, self.step_started = ev.step, ev.phase, ev.at
        elif ev.kind == "step_end":
            if ev.phase != "run":
                self.steps_done += 1
            self._print(f"  [green]✓[/] {ev.step} [dim]{d.get('seconds', 0):.1f}s[/]")
            self.step = None
        elif ev.kind == "step_failed":
            self._print_failure(ev.step, str(d.get("error") or "no reason given"))
        elif ev.kind == "monitor_ready":
            self._url = d.get("url")
            self._workload_url = d.get("workload_url")
        elif ev.kind == "timeline_start":
            self.t0 = float(d.get("t0") or ev.at)
            self._phases = [(p["phase"], float(p["start_s"]), float(p["end_s"])) for p in d.get("phases") or []]
            self.approx = "" if d.get("t0_source") == "load generator" else "≈"
            if self._url and self._poller is None:
                from grayctl.run.live import LivePoller

                self._poller = LivePoller(self._url, self._on_figures, self.live_interval).start()
        elif ev.kind == "phase":
            if self.phase is not None:
                self._phase_ended(self.phase)
            self.phase, self.phase_end_s = ev.phase, d.get("end_s")
            self._print(f"  [cyan]▸[/] phase {ev.phase} [dim]({_fmt_s(d.get('end_s', 0) - d.get('start_s', 0))})[/]")
        elif ev.kind == "fault":
            planned = d.get("planned_s", 0)
            aim = d.get("aim_s", planned)
            moved = "" if abs(aim - planned) < 0.05 else f", planned t+{planned:.1f}s"
            # with an estimated t0 these are approximate; fault_timing has the exact lags at the end
            a = self.approx
            self._print(f"  [magenta]⚡[/] {d.get('id')} {d.get('state')} at {a}t+{d.get('at_s', 0):.1f}s "
                        f"[dim](aimed t+{aim:.1f}s{moved}, lag {a}{d.get('at_s', 0) - aim:+.1f}s)[/]")
        elif ev.kind == "fault_timing":
            for f in d.get("faults") or []:
                (a, b), (la, lb) = f["actual"], f["lag"]
                if a is None:
                    continue
                end = "not reverted" if b is None else f"reverted t+{b:.1f}s ({lb:+.1f}s from its aim)"
                held = "" if f.get("held_s") is None else \
                    f", held {f['held_s']:.1f}s of {f['planned'][1] - f['planned'][0]:g}s"
                self._print(f"  [magenta]⚡[/] {f['id']}: applied t+{a:.1f}s ({la:+.1f}s), {end}{held} "
                            "[dim](host times from the load generator's start, as in the report)[/]")
        elif ev.kind == "timeline_end":
            self.timeline_done = True
            self.steps_done += 1
            self._stop_poller()
            if self.phase is not None:
                self._phase_ended(self.phase)
                self.phase = None
        elif ev.kind == "cleanup":
            mark = "[green]✓[/]" if d.get("ok") else "[yellow]![/]"
            extra = "" if d.get("ok") else f": {d.get('error')}"
            self._print(f"  {mark} cleanup {ev.step}{extra}")
        elif ev.kind == "warning":
            self._print(f"  [yellow]warning:[/] {d.get('message')}")
        elif ev.kind == "run_end":
            self.close()
        if self._live is not None:
            self._live.update(self._render())

    def _phase_ended(self, name: str) -> None:
        """The ended phase's users, as the dataset counts them (the generator's /phases: requests by
        intended second, grayctl.phases), once its requests are answered; in a thread, so the
        timeline never waits for the display."""
        if not self._workload_url or not self._phases:
            return
        t = threading.Thread(target=self._print_phase, args=(name,), name="grayctl-phase", daemon=True)
        self._phase_threads.append(t)
        t.start()

    def _print_phase(self, name: str) -> None:
        query = urllib.parse.urlencode([("phase", f"{p}:{a:g}:{b:g}") for p, a, b in self._phases])
        deadline = time.monotonic() + PHASE_WAIT_S
        fig = None
        while True:
            try:
                with urllib.request.urlopen(f"{self._workload_url}/phases?{query}", timeout=2.0) as resp:
                    fig = json.loads(resp.read()).get(name)
            except (OSError, ValueError):
                fig = None
            if (fig is not None and not fig.get("pending")) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if fig is None:
            self._print(f"  [cyan]◂[/] phase {name}: [dim]the load generator did not answer (it ends with the "
                        "schedule); the summary at the end has this phase[/]")
            return
        left = f" [yellow]({fig['pending']} not answered yet)[/]" if fig.get("pending") else ""
        self._print(f"  [cyan]◂[/] {phase_line(name, fig)}{left}")

    def _on_figures(self, figures: Any) -> None:
        self.figures = figures
        if self._live is not None:
            self._live.update(self._render())

    def _stop_poller(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    def close(self) -> None:
        self._stop_poller()
        for t in self._phase_threads:
            t.join(PHASE_WAIT_S + 3)
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- rendering -----------------------------------------------------------------------
    def _print(self, markup: str) -> None:
        self.console.print(markup, highlight=False)

    def _print_failure(self, step: str | None, error: str) -> None:
        """The whole reason, every line: the runner's text names host, task, msg and the command's
        last output lines. Escaped: output like "[Errno 2]" is not markup."""
        from rich.markup import escape

        first, *rest = error.splitlines() or [""]
        self._print(f"  [red]✗[/] {escape(str(step))}: {escape(first)}")
        for line in rest:
            self._print(f"    {escape(line)}")

    def _elapsed_timeline(self) -> float:
        if self.t0 is None:
            return 0.0
        if self.timeline_done:
            return self.schedule_s
        return min(self.schedule_s, max(0.0, time.time() - self.t0))

    def _fraction(self) -> float:
        total = self.steps_total * NOMINAL_STEP_S + self.schedule_s
        if total <= 0:
            return 0.0
        done = self.steps_done * NOMINAL_STEP_S + self._elapsed_timeline()
        if self.step and self.step_phase != "run":
            done += min(NOMINAL_STEP_S, time.time() - self.step_started) * 0.9
        return min(1.0, done / total)

    def _figures_text(self) -> str:
        f = self.figures
        if f is None:
            return "users: -"
        err = "-" if f.error_ratio is None else f"{f.error_ratio * 100:.2f}%"
        return f"users: {f.rate or 0:.1f}/s  p50 {_ms(f.p50_s)}  p99 {_ms(f.p99_s)}  errors {err}"

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        now_s = self._elapsed_timeline()
        if self.t0 is not None and not self.timeline_done and self.phase:
            left = (self.phase_end_s or 0) - now_s
            where = f"phase {self.phase}: {_fmt_s(left)} left · run {_fmt_s(self.schedule_s - now_s)} left"
        else:
            where = "preparing" if self.t0 is None else "collecting and tearing down"
        step = f"step {self.step}" if self.step else ""
        frac = self._fraction()
        return Group(Text(f"{where}  {step}"),
                     ProgressBar(total=100, completed=frac * 100, width=50),
                     Text(f"{frac * 100:.0f}%  " + (self._figures_text() if self.t0 is not None else "")))
