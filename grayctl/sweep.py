"""Sweeps: a base experiment times axes of overrides, every cell repeated, resumable and shardable.

Map:
  load_sweep(path) -> Sweep                 read + validate (positions, did-you-mean), every cell
                                            validated as the experiment it makes
  Sweep.cells -> [Cell]                     the cartesian product of the axes, in axis order
  Sweep.sweep_id                            name + hash of the definition: the same file resumes
  parse_shard("2/3") -> (2, 3); in_shard(cell, shard)   every N-th cell, 1-based
  run_order(sweep, cells) -> [(cell, repetition)]       sequential, or shuffled with the seed
  plan_resume(order, rows, is_complete) -> [Todo]       skip complete runs, redo the rest
  run_figures(dataset) -> {figure: value}               key outcomes of one run, from its dataset
  cell_summary(index) -> DataFrame          per cell: n, means, CV of baseline p50 and p99
  run_sweep(path, ...) -> SweepRecord       run what is left; index.parquet + index.csv after each run
  merge_indexes(dirs, out) -> DataFrame     shard indexes into one

Sweep file (``sweeps/*.yaml``)::

    name: example-2x2            # optional; default: the file name
    base: ../experiments/x.yaml  # relative to the sweep file
    lab: local                   # optional; default: the base experiment's
    axes:                        # field path (as for --set) -> values
      topology: [gen2-coarse, gen3-disaggregated]
      chaos_injections.0.parameters.delay: [50ms, 200ms]
      # a value may be a mapping or a list too: a whole fault, or a whole fault list
      # (chaos_injections: [[{type: network-loss, ...}], [{type: cpu-stress, ...}]])
    repetitions: 2
    order: sequential            # or random (with seed): drift cannot line up with an axis
    seed: 1

Layout: ``<out>/<sweep-id>/`` holds ``sweep.yaml`` (a copy), ``index.parquet``/``index.csv`` (one
row per run), ``cells.csv`` (repeatability per cell), ``comparison.csv``/``comparison.html`` (the
cells side by side: effect sizes with 95 % CIs on user latency, errors and gray; grayctl.comparison)
and ``runs/`` (run directories as ``grayctl run`` makes them).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grayctl.errors import InputError, Interrupted, Problem
from grayctl.overrides import Override, load_experiment_with, parse_override
from grayctl.source import (
    Checker,
    format_path,
    load_yaml_document,
    parse_choice,
    parse_identifier,
    parse_int,
    suggest,
)

__all__ = ["Cell", "Sweep", "SweepRecord", "Todo", "cell_summary", "in_shard", "load_sweep", "merge_indexes",
           "parse_shard", "plan_resume", "run_figures", "run_order", "run_sweep"]

TOP_KEYS = ("name", "description", "base", "lab", "axes", "repetitions", "order", "seed")
ORDERS = ("sequential", "random")
INDEX_COLUMNS = ("cell", "repetition", "run_id", "status", "exit_code", "dataset", "seconds",
                 "baseline_p50_ms", "baseline_p99_ms", "fault_p50_ms", "fault_p99_ms", "error_rate",
                 "gray_seconds", "requests")


@dataclass(frozen=True)
class Cell:
    index: int
    params: dict[str, Any]  # axis -> value

    @property
    def overrides(self) -> tuple[Override, ...]:
        return tuple(Override(parse_override(f"{k}=x").path, copy.deepcopy(v), f"{k}={axis_text(v)}")
                     for k, v in self.params.items())

    @property
    def label(self) -> str:
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={axis_text(v)}" for k, v in self.params.items())


@dataclass(frozen=True)
class Sweep:
    name: str
    source: Path
    base: Path
    lab: str | None
    axes: dict[str, list[Any]]
    repetitions: int
    order: str
    seed: int
    description: str = ""

    @property
    def cells(self) -> list[Cell]:
        keys = list(self.axes)
        combos = itertools.product(*(self.axes[k] for k in keys))
        return [Cell(i, dict(zip(keys, combo, strict=True))) for i, combo in enumerate(combos)]

    @property
    def sweep_id(self) -> str:
        """Stable across re-runs of the same definition (and base experiment), so a re-run resumes."""
        doc = {"base": self.base.read_text(), "axes": self.axes, "repetitions": self.repetitions,
               "order": self.order, "seed": self.seed, "lab": self.lab}
        return f"{self.name}-{hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:8]}"


# -- loading ------------------------------------------------------------------------------------

def _axis_value(value: Any) -> Any:
    """A plain value, or a mapping or list of them (a whole fault, a whole fault list): each cell's
    experiment validation says whether it fits the field."""
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (dict, list)):
        try:
            json.dumps(value)  # plain data only (no YAML timestamps or the like)
        except TypeError as err:
            raise ValueError(f"an axis value must be plain data ({err})") from None
        return value
    raise ValueError(f"an axis value must be a value, a mapping or a list, got {type(value).__name__}")


def axis_text(value: Any) -> Any:
    """How an axis value goes into the index and the labels: as it is, or a mapping/list as compact JSON."""
    return value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True,
                                                                               separators=(",", ":"))


def load_sweep(path: str | Path, *, validate_cells: bool = True) -> Sweep:
    """Read and validate a sweep file; InputError listing every problem (cells included)."""
    from grayctl.experiment import TOP_KEYS as EXP_KEYS
    from grayctl.experiment import default_name

    path = Path(path)
    data, positions = load_yaml_document(path)
    ck = Checker(str(path), positions)
    top = ck.mapping(data, (), allowed=TOP_KEYS, required=("base", "axes"))
    assert top is not None
    name = ck.field(top, (), "name", lambda v: parse_identifier(v, what="sweep name"), None) or default_name(str(path))
    description = str(top.get("description") or "")
    base_raw = top.get("base")
    base = None
    if isinstance(base_raw, str):
        base = (path.resolve().parent / base_raw).resolve()
        if not base.is_file():
            # A path relative to the working directory is accepted too (sweeps/ next to experiments/).
            alt = Path(base_raw).resolve()
            if alt.is_file():
                base = alt
            else:
                ck.problem(("base",), f"no experiment file {base_raw!r}",
                           expected="a path to an experiment file, relative to the sweep file")
                base = None
    elif base_raw is not None:
        ck.problem(("base",), "expected a path to an experiment file")
    lab = top.get("lab")
    if lab is not None and not isinstance(lab, str):
        ck.problem(("lab",), "expected a lab name or path")
        lab = None
    axes: dict[str, list[Any]] = {}
    raw_axes = top.get("axes")
    if raw_axes is not None:
        m = ck.mapping(raw_axes, ("axes",), allowed=list(raw_axes) if isinstance(raw_axes, dict) else [],
                       what="a mapping of field path -> list of values")
        if m is not None and not m:
            ck.problem(("axes",), "no axes", expected="at least one field path with a list of values")
        for key, values in (m or {}).items():
            p = ("axes", key)
            try:
                ov = parse_override(f"{key}=x")
                if ov.path[0] not in EXP_KEYS:
                    ck.problem(p, f"no experiment field {ov.path[0]!r}", at_key=True,
                               expected="a field path as for --set, e.g. chaos_injections.0.parameters.delay",
                               suggestion=suggest(str(ov.path[0]), EXP_KEYS))
                    continue
            except InputError as err:
                ck.problem(p, err.problems[0].message, at_key=True)
                continue
            seq = ck.sequence(values, p, what="a list of values")
            if seq is None:
                continue
            if not seq:
                ck.problem(p, "an axis needs at least one value")
                continue
            vals = [ck.convert(v, p + (i,), _axis_value) for i, v in enumerate(seq)]
            if None not in vals and len({json.dumps(v, sort_keys=True) for v in vals}) != len(vals):
                ck.problem(p, "the same value twice on one axis", expected="distinct values")
            axes[key] = vals
    reps = ck.field(top, (), "repetitions", parse_int(1, 1000, "a number of repetitions"), 1)
    order = ck.field(top, (), "order", parse_choice(ORDERS, "order"), "sequential")
    seed = ck.field(top, (), "seed", parse_int(0, 2**31 - 1, "a seed"), 1)
    ck.raise_if_problems()
    assert base is not None
    sweep = Sweep(name, path, base, lab, axes, reps, order, seed, description)
    if validate_cells:
        _validate_cells(sweep, ck)
    return sweep


def _validate_cells(sweep: Sweep, ck: Checker) -> None:
    """Every cell must be a valid experiment: report each bad one at its axis values."""
    from grayctl.errors import GrayctlError
    from grayctl.lab.definition import load_lab
    from grayctl.plan import build_plan

    for cell in sweep.cells:
        try:
            experiment = load_experiment_with(sweep.base, cell.overrides)
            try:
                lab = load_lab(sweep.lab or experiment.lab)
            except GrayctlError:
                lab = None  # no such lab here (e.g. a shard for another site): the run will say so
            if lab is not None:
                build_plan(experiment, lab)  # targets must exist as network hops in this topology, etc.
        except InputError as err:
            first = err.problems[0]
            ck.problems.append(Problem(f"cell {cell.index} ({cell.label}): {first.message}", file=str(sweep.source),
                                       line=ck.positions.key(("axes",))[0] if ck.positions.key(("axes",)) else None,
                                       path=f"axes -> {first.path or format_path(())}", expected=first.expected,
                                       suggestion=first.suggestion))
    ck.raise_if_problems(hint="every cell is the base experiment with one value of each axis")


# -- order, shards, resume ------------------------------------------------------------------------

def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (1 <= i <= N) -> (i, N); InputError naming --shard otherwise."""
    if text is None:
        return None
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
        if not 1 <= i <= n:
            raise ValueError
    except ValueError:
        raise InputError(Problem(f"{text!r} is not a shard", file="--shard", expected="i/N with 1 <= i <= N, e.g. 1/2")) \
            from None
    return i, n


