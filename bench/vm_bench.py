#!/usr/bin/env python3
"""Benchmark: netem in a qemu VM node (the real backend), golden image build, boot and reimage times.

Not a test: it measures and writes the figures with the machine's description into
docs/benchmarks.md between the ``vm-bench`` markers, next to ``fault-bench`` (the fallback
backend's). Run as root (about 10 minutes; add ``--cold`` for a cold image build, ~5 more):

    python bench/vm_bench.py [--cold] [--no-write]

A mixed lab (tests/vm/vmlab.py): node01 and node03 namespaces, node02 a VM booted from the golden
image. Faults are applied on the VM's data interface by playbooks/fault.yml with the netem backend
required (the fault role, as ``grayctl run`` applies them); their effect is measured from
node01 with ping: an echo's RTT carries the VM's egress delay once, so "added delay" is the mean
RTT minus the mean RTT with no fault, and the added jitter is sqrt(var(RTT) - var(base RTT)) (the
TCG guest's own scheduling noise taken out). Loss is counted over 2000 echoes against the 99 %
binomial interval; bandwidth is a TCP bulk send VM -> node01; partition: no echo crosses, and
the first echo after the revert is timed. Statistics come from bench/fault_fidelity.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "vm"))

from fault_fidelity import binom_interval, mean_ci, sd_ci  # noqa: E402
from machine import describe, write_section  # noqa: E402
from vmlab import VmLab, leftovers  # noqa: E402

SECTION = "vm-bench"


def grayctl(*args: str, env: dict | None = None, timeout: float = 1800) -> tuple[dict, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grayctl", *args], capture_output=True, text=True,
                          env=env or os.environ.copy(), cwd=ROOT, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"grayctl {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout), time.monotonic() - t0


def image_figures(cold: bool) -> dict:
    """Cold build (empty cache, .debs downloaded), forced rebuild (.debs cached), warm (reused)."""
    out: dict = {}
    if cold:
        cache = Path(tempfile.mkdtemp(prefix="grayctl-bench-images-", dir="/var/tmp"))
        env = {**os.environ, "GRAYCTL_IMAGE_CACHE": str(cache)}
        try:
            first, out["cold_s"] = grayctl("image", "build", "--json", env=env)
            rec1 = json.loads((Path(first["dir"]) / "image.json").read_text())
            second, out["rebuild_s"] = grayctl("image", "build", "--force", "--json", env=env)
            rec2 = json.loads((Path(second["dir"]) / "image.json").read_text())
            _, out["warm_s"] = grayctl("image", "build", "--json", env=env)
            out["same_packages"] = rec1["packages"] == rec2["packages"]
            out["same_tree"] = rec1["tree_sha256"] == rec2["tree_sha256"]
            out["same_disk"] = rec1["files"]["disk.qcow2"] == rec2["files"]["disk.qcow2"]
            out["same_initrd"] = rec1["files"]["initrd.img"] == rec2["files"]["initrd.img"]
            out["steps"] = rec2["build_seconds"]
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    rec, out["reuse_s"] = grayctl("image", "build", "--json")
    image = json.loads((Path(rec["dir"]) / "image.json").read_text())
    out["recorded_build_s"] = image["build_seconds"]
    out["disk_mib"] = (Path(rec["dir"]) / "disk.qcow2").stat().st_size / 2**20
    out["kernel"] = image["kernel"]
    out["key"] = image["key"]
    return out


REVERTS: dict[str, object] = {}


def revert(lab: VmLab, fid: str, ftype: str, params: dict) -> None:
    """Revert through the role; the role's read-back verdict is recorded, not enforced (see the report)."""
    proc = lab.fault("absent", fid, ftype, params, check=False)
    try:
        rec = lab.record(fid)
        REVERTS[fid] = rec.get("revert_verified")
        left = [line for line in proc.stdout.splitlines() if "left behind" in line]
        if left:
            REVERTS[fid] = left[0].split("msg")[-1].strip(' :"}')
    except (OSError, ValueError):
        REVERTS[fid] = "no record"
    qdiscs = lab.ssh("node02", "tc qdisc show dev data")
    if "netem" in qdiscs or "tbf" in qdiscs or "prio" in qdiscs:
        raise SystemExit(f"{fid} is still applied after its revert: {qdiscs}")


def rtts(lab: VmLab, count: int, interval: float = 0.005) -> list[float]:
    return lab.ping("node01", "node02", count=count, interval=interval)[0]


