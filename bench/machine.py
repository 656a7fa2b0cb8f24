"""What every benchmark script shares: the machine description and its section of docs/benchmarks.md.

Imported by the scripts next to it (``python bench/x.py`` puts ``bench/`` first on sys.path)::

    from machine import describe, write_section
    write_section("fault-bench", text)        # replaces <!-- fault-bench:begin --> ... <!-- fault-bench:end -->
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(**extra: str) -> str:
    """One line: kernel, CPU, cores, memory, Python, load average now, then ``extra`` as ``key value``."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    parts = [f"Linux {platform.release()}", cpu_model(), f"{os.cpu_count()} cores (shared, noisy)",
             f"{mem_kib / 1024**2:.0f} GiB", f"Python {platform.python_version()}", f"load average {load}"]
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in extra.items()]
    return "; ".join(parts)


def write_section(name: str, text: str, doc: Path = DOC) -> None:
    """Put ``text`` between the ``name`` markers of ``doc`` (appended with its markers when absent).

    Re-reads the file right before writing: several scripts own sections of the same file.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    body = text.strip("\n")
    if body.startswith(begin):
        body = body[len(begin):].strip("\n")
    if body.endswith(end):
        body = body[: -len(end)].strip("\n")
    section = f"{begin}\n{body}\n{end}"
    current = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + section + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(current)
    tmp.replace(doc)
