#!/usr/bin/env python3
"""Benchmark: fidelity of the fallback network faults (NFQUEUE delayer, nft loss and partition).

Not a test: it measures, states confidence intervals, and writes the figures with the
machine's description into docs/benchmarks.md (between the `fault-bench` markers). Run as
root (about 2 minutes):

    python bench/fault_fidelity.py [--no-write]

Two namespaces `gfa-<pid>`/`gfb-<pid>` joined by a veth (`data` on both ends, 10.219.0.1/.2).
The faults are applied on A's egress to B exactly as a role would (helper in A's namespace,
`steer` rules, `--fault-id` ownership); grayctl.faults.node.probe sends UDP datagrams from A
and timestamps their arrival in B in the kernel, so "added delay" is the one-way delay minus
the median one-way delay with no fault. Probes are spread over many flows so that each flow's
packets are further apart than the jitter: the helper's default per-flow order then never
shifts a sample, and what is measured is the delay distribution itself.

Targets (issue 4): 200ms+-50ms normal -> mean within 2 % of 200, stddev within 10 % of 50;
10ms+-2ms likewise; loss 5 % within the 99 % binomial interval; Gilbert-Elliott burst loss
against the chain's theory (loss rate and mean burst length); bandwidth 10 mbit/s: TCP goodput
within 5 % (tbf on A's data interface, a bulk TCP transfer A -> B, repeated); partition: nothing
crosses and traffic is back within 1 s of the revert; process-pause stutter: a UDP echo service
in B is stopped by grayctl.faults.node.stutter (pause 50 ms every 200 ms) while a client in A
sends at 1000/s, and the stalls the client sees are compared with the configured pattern; and
the packet rate at which the delayer distorts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe, write_section  # noqa: E402

from grayctl.faults import tc  # noqa: E402
from grayctl.faults.node import steer  # noqa: E402
from grayctl.faults.node.delaymodel import ge_theory  # noqa: E402
from grayctl.faults.node.probe import ProbeRun, netns_socket, run_probes  # noqa: E402

SECTION = "fault-bench"
BEGIN, END = f"<!-- {SECTION}:begin -->", f"<!-- {SECTION}:end -->"
A_ADDR, B_ADDR = "10.243.0.1", "10.243.0.2"
Z99 = 2.5758
# Student t quantiles (two-sided 99 %) for small repeat counts: df -> t.
T99 = {1: 63.657, 2: 9.925, 3: 5.841, 4: 4.604, 5: 4.032, 6: 3.707, 7: 3.499, 8: 3.355, 9: 3.250, 10: 3.169,
       15: 2.947, 19: 2.861, 20: 2.845, 30: 2.750}


class Lab:
    """The two namespaces, the processes started in A, cleaned up whatever happens."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.a, self.b = f"fba-{pid}", f"fbb-{pid}"
        self.veth = (f"fbv{pid}"[:15], f"fbw{pid}"[:15])
        self.procs: list[subprocess.Popen] = []
        self.fault_ids: list[str] = []
        self.port = 9200

    def __enter__(self) -> Lab:
        ip = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)  # noqa: E731
        ip("netns", "add", self.a)
        ip("netns", "add", self.b)
        ip("link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        ip("link", "set", self.veth[0], "netns", self.a)
        ip("link", "set", self.veth[1], "netns", self.b)
        for ns, dev, addr in ((self.a, self.veth[0], A_ADDR), (self.b, self.veth[1], B_ADDR)):
            ip("-n", ns, "link", "set", dev, "name", "data")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "data")
            ip("-n", ns, "link", "set", "data", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        if os.path.exists(f"/run/netns/{self.a}"):
            for fid in self.fault_ids:
                steer.revert_fault(fid, netns=self.a)
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def probe(self, **kw) -> ProbeRun:
        self.port += 1
        return run_probes(self.a, self.b, B_ADDR, self.port, **kw)

    def delayer(self, fault_id: str, queue: int, *args: str) -> subprocess.Popen:
        self.fault_ids.append(fault_id)
        argv = ["ip", "netns", "exec", self.a, sys.executable, "-m", "grayctl.faults.node.nfqdelay",
                "--queue", str(queue), "--fault-id", fault_id, "--expire-at", str(time.time() + 600), *args]
        p = subprocess.Popen(argv, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        time.sleep(0.5)  # bound before the rule goes in (the rule has bypass anyway)
        steer.apply_queue_steer(fault_id, steer.Scope.build("data", peers=[B_ADDR]), queue, netns=self.a)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)


# ------------------------------------------------------------------------------------ statistics

def mean_ci(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), Z99 * statistics.stdev(xs) / math.sqrt(len(xs))


def sd_ci(xs: list[float]) -> tuple[float, float]:
    s = statistics.stdev(xs)
    return s, Z99 * s / math.sqrt(2 * (len(xs) - 1))  # large-n normal approximation


def binom_interval(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    """Central interval of Binomial(n, p) holding at least ``level`` of the mass (exact sums)."""
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p) for k in range(n + 1)]
    pmf = [math.exp(v) for v in logs]
    tail = (1 - level) / 2
    lo, acc = 0, 0.0
    while acc + pmf[lo] <= tail:
        acc += pmf[lo]
        lo += 1
    hi, acc = n, 0.0
    while acc + pmf[hi] <= tail:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def pct(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))]


