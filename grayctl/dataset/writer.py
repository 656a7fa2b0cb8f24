"""Atomic writing of a run directory: every file via a temp name + rename, the manifest last.

Map:
  DatasetWriter(run_dir, manifest)   begin() -> write_parquet/json/text/bytes(name, ...) -> finish(status)
  sha256_file(path) -> str           streaming hash, used by verify
  MANIFEST, TMP_PREFIX               the manifest's file name; the prefix of in-progress files

Protocol (what a reader can rely on):
  1. ``begin()`` writes ``manifest.json`` with ``status: "incomplete"`` before any data file.
  2. Each file is written in full to ``.tmp-<name>`` in the run directory, fsync'ed, then renamed
     over ``<name>`` (rename is atomic within one filesystem), and its sha256/bytes/rows recorded.
  3. ``finish()`` re-checks every recorded file on disk, then rewrites ``manifest.json`` (itself
     via temp + rename) with ``status: "complete"`` (or ``"failed"`` for a run that failed but
     whose data is whole) and the file table. Nothing is written after it.
A crash at any point leaves ``status: "incomplete"`` and at worst a ``.tmp-*`` file, which no
reader mistakes for data (verify reports it as unlisted).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FORMAT", "MANIFEST", "TMP_PREFIX", "DatasetWriter", "sha256_file", "utc_iso"]

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
FORMAT = "grayctl-dataset/1"
PARQUET_COMPRESSION = "zstd"  # read by DuckDB, Spark (3.2+), pandas/pyarrow; ~2x smaller than snappy here


def utc_iso(ns: int | None) -> str | None:
    """Epoch ns -> ISO 8601 UTC with ns precision kept to µs (``2024-05-01T12:00:00.123456Z``)."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n").encode()


class DatasetWriter:
    """Writes one run directory. ``manifest`` is the metadata dict; ``files`` is filled in here."""

    def __init__(self, run_dir: str | Path, manifest: dict[str, Any]) -> None:
        self.dir = Path(run_dir)
        self.manifest = manifest  # shared: the assembler adds label counts and SLO as it goes
        self.files: dict[str, dict[str, Any]] = {}

    # -- protocol ------------------------------------------------------------------------
    def begin(self) -> None:
        """Create the directory and mark it incomplete before anything else lands in it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if any(p.name != MANIFEST for p in self.dir.iterdir()):
            # Assembling over an old run would mix two runs' files under one manifest.
            raise FileExistsError(f"{self.dir} already holds files; a dataset goes into a fresh directory")
        self.manifest["format"] = FORMAT
        self.manifest["status"] = "incomplete"
        self.manifest["files"] = {}
        self._put(MANIFEST, _json_bytes(self.manifest))

    def finish(self, status: str = "complete") -> dict[str, Any]:
        """Check every written file against its recorded hash, then write the final manifest."""
        if status not in ("complete", "failed"):
            raise ValueError(f"final status must be complete or failed, not {status!r}")
        for name, meta in self.files.items():
            p = self.dir / name
            if not p.is_file() or p.stat().st_size != meta["bytes"]:
                raise OSError(f"{name} changed or vanished after it was written")
        self.manifest["status"] = status
        self.manifest["completed_utc"] = utc_iso(_now_ns())
        self.manifest["files"] = dict(sorted(self.files.items()))
        self._put(MANIFEST, _json_bytes(self.manifest))
        _fsync_dir(self.dir)  # the renames themselves survive a power cut only once the directory is synced
        return self.manifest

    # -- files ---------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes, rows: int | None = None) -> None:
        if name == MANIFEST or "/" in name or name.startswith("."):
            raise ValueError(f"invalid dataset file name {name!r}")
        if name in self.files:
            raise ValueError(f"{name} written twice")
        self._put(name, data)
        meta: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        if rows is not None:
            meta["rows"] = rows
        self.files[name] = meta

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode())

    def write_json(self, name: str, data: Any) -> None:
        self.write_bytes(name, _json_bytes(data), rows=len(data) if isinstance(data, list) else None)

    def write_parquet(self, name: str, table: pa.Table, metadata: dict[str, str] | None = None) -> None:
        """Serialise in memory (so the hash costs no second read), then write atomically."""
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   **{k.encode(): v.encode() for k, v in metadata.items()}})
        buf = io.BytesIO()
        pq.write_table(table, buf, compression=PARQUET_COMPRESSION)
        self.write_bytes(name, buf.getvalue(), rows=table.num_rows)

    def _put(self, name: str, data: bytes) -> None:
        final = self.dir / name
        tmp = self.dir / f"{TMP_PREFIX}{name}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now_ns() -> int:
    import time

    return time.time_ns()
