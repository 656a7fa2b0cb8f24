"""Every bad input in tests/corpus gets a clear error and nothing else; every good one validates.

Each bad file starts with ``# expect: <text the error must contain>`` (optionally
``# line: N``). The real CLI runs in a child process, as a user would run it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
BAD = sorted((CORPUS / "experiments" / "bad").glob("*.yaml")) + sorted((CORPUS / "topologies" / "bad").glob("*.yaml"))
GOOD = sorted((CORPUS / "experiments" / "good").glob("*.yaml")) + sorted((CORPUS / "topologies" / "good").glob("*.yaml"))
SHIPPED = sorted((ROOT / "experiments").glob("*.yaml")) + sorted((ROOT / "topologies").glob("*.yaml"))
TIMEOUT = 120  # generous: machines are noisy; nothing here is a timing assertion


def _grayctl(*args: str, preexec=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grayctl", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=TIMEOUT, preexec_fn=preexec, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _expectations(path: Path) -> tuple[str, int | None]:
    head = path.read_bytes().split(b"\n", 3)[:3]
    expect, line = None, None
    for raw in head:
        text = raw.decode("utf-8", "replace")
        if m := re.match(r"# expect: (.+)$", text):
            expect = m.group(1).strip()
        if m := re.match(r"# line: (\d+)$", text):
            line = int(m.group(1))
    assert expect, f"{path} lacks a '# expect:' line"
    return expect, line


def _assert_clear_rejection(result: subprocess.CompletedProcess[str], path: Path, expect: str,
                            line: int | None) -> None:
    out = result.stdout + result.stderr
    rel = str(path.relative_to(ROOT))
    assert result.returncode == 2, f"exit {result.returncode} for {rel}:\n{out}"
    assert "Traceback" not in out, out
    assert rel in out, f"file name missing:\n{out}"
    assert re.search(re.escape(rel) + r":\d+(:\d+)?: ", out), f"no line number:\n{out}"
    assert expect in out, f"expected {expect!r} in:\n{out}"
    if line is not None:
        assert f"{rel}:{line}:" in out, f"expected line {line}:\n{out}"


@pytest.mark.parametrize("path", BAD, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_bad_file_is_rejected_with_position_and_reason(path: Path) -> None:
    expect, line = _expectations(path)
    _assert_clear_rejection(_grayctl("validate", str(path.relative_to(ROOT))), path, expect, line)


@pytest.mark.parametrize("path", GOOD + SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_good_file_validates(path: Path) -> None:
    result = _grayctl("validate", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok  ")


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_alias_bomb_is_rejected_within_a_one_gibibyte_address_space() -> None:
    path = CORPUS / "experiments" / "bad" / "alias-bomb-billion-laughs.yaml"
    result = _grayctl("validate", str(path.relative_to(ROOT)), preexec=_limit_memory)
    _assert_clear_rejection(result, path, "alias bomb", None)
    assert "MemoryError" not in result.stderr


def test_empty_zero_byte_file_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_bytes(b"")
    result = _grayctl("validate", str(f))
    assert result.returncode == 2 and "empty document" in result.stderr and "Traceback" not in result.stderr


def test_random_binary_garbage_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "garbage.yaml"
    f.write_bytes(os.urandom(4096) + b"\x00")
    result = _grayctl("validate", str(f))
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out
    assert "binary" in out or "UTF-8" in out


def test_oversized_file_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    f.write_text("topology: three-tier\ndescription: '" + "x" * (1024 * 1024) + "'\n")
    result = _grayctl("validate", str(f))
    assert result.returncode == 2 and "too large" in result.stderr


def test_missing_file_is_rejected_without_traceback(tmp_path: Path) -> None:
    result = _grayctl("validate", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "file not found" in result.stderr and "Traceback" not in result.stderr


def test_one_bad_file_among_good_ones_fails_the_run_but_reports_all() -> None:
    good = "experiments/seed.yaml"
    bad = "tests/corpus/experiments/bad/unknown-service.yaml"
    result = _grayctl("validate", good, bad)
    assert result.returncode == 2
    assert f"ok  {good}" in result.stdout
    assert bad in result.stderr
