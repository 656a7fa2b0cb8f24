"""``grayctl dataset ls|show|verify|export`` — look at, check and convert run directories.

RUN is a run directory (or a run id under the runs directory: ``$GRAYCTL_RUNS`` or ./runs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from grayctl.errors import DatasetError

RUNS_DIR_DEFAULT = "runs"


def _runs_dir() -> Path:
    return Path(os.environ.get("GRAYCTL_RUNS") or RUNS_DIR_DEFAULT)


def _resolve(run: str) -> Path:
    p = Path(run)
    if (p / "manifest.json").is_file():
        return p
    q = _runs_dir() / run
    if (q / "manifest.json").is_file():
        return q
    raise DatasetError(f"{run}: no run directory with a manifest.json here or under {_runs_dir()}/",
                       hint="grayctl dataset ls  (lists the runs)")


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@click.group()
def dataset() -> None:
    """Run datasets: list, show, verify and export them."""


@dataset.command("ls")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def ls(directory: str | None) -> None:
    """List the runs under DIRECTORY (default: $GRAYCTL_RUNS or ./runs)."""
    root = Path(directory) if directory else _runs_dir()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory", hint="pass the directory holding run directories")
    rows = []
    for d in sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()):
        try:
            m = json.loads((d / "manifest.json").read_text())
        except json.JSONDecodeError:
            rows.append((d.name, "?", "?", "?", "unreadable manifest", "?", _human(_size(d))))
            continue
        faults = ",".join(sorted({f"{f.get('type')}@{f.get('target')}" for f in m.get("faults") or []})) or "-"
        rows.append((str(m.get("run_id", d.name)), str(m["experiment"].get("name")), str(m["experiment"].get("topology")),
                     faults, str(m.get("status")), f"{m['times'].get('duration_s', 0):g}s", _human(_size(d))))
    if not rows:
        click.echo(f"no runs under {root}")
        return
    head = ("RUN", "EXPERIMENT", "TOPOLOGY", "FAULT", "STATUS", "DURATION", "SIZE")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@dataset.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def show(run: str, as_json: bool) -> None:
    """Summarise one run: times, faults, SLO, label counts, files."""
    p = _resolve(run)
    m = json.loads((p / "manifest.json").read_text())
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    t, lab, slo = m["times"], m.get("labels", {}), m.get("slo", {})
    click.echo(f"run        {m['run_id']}  ({m['status']}; run {m.get('run_status')})")
    click.echo(f"experiment {m['experiment']['name']} on {m['experiment']['topology']}  sha256 {m['experiment']['sha256'][:16]}")
    click.echo(f"time (UTC) {t['start_utc']} -> {t['end_utc']}  ({t['duration_s']:g} s)")
    click.echo("phases     " + ", ".join(f"{x['phase']} {x['start_s']:g}-{x['end_s']:g}s" for x in t["phases"]))
    for f in m.get("faults") or []:
        click.echo(f"fault      {f['id']}: {f['type']} on {f['target']} ({f.get('node')}) {f.get('start_utc')} -> "
                   f"{f.get('end_utc') or 'not reverted'}  revert verified: {f.get('revert_verified')}")
    click.echo(f"backend    {', '.join(m.get('fault_backends') or []) or '-'}")
    lat = slo.get("latency_p99_seconds")
    err = slo.get("error_rate")
    click.echo(f"slo        p99 <= {lat * 1000:.1f} ms ({slo.get('latency_source')})" if lat is not None else "slo        p99 n/a")
    if err is not None:
        click.echo(f"           errors <= {err * 100:.2f} % ({slo.get('error_source')})")
    click.echo(f"labels     {lab.get('seconds')} s: fault {lab.get('fault_active')}, slo violated {lab.get('slo_violation')}, "
               f"gray {lab.get('gray')} ({lab.get('gray_during_fault')} during the fault)")
    click.echo(f"baseline   fingerprints sha256 {m['baseline']['fingerprints_sha256'][:16]} ({len(m['baseline']['nodes'])} nodes)")
    for name, meta in (m.get("files") or {}).items():
        rows = f"{meta['rows']} rows" if "rows" in meta else ""
        click.echo(f"  {name:<18} {_human(meta['bytes']):>10}  {rows:<12} {meta['sha256'][:12]}")


@dataset.command()
@click.argument("run")
def verify(run: str) -> None:
    """Check every file against the manifest; exit 0 when whole, 6 listing each problem otherwise."""
    from grayctl.dataset.verify import verify_dataset

    p = _resolve(run)
    problems = verify_dataset(p)
    if problems:
        raise DatasetError(f"{p}: {len(problems)} problem(s)\n" + "\n".join(f"  - {x}" for x in problems),
                           hint="an incomplete or altered run cannot be repaired; re-run the experiment")
    m = json.loads((p / "manifest.json").read_text())
    click.echo(f"ok  {p}  ({len(m['files'])} files, sha256 match, status complete)")


@dataset.command()
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(["rcaeval", "csv", "parquet"]), required=True)
@click.option("-o", "--output", required=True, type=click.Path(), help="Directory to write into.")
def export(run: str, fmt: str, output: str) -> None:
    """Export a verified run: RCAEval's case layout, plain CSV, or a parquet copy."""
    from grayctl.dataset.export import export_dataset

    out = export_dataset(_resolve(run), fmt, output)
    click.echo(f"wrote {out}")
