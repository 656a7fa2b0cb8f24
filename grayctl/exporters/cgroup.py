"""Per-node resource accounting from the node's cgroup, read at scrape time.

``CgroupPaths.discover(cgroup2_dir)`` finds the directories: the cgroup2 directory (pressure files,
v2 ``cpu.stat``) and, on hybrid hosts such as the netns lab's, the v1 ``cpu``, ``cpuacct`` and
``memory`` directories at the same path relative to their mount points. ``collect(paths)`` returns
the Prometheus exposition (names in docs/metrics.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from grayctl.exporters import Exposition

__all__ = ["CgroupPaths", "collect", "cgroup_mounts", "ensure_cgroup_view"]

PRESSURE_RESOURCES = ("cpu", "memory", "io")
_UNLIMITED_V1 = 1 << 62  # v1 memory.limit_in_bytes reports ~2^63 rounded down to the page size


def cgroup_mounts(mounts_file: str = "/proc/self/mounts") -> dict[str, str]:
    """{"unified": path, "cpu": path, "cpuacct": path, "memory": path} for the mounts present."""
    out: dict[str, str] = {}
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        mnt, fstype, opts = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup2":
            out.setdefault("unified", mnt)
        elif fstype == "cgroup":
            for ctrl in ("cpu", "cpuacct", "memory"):
                if ctrl in opts:
                    out.setdefault(ctrl, mnt)
    return out


@dataclass(frozen=True)
class CgroupPaths:
    unified: str | None = None
    cpu: str | None = None
    cpuacct: str | None = None
    memory: str | None = None

    @classmethod
    def discover(cls, unified: str | None, *, cpu: str | None = None, cpuacct: str | None = None,
                 memory: str | None = None, mounts_file: str = "/proc/self/mounts") -> CgroupPaths:
        """Explicit v1 paths win; otherwise look for the cgroup2 dir's relative path in each v1 mount."""
        found: dict[str, str | None] = {"cpu": cpu, "cpuacct": cpuacct, "memory": memory}
        if unified:
            mounts = cgroup_mounts(mounts_file)
            root = mounts.get("unified")
            if root and os.path.commonpath([root, unified]) == root:
                rel = os.path.relpath(unified, root)
                for ctrl in found:
                    if found[ctrl] is None and ctrl in mounts:
                        cand = os.path.normpath(os.path.join(mounts[ctrl], rel))
                        if os.path.isdir(cand):
                            found[ctrl] = cand
        return cls(unified, found["cpu"], found["cpuacct"], found["memory"])


CLONE_NEWNS = 0x00020000


def ensure_cgroup_view(unified: str | None) -> bool:
    """Make ``unified`` visible if it is not (returns whether it now is).

    ``ip netns exec`` gives a netns lab node's sessions a fresh /sys for the namespace (so
    /sys/class/net shows the node's links) without the cgroup mounts. Then this process -- still
    single-threaded -- moves into a private mount namespace of its own and mounts a tmpfs on
    /sys/fs/cgroup with cgroup2 and the v1 cpu/cpuacct/memory hierarchies (as the host mounts them)
    below it. Nothing is visible outside this process, and it all goes away with it.
    """
    if not unified or os.path.isdir(unified) or os.geteuid() != 0:
        return bool(unified) and os.path.isdir(unified)
    import ctypes
    import subprocess

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False

    def mount(*argv: str) -> None:
        subprocess.run(["mount", *argv], check=True, capture_output=True, timeout=10)

    try:
        mount("--make-rprivate", "/")
        mount("-t", "tmpfs", "-o", "size=64k,mode=0755", "grayctl-cgroup-view", "/sys/fs/cgroup")
        # hierarchies as the host mounted them: the mount table of the pid namespace's init is not
        # ours to read, so the layout is the standard one (cgroup2 at unified/ on hybrid hosts).
        root = unified.split("/grayctl/")[0] if "/grayctl/" in unified else "/sys/fs/cgroup"
        os.makedirs(root, exist_ok=True)
        mount("-t", "cgroup2", "none", root)
        if root != "/sys/fs/cgroup":
            for ctrl in ("cpu", "cpuacct", "memory"):
                d = os.path.join("/sys/fs/cgroup", ctrl)
                os.makedirs(d, exist_ok=True)
                try:
                    mount("-t", "cgroup", "-o", ctrl, "none", d)
                except subprocess.CalledProcessError:
                    os.rmdir(d)
    except (OSError, subprocess.SubprocessError):
        return os.path.isdir(unified)
    return os.path.isdir(unified)


def _read(directory: str | None, name: str) -> str | None:
    if not directory:
        return None
    try:
        with open(os.path.join(directory, name)) as fh:
            return fh.read()
    except OSError:
        return None


def _kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return None


