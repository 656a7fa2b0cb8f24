"""A run's record paths are absolute even for the default, relative ``--out runs``: the playbooks that
write into them (clock offsets, fetched records) refuse a relative path (the quickstart hit this)."""

from __future__ import annotations

from pathlib import Path

from grayctl.experiment import load_experiment
from grayctl.lab.definition import load_lab
from grayctl.run.context import Run

SEED = Path(__file__).resolve().parents[2] / "experiments" / "seed.yaml"


def test_a_relative_out_dir_gives_absolute_record_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = Run(load_experiment(SEED), load_lab("local"), out_dir=Path("runs"), keep=False, emit=lambda *a, **k: None,
            verbose=False, run_id="r1", repetition=1)
    assert r.raw.is_absolute() and r.raw == tmp_path / "runs" / "r1.run" / "raw"
    assert r.rec.run_dir == tmp_path / "runs" / "r1"
