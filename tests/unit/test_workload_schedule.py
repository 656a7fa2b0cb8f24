"""The request schedule is a pure function of its inputs (no clock, no global RNG)."""

from __future__ import annotations

import numpy as np
import pytest

from grayctl.workload.schedule import make_schedule

MIX = {"read-home-timeline": 60.0, "read-user-timeline": 30.0, "compose-post": 10.0}


def sched(**kw):
    args = {"seed": 1, "rate": 100.0, "arrival": "poisson", "mix": MIX, "duration": 30.0} | kw
    return make_schedule(**args)


def test_same_seed_gives_the_identical_sequence():
    a, b = sched(seed=7), sched(seed=7)
    assert np.array_equal(a.offsets_ns, b.offsets_ns)
    assert np.array_equal(a.types, b.types)
    assert a.to_digest() == b.to_digest()


def test_different_seed_gives_a_different_sequence():
    a, b = sched(seed=7), sched(seed=8)
    assert a.to_digest() != b.to_digest()
    n = min(len(a), len(b))
    assert not np.array_equal(a.types[:n], b.types[:n])
    assert not np.array_equal(a.offsets_ns[:n], b.offsets_ns[:n])


def test_the_sequence_is_pinned_across_versions():
    # Recorded runs are reproducible only while this holds: change it only on purpose.
    s = make_schedule(seed=1, rate=10.0, arrival="poisson", mix=MIX, duration=1.0)
    assert s.offsets_ns[:4].tolist() == [13858715, 105949279, 169809512, 182696159]
    assert s.types.tolist() == [0, 1, 0, 2, 2, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    assert s.to_digest() == "3f7c3487fd67a7acabe916225c805e6e5492a2c99d1edc0431d83b4ba2e3df27"


def test_poisson_inter_arrivals_have_mean_one_over_rate():
    rate = 1000.0
    s = sched(rate=rate, duration=100.0)  # ~100k arrivals: standard error of the mean ~0.3 %
    gaps = np.diff(np.concatenate(([0], s.offsets_ns))) / 1e9
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.02)
    # Exponential: standard deviation equals the mean (coefficient of variation 1).
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)
    assert len(s) == pytest.approx(rate * 100.0, rel=0.02)


def test_constant_arrivals_are_evenly_spaced_and_inside_the_window():
    s = sched(arrival="constant", rate=50.0, duration=2.0)
    assert len(s) == 100
    gaps = np.diff(s.offsets_ns)
    assert gaps.min() >= 19_999_999 and gaps.max() <= 20_000_001
    assert s.offsets_ns[0] == 0 and s.offsets_ns[-1] < 2_000_000_000


def test_mix_proportions_are_respected():
    s = sched(rate=1000.0, duration=50.0)
    share = np.bincount(s.types, minlength=3) / len(s) * 100
    for i, name in enumerate(s.type_names):
        assert share[i] == pytest.approx(MIX[name], abs=1.0)


def test_type_sequence_does_not_depend_on_rate_or_arrival():
    a = sched(arrival="constant", rate=10.0, duration=10.0)
    b = sched(arrival="poisson", rate=50.0, duration=10.0)
    n = min(len(a), len(b))
    assert np.array_equal(a.types[:n], b.types[:n])


def test_zero_weight_types_are_never_drawn():
    s = sched(mix={"a": 50.0, "never": 0.0, "b": 50.0}, rate=500.0, duration=10.0)
    assert 1 not in set(s.types.tolist())


@pytest.mark.parametrize(
    "kw",
    [
        {"rate": 0.0},
        {"duration": -1.0},
        {"arrival": "bursty"},
        {"mix": {"a": 50.0}},
        {"mix": {}},
        {"mix": {"a": -10.0, "b": 110.0}},
    ],
)
def test_bad_inputs_are_refused(kw):
    with pytest.raises(ValueError):
        sched(**kw)