# ------------------------------------------------------------------------------------ experiments

def baseline(lab: Lab) -> float:
    return statistics.median(lab.probe(rate=500, count=500, drain_s=0.2).delays_ms())


def latency(lab: Lab, base: float, delay: int, jitter: int, samples: int, rate: float, flows: int,
            queue: int) -> dict:
    p = lab.delayer(f"bench_lat{delay}", queue, "--delay", f"{delay}ms", "--jitter", f"{jitter}ms",
                    "--distribution", "normal", "--seed", "7")
    run = lab.probe(rate=rate, count=samples, flows=flows, drain_s=1.5 * (delay + 4 * jitter) / 1000 + 0.5)
    lab.stop(p)
    added = [d - base for d in run.delays_ms()]
    m, mh = mean_ci(added)
    s, sh = sd_ci(added)
    return {"delay": delay, "jitter": jitter, "n": len(added), "sent": run.sent, "mean": m, "mean_h": mh,
            "sd": s, "sd_h": sh, "mean_ok": abs(m - delay) <= 0.02 * delay,
            "sd_ok": abs(s - jitter) <= 0.10 * jitter, "per_flow_gap_ms": 1000 * flows / rate}


def loss(lab: Lab, percent: float, n: int) -> dict:
    lab.fault_ids.append("bench_loss")
    steer.apply_nft_script(steer.build_loss_script("bench_loss", steer.Scope.build("data", peers=[B_ADDR]),
                                                   percent), netns=lab.a)
    run = lab.probe(rate=2000, count=n, drain_s=0.3)
    steer.revert_fault("bench_loss", netns=lab.a)
    lo, hi = binom_interval(run.sent, percent / 100)
    return {"percent": percent, "sent": run.sent, "lost": run.lost, "lo": lo, "hi": hi,
            "ok": lo <= run.lost <= hi}


