"""Effect verification: within ``WINDOW_S`` of apply, evidence on the host that the fault acts.

An apply that "succeeded" but does nothing (a rule present, no packet through it) is the most
reported chaos-tool defect; the executor looks for the effect itself and records it as
``effect: {verified, evidence, how}`` in the fault record (so in injection.json).

  network, fallback delayer   its own counters (seen/delayed/dropped) move          (stats file)
  network, tc (netem, tbf)    the qdiscs' sent packets move                          (tc -s qdisc)
  network, nftables only      the fault table's rule counters move                   (nft list table)
  network-flap                the data link is seen down                             (/sys/class/net/*/flags)
  cpu/memory/disk stress      stress-ng's workers burn CPU; the cgroup's pressure/throttling beside it
  process-pause               every target process is seen in state T
  process-kill                every killed process is gone (or replaced by its restart)
  runtime-realised faults     the runtime's own per-fault counters move on every replica
                              (grayctl_runtime_fault_calls_total{fault_id=...} on its /metrics):
                              the calls into the component the fault decided on

Map: verify(rec, spec, store_path) -> {"verified": bool, "evidence": {...}, "how": str}
Polls until evidence or the deadline: a fault that acts is verified in well under the window.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grayctl.faults.node.procs import alive, group_members, own_cgroups, proc_state

__all__ = ["WINDOW_S", "cgroup_evidence", "nft_packets", "qdisc_sent_packets", "verify"]

WINDOW_S = 2.0
POLL_S = 0.02

_SENT = re.compile(r"Sent \d+ bytes (\d+) pkt")
_NFT_COUNTER = re.compile(r"counter packets (\d+) bytes \d+")
_TABLE = re.compile(r"^\s*table\s+(\S+)\s+(\S+)", re.M)


def qdisc_sent_packets(text: str) -> int:
    """Packets sent through every qdisc of ``tc -s qdisc show`` output."""
    return sum(int(n) for n in _SENT.findall(text))


def nft_packets(text: str) -> int:
    """Packets counted by every ``counter`` of ``nft list table`` output."""
    return sum(int(n) for n in _NFT_COUNTER.findall(text))


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=5).stdout


def _poll(read: Callable[[], Any], done: Callable[[Any, Any], bool], deadline: float) -> tuple[Any, Any, bool]:
    first = read()
    last = first
    while time.monotonic() < deadline:
        last = read()
        if done(first, last):
            return first, last, True
        time.sleep(POLL_S)
    return first, last, done(first, last)


def _moving(how: str, read: Callable[[], int], deadline: float) -> dict[str, Any]:
    first, last, ok = _poll(read, lambda a, b: b > a, deadline)
    return {"verified": ok, "how": how, "evidence": {"before": first, "after": last}}


def _helper_counters(stats: Path) -> int:
    try:
        data = json.loads(stats.read_text())
    except (OSError, ValueError):
        return 0
    return int(data.get("seen", 0))


def _link_down(dev: str) -> bool:
    try:
        return not int(Path(f"/sys/class/net/{dev}/flags").read_text(), 16) & 1
    except (OSError, ValueError):
        return False


def cgroup_evidence() -> dict[str, Any]:
    """This process's cgroup CPU figures (v2 cpu.stat + cpu.pressure, or v1 cpu.stat/cpuacct.usage)."""
    out: dict[str, Any] = {}
    for _, controllers, path in own_cgroups():
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            files = {"cpu.stat": base / "cpu.stat", "cpu.pressure": base / "cpu.pressure"}
        elif "cpuacct" in controllers.split(",") or "cpu" in controllers.split(","):
            base = Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
            files = {"cpu.stat": base / "cpu.stat", "cpuacct.usage": base / "cpuacct.usage"}
        else:
            continue
        for name, f in files.items():
            try:
                out.setdefault(name, f.read_text().strip())
            except OSError:
                pass
    return out


