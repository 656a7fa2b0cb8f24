"""UDP one-way probes between two network namespaces on one host: what a fault really does.

One process holds a receiving socket in the destination namespace and ``flows`` sending
sockets (distinct source ports, so distinct flows) in the source namespace — a socket keeps
the namespace it was created in, so the process only switches namespaces (``setns``) while
creating them. Both ends read the same clock, so the one-way delay needs no echo and no clock
sync: each datagram carries its sequence number and ``CLOCK_REALTIME`` send time; the
receiver's kernel stamps arrival (``SO_TIMESTAMPNS``, same clock), so the receiving loop's
own scheduling does not enter the figure.

Sending is open-loop: datagram ``i`` leaves at ``start + i / rate`` whatever came back,
round-robin over the flows. Used by tests/lab/test_nfqdelay.py and bench/fault_fidelity.py.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ProbeRun", "netns_socket", "run_probes"]

_CLONE_NEWNET = 0x40000000
_HEADER = struct.Struct("!QQ")  # seq, send time (ns, CLOCK_REALTIME)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TS = struct.Struct("@qq")  # struct timespec


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_socket(netns: str | None, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """An IPv4 socket created inside network namespace ``netns`` (``ip netns`` name)."""
    if netns is None:
        return socket.socket(socket.AF_INET, kind)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(socket.AF_INET, kind)
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


@dataclass
class ProbeRun:
    """What one probe run saw. ``delays_ns[seq]`` is the one-way delay of datagram ``seq``."""

    sent: int = 0
    send_times_ns: list[int] = field(default_factory=list)
    delays_ns: dict[int, int] = field(default_factory=dict)
    arrival_ns: dict[int, int] = field(default_factory=dict)
    send_lag_ns_max: int = 0  # worst lateness of the sender against its schedule

    @property
    def received(self) -> int:
        return len(self.delays_ns)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def delays_ms(self) -> list[float]:
        return [self.delays_ns[s] / 1e6 for s in sorted(self.delays_ns)]


def _drain(rx: socket.socket, run: ProbeRun) -> None:
    while True:
        try:
            data, anc, _flags, _addr = rx.recvmsg(2048, socket.CMSG_SPACE(_TS.size))
        except BlockingIOError:
            return
        if len(data) < _HEADER.size:
            continue
        seq, sent_ns = _HEADER.unpack_from(data)
        arrived = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(cdata) >= _TS.size:
                sec, nsec = _TS.unpack_from(cdata)
                arrived = sec * 1_000_000_000 + nsec
        if arrived is None:
            arrived = time.time_ns()
        run.delays_ns[seq] = arrived - sent_ns
        run.arrival_ns[seq] = arrived


def run_probes(src_netns: str | None, dst_netns: str | None, dst_addr: str, port: int, *,
               rate: float, count: int, flows: int = 1, payload: int = 64, drain_s: float = 1.0,
               on_tick: Callable[[int], None] | None = None) -> ProbeRun:
    """Send ``count`` datagrams at ``rate``/s over ``flows`` flows; collect one-way delays.

    ``on_tick(seq)`` is called before each send (to apply or revert a fault mid-run).
    """
    rx = netns_socket(dst_netns)
    txs: list[socket.socket] = []
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        rx.bind((dst_addr, port))
        rx.setblocking(False)
        for _ in range(flows):
            tx = netns_socket(src_netns)
            tx.connect((dst_addr, port))
            tx.setblocking(False)
            txs.append(tx)
        run = ProbeRun()
        pad = b"\0" * max(0, payload - _HEADER.size)
        interval = 1.0 / rate
        start = time.monotonic() + 0.05
        for seq in range(count):
            due = start + seq * interval
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select([rx], [], [], left)
                if ready:
                    _drain(rx, run)
            run.send_lag_ns_max = max(run.send_lag_ns_max, int((time.monotonic() - due) * 1e9))
            if on_tick is not None:
                on_tick(seq)
            now = time.time_ns()
            try:
                txs[seq % flows].send(_HEADER.pack(seq, now) + pad)
            except (BlockingIOError, PermissionError, ConnectionRefusedError):
                pass  # EPERM: a netfilter drop on output; counted as lost
            run.send_times_ns.append(now)
            run.sent += 1
        end = time.monotonic() + drain_s
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([rx], [], [], left)
            if ready:
                _drain(rx, run)
        return run
    finally:
        rx.close()
        for tx in txs:
            tx.close()
