"""The long fuzzing run of every file loader (issue 19 item 5): N generated documents per loader.

Drives the strategies and the property of tests/unit/test_fuzz_loaders.py (random YAML trees and
mutations of the shipped and corpus files) without shrinking, and counts instead of stopping: per
loader the documents, accepted and refused, failures (a traceback or a refusal without file, line
or field: must be 0), the slowest document and the largest peak-RSS growth of one document.
Writes its section of docs/benchmarks.md through machine.write_section.

    nice -n 10 python bench/fuzz_loaders.py [--docs 10000] [--only experiment,sweep] [--jobs 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from machine import describe, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

import test_fuzz_loaders as fz  # noqa: E402  (the strategies and the property live with the CI test)


@dataclass
class Tally:
    docs: int = 0
    accepted: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    slowest_doc: str = ""
    rss_growth: int = 0  # the largest rise of the peak resident set during one load
    rss_start: int = 0
    rss_end: int = 0
    seconds: float = 0.0
    cut: bool = False  # stopped by --until before its count


class OutOfTime(Exception):
    """The run's time budget is spent: stop generating, report what was done."""


def run_loader(name: str, docs: int, keep: Path, stop_at: float | None = None) -> Tally:
    """One loader's run, in its own process (a pool worker) and its own scratch tree."""
    loader = fz.LOADERS[name]
    tally = Tally()
    tmp = tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-")
    root = fz.scratch_tree(Path(tmp.name))
    tally.rss_start = fz._rss()[0]
    t0 = time.monotonic()

    @seed(19)
    @settings(max_examples=docs, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(doc=loader.documents())
    def one(doc: tuple[Path | None, bytes]) -> None:
        source, data = doc
        if stop_at is not None and time.time() > stop_at:
            raise OutOfTime
        tally.docs += 1
        if tally.docs % 1000 == 0:  # partial figures, in case a long run is cut short
            print(f"  {name}: {tally.docs} docs, {tally.accepted} accepted, {tally.refused} refused, "
                  f"{len(tally.failures)} failures, slowest {tally.slowest * 1000:.0f} ms, "
                  f"peak RSS growth {tally.rss_growth / 2**20:.1f} MiB, {time.monotonic() - t0:.0f} s", flush=True)
        try:
            out = fz.fuzz_one(loader, root, source, data)
        except Exception as err:  # noqa: BLE001  (any exception is a finding: count it, keep the document)
            bad = keep / f"{loader.name}-{len(tally.failures):04d}.yaml"
            bad.write_bytes(data)
            kind = ("property" if isinstance(err, AssertionError) else
                    "timeout" if isinstance(err, fz.DocumentTimeout) else "traceback")
            tally.failures.append(f"{kind}: {bad} (from {source}): "
                                  + "".join(traceback.format_exception_only(err)).strip()[:300])
            return
        tally.accepted += out.accepted
        tally.refused += not out.accepted
        tally.rss_growth = max(tally.rss_growth, out.rss_growth)
        if out.seconds > tally.slowest:
            tally.slowest, tally.slowest_doc = out.seconds, f"{len(data)} bytes from {source.name if source else 'random'}"

    try:
        one()
    except OutOfTime:
        tally.cut = True
    tally.seconds = time.monotonic() - t0
    tally.rss_end = fz._rss()[0]
    tmp.cleanup()
    return tally


def _line(name: str, t: Tally) -> str:
    return (f"{name:12s} {t.docs:6d} docs  {t.accepted:5d} accepted  {t.refused:6d} refused  "
            f"{len(t.failures)} failures  slowest {t.slowest * 1000:7.1f} ms ({t.slowest_doc})  "
            f"peak RSS growth {t.rss_growth / 2**20:5.1f} MiB  RSS {t.rss_start / 2**20:.0f}->{t.rss_end / 2**20:.0f} MiB  "
            f"{t.seconds:6.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=10_000, help="documents per loader (default 10000)")
    ap.add_argument("--only", default="", help="comma-separated loaders (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="loaders run at once, one process each (default 2)")
    ap.add_argument("--until", default=None, metavar="HH:MM",
                    help="stop generating at this UTC time and report what was done (marked as cut short)")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args()
    names = [n for n in fz.LOADERS if not args.only or n in args.only.split(",")]
    keep = Path(tempfile.mkdtemp(prefix="fuzz-findings-"))
    stop_at = None
    if args.until:
        hh, mm = map(int, args.until.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        stop_at = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    t0 = time.monotonic()
    # fork: each worker inherits the imported strategies; one process per loader keeps RSS figures apart.
    with multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=1) as pool:
        pending = {n: pool.apply_async(run_loader, (n, args.docs, keep, stop_at)) for n in names}
        rows = []
        for name, res in pending.items():
            t = res.get()
            print(_line(name, t), flush=True)
            for f in t.failures[:20]:
                print("   ", f)
            rows.append((name, t))
    wall = time.monotonic() - t0
    total_failures = sum(len(t.failures) for _, t in rows)
    if total_failures:
        print(f"{total_failures} failing document(s) kept in {keep}")
    else:
        keep.rmdir()
    if not args.no_write:
        lines = [
            "## Loader fuzzing (bench/fuzz_loaders.py)",
            "",
            describe(documents_per_loader=str(args.docs), loaders_at_once=str(args.jobs), nice="10"),
            "",
            "Random YAML trees (weird scalars, anchors and aliases, deep nesting) and mutations of the "
            "shipped and corpus files (keys dropped, duplicated, retyped or unknown; wrong scalars, huge "
            "numbers, units swapped; unicode, BOM, tabs, CR/CRLF, binary bytes; alias bombs and deep nests "
            "spliced in; truncation), each written to a real file and loaded as the CLI loads it "
            "(tests/unit/test_fuzz_loaders.py has the strategies and the property). A failure is a "
            "traceback, a refusal without file, line or field, a load over "
            f"{fz.TIME_LIMIT_S:g} s or a peak RSS growth over {fz.RSS_LIMIT // 2**20} MiB; it must be 0. "
            "Peak RSS growth is the largest rise of the kernel's high-water mark (VmHWM, reset before each "
            "load) over the resident set before that load; RSS is the worker's resident set before and "
            "after its run.",
            "",
            "| loader | documents | accepted | refused | failures | slowest document | peak RSS growth | RSS before → after | run |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, t in rows:
            lines.append(f"| {name} | {t.docs}{' (cut short)' if t.cut else ''} | {t.accepted} | {t.refused} | {len(t.failures)} | "
                         f"{t.slowest * 1000:.0f} ms | {t.rss_growth / 2**20:.1f} MiB | "
                         f"{t.rss_start / 2**20:.0f} → {t.rss_end / 2**20:.0f} MiB | {t.seconds / 60:.1f} min |")
        lines += ["", f"Wall time {wall / 60:.1f} min" + (f"; stopped at {args.until} UTC (--until), before "
                                                          f"{args.docs} documents per loader." if any(t.cut for _, t in rows)
                                                          else ".")]
        write_section("fuzz-loaders", "\n".join(lines))
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
