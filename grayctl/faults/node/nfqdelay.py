"""The userspace delayer: netem-like delay, jitter, loss and reorder on an NFQUEUE.

Runs on a lab node, inside the node's network namespace, with no controller in the loop::

    python -m grayctl.faults.node.nfqdelay --queue 7 --delay 200ms --jitter 50ms \\
        [--correlation 25%] [--distribution normal|pareto|paretonormal|uniform] \\
        [--reorder 10% [--reorder-correlation 0%] --gap 5] [--loss 5% [--loss-correlation 0%]] \\
        [--gemodel P R 1-H 1-K] [--order flow|global|none] [--limit 1000] [--seed S] [--expire-at EPOCH] \\
        [--fault-id ID] [--pidfile F] [--stats F] [--stats-interval 1s]

How it works: the kernel queues each steered packet (``steer.build_queue_argvs``) and this
process gets a copy of its first ``COPY_BYTES`` bytes. The callback asks ``DelayModel`` for a
verdict and either drops it, accepts it at once (reordered / zero delay), or pushes the
``Packet`` onto a heap keyed by release time. The main loop ``select``s on the queue's netlink
fd with a timeout that ends at the earliest release, reads packets without blocking
(``run(block=False)``), and accepts every packet that is due. No sleeping in the callback, so
any number of packets are in flight at once. A verdict needs only the packet id, so holding
the ``Packet`` object is enough; ``retain()`` (a payload copy) is not needed because the
payload is never modified.

Ending (SIGTERM, SIGINT, ``--expire-at`` reached, or any exception): first the fault's rules
are removed (``--fault-id``: ``steer.revert_fault`` — no new packets arrive), then packets
still in the queue and every held packet are accepted in release order, then the queue is
unbound, final stats written, the pidfile removed. A SIGKILL skips all of that: pair the helper
with ``grayctl.faults.node.expiry`` (see docs/fault-backends.md).

Queue length: ``--limit`` is the kernel queue's maximum (packets held here count against it,
like netem's ``limit``, default 1000). A full queue drops new packets (counted as
``overflow``) — the same as netem. Exit codes: 0 ended normally, 2 bad arguments, 3 could
not bind the queue (not root, queue taken, no NFQUEUE), 1 a bug.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import json
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from grayctl.faults.node import steer
from grayctl.faults.node.args import duration_ns, monotonic_deadline, percent
from grayctl.faults.node.delaymodel import DISTRIBUTIONS, ORDERS, DelayModel, DelaySpec

__all__ = ["Stats", "Delayer", "flow_key", "main"]

COPY_BYTES = 128  # enough for an IPv4 header with options (60) or IPv6 (40) + 8 bytes of L4
DEFAULT_LIMIT = 1000  # netem's default ``limit``
_PR_SET_TIMERSLACK = 29


def flow_key(head: bytes) -> bytes:
    """The flow a packet belongs to: protocol, addresses, ports (or ICMP id), as bytes.

    Fragments after the first carry no ports and fall into the protocol+address flow; that
    only coarsens ordering, never breaks it.
    """
    if not head:
        return b""
    version = head[0] >> 4
    if version == 4 and len(head) >= 20:
        ihl = (head[0] & 0x0F) * 4
        proto = head[9]
        addrs = head[12:20]
        later_fragment = (head[6] & 0x1F) or head[7]
        l4 = b"" if later_fragment else head[ihl:ihl + 8]
    elif version == 6 and len(head) >= 40:
        proto = head[6]
        addrs = head[8:40]
        l4 = head[40:48]  # extension headers are not walked: rare on a lab data network
    else:
        return head[:1]
    if proto in (6, 17, 132, 136):  # tcp, udp, sctp, udplite: ports
        return bytes((proto,)) + addrs + l4[:4]
    if proto in (1, 58):  # icmp, icmpv6: identifier (echo id)
        return bytes((proto,)) + addrs + l4[4:6]
    return bytes((proto,)) + addrs


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Stats:
    """Counters written to ``--stats`` (JSON) every interval and at exit."""

    queue: int = 0
    started_utc: str = ""
    updated_utc: str = ""
    ended_utc: str | None = None
    exit_reason: str | None = None
    seen: int = 0
    delayed: int = 0
    dropped: int = 0  # by the loss model
    reordered: int = 0
    passed: int = 0  # released at once without delay (zero sampled delay)
    overflow: int = 0  # dropped by the kernel: queue full (--limit) or lost to userspace
    held: int = 0
    max_held: int = 0
    order_waits: int = 0  # packets held longer than sampled to keep their flow in order
    release_late_us_mean: float = 0.0  # how much after its due time a packet was accepted
    release_late_us_max: float = 0.0
    flushed_at_exit: int = 0
    reverted: list[str] = field(default_factory=list)
    _late_sum_us: float = 0.0
    _late_n: int = 0

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return json.dumps(data, indent=1, sort_keys=True)


def _kernel_queue_drops(queue: int) -> int:
    """queue_dropped + queue_user_dropped for our queue, from this netns' nfnetlink_queue."""
    try:
        for line in Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines():
            cols = line.split()
            if cols and int(cols[0]) == queue:
                return int(cols[5]) + int(cols[6])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _set_timer_slack_ns(ns: int) -> None:
    """Wake-ups from select() are late by the timer slack (50 us by default): ask for less."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Delayer:
    """One bound queue, its model, the heap of held packets and the event loop."""

    def __init__(self, queue: int, model: DelayModel, *, limit: int = DEFAULT_LIMIT,
                 expire_at: float | None = None, fault_id: str | None = None,
                 stats_path: Path | None = None, stats_interval: float = 1.0) -> None:
        self.queue = queue
        self.model = model
        self.limit = limit
        # Monotonic from here on: a step of the node's clock does not move the fault's end.
        self.expire_at = None if expire_at is None else monotonic_deadline(expire_at)
        self.fault_id = fault_id
        self.stats_path = stats_path
        self.stats_interval = stats_interval
        self.stats = Stats(queue=queue, started_utc=_utc_now())
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = 0
        self._draining = False
        self._stop_reason: str | None = None
        self._drops_at_start = 0

    # -- packet path -------------------------------------------------------------------------
    def _on_packet(self, pkt: Any) -> None:
        now = time.monotonic_ns()
        st = self.stats
        st.seen += 1
        if self._draining:
            pkt.accept()
            return
        try:
            head = pkt.get_payload()
        except RuntimeError:
            head = b""
        d = self.model.decide(now, flow_key(head))
        if d.drop:
            pkt.drop()
            st.dropped += 1
            return
        if d.reordered:
            pkt.accept()
            st.reordered += 1
            return
        if d.release_ns <= now:
            pkt.accept()
            st.passed += 1
            return
        if d.order_wait_ns:
            st.order_waits += 1
        self._seq += 1
        heapq.heappush(self._heap, (d.release_ns, self._seq, pkt))
        st.delayed += 1

    def _release_due(self) -> None:
        heap = self._heap
        if not heap:
            return
        now = time.monotonic_ns()
        st = self.stats
        while heap and heap[0][0] <= now:
            due, _, pkt = heapq.heappop(heap)
            pkt.accept()
            late_us = (now - due) / 1000
            st._late_sum_us += late_us
            st._late_n += 1
            if late_us > st.release_late_us_max:
                st.release_late_us_max = late_us

    # -- loop --------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def run(self) -> Stats:
        from netfilterqueue import COPY_PACKET, NetfilterQueue  # node extra; imported late for --help

        _set_timer_slack_ns(1_000)
        nfq = NetfilterQueue()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w)
        handlers = {s: signal.signal(s, lambda n, _f: self.request_stop(signal.Signals(n).name))
                    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        bound = False
        try:
            try:
                nfq.bind(self.queue, self._on_packet, max_len=self.limit, mode=COPY_PACKET, range=COPY_BYTES)
                bound = True
            except OSError as exc:
                raise BindError(f"cannot bind NFQUEUE {self.queue}: {exc} (root? queue already bound?)") from exc
            self._drops_at_start = _kernel_queue_drops(self.queue)
            fd = nfq.get_fd()
            next_stats = time.monotonic() + self.stats_interval
            self._write_stats()
            while self._stop_reason is None:
                now_ns = time.monotonic_ns()
                timeout = self.stats_interval
                if self._heap:
                    timeout = min(timeout, max(0.0, (self._heap[0][0] - now_ns) / 1e9))
                if self.expire_at is not None:
                    left = self.expire_at - time.monotonic()
                    if left <= 0:
                        self.request_stop("expired")
                        break
                    timeout = min(timeout, left)
                # select() takes a microsecond timeval (epoll only has milliseconds): the wake-up
                # error is the timer slack, not a whole millisecond.
                ready, _, _ = select.select([fd, wake_r], [], [], timeout)
                if fd in ready:
                    nfq.run(block=False)
                if wake_r in ready:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
                self._release_due()
                if time.monotonic() >= next_stats:
                    next_stats += self.stats_interval
                    self._write_stats()
        except BaseException as exc:  # noqa: BLE001 - any failure must still flush and revert
            self.request_stop(f"error: {type(exc).__name__}: {exc}")
            if not bound:
                raise
            self._shutdown(nfq)
            raise
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, h in handlers.items():
                signal.signal(s, h)
            os.close(wake_r)
            os.close(wake_w)
        self._shutdown(nfq)
        return self.stats

    def _shutdown(self, nfq: Any) -> None:
        """Revert the rules, then let every queued and held packet go, in release order."""
        st = self.stats
        if st.ended_utc is not None:
            return
        if self.fault_id:
            try:
                st.reverted = steer.revert_fault(self.fault_id)
            except Exception as exc:  # noqa: BLE001 - keep flushing; expiry retries the revert
                st.reverted = [f"revert failed: {exc}"]
        self._draining = True
        try:
            nfq.run(block=False)  # packets queued before the rule went: accept at once
        except OSError:
            pass
        while self._heap:
            _, _, pkt = heapq.heappop(self._heap)
            try:
                pkt.accept()
                st.flushed_at_exit += 1
            except RuntimeError:
                break  # queue already gone: the kernel drops what is left
        try:
            nfq.unbind()
        except Exception:  # noqa: BLE001
            pass
        st.exit_reason = self._stop_reason
        st.ended_utc = _utc_now()
        self._write_stats()

    def _write_stats(self) -> None:
        st = self.stats
        st.held = len(self._heap)
        st.max_held = max(st.max_held, st.held)
        st.overflow = max(0, _kernel_queue_drops(self.queue) - self._drops_at_start)
        if st._late_n:
            st.release_late_us_mean = round(st._late_sum_us / st._late_n, 1)
        st.release_late_us_max = round(st.release_late_us_max, 1)
        st.updated_utc = _utc_now()
        if self.stats_path is None:
            return
        tmp = self.stats_path.with_name(self.stats_path.name + ".tmp")
        tmp.write_text(st.to_json() + "\n")
        os.replace(tmp, self.stats_path)  # readers never see half a file


class BindError(RuntimeError):
    """The queue could not be bound (exit code 3)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m grayctl.faults.node.nfqdelay",
        description="Delay, jitter, reorder and drop packets steered into an NFQUEUE (netem semantics).")
    p.add_argument("--queue", type=int, required=True, help="NFQUEUE number (0..65535)")
    p.add_argument("--delay", type=duration_ns, default=0, help="mean added delay, e.g. 200ms")
    p.add_argument("--jitter", type=duration_ns, default=0, help="delay variation, e.g. 50ms")
    p.add_argument("--correlation", type=percent, default=0.0, help="delay correlation (netem), e.g. 25%%")
    p.add_argument("--distribution", choices=DISTRIBUTIONS, default="normal")
    p.add_argument("--loss", type=percent, default=0.0, help="random loss, e.g. 5%%")
    p.add_argument("--loss-correlation", type=percent, default=0.0)
    p.add_argument("--gemodel", type=percent, nargs=4, default=None, metavar=("P", "R", "1-H", "1-K"),
                   help="Gilbert-Elliott burst loss, as netem's 'loss gemodel p r 1-h 1-k', e.g. 1%% 25%% 100%% 0%%")
    p.add_argument("--reorder", type=percent, default=0.0, help="send this share at once (needs --delay)")
    p.add_argument("--reorder-correlation", type=percent, default=0.0)
    p.add_argument("--gap", type=int, default=0, help="reorder gap (netem; default 1 when --reorder)")
    p.add_argument("--order", choices=ORDERS, default="flow",
                   help="keep order per flow (default), for all packets, or not at all (netem tfifo)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="kernel queue length in packets")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--expire-at", type=float, default=None, help="exit (and revert) at this Unix time")
    p.add_argument("--fault-id", type=str, default=None,
                   help="remove the rules named after this fault id on exit (steer.revert_fault)")
    p.add_argument("--pidfile", type=Path, default=None)
    p.add_argument("--stats", type=Path, default=None, help="write counters as JSON here")
    p.add_argument("--stats-interval", type=duration_ns, default=1_000_000_000)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0 <= args.queue <= 65535 or not 1 <= args.limit <= 1_000_000:
            raise ValueError("--queue must be 0..65535 and --limit 1..1000000")
        if args.fault_id is not None:
            steer.validate_fault_id(args.fault_id)
        spec = DelaySpec(delay_ns=args.delay, jitter_ns=args.jitter, correlation=args.correlation,
                         distribution=args.distribution, loss=args.loss,
                         loss_correlation=args.loss_correlation, reorder=args.reorder,
                         reorder_correlation=args.reorder_correlation, gap=args.gap,
                         order=args.order, seed=args.seed,
                         gemodel=tuple(args.gemodel) if args.gemodel else None)
        model = DelayModel(spec)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nfqdelay: invalid input: {exc}", file=sys.stderr)
        return 2
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    delayer = Delayer(args.queue, model, limit=args.limit, expire_at=args.expire_at,
                      fault_id=args.fault_id, stats_path=args.stats,
                      stats_interval=max(args.stats_interval / 1e9, 0.05))
    try:
        stats = delayer.run()
    except BindError as exc:
        print(f"nfqdelay: {exc}", file=sys.stderr)
        return 3
    finally:
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    print(f"nfqdelay: ended ({stats.exit_reason}); seen {stats.seen}, delayed {stats.delayed}, "
          f"dropped {stats.dropped}, overflow {stats.overflow}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
