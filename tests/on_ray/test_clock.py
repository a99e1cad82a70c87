"""The node clock offset estimator (pure): injected round trips with known true offsets."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.ray.clock import ClockOffset, e2e_uncertainty_ns, estimate_offset


def _sample(true_offset_ns: int, sent_ns: int, out_ns: int, back_ns: int) -> tuple[int, int, int]:
    """A round trip: ``out_ns`` to reach the node, ``back_ns`` to come back."""
    return sent_ns, sent_ns + out_ns + true_offset_ns, sent_ns + out_ns + back_ns


def test_symmetric_minimum_round_trip_gives_the_exact_offset():
    samples = [_sample(5_000_000, 1_000, 40_000, 40_000), _sample(5_000_000, 200_000, 10_000, 10_000),
               _sample(5_000_000, 400_000, 300_000, 20_000)]
    got = estimate_offset(samples)
    assert got == ClockOffset(offset_ns=5_000_000, uncertainty_ns=10_000, rtt_ns_min=20_000, samples=3)


def test_the_least_queued_sample_wins_even_when_others_are_skewed():
    # one fast sample among slow, one-sided ones: the slow ones alone would be off by ~1 ms
    samples = [_sample(-7_000, t, 2_000_000, 10_000) for t in range(0, 10_000_000, 1_000_000)]
    samples.append(_sample(-7_000, 50_000_000, 3_000, 5_000))
    got = estimate_offset(samples)
    assert got.rtt_ns_min == 8_000 and got.uncertainty_ns == 4_000
    assert abs(got.offset_ns - (-7_000)) <= got.uncertainty_ns


@given(true_offset=st.integers(-10**15, 10**15),
       trips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**7), st.integers(0, 10**7)), min_size=1,
                      max_size=20))
def test_the_true_offset_is_always_within_the_uncertainty(true_offset, trips):
    got = estimate_offset(_sample(true_offset, *trip) for trip in trips)
    assert abs(got.offset_ns - true_offset) <= got.uncertainty_ns
    assert got.rtt_ns_min == min(out + back for _, out, back in trips) and got.samples == len(trips)


def test_no_sample_or_a_backwards_sample_is_a_user_error():
    with pytest.raises(UserError, match="no clock sample"):
        estimate_offset([])
    with pytest.raises(UserError, match="before it was sent"):
        estimate_offset([(100, 5, 99)])


def test_e2e_uncertainty_is_zero_on_one_node_and_the_worst_pair_across_nodes():
    rng = random.Random(1)
    offsets = {name: ClockOffset(rng.randrange(10**9), u, 2 * u, 16) for name, u in
               (("a", 100), ("b", 300), ("c", 50))}
    assert e2e_uncertainty_ns(["a"], ["a"], offsets) == 0
    assert e2e_uncertainty_ns(["a", "b"], ["a"], offsets) == 400      # b -> a
    assert e2e_uncertainty_ns(["a", "c"], ["a", "c"], offsets) == 150
    with pytest.raises(UserError, match="no clock offset measured for node"):
        e2e_uncertainty_ns(["a"], ["z"], offsets)