def parse_pressure(text: str) -> dict[str, dict[str, float]]:
    """``some avg10=1.00 avg60=… total=123`` lines -> {"some": {"avg10": 1.0, "total": 123.0, …}}."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        vals = {}
        for item in parts[1:]:
            k, _, v = item.partition("=")
            try:
                vals[k] = float(v)
            except ValueError:
                pass
        out[parts[0]] = vals
    return out


def collect(paths: CgroupPaths) -> str:  # noqa: C901 - a flat list of files, clearer inline
    exp = Exposition()
    up = any(p and os.path.isdir(p) for p in (paths.unified, paths.cpu, paths.memory))
    exp.add("grayctl_cgroup_up", "gauge", "1 when the node's cgroup directories are readable.", 1 if up else 0)

    # -- CPU --------------------------------------------------------------------------------------
    v2 = _kv(_read(paths.unified, "cpu.stat"))
    v1cpu = _kv(_read(paths.cpu, "cpu.stat"))
    usage = None
    if "usage_usec" in v2:
        usage = v2["usage_usec"] / 1e6
    else:
        ns = _int(_read(paths.cpuacct, "cpuacct.usage"))
        if ns is not None:
            usage = ns / 1e9
    if usage is not None:
        exp.add("grayctl_cgroup_cpu_usage_seconds_total", "counter", "CPU time used by the node's cgroup.", usage)
    for key, name in (("user_usec", "user"), ("system_usec", "system")):
        if key in v2:
            exp.add(f"grayctl_cgroup_cpu_{name}_seconds_total", "counter", f"{name} CPU time of the cgroup.",
                    v2[key] / 1e6)
    # Throttling lives where the limit is: v1 cpu on hybrid hosts, else v2 (cpu controller enabled).
    thr = v1cpu if "nr_periods" in v1cpu else v2
    if "nr_periods" in thr:
        exp.add("grayctl_cgroup_cpu_periods_total", "counter", "CFS enforcement periods elapsed.", thr["nr_periods"])
        exp.add("grayctl_cgroup_cpu_throttled_periods_total", "counter", "CFS periods in which the cgroup was throttled.",
                thr.get("nr_throttled", 0))
        secs = thr["throttled_time"] / 1e9 if "throttled_time" in thr else thr.get("throttled_usec", 0) / 1e6
        exp.add("grayctl_cgroup_cpu_throttled_seconds_total", "counter", "Time the cgroup was throttled.", secs)
    limit = None
    quota, period = _int(_read(paths.cpu, "cpu.cfs_quota_us")), _int(_read(paths.cpu, "cpu.cfs_period_us"))
    if quota is not None and period and quota > 0:
        limit = quota / period
    else:
        cpumax = (_read(paths.unified, "cpu.max") or "").split()
        if len(cpumax) == 2 and cpumax[0] != "max":
            limit = int(cpumax[0]) / int(cpumax[1])
    if limit is not None:
        exp.add("grayctl_cgroup_cpu_limit_cores", "gauge", "CPU limit of the cgroup in cores.", limit)

    # -- memory -----------------------------------------------------------------------------------
    if paths.memory:
        cur = _int(_read(paths.memory, "memory.usage_in_bytes"))
        lim = _int(_read(paths.memory, "memory.limit_in_bytes"))
        stat = _kv(_read(paths.memory, "memory.stat"))
        rss, cache = stat.get("total_rss", stat.get("rss")), stat.get("total_cache", stat.get("cache"))
        fail = _int(_read(paths.memory, "memory.failcnt"))
        oom = _kv(_read(paths.memory, "memory.oom_control")).get("oom_kill")
    else:
        cur = _int(_read(paths.unified, "memory.current"))
        lim = _int(_read(paths.unified, "memory.max"))
        stat = _kv(_read(paths.unified, "memory.stat"))
        rss, cache = stat.get("anon"), stat.get("file")
        events = _kv(_read(paths.unified, "memory.events"))
        fail, oom = events.get("max"), events.get("oom_kill")
    if cur is not None:
        exp.add("grayctl_cgroup_memory_bytes", "gauge", "Memory charged to the cgroup.", cur)
    if lim is not None and lim < _UNLIMITED_V1:
        exp.add("grayctl_cgroup_memory_limit_bytes", "gauge", "Memory limit of the cgroup.", lim)
    if rss is not None:
        exp.add("grayctl_cgroup_memory_rss_bytes", "gauge", "Anonymous (RSS) memory of the cgroup.", rss)
    if cache is not None:
        exp.add("grayctl_cgroup_memory_cache_bytes", "gauge", "Page cache charged to the cgroup.", cache)
    if fail is not None:
        exp.add("grayctl_cgroup_memory_failcnt_total", "counter", "Times the memory limit was hit.", fail)
    if oom is not None:
        exp.add("grayctl_cgroup_memory_oom_kills_total", "counter", "OOM kills in the cgroup.", oom)

    # -- PSI ----------------------------------------------------------------------------------------
    for res in PRESSURE_RESOURCES:
        text = _read(paths.unified, f"{res}.pressure")
        if text is None:
            continue
        for kind, vals in parse_pressure(text).items():
            if "total" in vals:
                exp.add("grayctl_cgroup_pressure_stall_seconds_total", "counter",
                        "Time some/all tasks of the cgroup stalled on a resource (PSI total).",
                        vals["total"] / 1e6, {"resource": res, "kind": kind})
            if "avg10" in vals:
                exp.add("grayctl_cgroup_pressure_avg10_ratio", "gauge",
                        "PSI avg10 share of wall time stalled (0-1).", vals["avg10"] / 100,
                        {"resource": res, "kind": kind})

    procs = _read(paths.unified, "cgroup.procs") or _read(paths.cpu, "cgroup.procs")
    if procs is not None:
        exp.add("grayctl_cgroup_processes", "gauge", "Processes in the cgroup.", len(procs.split()))
    return exp.render()
