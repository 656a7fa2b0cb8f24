"""Sweep files: validation with positions and suggestions, cells, order, shards and resume decisions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from grayctl.errors import InputError
from grayctl.overrides import load_experiment_with
from grayctl.paths import PROJECT_ROOT
from grayctl.sweep import (
    cell_summary,
    in_shard,
    load_sweep,
    merge_indexes,
    parse_shard,
    plan_resume,
    run_order,
)

BASE = PROJECT_ROOT / "experiments" / "three-tier-loss.yaml"


def _write(tmp: Path, body: str) -> Path:
    p = tmp / "s.yaml"
    p.write_text(body.replace("BASE", str(BASE)))
    return p


GOOD = """
name: grid
base: BASE
axes:
  workload.rate: [10/s, 20/s, 30/s]
  chaos_injections.0.parameters.percent: [1%, 5%]
repetitions: 2
order: random
seed: 3
"""


def test_the_shipped_example_is_valid_and_has_four_cells():
    s = load_sweep(PROJECT_ROOT / "sweeps" / "example-2x2.yaml")
    assert len(s.cells) == 4 and s.repetitions == 2
    assert {c.params["topology"] for c in s.cells} == {"gen2-coarse", "gen3-disaggregated"}


def test_cells_are_the_product_of_the_axes_in_axis_order(tmp_path):
    s = load_sweep(_write(tmp_path, GOOD))
    assert [c.index for c in s.cells] == list(range(6))
    assert s.cells[0].params == {"workload.rate": "10/s", "chaos_injections.0.parameters.percent": "1%"}
    assert s.cells[1].params["chaos_injections.0.parameters.percent"] == "5%"
    assert s.sweep_id == load_sweep(_write(tmp_path, GOOD)).sweep_id  # stable: re-runs resume


def test_unknown_keys_and_axes_are_reported_with_suggestions(tmp_path):
    with pytest.raises(InputError) as e:
        load_sweep(_write(tmp_path, "base: BASE\naxes:\n  worklod.rate: [10/s]\nrepetitons: 2\norder: shuffled\n"))
    text = e.value.render()
    assert "did you mean: workload" in text and "did you mean: repetitions" in text
    assert "order" in text and "s.yaml:" in text  # file and line positions


def test_a_cell_that_is_not_a_valid_experiment_is_refused_naming_the_cell(tmp_path):
    with pytest.raises(InputError) as e:
        load_sweep(_write(tmp_path, "base: BASE\naxes:\n  workload.rate: [10/s, fast]\n"))
    assert "cell 1 (rate=fast)" in e.value.render()


FAULT_TYPES = """
base: BASE
axes:
  chaos_injections:
    - [{id: f, type: network-loss, target_service: api, parameters: {percent: 5%}}]
    - [{id: f, type: cpu-stress, target_service: api, parameters: {workers: 1}}]
