"""One run of an experiment: its steps, timeline, cleanup and journal, and the playbook driver.

Map of the package (entry points: ``grayctl.run.flow.run_experiment`` and ``run_once``):
  flow      run_experiment / run_once: the order of the steps, the repetitions, how a run ends
  context   Run: one run's state, shared by the modules below
  steps     reimage, prepare, collect, metrics, checks, teardown: each one playbook (or a lab reset,
            or queries to the run's Prometheus)
  timeline  the executor that schedules the fault steps in time from t0 (host-measured edges)
  cleanup   signal ownership (interruptible, shielded), the normal teardown, best-effort cleanup
  dataset   the run's dataset through its one writer: begun, assembled, amended, sealed
  journal   RunRecord, run ids, each step's log and events, run.json
  events    the event model and its observers (console, JSON lines, the run log)
  live      the console's live user figures, read from the run's Prometheus
  ansible   run_playbook / run_module: the only way grayctl touches a host

Nothing is imported here, so ``grayctl.run.ansible`` (used by lab, deploy, injection, ...) loads
without the rest of the run.
"""