def latency(lab: VmLab, base: list[float], delay: int, jitter: int, n: int) -> dict:
    fid = f"bl{delay}"
    lab.fault("present", fid, "network-latency", {"delay": f"{delay}ms", "jitter": f"{jitter}ms",
                                                  "correlation": "0%", "distribution": "normal"},
              fault_backend="netem")
    xs = rtts(lab, n)
    revert(lab, fid, "network-latency", {})
    m, mh = mean_ci(xs)
    s, sh = sd_ci(xs)
    added = m - statistics.fmean(base)
    sd_added = math.sqrt(max(0.0, s * s - statistics.pvariance(base)))
    return {"delay": delay, "jitter": jitter, "n": len(xs), "added": added, "added_h": mh, "sd": sd_added,
            "sd_raw": s, "sd_h": sh, "mean_ok": abs(added - delay) <= 0.02 * delay + mh,
            "sd_ok": abs(sd_added - jitter) <= 0.10 * jitter + sh}


def loss(lab: VmLab, percent: float, n: int) -> dict:
    lab.fault("present", "bloss", "network-loss", {"percent": f"{percent:g}%", "correlation": "0%"},
              fault_backend="netem")
    got, sent = lab.ping("node01", "node02", count=n, interval=0.005)
    revert(lab, "bloss", "network-loss", {})
    lost = sent - len(got)
    lo, hi = binom_interval(sent, percent / 100)
    return {"percent": percent, "sent": sent, "lost": lost, "lo": lo, "hi": hi, "ok": lo <= lost <= hi}


def bandwidth(lab: VmLab, rate_mbit: int, repeats: int) -> dict:
    free = lab.throughput_mbit("node02", "node01", nbytes=4_000_000, port=46000)
    lab.fault("present", "bbw", "network-bandwidth", {"rate": f"{rate_mbit}mbit", "burst": "32KiB",
                                                      "limit": "1MiB"}, fault_backend="netem")
    got = [lab.throughput_mbit("node02", "node01", nbytes=6_000_000, port=46001 + i) for i in range(repeats)]
    revert(lab, "bbw", "network-bandwidth", {})
    m = statistics.fmean(got)
    return {"rate": rate_mbit, "free": free, "runs": got, "mean": m, "ok": abs(m - rate_mbit) <= 0.05 * rate_mbit}


def partition(lab: VmLab) -> dict:
    lab.fault("present", "bpart", "network-partition", {"peers": "all", "direction": "both"},
              fault_peers=[lab.data_ip("node01")], fault_backend="netem")
    during, sent = lab.ping("node01", "node02", count=200, interval=0.01)
    t0 = time.monotonic()
    revert(lab, "bpart", "network-partition", {})
    reverted = time.monotonic()
    first = None
    while first is None and time.monotonic() - reverted < 10:
        if lab.ping("node01", "node02", count=1, interval=0.2)[0]:
            first = time.monotonic() - reverted
    return {"sent": sent, "crossed": len(during), "revert_playbook_s": reverted - t0, "first_echo_s": first,
            "ok": not during and first is not None and first < 1.0}