def in_shard(cell: Cell, shard: tuple[int, int] | None) -> bool:
    """Shard i of N holds cells i-1, i-1+N, ... — whole cells, so each cell's repetitions stay together."""
    return shard is None or cell.index % shard[1] == shard[0] - 1


def run_order(sweep: Sweep, cells: Sequence[Cell]) -> list[tuple[Cell, int]]:
    """Every (cell, repetition); ``random`` shuffles all of them with the sweep's seed (reproducible)."""
    todo = [(c, r) for c in cells for r in range(1, sweep.repetitions + 1)]
    if sweep.order == "random":
        random.Random(sweep.seed).shuffle(todo)
    return todo


@dataclass(frozen=True)
class Todo:
    cell: Cell
    repetition: int
    action: str  # skip | run | redo
    previous: dict[str, Any] | None = None


def plan_resume(order: Iterable[tuple[Cell, int]], rows: Iterable[dict[str, Any]],
                is_complete: Callable[[dict[str, Any]], bool]) -> list[Todo]:
    """Skip a (cell, repetition) whose latest indexed run is complete (``is_complete`` verifies the
    dataset); redo one that is incomplete, failed or whose dataset does not verify; run the rest."""
    latest: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        latest[(int(row["cell"]), int(row["repetition"]))] = row  # later rows win
    out = []
    for cell, rep in order:
        row = latest.get((cell.index, rep))
        if row is None:
            out.append(Todo(cell, rep, "run"))
        elif row.get("status") == "complete" and is_complete(row):
            out.append(Todo(cell, rep, "skip", row))
        else:
            out.append(Todo(cell, rep, "redo", row))
    return out


