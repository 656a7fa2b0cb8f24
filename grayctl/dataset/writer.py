"""Atomic writing of a run directory: every file via a temp name + rename, the manifest last.

Map:
  DatasetWriter(run_dir, manifest)   begin() -> write_parquet/json/text/bytes(name, ...) -> finish(status)
                                     -> amend(**fields) ... -> seal()
  sha256_file(path) -> str           streaming hash, used by verify
  MANIFEST, TMP_PREFIX               the manifest's file name; the prefix of in-progress files

Protocol (what a reader can rely on):
  1. ``begin()`` writes ``manifest.json`` with ``status: "incomplete"`` before any data file.
  2. Each file is written in full to ``.tmp-<name>`` in the run directory, fsync'ed, then renamed
     over ``<name>`` (rename is atomic within one filesystem), and its sha256/bytes/rows recorded.
  3. ``finish()`` re-checks every recorded file on disk, then rewrites ``manifest.json`` (itself
     via temp + rename) with ``status: "complete"`` (or ``"failed"`` for a run that failed but
     whose data is whole, ``"invalid-load"`` for one whose load generator fell behind) and the file
     table. No data file is written after it.
  4. ``amend(**fields)`` (after ``begin()`` or ``finish()``, until ``seal()``) rewrites the manifest
     with the run's late facts — its teardown, checks, how it ended — the same way. The file table
     and the format are the writer's alone, and a status can only be lowered to ``"incomplete"``
     (an interrupted run whose data is whole), so a verified file set stays verified.
  5. ``seal()``: nothing more is written, the manifest included.
The writer is the only writer of ``manifest.json``. A crash at any point leaves
``status: "incomplete"`` (or the status ``finish()`` wrote) and at worst a ``.tmp-*`` file, which
no reader mistakes for data (verify reports it as unlisted).
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

__all__ = ["FINAL_STATUSES", "FORMAT", "MANIFEST", "TMP_PREFIX", "DatasetWriter", "sha256_file", "utc_iso"]

# What finish() may write: whole data; "invalid-load": whole, but its load generator fell behind
# (grayctl.dataset.load_validity), so its latencies and labels do not mean what they say.
FINAL_STATUSES = ("complete", "failed", "invalid-load")

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

    # amend() never touches these: the file table is what verify holds the directory to
    OWN_FIELDS = ("format", "files", "completed_utc")

    def __init__(self, run_dir: str | Path, manifest: dict[str, Any]) -> None:
        self.dir = Path(run_dir)
        self.manifest = manifest  # shared: the assembler adds label counts and SLO as it goes
        self.files: dict[str, dict[str, Any]] = {}
        self.state = "new"  # new -> begun -> finished -> sealed
        self._written: dict[str, Any] = {}  # the manifest as it is on disk

    # -- protocol ------------------------------------------------------------------------
    def begin(self, manifest: dict[str, Any] | None = None) -> None:
        """Create the directory and mark it incomplete before anything else lands in it.

        Again before any data file, with ``manifest``: start over with fuller metadata (a run
        begins its dataset with what it knows at the start, the assembler with everything)."""
        if self.state not in ("new", "begun") or self.files:
            raise RuntimeError(f"{self.dir}: begin() comes before any data file (writer is {self.state})")
        if manifest is not None:
            self.manifest = manifest
        self.dir.mkdir(parents=True, exist_ok=True)
        if any(p.name != MANIFEST for p in self.dir.iterdir()):
            # Assembling over an old run would mix two runs' files under one manifest.
            raise FileExistsError(f"{self.dir} already holds files; a dataset goes into a fresh directory")
        self.manifest["format"] = FORMAT
        self.manifest["status"] = "incomplete"
        self.manifest["files"] = {}
        self._put_manifest(self.manifest)
        self.state = "begun"

    def finish(self, status: str = "complete") -> dict[str, Any]:
        """Check every written file against its recorded hash, then write the final manifest."""
        self._require("begun", "finish()")
        if status not in FINAL_STATUSES:
            raise ValueError(f"final status must be one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        for name, meta in self.files.items():
            p = self.dir / name
            if not p.is_file() or p.stat().st_size != meta["bytes"]:
                raise OSError(f"{name} changed or vanished after it was written")
        self.manifest["status"] = status
        self.manifest["completed_utc"] = utc_iso(_now_ns())
        self.manifest["files"] = dict(sorted(self.files.items()))
        self._put_manifest(self.manifest)
        self.state = "finished"
        return self.manifest

    def amend(self, **fields: Any) -> dict[str, Any]:
        """Set top-level manifest fields and rewrite the manifest atomically; return it as written.

        Data files and the file table are untouched. The fields land on the manifest as last
        written (an assembly that stopped half-way wrote less than it holds in memory)."""
        self._require(("begun", "finished"), "amend()")
        own = sorted(set(fields) & set(self.OWN_FIELDS))
        if own:
            raise ValueError(f"amend() cannot set {', '.join(own)}: the writer keeps them")
        if fields.get("status", "incomplete") != "incomplete":
            raise ValueError(f"amend() can only lower the status to 'incomplete', not {fields['status']!r}")
        self.manifest.update(fields)
        self._put_manifest({**self._written, **fields})
        return self.written

    def seal(self) -> None:
        """Nothing more is written into this directory through this writer, the manifest included."""
        self.state = "sealed"

    @property
    def written(self) -> dict[str, Any]:
        """A copy of the manifest as it is on disk."""
        return json.loads(_json_bytes(self._written))

    def _require(self, states: str | tuple[str, ...], what: str) -> None:
        if self.state not in ((states,) if isinstance(states, str) else states):
            raise RuntimeError(f"{self.dir}: {what} on a writer that is {self.state}")

    def _put_manifest(self, manifest: dict[str, Any]) -> None:
        data = _json_bytes(manifest)
        self._put(MANIFEST, data)
        self._written = json.loads(data)  # a snapshot: later changes to the shared dict are not on disk
        _fsync_dir(self.dir)  # the renames themselves survive a power cut only once the directory is synced

    # -- files ---------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes, rows: int | None = None) -> None:
        self._require("begun", f"writing {name}")
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
