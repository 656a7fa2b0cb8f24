"""The dataset card: a short README.md per run directory (what ran, when, the fault, labels, how to load)."""

from __future__ import annotations

from typing import Any

__all__ = ["render_card"]


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.1f} s"


def render_card(manifest: dict[str, Any], experiment: dict[str, Any]) -> str:
    m, t, lab, slo = manifest, manifest["times"], manifest.get("labels", {}), manifest.get("slo", {})
    faults = m.get("faults") or []
    fault_lines = "\n".join(
        f"| `{f['id']}` | {f['type']} | {f['target']} | {f.get('node') or ''} | {f.get('start_utc')} | "
        f"{f.get('end_utc') or 'not reverted'} | {f.get('revert_verified')} |" for f in faults) or "| — | | | | | | |"
    phases = ", ".join(f"{p['phase']} {p['end_s'] - p['start_s']:g} s" for p in t["phases"])
    wl = experiment.get("workload") or {}
    err = slo.get("error_rate")
    return f"""# Run `{m['run_id']}` — {m['experiment']['name']} on {m['experiment']['topology']}

{experiment.get('description') or ''}

- **When (UTC):** {t['start_utc']} → {t['end_utc']} ({t['duration_s']:g} s: {phases})
- **Workload:** {wl.get('rate')} {wl.get('arrival')}, seed {wl.get('seed')}
- **Fault backend(s):** {', '.join(m.get('fault_backends') or []) or 'none recorded'}
- **Run status:** {m['run_status']}; baseline fingerprints sha256 `{m['baseline']['fingerprints_sha256'][:16]}…`
- **Hypothesis:** {experiment.get('hypothesis') or '—'}

## Faults (host-measured windows, from `injection.json`)

| id | type | target | node | start (UTC) | end (UTC) | revert verified |
|---|---|---|---|---|---|---|
{fault_lines}

## Labels (`labels.parquet`, one row per second)

| seconds | fault active | SLO violated | observer healthy | observer silent | **gray** | gray during fault |
|---|---|---|---|---|---|---|
| {lab.get('seconds')} | {lab.get('fault_active')} | {lab.get('slo_violation')} | {lab.get('healthy_observed')} | {lab.get('observer_unknown')} | **{lab.get('gray')}** | {lab.get('gray_during_fault')} |

SLO: p99 ≤ {_fmt_s(slo.get('latency_p99_seconds'))} ({slo.get('latency_source')}), error rate ≤
{'n/a' if err is None else f'{err * 100:.2f} %'} ({slo.get('error_source')}); baseline p99
{_fmt_s(slo.get('baseline_p99_seconds'))}. `gray` = SLO violated while every health check was green.

## Load it

```python
import grayctl.dataset
ds = grayctl.dataset.load(".")
ds.labels.query("gray")            # pandas DataFrames, read on first use
```

```sql
-- duckdb, from this directory
select phase, count(*) filter (where gray) as gray_s from 'labels.parquet' group by phase;
```

`grayctl dataset verify .` checks every file against `manifest.json`; the format is described in
grayctl's `docs/dataset-format.md`. See `report.html` for the plots.
"""