# -- figures and the index --------------------------------------------------------------------------

def run_figures(dataset: str | Path) -> dict[str, Any]:
    """Key outcomes of one run: user latency per phase (ms), error rate, gray seconds, each fault
    window's impact class and whether the load generator kept to its schedule."""
    import numpy as np

    from grayctl.dataset import load
    from grayctl.dataset.labels import user_latency_ns

    ds = load(dataset)
    times = ds.manifest.get("times") or {}
    start = int(times.get("start_ns") or 0)
    req = ds.requests
    out: dict[str, Any] = {"requests": len(req)}
    if len(req) and start:
        t = req["intended_ns"].astype("int64").to_numpy() - start
        lat = user_latency_ns(req) / 1e6
        for ph in times.get("phases") or []:
            if ph["phase"] not in ("baseline", "fault"):
                continue
            sel = (t >= ph["start_s"] * 1e9) & (t < ph["end_s"] * 1e9)
            vals = lat[sel & np.isfinite(lat)]
            out[f"{ph['phase']}_p50_ms"] = float(np.percentile(vals, 50)) if len(vals) else None
            out[f"{ph['phase']}_p99_ms"] = float(np.percentile(vals, 99)) if len(vals) else None
        err = req["error_kind"].notna() & (req["error_kind"].astype(str) != "") if "error_kind" in req else None
        out["error_rate"] = float(err.mean()) if err is not None and len(err) else 0.0
    labels = ds.labels
    out["gray_seconds"] = int(labels["gray"].sum()) if "gray" in labels else None
    # every fault window's impact class, "id=class" joined (one column whatever the fault count)
    impact = ds.manifest.get("impact") or {}
    out["impact"] = ",".join(f"{k}={v}" for k, v in sorted(impact.items())) or None
    load = ds.manifest.get("load") or {}
    out["load_valid"] = load.get("valid")
    return out


