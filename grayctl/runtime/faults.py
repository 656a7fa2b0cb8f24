"""Runtime-realised faults: the service runtime acts at a component's boundary, on the calls into it.

A fault on a component inside a shared process (gen1's components, most of gen2's) has no packet
to act on; the runtime realises it instead (grayctl.faults.realise: ``runtime``). The node-side
executor owns the control channel (grayctl.faults.node.runtimectl): it writes the replica's
``fault_control`` file, and this module polls it (a ``stat`` every ``POLL_S``; the file is read
only when it changed) and applies what it holds. Each entry carries its expiry on the node's
monotonic clock: past it the entry is ignored, so a fault ends by itself even when the executor's
expiry process and the controller are both dead.

What each type does to a call into the faulted component (``decide`` -> ``Verdict``):

  network-latency     sleep a sampled delay (delay +- jitter, netem's distributions and correlation,
                      grayctl.faults.node.delaymodel) before the call; direction ``both``: also after
  network-loss        the answer's packets are lost as netem decides per packet (random or
                      Gilbert-Elliott), and the call waits what Linux TCP takes to repair them
                      (``Wire``: a lost last segment waits for the tail-loss probe, a lone one for the
                      retransmission timer, any other for fast retransmit; a lost retransmission backs
                      off); a repair longer than the caller's timeout runs its timeout and retries, a
                      call whose every retransmission is lost is lost, as on the wire
  network-partition   every call from the peers (``peers``; default all callers) is lost
  network-corruption  the call fails (an in-process call: an error; over HTTP: a 502 answer)
  network-bandwidth   a token bucket of ``rate`` with ``burst``: the call waits until the bytes of its
                      answer (the endpoint's response_size) fit; past ``limit`` bytes queued it is lost
  process-pause       the component's workers stop taking work: calls into it wait at its gate for
                      the pause (one ``duration`` from the apply, a ``stutter`` cycle, or the window)

While a fault acts on the callee, an in-process call runs with the wire's semantics of the call
(its topology ``timeout`` per attempt, ``retries`` with the client's backoff), so a lost or
paused call times out and is retried as a remote call is (grayctl.runtime.calls). Calls arriving
over the network into the component are faulted at the same boundary (gen2: a component of a
coarse service called from another service): a lost one is never answered (the caller times out).

Counters on /metrics, per fault: ``grayctl_runtime_fault_calls_total{fault_id, type, component,
action}`` (action: delayed, retransmitted, lost, failed, paused, passed = decided on and left alone),
``grayctl_runtime_fault_delay_seconds_total{fault_id}``, ``grayctl_runtime_faults_active``; the
executor's effect check reads the first (grayctl.faults.node.effect).

Map:
  RuntimeFault.from_entry(entry)   one control-file entry, parsed (raises ValueError)
  FaultBoard(path, registry)       the replica's live faults: poll(), decide(...), pause_left(...)
  Verdict                          what to do with one call
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grayctl.faults.node.delaymodel import DelayModel, DelaySpec
from grayctl.faults.node.runtimectl import live_entries, read_entries
from grayctl.faults.spec import resolve_parameters
from grayctl.runtime.metrics import Registry

__all__ = ["POLL_S", "FaultBoard", "RuntimeFault", "Verdict", "Wire"]

POLL_S = 0.15  # how often the control file's stat is checked
_TYPES = ("network-latency", "network-loss", "network-partition", "network-corruption", "network-bandwidth",
          "process-pause")


class Wire:
    """Linux TCP's loss repair, in seconds, for a message of ``size`` bytes whose segments a loss model
    drops: what a packet loss on the host costs the call (net/ipv4/tcp_output.c,
    ``tcp_schedule_loss_probe``; tcp_timer.c). The lab's round trip is ``SRTT_S``.

    - a lost last segment is repaired by the tail-loss probe: 2 x srtt + 2 jiffies, or, when it was
      the only segment in flight, + the minimum RTO (200 ms), capped by the RTO (srtt + 200 ms);
    - an earlier lost segment is repaired by RACK and fast retransmit once the later ones are
      acknowledged: about srtt x 1.25 (the reordering window) + the retransmission's round trip;
    - each lost retransmission waits the retransmission timer, doubling from the RTO."""

    MSS = 1448  # bytes per segment on a 1500-byte Ethernet MTU
    SRTT_S = 0.001  # the lab's round trip (sub-millisecond between namespaces and VMs on one host)
    RTO_MIN_S = 0.2  # TCP_RTO_MIN
    JIFFIES_2_S = 0.008  # TCP_TIMEOUT_MIN: 2 jiffies at Debian's HZ=250
    GIVE_UP_S = 60.0  # past this the call counts as lost (the caller's timeout ends it long before)

    @classmethod
    def repair_s(cls, size: int, lose: Any) -> float:
        """Seconds the message waits; 0.0: no segment lost; ``math.inf``: lost for good. ``lose()`` is
        one packet's verdict (True: dropped)."""
        segments = max(1, math.ceil(size / cls.MSS))
        lost = [lose() for _ in range(segments)]
        if not any(lost):
            return 0.0
        rto = cls.SRTT_S + cls.RTO_MIN_S
        if lost[-1]:
            probe = 2 * cls.SRTT_S + (cls.RTO_MIN_S if segments == 1 else cls.JIFFIES_2_S)
            wait = min(probe, rto)
        else:
            wait = 1.25 * cls.SRTT_S + cls.SRTT_S
        while lose():  # the retransmission is lost too: the retransmission timer, backing off
            wait += rto
            rto *= 2
            if wait > cls.GIVE_UP_S:
                return math.inf
        return wait


