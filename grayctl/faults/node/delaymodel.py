"""The packet decision model of the NFQUEUE delayer: loss, delay, jitter, reorder, order.

Pure and deterministic for a given seed (no clock, no I/O beyond reading a distribution
table), so it is unit-tested apart from the queue. ``nfqdelay`` calls ``DelayModel.decide``
once per packet with the arrival time and a flow key and gets back a ``Decision``.

What follows tc-netem(8) and ``net/sched/sch_netem.c`` on purpose, bit for bit where cheap:

  ``CorrelatedRandom``  netem's ``get_crandom``: a u32 mixed with the previous one by
                        ``rho`` (``next = (v*(2^32-rho) + last*rho) >> 32``). Like netem this
                        shrinks the spread of the output when correlation > 0 (a known netem
                        property, documented in docs/fault-backends.md) — kept, not "fixed",
                        so both backends mean the same thing by the same numbers.
  ``tabledist``         netem's ``tabledist``: ``uniform`` = no table, otherwise the 4096-entry
                        inverse-CDF tables of iproute2 (``normal``, ``pareto``, ``paretonormal``,
                        values scaled by 8192 and clipped to +-4 sigma). Read from the iproute2
                        install when present (exactly netem's); ``normal`` and ``pareto`` are
                        generated identically when it is not.
  loss                  ``loss random P [CORR]``: dropped when ``P >= crandom``.
  gemodel               ``loss gemodel p r 1-h 1-k`` (``loss_gilb_ell``): a two-state Markov
                        chain per packet. In the good state: move to bad with probability p,
                        drop with 1-k; in the bad state: move to good with r, drop with 1-h.
                        As in netem the transition is drawn first and the drop uses the state
                        the packet *arrived* in; both draws are taken for every packet.
  reorder               ``reorder P [CORR] [gap N]``: after ``gap-1`` normally delayed packets,
                        a packet is sent immediately with probability P and the count restarts;
                        ``gap`` defaults to 1 when only P is given, as tc does.
  negative delays       (jitter > delay) clamp to 0, as netem sends them at once.

What is ours (netem has no equivalent switch): ``order``. netem's default tfifo reorders
packets whenever jitter exceeds their spacing; ours does not unless asked:

  ``flow``   (default) a packet never leaves before an earlier packet of the same flow
             (protocol, addresses, ports / ICMP id): TCP sees no spurious reordering, and
             independent flows keep the configured distribution.
  ``global`` one FIFO for all packets, like netem with a ``rate`` or a pfifo child.
  ``none``   netem's tfifo: release strictly at arrival + sampled delay.

With ``flow``/``global`` a packet whose sampled time falls before its predecessor's waits for
it (``release = max(arrival + delay, previous release)``), which raises the mean and lowers the
spread when packets of one flow are closer together than the jitter — the price of order,
the same as netem's with a rate. Reordered packets (``reorder``) bypass the order on purpose.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

__all__ = [
    "DIST_SCALE",
    "DISTRIBUTIONS",
    "ORDERS",
    "DelaySpec",
    "Decision",
    "GilbertElliott",
    "ge_theory",
    "CorrelatedRandom",
    "DelayModel",
    "load_dist_table",
    "percent_to_u32",
    "tabledist",
]

DIST_SCALE = 8192  # NETEM_DIST_SCALE: table values are sigma * 8192
TABLE_SIZE = 4096
U32 = 1 << 32
DISTRIBUTIONS = ("normal", "pareto", "paretonormal", "uniform")
ORDERS = ("flow", "global", "none")
# Where distributions tables live in iproute2 packages (Debian multiarch first).
TABLE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/tc",
    "/usr/lib/aarch64-linux-gnu/tc",
    "/usr/lib/tc",
    "/usr/lib64/tc",
    "/usr/share/tc",
)
_FLOW_PRUNE_EVERY = 4096  # packets between sweeps of the per-flow "last release" map


def percent_to_u32(percent: float) -> int:
    """tc's ``get_percent``: 0..100 % -> 0..UINT32_MAX (rounded), netem's probability scale."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percent out of range 0..100: {percent}")
    return round(percent / 100.0 * (U32 - 1))