def cell_summary(index: Any) -> Any:
    """Per cell: runs, complete runs, mean baseline p50/p99 and their coefficient of variation.

    Figures come from the latest complete run of each (cell, repetition): a complete run redone
    because its dataset stopped verifying counts once, not twice."""
    import pandas as pd

    ok = index[index["status"] == "complete"]
    if "repetition" in ok:
        ok = ok.groupby(["cell", "repetition"], sort=False).tail(1)
    rows = []
    for cell, g in index.groupby("cell", sort=True):
        c = ok[ok["cell"] == cell]
        row = {"cell": int(cell), **{k: g.iloc[0][k] for k in index.columns if k.startswith("axis:")},
               "runs": len(g), "complete": len(c)}
        for col in ("baseline_p50_ms", "baseline_p99_ms", "fault_p50_ms", "fault_p99_ms"):
            v = pd.to_numeric(c[col], errors="coerce").dropna() if col in c else pd.Series(dtype=float)
            row[f"{col}_mean"] = float(v.mean()) if len(v) else None
            if col.startswith("baseline"):
                row[f"{col.replace('_ms', '')}_cv"] = float(v.std(ddof=1) / v.mean()) if len(v) >= 2 and v.mean() else None
        rows.append(row)
    return pd.DataFrame(rows)


def _write_index(root: Path, rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=list(INDEX_COLUMNS))
    for col in INDEX_COLUMNS:
        if col not in df:
            df[col] = None
    axis_cols = sorted(c for c in df.columns if c.startswith("axis:"))
    df = df[["cell", *axis_cols, *[c for c in INDEX_COLUMNS if c != "cell"]]]
    for c in axis_cols:
        df[c] = df[c].astype(str)  # axis values may mix types (50ms and 0.05): one column type
    tmp = root / ".tmp-index.parquet"
    df.to_parquet(tmp, index=False)
    tmp.replace(root / "index.parquet")
    df.to_csv(root / ".tmp-index.csv", index=False)
    (root / ".tmp-index.csv").replace(root / "index.csv")
    cells = cell_summary(df) if len(df) else pd.DataFrame()
    cells.to_csv(root / ".tmp-cells.csv", index=False)
    (root / ".tmp-cells.csv").replace(root / "cells.csv")
    if len(df):  # the cells side by side: effect sizes with CIs (grayctl.comparison)
        from grayctl.comparison import compare_cells, render_comparison

        table = compare_cells(df)
        table.to_csv(root / ".tmp-comparison.csv", index=False)
        (root / ".tmp-comparison.csv").replace(root / "comparison.csv")
        (root / ".tmp-comparison.html").write_text(render_comparison(table, root.name, cells))
        (root / ".tmp-comparison.html").replace(root / "comparison.html")
    return df


def _read_rows(root: Path) -> list[dict[str, Any]]:
    import pandas as pd

    p = root / "index.parquet"
    if not p.is_file():
        return []
    return pd.read_parquet(p).to_dict("records")


