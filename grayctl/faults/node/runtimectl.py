"""The control channel of runtime-realised faults: one control file per replica, owned by the executor.

A fault the service runtime realises (grayctl.faults.realise: ``runtime``) is not a kernel rule:
``faultctl apply`` writes an entry into the control file of every replica of the target's service on
the node, and the runtime (grayctl.runtime.faults) polls that file and acts on the calls into the
component. The executor stays the only writer, so revert, the on-host expiry (``faultctl watch``)
and ``grayctl fault revert --all`` are the same paths as for host faults: they remove the entry.

  <services_dir>/<service>-<n>/fault_control   JSON, written atomically (tmp + rename), under an
                                                 flock of the replica directory (compound faults
                                                 share the file: read-modify-write)

  {"format": "grayctl-fault-control/1",
   "faults": {"<fault id>": {"id", "type", "component" (None = every component), "parameters"
              (canonical strings, as the spec), "peers" (caller components/services, [] = all),
              "peer_addresses" (data IPs of peer services), "direction", "fraction",
              "start_mono", "expires_mono", "seed"}}}

``expires_mono`` is the node's CLOCK_MONOTONIC (``time.monotonic()``; system-wide on Linux, so
the executor's and the runtime's agree): the runtime stops acting on an entry at that time by
itself, even when the executor's expiry process and the controller are both dead. A clock step of
the wall clock changes nothing.

Map:
  CONTROL_FILE, FORMAT
  control_path(replica_dir) -> Path
  mono_deadline(epoch_s) -> float                 a Unix time as this host's monotonic time
  put_entry(replica_dir, entry) / drop_entry(replica_dir, fault_id) -> bool
  read_entries(path) -> dict[id, entry]           tolerant: a missing or broken file is no fault
  live_entries(entries, now_mono) -> dict          the ones not yet expired
  entries_of(paths, fault_id) -> list[str]         where an entry of the fault is still written (leftovers)
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CONTROL_FILE", "FORMAT", "control_path", "drop_entry", "entries_of", "live_entries", "mono_deadline",
           "put_entry", "read_entries"]

CONTROL_FILE = "fault_control"
FORMAT = "grayctl-fault-control/1"


def control_path(replica_dir: str | Path) -> Path:
    return Path(replica_dir) / CONTROL_FILE


def mono_deadline(epoch_s: float) -> float:
    """``epoch_s`` (this host's Unix time) converted once to this host's monotonic clock."""
    return time.monotonic() + (epoch_s - time.time())


@contextmanager
def _locked(replica_dir: Path) -> Iterator[None]:
    fd = os.open(replica_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_entries(path: str | Path) -> dict[str, dict[str, Any]]:
    """The entries of a control file; {} when it is missing, half-gone or not ours (never raises)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("faults"), dict):
        return {}
    return {k: v for k, v in data["faults"].items() if isinstance(v, dict)}


def _write(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    if not entries:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "faults": entries}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)  # atomic: the runtime never reads half a file


def put_entry(replica_dir: str | Path, entry: dict[str, Any]) -> Path:
    """Add (or replace) the entry ``entry["id"]`` in the replica's control file; returns the file."""
    d = Path(replica_dir)
    path = control_path(d)
    with _locked(d):
        entries = read_entries(path)
        entries[str(entry["id"])] = entry
        _write(path, entries)
    return path


def drop_entry(replica_dir: str | Path, fault_id: str) -> bool:
    """Remove the fault's entry (the file goes with the last one); True when there was one."""
    d = Path(replica_dir)
    if not d.is_dir():
        return False
    path = control_path(d)
    with _locked(d):
        entries = read_entries(path)
        had = entries.pop(fault_id, None) is not None
        if had or not entries:
            _write(path, entries)
    return had


def live_entries(entries: dict[str, dict[str, Any]], now_mono: float | None = None) -> dict[str, dict[str, Any]]:
    """The entries whose ``expires_mono`` is still ahead (an entry without one is not trusted)."""
    now = time.monotonic() if now_mono is None else now_mono
    out = {}
    for fid, e in entries.items():
        exp = e.get("expires_mono")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp > now:
            out[fid] = e
    return out


def entries_of(paths: Iterable[str | Path], fault_id: str) -> list[str]:
    """The control files that still hold an entry of ``fault_id``."""
    return [str(p) for p in paths if fault_id in read_entries(p)]