def partition(lab: Lab) -> dict:
    fid = "bench_part"
    lab.fault_ids.append(fid)
    script = steer.build_partition_script(fid, steer.Scope.build("data", peers=[B_ADDR]), "both")
    rate, count, cut, heal = 1000, 3000, 500, 2000
    marks: dict[str, int] = {}

    def tick(seq: int) -> None:
        if seq == cut:
            steer.apply_nft_script(script, netns=lab.a)
            marks["cut"] = time.time_ns()
        elif seq == heal:
            steer.revert_fault(fid, netns=lab.a)
            marks["heal"] = time.time_ns()

    run = lab.probe(rate=rate, count=count, drain_s=0.3, on_tick=tick)
    crossed = [s for s in run.delays_ns if cut <= s < heal]
    after = [run.arrival_ns[s] for s in run.delays_ns if s >= heal]
    recovery_ms = (min(after) - marks["heal"]) / 1e6 if after else float("inf")
    lost_after = sum(1 for s in range(heal, count) if s not in run.delays_ns)
    return {"blocked": heal - cut, "crossed": len(crossed), "recovery_ms": recovery_ms,
            "lost_after_heal": lost_after, "ok": not crossed and recovery_ms < 1000}


def t99(df: int) -> float:
    return T99.get(df) or T99[max(k for k in T99 if k <= df)] if df >= 1 else float("nan")