@dataclass
class Verdict:
    """What the faults decide for one call: lose it, fail it, delay it (before / after), or nothing."""

    lost: bool = False
    failed: bool = False
    before_s: float = 0.0
    after_s: float = 0.0
    faults: list[str] = field(default_factory=list)  # ids of the faults that acted

    @property
    def acts(self) -> bool:
        return self.lost or self.failed or self.before_s > 0 or self.after_s > 0


@dataclass
class RuntimeFault:
    id: str
    type: str
    component: str | None  # None: every component of this service
    values: dict[str, Any]
    peers: frozenset[str]
    peer_addresses: frozenset[str]
    direction: str
    fraction: float
    start_mono: float
    expires_mono: float
    rng: random.Random
    model: DelayModel | None = None
    tokens: float = 0.0  # bandwidth: bytes in the bucket (negative: queued debt)
    refilled: float = 0.0

    @classmethod
    def from_entry(cls, e: dict[str, Any]) -> RuntimeFault:
        ftype = e.get("type")
        if ftype not in _TYPES:
            raise ValueError(f"fault type {ftype!r} is not realised by the runtime")
        values = resolve_parameters(ftype, e.get("parameters") or {})
        rng = random.Random(int(e.get("seed") or 0))
        f = cls(str(e["id"]), ftype, e.get("component"), values, frozenset(e.get("peers") or ()),
                frozenset(e.get("peer_addresses") or ()), str(e.get("direction") or "egress"),
                float(e.get("fraction") or 1.0), float(e["start_mono"]), float(e["expires_mono"]), rng)
        seed = rng.getrandbits(64)
        if ftype == "network-latency":
            f.model = DelayModel(DelaySpec(delay_ns=round(values["delay"].seconds * 1e9),
                                           jitter_ns=round(values["jitter"].seconds * 1e9),
                                           correlation=values["correlation"].value,
                                           distribution=values["distribution"], order="none", seed=seed))
        elif ftype == "network-loss":
            burst = values.get("burst")
            ge = None if not burst else (burst["p"].value, burst["r"].value, burst["bad_loss"].value,
                                         burst["good_loss"].value)
            pct = values["percent"].value if values.get("percent") is not None else 0.0
            f.model = DelayModel(DelaySpec(loss=pct, loss_correlation=0.0 if ge else values["correlation"].value,
                                           gemodel=ge, order="none", seed=seed))
        elif ftype == "network-bandwidth":
            f.tokens = float(values["burst"].bytes)
            f.refilled = time.monotonic()
        return f

    def matches(self, component: str, caller: str | None, caller_service: str | None, remote: str | None) -> bool:
        if self.component is not None and self.component != component:
            return False
        if not self.peers:
            return True
        if remote is not None:
            return remote in self.peer_addresses
        return caller in self.peers or caller_service in self.peers

    def pause_left(self, now: float) -> float:
        """process-pause: seconds until the component takes work again (0: it does now)."""
        if self.type != "process-pause" or now >= self.expires_mono:
            return 0.0
        since = now - self.start_mono
        st = self.values.get("stutter")
        if st:
            every, pause = st["every"].seconds, st["pause"].seconds
            phase = since % every
            return pause - phase if phase < pause else 0.0
        dur = self.values.get("duration")
        if dur is not None:
            return max(0.0, dur.seconds - since)
        return self.expires_mono - now

    def bandwidth_wait(self, size: int, now: float) -> float | None:
        """Seconds the call waits for its bytes to pass the bucket; None when the queue limit is full."""
        rate = self.values["rate"].bits_per_second / 8.0
        burst = float(self.values["burst"].bytes)
        self.tokens = min(burst, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if max(0.0, -self.tokens) + size > self.values["limit"].bytes:
            return None
        self.tokens -= size
        return 0.0 if self.tokens >= 0 else -self.tokens / rate


class FaultBoard:
    """The replica's runtime faults, from its control file (``path``; None: no control channel)."""

    def __init__(self, path: str | Path | None, registry: Registry, log: Any = None) -> None:
        self.path = Path(path) if path is not None else None
        self.log = log
        self.faults: dict[str, RuntimeFault] = {}
        self._sig: tuple[int, int, int] | None = None
        self.m_calls = registry.counter(
            "grayctl_runtime_fault_calls_total", "Calls into a component that a runtime-realised fault decided on, "
            "by action (delayed, retransmitted, lost, failed, paused, passed).",
            ("fault_id", "type", "component", "action"))
        self.m_delay = registry.counter("grayctl_runtime_fault_delay_seconds_total",
                                        "Delay added by runtime-realised faults (sleeps and bandwidth waits).",
                                        ("fault_id",))
        board = self
        registry.gauge("grayctl_runtime_faults_active", "Runtime-realised faults acting now (1 per fault).",
                       ("fault_id", "type", "component"),
                       fn=lambda: {(f.id, f.type, f.component or "*"): 1 for f in board.live()})

    # -- the control file ------------------------------------------------------------------
    def poll(self) -> None:
        """Reload the control file if it changed (a stat per call; the read only on a change)."""
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
            sig: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_ino, st.st_size)
        except OSError:
            sig = None
        if sig == self._sig:
            if self.faults:  # past its own expiry a fault is dropped: calls into it are plain calls again
                now = time.monotonic()
                self.faults = {k: f for k, f in self.faults.items() if now < f.expires_mono}
            return
        self._sig = sig
        entries = live_entries(read_entries(self.path)) if sig is not None else {}
        faults: dict[str, RuntimeFault] = {}
        for fid, e in entries.items():
            old = self.faults.get(fid)
            if old is not None and old.start_mono == e.get("start_mono"):
                faults[fid] = old  # unchanged: keep its model's state (correlation, bucket)
                continue
            try:
                faults[fid] = RuntimeFault.from_entry(e)
            except (ValueError, KeyError, TypeError) as err:
                if self.log is not None:
                    self.log("fault_control_refused", "error", fault_id=fid, error=str(err))
        if self.log is not None and set(faults) != set(self.faults):
            self.log("fault_control", faults=sorted(faults))
        self.faults = faults

    async def run_poller(self, every: float = POLL_S) -> None:
        while True:
            self.poll()
            await asyncio.sleep(every)

    def live(self, now: float | None = None) -> list[RuntimeFault]:
        t = time.monotonic() if now is None else now
        return [f for f in self.faults.values() if t < f.expires_mono]

    def any_for(self, component: str) -> bool:
        """Cheap: is any fault (live or not yet dropped) aimed at ``component``?"""
        return any(f.component is None or f.component == component for f in self.faults.values())

    # -- decisions ------------------------------------------------------------------------------
    def _count(self, f: RuntimeFault, component: str, action: str) -> None:
        self.m_calls.inc((f.id, f.type, component, action))

    def decide(self, component: str, *, caller: str | None = None, caller_service: str | None = None,
               remote: str | None = None, size: int = 0) -> Verdict:
        """The faults' verdict on one call into ``component`` (pauses are separate: ``pause_left``)."""
        now = time.monotonic()
        v = Verdict()
        for f in self.live(now):
            if f.type == "process-pause" or not f.matches(component, caller, caller_service, remote):
                continue
            if f.fraction < 1.0 and f.rng.random() >= f.fraction:
                self._count(f, component, "passed")
                continue
            action = "passed"
            added = 0.0
            if f.type == "network-latency":
                assert f.model is not None
                added = f.model.sample_delay_ns() / 1e9
                v.before_s += added
                if f.direction == "both":
                    after = f.model.sample_delay_ns() / 1e9
                    v.after_s += after
                    added += after
                action = "delayed"
            elif f.type == "network-loss":
                model = f.model
                assert model is not None

                def lose() -> bool:  # one packet's verdict, netem's model
                    return model.decide(0).drop

                wait = Wire.repair_s(size, lose)
                if f.direction == "both":  # the request's packet (one segment) is lost on its way in too
                    wait += Wire.repair_s(1, lose)
                if wait == math.inf:
                    v.lost, action = True, "lost"
                elif wait > 0:  # the answer comes late by TCP's repair (after the component ran)
                    v.after_s += wait
                    added = wait
                    action = "retransmitted"
            elif f.type == "network-partition":
                v.lost, action = True, "lost"
            elif f.type == "network-corruption":
                if f.rng.random() * 100.0 < f.values["percent"].value:
                    v.failed, action = True, "failed"
            elif f.type == "network-bandwidth":
                wait = f.bandwidth_wait(size, now)
                if wait is None:
                    v.lost, action = True, "lost"
                elif wait > 0:
                    v.before_s += wait
                    added = wait
                    action = "delayed"
            if action != "passed":
                v.faults.append(f.id)
            if added > 0:
                self.m_delay.inc((f.id,), added)
            self._count(f, component, action)
        return v

    def pause_left(self, component: str, *, caller: str | None = None, caller_service: str | None = None,
                   remote: str | None = None, count: bool = True) -> float:
        """Seconds until ``component``'s workers take work again (0: now); counts a held call once."""
        now = time.monotonic()
        left = 0.0
        for f in self.live(now):
            if f.type != "process-pause" or not f.matches(component, caller, caller_service, remote):
                continue
            wait = f.pause_left(now)
            if count:
                self._count(f, component, "paused" if wait > 0 else "passed")
            left = max(left, wait)
        return left

    async def wait_gate(self, component: str, **who: Any) -> float:
        """Wait while ``component`` is paused; rechecks every 50 ms (a revert or expiry ends it at once).
        Returns the seconds waited."""
        t0 = time.monotonic()
        left = self.pause_left(component, **who)
        while left > 0:
            await asyncio.sleep(min(left, 0.05))
            left = self.pause_left(component, count=False, **who)
        waited = time.monotonic() - t0
        return waited
