"""``grayctl sweep SWEEP_FILE`` and ``grayctl sweep merge DIR...`` — grids of experiments.

Parses options, calls ``grayctl.sweep`` and renders: what will be skipped and run, each run's
result line, and the repeatability table (CV of baseline p50/p99 per cell). Re-running the same
command resumes: complete runs (whose datasets verify) are skipped, the rest are redone.
"""

from __future__ import annotations

from pathlib import Path

import click

from grayctl.cli.run import RunEnded, handlers


def _verbose() -> bool:
    root = click.get_current_context().find_root()
    return bool(root.obj and root.obj.get("verbose"))


class _SweepGroup(click.Group):
    """``grayctl sweep FILE`` runs a sweep; ``grayctl sweep merge ...`` is the one subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_SweepGroup)
def sweep() -> None:
    """Run a sweep file (base experiment x axes x repetitions), or merge shard indexes.

    \b
    grayctl sweep SWEEP_FILE [--shard I/N] [--out DIR] [--lab LAB] [--dry-run] [--json|--quiet]
    grayctl sweep merge DIR... --out DIR
    """


@sweep.command(name="start", hidden=True)
@click.argument("sweep_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("sweeps"),
              show_default=True, help="Where sweep directories go.")
@click.option("--shard", default=None, metavar="I/N", help="Run only every N-th cell, starting with cell I-1.")
@click.option("--lab", "lab_name", default=None, metavar="NAME_OR_PATH", help="Lab (default: the sweep's).")
@click.option("--dry-run", is_flag=True, help="Only show what would be skipped and run.")
@click.option("--json", "as_json", is_flag=True, help="Run events as JSON lines on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Only the result lines.")
def start(sweep_file: str, out_dir: Path, shard: str | None, lab_name: str | None, dry_run: bool,
          as_json: bool, quiet: bool) -> None:
    from grayctl.sweep import parse_shard, run_sweep

    def on_run(todo, run) -> None:
        if not as_json:
            click.echo(f"cell {todo.cell.index} ({todo.cell.label}) rep {todo.repetition}: {run.status}  {run.run_dir}")

    rec = run_sweep(sweep_file, out_dir=out_dir, shard=parse_shard(shard), lab_ref=lab_name,
                    on_event=handlers(as_json, quiet), verbose=_verbose(), on_run=on_run, dry_run=dry_run)
    if not as_json:
        click.echo(f"sweep {rec.sweep_id}: {rec.skipped} complete run(s) skipped, {rec.ran} run now"
                   + (f", {rec.failed} failed" if rec.failed else ""))
        if dry_run:
            for t in rec.todo:
                click.echo(f"  {t.action:5} cell {t.cell.index} ({t.cell.label}) rep {t.repetition}")
        if rec.cells is not None and len(rec.cells):
            click.echo(_cells_table(rec.cells))
        click.echo(f"index: {rec.root / 'index.parquet'}  ({rec.root / 'index.csv'}, {rec.root / 'cells.csv'})")
    if rec.exit_code:
        raise RunEnded("the sweep stopped (re-run the same command to resume)" if rec.interrupted
                       else f"{rec.failed} run(s) failed; re-running the sweep redoes them", rec.exit_code)


@sweep.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the merged index.parquet / index.csv / cells.csv.")
def merge(dirs: tuple[str, ...], out_dir: Path) -> None:
    """Merge the indexes of shard sweep directories DIRS into one."""
    from grayctl.sweep import cell_summary, merge_indexes

    df = merge_indexes(dirs, out_dir)
    click.echo(f"merged {len(dirs)} index(es): {len(df)} run(s), {df['cell'].nunique()} cell(s) -> {out_dir}")
    if len(df):
        click.echo(_cells_table(cell_summary(df)))


def _cells_table(cells) -> str:
    import pandas as pd

    def f(v, pct=False):
        if v is None or pd.isna(v):
            return "-"
        return f"{v * 100:.1f}%" if pct else f"{v:.1f}"

    axis = [c for c in cells.columns if c.startswith("axis:")]
    head = ["cell", *[a[5:].rsplit(".", 1)[-1] for a in axis], "runs", "ok", "base p50", "cv", "base p99", "cv",
            "fault p99"]
    rows = [[str(r["cell"]), *[str(r[a]) for a in axis], str(r["runs"]), str(r["complete"]),
             f(r.get("baseline_p50_ms_mean")), f(r.get("baseline_p50_cv"), True), f(r.get("baseline_p99_ms_mean")),
             f(r.get("baseline_p99_cv"), True), f(r.get("fault_p99_ms_mean"))] for _, r in cells.iterrows()]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) for x in [head, *rows])