"""


def test_an_axis_of_whole_fault_lists_varies_the_fault_type_with_its_parameters(tmp_path):
    s = load_sweep(_write(tmp_path, FAULT_TYPES))
    kinds = []
    for cell in s.cells:
        exp = load_experiment_with(s.base, cell.overrides)
        kinds.append((exp.faults[0].type, dict(exp.faults[0].parameters)))
    assert [k for k, _ in kinds] == ["network-loss", "cpu-stress"] and "percent" in kinds[0][1]
    assert "type" in s.cells[1].label and "cpu-stress" in s.cells[1].label  # compact JSON in labels and the index


def test_a_fault_list_axis_refuses_a_bad_fault_naming_the_cell_and_the_same_value_twice(tmp_path):
    bad = FAULT_TYPES.replace("workers: 1", "workers: many")
    with pytest.raises(InputError) as e:
        load_sweep(_write(tmp_path, bad))
    assert "cell 1" in e.value.render() and "workers" in e.value.render()
    twice = FAULT_TYPES.replace("cpu-stress, target_service: api, parameters: {workers: 1}",
                                "network-loss, target_service: api, parameters: {percent: 5%}")
    with pytest.raises(InputError) as e:
        load_sweep(_write(tmp_path, twice))
    assert "the same value twice" in e.value.render()


def test_missing_base_and_empty_axes(tmp_path):
    with pytest.raises(InputError) as e:
        load_sweep(_write(tmp_path, "base: nowhere.yaml\naxes: {}\n"))
    assert "no experiment file" in e.value.render()


def test_order_is_sequential_or_a_reproducible_shuffle(tmp_path):
    s = load_sweep(_write(tmp_path, GOOD))
    order = run_order(s, s.cells)
    assert len(order) == 12 and order == run_order(s, s.cells)
    assert sorted((c.index, r) for c, r in order) == [(i, r) for i in range(6) for r in (1, 2)]
    seq = load_sweep(_write(tmp_path, GOOD.replace("order: random", "order: sequential")))
    assert [(c.index, r) for c, r in run_order(seq, seq.cells)][:3] == [(0, 1), (0, 2), (1, 1)]


def test_shards_partition_the_cells_whole_and_deterministically(tmp_path):
    s = load_sweep(_write(tmp_path, GOOD))
    shards = [[c.index for c in s.cells if in_shard(c, (i, 3))] for i in (1, 2, 3)]
    assert shards == [[0, 3], [1, 4], [2, 5]]
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for bad in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_resume_skips_complete_verified_runs_and_redoes_the_rest(tmp_path):
    s = load_sweep(_write(tmp_path, GOOD.replace("order: random", "order: sequential")))
    order = run_order(s, s.cells[:2])
    rows = [{"cell": 0, "repetition": 1, "status": "complete", "dataset": "ok"},
            {"cell": 0, "repetition": 2, "status": "incomplete", "dataset": "x"},
            {"cell": 1, "repetition": 1, "status": "complete", "dataset": "corrupt"},
            {"cell": 1, "repetition": 2, "status": "failed", "dataset": "y"},
            {"cell": 1, "repetition": 2, "status": "complete", "dataset": "ok"}]  # a later redo won
    todo = plan_resume(order, rows, lambda row: row["dataset"] == "ok")
    assert [(t.cell.index, t.repetition, t.action) for t in todo] == [
        (0, 1, "skip"), (0, 2, "redo"), (1, 1, "redo"), (1, 2, "skip")]
    assert all(t.action == "run" for t in plan_resume(order, [], lambda r: True))


def _index(rows):
    return pd.DataFrame(rows)


def test_cell_summary_reports_the_cv_of_baseline_p50_and_p99():
    idx = _index([{"cell": 0, "axis:x": "a", "repetition": r, "status": "complete", "baseline_p50_ms": p50,
                   "baseline_p99_ms": p99, "fault_p50_ms": 1.0, "fault_p99_ms": 2.0}
                  for r, p50, p99 in ((1, 10.0, 100.0), (2, 12.0, 100.0))]
                 + [{"cell": 1, "axis:x": "b", "repetition": 1, "status": "failed", "baseline_p50_ms": None,
                     "baseline_p99_ms": None, "fault_p50_ms": None, "fault_p99_ms": None}])
    cells = cell_summary(idx)
    c0 = cells[cells.cell == 0].iloc[0]
    assert c0["complete"] == 2 and c0["baseline_p50_ms_mean"] == pytest.approx(11.0)
    assert c0["baseline_p50_cv"] == pytest.approx(pd.Series([10.0, 12.0]).std() / 11.0)
    assert c0["baseline_p99_cv"] == pytest.approx(0.0)
    assert cells[cells.cell == 1].iloc[0]["complete"] == 0


def test_cell_summary_counts_a_redone_complete_run_once():
    row = {"cell": 0, "axis:x": "a", "status": "complete", "fault_p50_ms": 1.0, "fault_p99_ms": 2.0,
           "baseline_p99_ms": 100.0}
    idx = _index([{**row, "repetition": 1, "baseline_p50_ms": 10.0},
                  {**row, "repetition": 2, "baseline_p50_ms": 99.0},  # its dataset stopped verifying: redone
                  {**row, "repetition": 2, "baseline_p50_ms": 12.0}])
    c0 = cell_summary(idx).iloc[0]
    assert c0["runs"] == 3 and c0["complete"] == 2
    assert c0["baseline_p50_ms_mean"] == pytest.approx(11.0)


def test_merge_keeps_one_row_per_run_preferring_complete(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, rows in ((a, [{"cell": 0, "repetition": 1, "status": "complete", "run_id": "r1"}]),
                    (b, [{"cell": 1, "repetition": 1, "status": "failed", "run_id": "r2"},
                         {"cell": 1, "repetition": 1, "status": "complete", "run_id": "r3"},
                         {"cell": 0, "repetition": 1, "status": "failed", "run_id": "r4"}])):
        d.mkdir()
        pd.DataFrame(rows).to_parquet(d / "index.parquet")
    df = merge_indexes([a, b], tmp_path / "m")
    assert sorted(df["run_id"]) == ["r1", "r3"]
    assert (tmp_path / "m" / "index.csv").is_file() and (tmp_path / "m" / "cells.csv").is_file()


def test_a_dry_run_shows_the_runs_and_writes_nothing(tmp_path):
    from grayctl.sweep import run_sweep

    out = tmp_path / "out"
    rec = run_sweep(_write(tmp_path, GOOD), out_dir=out, dry_run=True)
    assert len(rec.todo) == 12 and all(t.action == "run" for t in rec.todo)
    assert not out.exists()