def _cpu_ticks(pid: int) -> int:
    total = 0
    for p in [pid, *group_members(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return total


RUNTIME_COUNTER = "grayctl_runtime_fault_calls_total"
RUNTIME_POLL_S = 0.1  # a scrape of each replica's /metrics per poll


def runtime_fault_calls(text: str, fault_id: str) -> int:
    """Calls the runtime's fault ``fault_id`` decided on, summed over the actions, from /metrics text."""
    total = 0.0
    key = f'fault_id="{fault_id}"'
    for line in text.splitlines():
        if line.startswith(RUNTIME_COUNTER + "{") and key in line:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return int(total)


def _metrics_url(replica_dir: str) -> str | None:
    try:
        cfg = json.loads((Path(replica_dir) / "config.json").read_text())
        ip, port = cfg["metrics"]["ip"], int(cfg["metrics"]["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    host = f"[{ip}]" if ":" in str(ip) else ip
    return f"http://{host}:{port}/metrics"


def _scrape(url: str | None) -> str:
    if url is None:
        return ""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 -- a replica's own mgmt address
            return resp.read().decode(errors="replace")
    except (OSError, ValueError):
        return ""


def runtime_evidence(rec: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Every replica's counters of this fault move (each replica decides on its own calls)."""
    fid = rec["fault_id"]
    dirs = list(rec.get("runtime_dirs") or [])
    urls = {d: _metrics_url(d) for d in dirs}

    def read() -> dict[str, int]:
        return {d: runtime_fault_calls(_scrape(u), fid) for d, u in urls.items()}

    first = read()
    last = first
    ok = False
    while True:
        ok = bool(dirs) and all(last[d] > first[d] for d in dirs)
        if ok or time.monotonic() >= deadline:
            break
        time.sleep(RUNTIME_POLL_S)
        last = read()
    return {"verified": ok, "how": f"the runtime's {RUNTIME_COUNTER}{{fault_id=\"{fid}\"}} moves on every replica",
            "evidence": {"before": sum(first.values()), "after": sum(last.values()),
                         "replicas": {d: {"before": first[d], "after": last[d], "metrics": urls[d]} for d in dirs}}}


def verify(rec: dict[str, Any], stats_path: Path | None = None, window_s: float = WINDOW_S) -> dict[str, Any]:
    """Evidence that the fault of ``rec`` (an applied record) acts on this host."""
    deadline = time.monotonic() + window_s
    ftype = rec["type"]
    if rec.get("backend") == "runtime":
        return runtime_evidence(rec, deadline)
    if ftype == "network-flap":
        dev = rec.get("interface") or ""
        _, seen, ok = _poll(lambda: _link_down(dev), lambda a, b: b, deadline)
        return {"verified": ok, "how": f"link {dev} seen down", "evidence": {"link_down_seen": seen}}
    if rec.get("helper") and stats_path is not None and ftype.startswith("network-"):
        return _moving("fallback delayer counters (seen) move", lambda: _helper_counters(stats_path), deadline)
    if rec.get("tc_devices"):
        devs = list(rec["tc_devices"])
        return _moving(f"qdisc sent packets on {','.join(devs)} move",
                       lambda: sum(qdisc_sent_packets(_run(["tc", "-s", "qdisc", "show", "dev", d])) for d in devs),
                       deadline)
    if rec.get("nft_script"):
        tables = _TABLE.findall(rec["nft_script"])
        return _moving("nft counters of " + ",".join(f"{f} {t}" for f, t in tables) + " move",
                       lambda: sum(nft_packets(_run(["nft", "list", "table", f, t])) for f, t in tables), deadline)
    if rec.get("family") == "resource" or ftype.endswith("-stress"):
        pid = (rec.get("helper") or {}).get("pid")
        out = _moving("stress-ng workers' CPU time moves", lambda: _cpu_ticks(int(pid)) if pid else 0, deadline)
        out["evidence"]["cgroup"] = cgroup_evidence()
        return out
    if ftype == "process-pause":
        pids = [int(t["pid"]) for t in rec.get("targets") or []]

        def all_stopped() -> bool:
            return bool(pids) and all(proc_state(p) == "T" for p in pids)

        _, seen, ok = _poll(all_stopped, lambda a, b: b, deadline)
        return {"verified": ok, "how": "every target process seen in state T",
                "evidence": {"pids": pids, "states": {str(p): proc_state(p) for p in pids}}}
    if ftype == "process-kill":
        killed = [int(k["pid"]) for k in rec.get("killed") or []]
        _, gone, ok = _poll(lambda: bool(killed) and not any(alive(p) for p in killed), lambda a, b: b, deadline)
        return {"verified": ok, "how": "every killed process is gone",
                "evidence": {"killed": killed, "restarted": [r.get("pid") for r in rec.get("restarted") or []
                                                              if isinstance(r, dict)]}}
    return {"verified": False, "how": "no evidence source for this fault", "evidence": {}}
