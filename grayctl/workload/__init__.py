"""The open-loop load generator that runs on a lab client node (``python -m grayctl.workload``).

It sends a request mix at a target rate whatever the responses do, records every request,
and says plainly when it could not keep to its schedule. Map of the package:

- ``schedule`` — the request sequence (intended send offsets and request types) as a pure
  function of ``(seed, rate, arrival, mix, duration)``: same seed, same requests.
- ``config`` — the config contract (``load_config``/``to_config``), validated at the edge.
- ``loadgen`` — the open-loop run (``run_workload``: asyncio + uvloop, aiohttp keep-alive pool), live Prometheus metrics and
  the summary with its validity verdict (``summarize_run``).
- ``records`` — per-request columns in memory, written as parquet or JSON lines, and the
  HdrHistogram latency summaries.
- ``__main__`` — the command line: ``python -m grayctl.workload --config FILE.json`` or flags.

The config contract, what is measured and the validity rule: docs/workload.md.
"""