# -- running ---------------------------------------------------------------------------------------

@dataclass
class SweepRecord:
    sweep_id: str
    root: Path
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    exit_code: int = 0
    index: Any = None
    cells: Any = None
    todo: list[Todo] = field(default_factory=list)


def _is_complete(row: dict[str, Any]) -> bool:
    from grayctl.dataset.verify import verify_dataset

    ds = row.get("dataset")
    return bool(ds) and Path(str(ds)).is_dir() and not verify_dataset(str(ds))


def run_sweep(path: str | Path, *, out_dir: Path = Path("sweeps"), shard: tuple[int, int] | None = None,
              lab_ref: str | None = None, on_event: Any = None, verbose: bool = False,
              on_run: Callable[[Todo, Any], None] | None = None, dry_run: bool = False) -> SweepRecord:
    """Run every (cell, repetition) of the sweep (or of this shard) that is not already complete."""
    from grayctl.lab.definition import load_lab
    from grayctl.run.cleanup import interruptible
    from grayctl.run.flow import run_once

    sweep = load_sweep(path)
    root = Path(out_dir) / sweep.sweep_id
    cells = [c for c in sweep.cells if in_shard(c, shard)]
    rows = _read_rows(root)
    todo = plan_resume(run_order(sweep, cells), rows, _is_complete)
    rec = SweepRecord(sweep.sweep_id, root, todo=todo)
    rec.skipped = sum(t.action == "skip" for t in todo)
    if dry_run:  # shows what would run: writes nothing
        return rec
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.yaml").write_text(Path(path).read_text())
    previous: tuple[str, Any] | None = None  # (lab name, the last run on it): its end reset may be reused
    try:
        with interruptible():
            for t in todo:
                if t.action == "skip":
                    continue
                experiment = load_experiment_with(sweep.base, t.cell.overrides)
                lab = load_lab(lab_ref or sweep.lab or experiment.lab)
                run = run_once(experiment, lab, out_dir=root / "runs", on_event=on_event, verbose=verbose,
                               repetition=t.repetition,
                               fresh_from=previous[1] if previous and previous[0] == lab.name else None)
                previous = (lab.name, run)
                row = {"cell": t.cell.index, **{f"axis:{k}": axis_text(v) for k, v in t.cell.params.items()},
                       "repetition": t.repetition, "run_id": run.run_id, "status": run.status, "exit_code": run.exit_code,
                       "dataset": str(run.run_dir.resolve()), "seconds": run.seconds}
                if run.dataset is not None:
                    try:
                        row.update(run_figures(run.dataset))
                    except Exception as err:  # noqa: BLE001 - the row still records the run
                        row["figures_error"] = repr(err)
                rows.append(row)
                rec.index = _write_index(root, rows)
                rec.ran += 1
                if on_run is not None:
                    on_run(t, run)
                if run.status == "incomplete":
                    rec.interrupted, rec.exit_code = True, 130
                    break
                if run.status != "complete":
                    rec.failed += 1
                    rec.exit_code = rec.exit_code or run.exit_code
    except Interrupted:
        # between two runs (a run itself cleans up and returns its record): nothing is left to undo
        rec.interrupted, rec.exit_code = True, 130
    rec.index = _write_index(root, rows)
    rec.cells = cell_summary(rec.index) if len(rec.index) else None
    return rec


def merge_indexes(dirs: Sequence[str | Path], out: str | Path) -> Any:
    """One index from shard sweep directories: the latest row per (cell, repetition) wins."""
    rows: list[dict[str, Any]] = []
    for d in dirs:
        found = _read_rows(Path(d))
        if not found:
            raise InputError(Problem(f"{d}: no index.parquet (not a sweep directory?)", file="merge"))
        rows += found
    best: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        key = (int(row["cell"]), int(row["repetition"]))
        prev = best.get(key)
        if prev is None or (prev.get("status") != "complete") or row.get("status") == "complete":
            best[key] = row
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    return _write_index(out_p, sorted(best.values(), key=lambda r: (int(r["cell"]), int(r["repetition"]))))

