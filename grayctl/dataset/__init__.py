"""One run's dataset: a directory of parquet tables, inputs, labels, a manifest and a report.

Map:
  load(path) -> Dataset          tables as pandas DataFrames, each read on first use
  Dataset                        .manifest .experiment .topology .injections (plain data)
                                 .labels .metrics .features .edges .requests .spans .observer .logs (DataFrames)
  writer      atomic files, manifest last (incomplete -> complete)
  labels      per-second phase / fault / SLO / observer / gray labels
  tables      timestamp normalisation, the wide feature matrix
  assemble    assemble_run(run_dir, ...) -> manifest: the whole directory from plain data
  card        the per-run README.md
  verify      verify_dataset(path) -> [problem]
  export      to_rcaeval / to_csv / to_parquet

The format is specified in docs/dataset-format.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["TABLES", "Dataset", "load"]

TABLES = ("labels", "metrics", "features", "edges", "requests", "spans", "observer", "logs")


class Dataset:
    """A run directory. Documents are read at once (small); tables lazily, then cached."""

    def __init__(self, path: str | Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._tables: dict[str, pd.DataFrame] = {}
        self._docs: dict[str, Any] = {}

    @classmethod
    def in_memory(cls, path: str | Path, manifest: dict[str, Any], *, experiment: dict[str, Any],
                  topology: dict[str, Any], injections: list[dict[str, Any]],
                  tables: dict[str, pd.DataFrame | None]) -> Dataset:
        """A Dataset over frames still in memory (used to render the report during assembly)."""
        ds = cls(path, manifest)
        ds._docs = {"experiment": experiment, "topology": topology, "injections": injections}
        ds._tables = {k: v for k, v in tables.items() if v is not None}
        return ds

    # -- documents ---------------------------------------------------------------------
    def _doc(self, key: str, file: str) -> Any:
        if key not in self._docs:
            p = self.path / file
            if file.endswith(".yaml"):
                import yaml
                self._docs[key] = yaml.safe_load(p.read_text())
            else:
                self._docs[key] = json.loads(p.read_text())
        return self._docs[key]

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id"))

    @property
    def experiment(self) -> dict[str, Any]:
        return self._doc("experiment", "experiment.yaml")

    @property
    def topology(self) -> dict[str, Any]:
        return self._doc("topology", "topology.json")

    @property
    def injections(self) -> list[dict[str, Any]]:
        return self._doc("injections", "injection.json")

    # -- tables ------------------------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame:
        if name not in TABLES:
            raise KeyError(f"no table {name!r}; tables: {', '.join(TABLES)}")
        if name not in self._tables:
            p = self.path / f"{name}.parquet"
            if name == "edges" and not p.is_file() and "edges.parquet" not in (self.manifest.get("files") or {}):
                # a dataset written before edges.parquet existed: no edges, the columns as now
                from grayctl.dataset.tables import EMPTY_SCHEMAS
                self._tables[name] = EMPTY_SCHEMAS["edges"].empty_table().to_pandas()
            else:
                self._tables[name] = pd.read_parquet(p)
        return self._tables[name]

    @property
    def labels(self) -> pd.DataFrame:
        return self.table("labels")

    @property
    def metrics(self) -> pd.DataFrame:
        return self.table("metrics")

    @property
    def features(self) -> pd.DataFrame:
        return self.table("features")

    @property
    def edges(self) -> pd.DataFrame:
        return self.table("edges")

    @property
    def requests(self) -> pd.DataFrame:
        return self.table("requests")

    @property
    def spans(self) -> pd.DataFrame:
        return self.table("spans")

    @property
    def observer(self) -> pd.DataFrame:
        return self.table("observer")

    @property
    def logs(self) -> pd.DataFrame:
        return self.table("logs")

    def __repr__(self) -> str:
        return f"<Dataset {self.run_id} status={self.manifest.get('status')} at {self.path}>"


def load(path: str | Path) -> Dataset:
    """Open a run directory (reads only ``manifest.json`` now). Raises DatasetError when it is not one."""
    from grayctl.errors import DatasetError

    p = Path(path)
    try:
        manifest = json.loads((p / "manifest.json").read_text())
    except FileNotFoundError:
        raise DatasetError(f"{p} is not a grayctl dataset (no manifest.json)") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{p / 'manifest.json'} is not valid JSON: {e.msg}") from None
    return Dataset(p, manifest)