def render(img: dict, boot: dict, reimage: dict, base: list[float], lats: list[dict], ls: dict, bw: dict,
           part: dict, accel: dict, secs: float, cmd: str) -> str:
    b_m, b_s = statistics.fmean(base), statistics.pstdev(base)
    lines = [
        "## netem in a qemu VM node (real backend), golden image, boot and reimage",
        "",
        f"Machine: {describe(guest='Debian 12 under qemu ' + accel.get('chosen', '?').upper(), kernel=img['kernel'])}.",
        f"Command: `{cmd}` ({secs / 60:.1f} min). Acceleration: {accel.get('chosen')} ({accel.get('reason')}).",
        "Faults applied by playbooks/fault.yml (fault role, spec `backend: netem`) on the VM's `data`; "
        "measured from a netns node with ping (RTT: the VM's egress delay counted once; added jitter = "
        "sqrt(var RTT - var base RTT)).",
        "",
        "| what | asked | measured | within target |",
        "|---|---|---|---|",
    ]
    for r in lats:
        lines.append(f"| latency (n={r['n']}) | {r['delay']} ms ± {r['jitter']} ms normal | +{r['added']:.1f} ms "
                     f"± {r['added_h']:.1f} (99 % CI); jitter {r['sd']:.1f} ms (raw σ {r['sd_raw']:.1f}) | "
                     f"mean {'yes' if r['mean_ok'] else 'no'} (2 %), σ {'yes' if r['sd_ok'] else 'no'} (10 %) |")
    lines.append(f"| loss | {ls['percent']:g} % of {ls['sent']} | {ls['lost']} lost "
                 f"({100 * ls['lost'] / ls['sent']:.2f} %); 99 % binomial interval {ls['lo']}..{ls['hi']} | "
                 f"{'yes' if ls['ok'] else 'no'} |")
    lines.append(f"| bandwidth | {bw['rate']} mbit/s | {bw['mean']:.2f} Mbit/s TCP VM→netns "
                 f"({', '.join(f'{x:.2f}' for x in bw['runs'])}); unshaped {bw['free']:.0f} Mbit/s | "
                 f"{'yes' if bw['ok'] else 'no'} (5 %) |")
    first = f"{part['first_echo_s']:.2f} s" if part["first_echo_s"] is not None else "none in 10 s"
    lines.append(f"| partition | all, both directions | {part['crossed']} of {part['sent']} echoes crossed; first "
                 f"echo {first} after the revert playbook ended ({part['revert_playbook_s']:.1f} s playbook) | "
                 f"{'yes' if part['ok'] else 'no'} |")
    lines += ["", "Revert read-back per fault (the role's own check): " + "; ".join(
        f"{k}: {v}" for k, v in REVERTS.items()) + ". The kernel state after each revert was read too "
        "(no netem/tbf/prio left on the VM's data).", ""]
    lines += [f"Base RTT netns→VM with no fault: mean {b_m:.2f} ms, σ {b_s:.2f} ms (n={len(base)}).", ""]
    lines += ["| image and VM lifecycle | seconds |", "|---|---|"]
    if "cold_s" in img:
        steps = ", ".join(f"{k} {v}" for k, v in img["steps"].items())
        lines.append(f"| `grayctl image build`, cold (empty cache, .debs downloaded) | {img['cold_s']:.0f} |")
        lines.append(f"| rebuild with `--force`, .debs cached ({steps}) | {img['rebuild_s']:.0f} |")
        lines.append(f"| warm (same inputs: reused) | {img['warm_s']:.1f} |")
        lines.append(f"| rebuild vs first build: same package versions {img['same_packages']}, same file tree "
                     f"(paths, modes, contents) {img['same_tree']}, same initrd {img['same_initrd']}, "
                     f"same qcow2 bytes {img['same_disk']} | |")
    else:
        lines.append(f"| image build as recorded in image.json ({img['recorded_build_s']}) | "
                     f"{img['recorded_build_s'].get('total', float('nan')):.0f} |")
    lines.append(f"| `grayctl image build` with the image cached (reuse) | {img['reuse_s']:.1f} |")
    lines.append(f"| VM start to SSH (lab up) | {', '.join(f'{k} {v}' for k, v in boot.items())} |")
    lines.append(f"| reimage (`lab reset`: stop, fresh overlay, boot, SSH; then baseline verify) | VM "
                 f"{reimage['vm_s']}, whole command {reimage['wall_s']:.0f}; file written before: "
                 f"{reimage['file']} |")
    lines.append(f"| golden disk (qcow2) | {img['disk_mib']:.0f} MiB |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cold", action="store_true", help="also time a cold build into an empty temporary cache")
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/benchmarks.md")
    ap.add_argument("--samples", type=int, default=1000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    t0 = time.monotonic()
    img = image_figures(args.cold)
    tmp = Path(tempfile.mkdtemp(prefix="grayctl-vmbench-"))
    lab = VmLab(tmp, name=f"vb{os.getpid() % 10000}")
    try:
        up = lab.grayctl_json("lab", "up")
        q = up["report"]["qemu"]
        boot, accel = q["seconds"].get("boot_to_ssh", {}), q["accel"]
        lab.ssh("node02", "echo written-before-reset > /root/marker && sync")
        r0 = time.monotonic()
        rec = lab.grayctl_json("lab", "reset")
        reimage = {"wall_s": time.monotonic() - r0, "vm_s": rec["report"]["qemu"]["seconds"],
                   "file": lab.ssh("node02", "test -e /root/marker && echo still-there || echo gone").strip()}
        base = rtts(lab, 500)
        lats = [latency(lab, base, 200, 50, args.samples), latency(lab, base, 10, 2, args.samples)]
        ls = loss(lab, 5, 2000)
        bw = bandwidth(lab, 10, 3)
        part = partition(lab)
    finally:
        lab.grayctl("lab", "down", check=False)
        from grayctl.lab.definition import load_lab

        left = leftovers(lab, load_lab(str(lab.file)).lab_id)
        shutil.rmtree(tmp, ignore_errors=True)
    cmd = "python bench/vm_bench.py" + (" --cold" if args.cold else "")
    text = render(img, boot, reimage, base, lats, ls, bw, part, accel, time.monotonic() - t0, cmd)
    print(text)
    if left:
        print("LEFT BEHIND:", left)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