def mean_ci_t(xs: list[float]) -> tuple[float, float]:
    """Mean and 99 % half-width with Student's t (few repeats)."""
    if len(xs) < 2:
        return (xs[0] if xs else float("nan")), float("nan")
    return statistics.mean(xs), t99(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def gilbert_elliott(lab: Lab, ge: tuple[float, float, float, float], n: int, queue: int) -> dict:
    """Burst loss in the delayer; loss rate by batch means (the losses are correlated), burst lengths
    as runs of consecutive missing sequence numbers (independent bursts: plain mean interval)."""
    fid = f"bench_ge{queue}"
    p = lab.delayer(fid, queue, "--gemodel", *(f"{v:g}%" for v in ge), "--seed", "11")
    run = lab.probe(rate=2000, count=n, drain_s=0.3)
    lab.stop(p)
    lost = [s not in run.delays_ns for s in range(run.sent)]
    batch = 1000
    rates = [sum(lost[i:i + batch]) / batch for i in range(0, len(lost) - batch + 1, batch)]
    runs, cur = [], 0
    for x in lost + [False]:
        if x:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    th = ge_theory(*ge)
    loss_m, loss_h = mean_ci_t(rates)
    burst_m, burst_h = mean_ci(runs) if len(runs) > 1 else (float("nan"), float("nan"))
    return {"ge": ge, "sent": run.sent, "lost": sum(lost), "loss": loss_m, "loss_h": loss_h,
            "bursts": len(runs), "burst": burst_m, "burst_h": burst_h, "th_loss": th["loss"],
            "th_burst": th["mean_burst"], "loss_ok": abs(loss_m - th["loss"]) <= loss_h,
            "burst_ok": abs(burst_m - th["mean_burst"]) <= burst_h}


def _tcp_goodput(lab: Lab, port: int, seconds: float, skip: float) -> float:
    """Bulk TCP A -> B for ``seconds``; bits/s of payload received after the first ``skip`` seconds."""
    srv = netns_socket(lab.b, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((B_ADDR, port))
    srv.listen(1)
    cli = netns_socket(lab.a, socket.SOCK_STREAM)
    got: list[tuple[float, int]] = []
    stop = threading.Event()

    def send() -> None:
        chunk = b"\0" * 65536
        try:
            while not stop.is_set():
                cli.send(chunk)
        except OSError:
            pass

    try:
        cli.connect((B_ADDR, port))
        conn, _ = srv.accept()
        conn.settimeout(1.0)
        t = threading.Thread(target=send, daemon=True)
        t0 = time.monotonic()
        t.start()
        while (now := time.monotonic()) - t0 < seconds:
            try:
                n = len(conn.recv(1 << 20))
            except TimeoutError:
                n = 0
            got.append((now - t0, n))
        stop.set()
        conn.close()
        cli.close()
        t.join(timeout=5)
    finally:
        stop.set()
        srv.close()
        cli.close()
    window = [n for at, n in got if at >= skip]
    return 8 * sum(window) / (seconds - skip)


def bandwidth(lab: Lab, rate_mbit: float, repeats: int, seconds: float = 6.0, skip: float = 1.5) -> dict:
    """network-bandwidth 10mbit as the role builds it (tbf root on A's data, catalog defaults)."""
    fid = "bench_bw"
    scope = tc.TcScope.build("data")
    params = {"rate": f"{rate_mbit:g}mbit", "burst": "32KiB", "limit": "1MiB"}
    argvs = tc.build_apply(fid, scope, "bandwidth", (tc.bandwidth_tbf_args(params), tc.bandwidth_class_args(params),
                                                        "1mb"))
    goodputs = []
    for i in range(repeats):
        for argv in argvs:
            subprocess.run(["ip", "netns", "exec", lab.a, *argv], check=True, capture_output=True)
        try:
            goodputs.append(_tcp_goodput(lab, 9300 + i, seconds, skip) / 1e6)
        finally:
            for argv in tc.build_revert(fid, scope):
                subprocess.run(["ip", "netns", "exec", lab.a, *argv], capture_output=True)
    m, h = mean_ci_t(goodputs)
    # tbf counts every byte on the wire (Ethernet + IP + TCP headers): a 1448-byte segment costs
    # 1514 bytes, so the best possible goodput is rate * 1448/1514.
    ceiling = rate_mbit * 1448 / 1514
    return {"rate": rate_mbit, "repeats": repeats, "goodputs": goodputs, "mean": m, "h": h, "ceiling": ceiling,
            "wire": m * 1514 / 1448, "ok": abs(m - rate_mbit) <= 0.05 * rate_mbit}


_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)
"""


def stutter(lab: Lab, pause_ms: float, every_ms: float, seconds: float, rate: float, tmp: Path) -> dict:
    """A UDP echo service in B, paused by the real stutter helper; a client in A at ``rate``/s.

    A stall is a run of requests whose response took longer than a quarter of the pause. The
    client sees a pause start at the send time of the first stalled request (the pause began at
    most one request interval earlier) and end when the first response of the run arrives.
    """
    port = 9400
    svc = subprocess.Popen(["ip", "netns", "exec", lab.b, sys.executable, "-c", _ECHO, B_ADDR, str(port)],
                           start_new_session=True)
    lab.procs.append(svc)
    time.sleep(0.5)
    cli = netns_socket(lab.a)
    cli.connect((B_ADDR, port))
    cli.setblocking(False)
    hdr = struct.Struct("!Qq")
    sent: dict[int, int] = {}
    recv: dict[int, int] = {}
    stats = tmp / "stutter.json"
    warm = 1.0
    helper = None
    try:
        start = time.monotonic() + 0.05
        interval = 1.0 / rate
        total = int((seconds + 2 * warm) * rate)
        for seq in range(total):
            if seq == int(warm * rate):
                helper = subprocess.Popen([sys.executable, "-m", "grayctl.faults.node.stutter", "--pgid", str(svc.pid),
                                           "--at", f"{time.time() + seconds:.3f}", "--pause", f"{pause_ms:g}ms",
                                           "--every", f"{every_ms:g}ms", "--stats", str(stats)], cwd=ROOT,
                                          start_new_session=True)
                lab.procs.append(helper)
            due = start + seq * interval
            while (left := due - time.monotonic()) > 0:
                ready, _, _ = select.select([cli], [], [], left)
                while ready:
                    try:
                        data = cli.recv(64)
                    except BlockingIOError:
                        break
                    recv[hdr.unpack_from(data)[0]] = time.monotonic_ns()
            now = time.monotonic_ns()
            try:
                cli.send(hdr.pack(seq, now))
                sent[seq] = now
            except BlockingIOError:
                pass
        end = time.monotonic() + 0.5
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([cli], [], [], left)
            if ready:
                try:
                    data = cli.recv(64)
                    recv[hdr.unpack_from(data)[0]] = time.monotonic_ns()
                except BlockingIOError:
                    pass
        if helper is not None:
            helper.wait(timeout=30)
    finally:
        cli.close()
        os.killpg(svc.pid, signal.SIGCONT)
        os.killpg(svc.pid, signal.SIGKILL)
        svc.wait()
    events = json.loads(stats.read_text())["events"]
    threshold = pause_ms / 4 * 1e6
    stalls: list[tuple[int, int]] = []  # (client-seen start, end) in monotonic ns
    in_stall = False
    for seq in sorted(sent):
        rt = recv.get(seq, None)
        slow = rt is None or rt - sent[seq] > threshold
        if slow and not in_stall and rt is not None:
            stalls.append((sent[seq], rt))
            in_stall = True
        elif not slow:
            in_stall = False
    lengths = [(e - b) / 1e6 for b, e in stalls]
    starts = [b for b, _ in stalls]
    periods = [(b - a) / 1e6 for a, b in zip(starts, starts[1:])]
    # The helper's own STOP -> CONT times; the last pause is cut short by --at, so it is left out.
    host = [(b[1] - a[1]) / 1e6 for a, b in zip(events, events[1:]) if a[0] == "STOP" and b[0] == "CONT"][:-1]
    span = (stalls[-1][1] - stalls[0][0]) / 1e6 if stalls else float("nan")
    lm, lh = mean_ci(lengths) if len(lengths) > 1 else (float("nan"), float("nan"))
    pm, ph = mean_ci(periods) if len(periods) > 1 else (float("nan"), float("nan"))
    return {"pause": pause_ms, "every": every_ms, "rate": rate, "requests": len(sent),
            "answered": len(recv), "stalls": len(stalls), "expected": int(seconds * 1000 / every_ms),
            "len": lm, "len_h": lh, "len_sd": statistics.stdev(lengths) if len(lengths) > 1 else float("nan"),
            "per": pm, "per_h": ph, "per_sd": statistics.stdev(periods) if len(periods) > 1 else float("nan"),
            "duty": lm / pm if periods else float("nan"), "span_s": span / 1000,
            "host_len": statistics.mean(host) if host else float("nan"),
            "host_sd": statistics.stdev(host) if len(host) > 1 else float("nan"),
            "len_ok": abs(lm - pause_ms) <= max(0.1 * pause_ms, 1000 / rate),
            "per_ok": abs(pm - every_ms) <= 0.02 * every_ms}



def throughput(lab: Lab, base_by_rate: dict[int, float], rates: list[int]) -> list[dict]:
    out = []
    for rate in rates:
        p = lab.delayer(f"bench_pps{rate}", 40, "--delay", "10ms", "--limit", "100000")
        run = lab.probe(rate=rate, count=int(rate * 2), flows=16, drain_s=0.5)
        lab.stop(p)
        added = [d - base_by_rate[rate] for d in run.delays_ms()]
        row = {"rate": rate, "sent": run.sent, "lost": run.lost,
               "mean_err": statistics.mean(added) - 10 if added else float("nan"),
               "p99_err": pct(added, 0.99) - 10 if added else float("nan"),
               "send_lag_ms": run.send_lag_ns_max / 1e6}
        row["distorted"] = row["mean_err"] > 1.0 or row["p99_err"] > 5.0 or run.lost > 0.001 * run.sent
        out.append(row)
        if row["distorted"] and len(out) >= 2 and out[-2]["distorted"]:
            break
    return out


# ------------------------------------------------------------------------------------ report

def render(r: dict, secs: float, argv: str) -> str:
    ok = lambda b: "yes" if b else "**no**"  # noqa: E731
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `{argv}` ({secs:.0f} s). "
        "Fallback backend: NFQUEUE delayer (`grayctl.faults.node.nfqdelay`, default per-flow order), nft "
        "tables, tbf; two namespaces over a veth (10.243.0.1 → 10.243.0.2); UDP one-way probes stamped on "
        "arrival by the kernel. Intervals are 99 %.",
        "",
        f"Machine: {r['machine']}",
    ]
    if "lats" in r:
        lines += [
            "",
            f"Baseline one-way delay {r['base'] * 1000:.0f} µs (subtracted).",
            "",
            "| fault | samples | added delay mean | stddev | target | met | netem in a VM (FIELD-NOTES) |",
            "|---|---|---|---|---|---|---|",
        ]
        netem = {200: "+198.1 ms, σ 49.3", 10: "+10.2 ms, σ 2.07"}
        for x in r["lats"]:
            lines.append(
                f"| {x['delay']}ms ± {x['jitter']}ms normal | {x['n']} of {x['sent']} "
                f"(flows {x['per_flow_gap_ms']:.0f} ms apart) | {x['mean']:.2f} ± {x['mean_h']:.2f} ms "
                f"| {x['sd']:.2f} ± {x['sd_h']:.2f} ms | mean ±2 %, σ ±10 % "
                f"| mean {ok(x['mean_ok'])}, σ {ok(x['sd_ok'])} | {netem[x['delay']]} |")
    if "loss" in r:
        ls = r["loss"]
        lines += ["", f"Loss {ls['percent']:g} % (nft `numgen random`): {ls['lost']} of {ls['sent']} lost "
                  f"({100 * ls['lost'] / ls['sent']:.2f} %); 99 % binomial interval {ls['lo']}–{ls['hi']}: "
                  f"{ok(ls['ok'])}. (netem in a VM, FIELD-NOTES: 4.25 % of 2000.)"]
    if "ge" in r:
        lines += [
            "",
            "Burst loss, Gilbert-Elliott (`nfqdelay --gemodel p r 1-h 1-k`, netem's `loss gemodel` semantics; "
            "2000 datagrams/s from one sender; loss-rate interval from 1000-datagram batch means, burst "
            "interval from the independent burst lengths; theory = the chain's stationary loss and mean run "
            "of consecutive losses, `delaymodel.ge_theory`):",
            "",
            "| p, r, 1-h, 1-k | datagrams | loss measured | loss theory | bursts | mean burst measured "
            "| mean burst theory | met (theory inside the interval) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for x in r["ge"]:
            lines.append(
                f"| {', '.join(f'{v:g}%' for v in x['ge'])} | {x['sent']} | {100 * x['loss']:.2f} ± "
                f"{100 * x['loss_h']:.2f} % | {100 * x['th_loss']:.2f} % | {x['bursts']} | {x['burst']:.2f} ± "
                f"{x['burst_h']:.2f} | {x['th_burst']:.2f} | loss {ok(x['loss_ok'])}, burst {ok(x['burst_ok'])} |")
    if "bw" in r:
        b = r["bw"]
        lines += ["", f"Bandwidth {b['rate']:g} mbit/s (tbf root on A's data, burst 32KiB, limit 1MiB — the "
                  f"catalog defaults; one bulk TCP transfer A → B per repeat, goodput = payload bytes received "
                  f"after the first 1.5 s of 6 s): {b['mean']:.3f} ± {b['h']:.3f} Mbit/s over {b['repeats']} "
                  f"repeats ({', '.join(f'{g:.3f}' for g in b['goodputs'])}), "
                  f"{100 * (b['mean'] - b['rate']) / b['rate']:+.1f} % of the rate; within 5 %: {ok(b['ok'])}. "
                  f"tbf counts whole frames, so TCP's best is {b['ceiling']:.3f} Mbit/s of payload "
                  f"(1448 of 1514 bytes); on the wire that is {b['wire']:.3f} Mbit/s."]
    if "part" in r:
        part = r["part"]
        lines += ["", f"Partition both ways (nft drop): {part['crossed']} of {part['blocked']} datagrams sent "
                  f"during it crossed; first datagram after the revert arrived {part['recovery_ms']:.2f} ms after "
                  f"the revert returned ({part['lost_after_heal']} lost afterwards): {ok(part['ok'])}."]
    if "stutter" in r:
        x = r["stutter"]
        lines += ["", f"Process-pause stutter (pause {x['pause']:g} ms every {x['every']:g} ms, "
                  f"`grayctl.faults.node.stutter` on a UDP echo service in B; client in A at {x['rate']:g} "
                  f"requests/s; a stall = responses slower than {x['pause'] / 4:g} ms): {x['stalls']} stalls seen by "
                  f"the client (configured {x['expected']}); pause length {x['len']:.2f} ± {x['len_h']:.2f} ms "
                  f"(σ {x['len_sd']:.2f}), period {x['per']:.2f} ± {x['per_h']:.2f} ms (σ {x['per_sd']:.2f}), "
                  f"duty cycle {100 * x['duty']:.1f} % (configured {100 * x['pause'] / x['every']:.1f} %). "
                  f"The helper's own log: SIGSTOP→SIGCONT {x['host_len']:.2f} ms (σ {x['host_sd']:.2f}). "
                  f"Met (pause within 10 % or one request interval, period within 2 %): pause {ok(x['len_ok'])}, "
                  f"period {ok(x['per_ok'])}."]
    if "tp" in r:
        lines += [
            "",
            "Packet rate vs. distortion (10 ms fixed delay, 16 flows, 2 s per rate, `--limit 100000`; "
            "distorted = mean error > 1 ms, p99 error > 5 ms or loss > 0.1 %):",
            "",
            "| offered pps | sent | lost | mean error | p99 error | sender lag max | distorted |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in r["tp"]:
            lines.append(f"| {x['rate']} | {x['sent']} | {x['lost']} | {x['mean_err']:+.3f} ms "
                         f"| {x['p99_err']:+.3f} ms | {x['send_lag_ms']:.1f} ms | {'yes' if x['distorted'] else 'no'} |")
    return "\n".join(lines)


PARTS = ("latency", "loss", "ge", "bandwidth", "partition", "stutter", "rates")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                    help="run only these measurements (the docs section is only written for a full run)")
    ap.add_argument("--rates", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 15000, 20000, 30000])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("fault_fidelity: needs root (namespaces, netfilter)")
    t0 = time.monotonic()
    r: dict = {"machine": describe()}
    only = set(args.only)
    import tempfile

    with Lab() as lab, tempfile.TemporaryDirectory(prefix="fault-bench-") as tmp:
        if "latency" in only:
            r["base"] = base = baseline(lab)
            r["lats"] = [latency(lab, base, 200, 50, samples=2500, rate=100, flows=40, queue=31),
                         latency(lab, base, 10, 2, samples=4000, rate=500, flows=20, queue=32)]
        if "loss" in only:
            r["loss"] = loss(lab, 5.0, 10000)
        if "ge" in only:
            r["ge"] = [gilbert_elliott(lab, (1.0, 25.0, 100.0, 0.0), 20000, 33),
                       gilbert_elliott(lab, (5.0, 30.0, 80.0, 1.0), 20000, 34)]
        if "bandwidth" in only:
            r["bw"] = bandwidth(lab, 10.0, repeats=5)
        if "partition" in only:
            r["part"] = partition(lab)
        if "stutter" in only:
            r["stutter"] = stutter(lab, 50.0, 200.0, seconds=10.0, rate=1000.0, tmp=Path(tmp))
        if "rates" in only:
            base_by_rate = {x: statistics.median(lab.probe(rate=x, count=min(x, 5000), flows=16,
                                                           drain_s=0.2).delays_ms()) for x in args.rates}
            r["tp"] = throughput(lab, base_by_rate, args.rates)
    argv = "python bench/fault_fidelity.py" + ("" if only == set(PARTS) else " --only " + " ".join(args.only))
    section = render(r, time.monotonic() - t0, argv)
    print(section)
    if not args.no_write and only == set(PARTS):
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
