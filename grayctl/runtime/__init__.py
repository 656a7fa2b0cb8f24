"""The service runtime: one program that runs any service of any topology on a lab node.

``python -m grayctl.runtime --config FILE.json`` serves the components of one service as
described by its resolved runtime config. Map of the package:

- ``config``  — the config contract: ``service_config`` resolves a topology + the replica
  addresses into one process's JSON (controller side); ``load_runtime_config`` validates it
  into plain dataclasses (node side).
- ``work``    — what an endpoint costs: sampled CPU time burnt for real on the loop thread,
  and the modelled store (sampled waits, cache hits).
- ``server``  — the aiohttp server: per-component worker pools with bounded queues and 503
  shedding, endpoint execution (work, store, sequential and parallel calls, in-process calls
  for components of the same service), the naive ``/health``, lifecycle and SIGTERM.
- ``calls``   — the downstream client: a keep-alive session per service, round-robin over
  replicas, per-attempt timeouts, retries with capped exponential backoff and jitter.
- ``metrics`` — Prometheus text exposition, written by hand, plus process CPU and memory.
- ``spans``   — W3C ``traceparent`` propagation and buffered JSON-lines span records.
- ``__main__`` — the command line.

Semantics, metric names and the span format: docs/runtime.md.
"""
