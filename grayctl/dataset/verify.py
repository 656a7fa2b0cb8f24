"""Check a run directory against its manifest: whole, untouched, readable, contiguous.

Map:
  verify_dataset(path) -> [str]     every problem found (empty list: the dataset is good)

Checks: manifest readable; status ``complete``; every listed file present with the recorded size
and sha256; no file in the directory that the manifest does not list (a leftover ``.tmp-*`` from a
crash, or something added later); every parquet file opens and has the recorded row count;
``labels.parquet`` has one row per second with no gap or duplicate; ``features.parquet`` has the
same seconds as the labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from grayctl.dataset.writer import MANIFEST, sha256_file

__all__ = ["verify_dataset"]

NS = 1_000_000_000


def _ts_ns(path: Path) -> np.ndarray:
    col = pq.read_table(path, columns=["ts"]).column("ts")
    return col.cast("int64").to_numpy()


def verify_dataset(path: str | Path) -> list[str]:
    root = Path(path)
    problems: list[str] = []
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        return [f"{root}: no {MANIFEST} (not a dataset)"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [f"{MANIFEST}: not valid JSON ({e})"]
    status = manifest.get("status")
    if status != "complete":
        extra = f" (run status: {manifest.get('run_status')})" if status == "failed" else \
            f" — the load generator fell behind: {(manifest.get('load') or {}).get('reason')}" \
            if status == "invalid-load" else " — assembly did not finish (crashed or interrupted)"
        problems.append(f"status is {status!r}, not 'complete'{extra}")
    files: dict[str, dict] = manifest.get("files") or {}
    for name, meta in files.items():
        p = root / name
        if not p.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        size = p.stat().st_size
        if size != meta.get("bytes"):
            problems.append(f"{name}: {size} bytes, manifest says {meta.get('bytes')}")
        digest = sha256_file(p)
        if digest != meta.get("sha256"):
            problems.append(f"{name}: sha256 {digest[:12]}… differs from the manifest's {str(meta.get('sha256'))[:12]}…")
            continue  # a corrupted parquet file need not be opened as well
        if name.endswith(".parquet"):
            try:
                rows = pq.ParquetFile(p).metadata.num_rows
            except Exception as e:  # noqa: BLE001 - any reader failure is the finding
                problems.append(f"{name}: unreadable parquet ({e})")
                continue
            if "rows" in meta and rows != meta["rows"]:
                problems.append(f"{name}: {rows} rows, manifest says {meta['rows']}")
    for p in sorted(root.iterdir()):
        if p.name != MANIFEST and p.name not in files:
            problems.append(f"{p.name}: in the directory but not listed in the manifest")
    if "labels.parquet" in files and (root / "labels.parquet").is_file() and not any(
            x.startswith("labels.parquet") for x in problems):
        ts = _ts_ns(root / "labels.parquet")
        if len(ts) == 0:
            problems.append("labels.parquet: no rows")
        else:
            d = np.diff(ts)
            if ts[0] % NS or (d.size and (d != NS).any()):
                bad = int(np.flatnonzero(d != NS)[0]) if d.size and (d != NS).any() else 0
                problems.append(f"labels.parquet: the 1 s index is not contiguous (first break after row {bad})")
            if "features.parquet" in files and (root / "features.parquet").is_file() and not any(
                    x.startswith("features.parquet") for x in problems):
                fts = _ts_ns(root / "features.parquet")
                if not np.array_equal(fts, ts):
                    problems.append("features.parquet: its seconds differ from labels.parquet's")
    return problems