@dataclass(frozen=True)
class DelaySpec:
    """What one delayer instance does, in netem's terms (times in nanoseconds)."""

    delay_ns: int = 0
    jitter_ns: int = 0
    correlation: float = 0.0  # percent
    distribution: str = "normal"
    loss: float = 0.0  # percent
    loss_correlation: float = 0.0  # percent
    reorder: float = 0.0  # percent
    reorder_correlation: float = 0.0  # percent
    gap: int = 0  # 0 = tc default (1 when reorder > 0)
    order: str = "flow"
    seed: int | None = None
    # Gilbert-Elliott burst loss, netem's order: (p, r, 1-h, 1-k) in percent; None = off.
    gemodel: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.delay_ns < 0 or self.jitter_ns < 0:
            problems.append("delay and jitter must be >= 0")
        if self.jitter_ns >= 1 << 31:
            problems.append("jitter must be below 2.147 s (netem keeps it in an s32 of ns)")
        for name in ("correlation", "loss", "loss_correlation", "reorder", "reorder_correlation"):
            if not 0.0 <= getattr(self, name) <= 100.0:
                problems.append(f"{name} must be within 0..100 %")
        if self.distribution not in DISTRIBUTIONS:
            problems.append(f"distribution must be one of {', '.join(DISTRIBUTIONS)}")
        if self.order not in ORDERS:
            problems.append(f"order must be one of {', '.join(ORDERS)}")
        if self.gap < 0:
            problems.append("gap must be >= 0")
        if self.gemodel is not None:
            if len(self.gemodel) != 4 or not all(0.0 <= v <= 100.0 for v in self.gemodel):
                problems.append("gemodel needs four percentages p, r, 1-h, 1-k within 0..100 %")
            if self.loss > 0:
                problems.append("give random loss or the Gilbert-Elliott model, not both")
        if self.reorder > 0 and self.delay_ns == 0:
            # tc-netem(8): "to use reordering, a delay option must be specified".
            problems.append("reorder needs a delay (a packet is reordered by skipping it)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def effective_gap(self) -> int:
        return self.gap if self.gap > 0 else (1 if self.reorder > 0 else 0)


@dataclass(frozen=True)
class Decision:
    """The model's verdict for one packet."""

    drop: bool = False
    release_ns: int = 0  # absolute time (same clock as the arrival passed in)
    reordered: bool = False  # sent at once, ahead of packets still held
    order_wait_ns: int = 0  # how much later than sampled the order rule made it


class CorrelatedRandom:
    """netem's ``crndstate`` + ``get_crandom``: correlated u32 values."""

    def __init__(self, correlation_percent: float, rng: random.Random) -> None:
        self.rho = percent_to_u32(correlation_percent)
        self.rng = rng
        self.last = rng.getrandbits(32)  # netem seeds ``last`` with a random value too

    def next(self) -> int:
        value = self.rng.getrandbits(32)
        if self.rho == 0:
            return value
        rho = self.rho + 1
        answer = (value * (U32 - rho) + self.last * rho) >> 32
        self.last = answer
        return answer


class GilbertElliott:
    """netem's ``loss_gilb_ell``: the good/bad chain, one verdict per packet."""

    GOOD, BAD = 1, 2

    def __init__(self, p: float, r: float, bad_loss: float, good_loss: float, rng: random.Random) -> None:
        self.p, self.r = percent_to_u32(p), percent_to_u32(r)
        self.bad_loss, self.good_loss = percent_to_u32(bad_loss), percent_to_u32(good_loss)
        self.rng = rng
        self.state = self.GOOD  # netem starts in the good state too

    @staticmethod
    def _below(rnd: int, threshold: int) -> bool:
        # 100 % maps to UINT32_MAX: make it certain, as the percentage says.
        return rnd < threshold or threshold == U32 - 1

    def lose(self) -> bool:
        move, drop = self.rng.getrandbits(32), self.rng.getrandbits(32)
        if self.state == self.GOOD:
            if self._below(move, self.p):
                self.state = self.BAD
            return self._below(drop, self.good_loss)
        if self._below(move, self.r):
            self.state = self.GOOD
        return self._below(drop, self.bad_loss)


def ge_theory(p: float, r: float, bad_loss: float = 100.0, good_loss: float = 0.0) -> dict[str, float]:
    """What the Gilbert-Elliott chain (percent arguments) should give in the long run.

    ``loss``: stationary loss probability ``pi_G*(1-k) + pi_B*(1-h)`` with ``pi_B = p/(p+r)``.
    ``mean_burst``: mean length of a run of consecutive losses = P(loss) / P(a loss followed by
    a delivery) — exact for the hidden chain, and ``1/r`` when ``1-h = 100 %`` and ``1-k = 0``.
    """
    P, R, lb, lg = p / 100, r / 100, bad_loss / 100, good_loss / 100
    pi_b = P / (P + R) if P + R > 0 else 0.0  # p = r = 0: the chain never leaves the good state
    pi_g = 1 - pi_b
    loss = pi_g * lg + pi_b * lb
    # The drop of packet n uses state S_n; S_{n+1} follows the chain.
    end = pi_g * lg * ((1 - P) * (1 - lg) + P * (1 - lb)) + pi_b * lb * (R * (1 - lg) + (1 - R) * (1 - lb))
    mean_burst = 0.0 if loss == 0 else (loss / end if end > 0 else float("inf"))
    return {"loss": loss, "mean_burst": mean_burst, "pi_bad": pi_b}


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero), which netem's arithmetic relies on."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def tabledist(mu: int, sigma: int, rnd: int, table: Sequence[int] | None) -> int:
    """netem's ``tabledist``: one sample of mu +- sigma from a u32 random value."""
    if sigma == 0:
        return mu
    if table is None:  # uniform over [mu - sigma, mu + sigma)
        return (rnd % (2 * sigma)) + mu - sigma
    t = table[rnd % len(table)]
    x = (sigma % DIST_SCALE) * t
    x = x + DIST_SCALE // 2 if x >= 0 else x - DIST_SCALE // 2
    return _c_div(x, DIST_SCALE) + (sigma // DIST_SCALE) * t + mu


def _generate_table(name: str) -> list[int]:
    if name == "pareto":
        # iproute2 netem/pareto.c (shape a=3, shifted and scaled to mean ~0, sigma ~1).
        out = []
        for i in range(65536, 0, -16):
            value = (1.0 / (i / 65536.0) ** (1.0 / 3.0) - 1.5) * (4.0 / 3.0) * DIST_SCALE
            out.append(int(round(min(value, 32767.0))))
        return out
    if name == "normal":
        nd = NormalDist()
        lim = 32767
        return [max(-lim - 1, min(lim, round(nd.inv_cdf((i + 0.5) / TABLE_SIZE) * DIST_SCALE)))
                for i in range(TABLE_SIZE)]
    raise FileNotFoundError(
        f"no iproute2 distribution table '{name}.dist' found in {', '.join(TABLE_DIRS)}; "
        "install iproute2 or use normal, pareto or uniform")


def load_dist_table(name: str, dirs: Sequence[str] = TABLE_DIRS) -> list[int] | None:
    """The netem table for ``name`` (None for uniform): iproute2's file, else generated."""
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {name!r}")
    if name == "uniform":
        return None
    for d in dirs:
        path = Path(d) / f"{name}.dist"
        if path.is_file():
            values = [int(tok) for line in path.read_text().splitlines()
                      if not line.lstrip().startswith("#") for tok in line.split()]
            if values:
                return values
    return _generate_table(name)


class DelayModel:
    """Stateful per-instance model: call ``decide`` for each packet, in arrival order."""

    def __init__(self, spec: DelaySpec, table: Sequence[int] | None = None,
                 *, table_loaded: bool = False) -> None:
        self.spec = spec
        rng = random.Random(spec.seed)
        # One generator, separate correlation states — as netem has one prng and one
        # crndstate per parameter, so loss decisions do not perturb the delay sequence's
        # correlation (they do advance the shared stream, as in netem).
        self._delay_rnd = CorrelatedRandom(spec.correlation, rng)
        self._loss_rnd = CorrelatedRandom(spec.loss_correlation, rng)
        self._reorder_rnd = CorrelatedRandom(spec.reorder_correlation, rng)
        self._ge = GilbertElliott(*spec.gemodel, rng) if spec.gemodel is not None else None
        self._loss = percent_to_u32(spec.loss)
        self._reorder = percent_to_u32(spec.reorder)
        self._gap = spec.effective_gap
        self._counter = 0
        if table_loaded or spec.jitter_ns == 0:
            self._table = table
        else:
            self._table = load_dist_table(spec.distribution)
        self._last_release: dict[Hashable, int] = {}
        self._seen = 0

    def sample_delay_ns(self) -> int:
        """One delay sample (ns, >= 0) without the order rule."""
        d = tabledist(self.spec.delay_ns, self.spec.jitter_ns, self._delay_rnd.next(), self._table)
        return max(0, d)

    def decide(self, now_ns: int, flow: Hashable = None) -> Decision:
        """Verdict for a packet that arrived at ``now_ns`` and belongs to ``flow``."""
        self._seen += 1
        if self._loss and self._loss >= self._loss_rnd.next():
            return Decision(drop=True, release_ns=now_ns)
        if self._ge is not None and self._ge.lose():
            return Decision(drop=True, release_ns=now_ns)
        if self._gap and self._counter >= self._gap - 1 and self._reorder >= self._reorder_rnd.next():
            # netem puts it at the head of the queue with time_to_send = now.
            self._counter = 0
            return Decision(release_ns=now_ns, reordered=True)
        self._counter += 1
        sampled = now_ns + self.sample_delay_ns()
        order = self.spec.order
        if order == "none":
            return Decision(release_ns=sampled)
        key: Hashable = None if order == "global" else flow
        previous = self._last_release.get(key, 0)
        release = max(sampled, previous)
        self._last_release[key] = release
        if order == "flow" and self._seen % _FLOW_PRUNE_EVERY == 0:
            self._prune(now_ns)
        return Decision(release_ns=release, order_wait_ns=release - sampled)

    def _prune(self, now_ns: int) -> None:
        # A flow whose last packet has already left constrains nothing: forget it so the
        # map stays as small as the set of flows with packets in flight.
        self._last_release = {k: v for k, v in self._last_release.items() if v > now_ns}

    @property
    def tracked_flows(self) -> int:
        return len(self._last_release)
