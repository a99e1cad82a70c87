"""Rate shapes and arrivals: the shape's rate, bursts, and a Poisson process that follows it."""
import itertools
import random

import pytest

from mqbench.workloads.rates import RateShape, iter_arrivals_us


def test_diurnal_peak_trough_and_mean():
    shape = RateShape(base_msgs_per_s=1000, shape="diurnal", period_s=100, peak_at_s=25, trough_ratio=0.25)
    assert shape.rate_at(25_000) == pytest.approx(1600)
    assert shape.rate_at(75_000) == pytest.approx(400)
    assert shape.rate_at(75_000) / shape.rate_at(25_000) == pytest.approx(0.25)
    summary = shape.summary(horizon_ms=100_000)
    assert summary["rate_msgs_per_s_mean"] == pytest.approx(1000, rel=1e-3)
    assert shape.rate_max() == pytest.approx(1600)


def test_diurnal_with_an_early_trough_keeps_its_mean():
    shape = RateShape(base_msgs_per_s=1000, shape="diurnal", period_s=86400, peak_at_s=73800, trough_at_s=14400,
                      trough_ratio=0.1)
    peak, trough = shape.rate_at(73_800_000), shape.rate_at(14_400_000)
    assert trough / peak == pytest.approx(0.1) and peak == pytest.approx(shape.rate_max())
    assert shape.summary(horizon_ms=86_400_000, points=86_400)["rate_msgs_per_s_mean"] == pytest.approx(1000, rel=1e-3)
    rising = [shape.rate_at(h * 3_600_000) for h in range(4, 21)]
    assert rising == sorted(rising)  # climbs all day from 04:00 to the evening
    assert shape.rate_at(22 * 3_600_000) < shape.rate_at(21 * 3_600_000)


def test_timeline_slices_show_bursts_that_point_samples_would_miss():
    shape = RateShape(base_msgs_per_s=100, shape="burst", burst_factor=11, burst_length_ms=6_000,
                      burst_every_ms=60_000, burst_first_ms=30_000)
    timeline = shape.timeline(horizon_ms=60_000, slices=6)
    assert [p["start_ms"] for p in timeline] == [0, 10_000, 20_000, 30_000, 40_000, 50_000]
    assert [round(p["rate_msgs_per_s_mean"]) for p in timeline] == [100, 100, 100, 700, 100, 100]
    assert timeline[3]["rate_msgs_per_s_max"] == 1100


def test_steps_hold_until_the_next_step():
    shape = RateShape(base_msgs_per_s=100, shape="step", steps=((10, 2.0), (20, 0.5)))
    assert [shape.rate_at(t) for t in (0, 9_999, 10_000, 19_999, 20_000, 10**9)] == [100, 100, 200, 200, 50, 50]
    assert shape.rate_max() == 200


def test_bursts_multiply_inside_their_windows_only():
    shape = RateShape(base_msgs_per_s=100, shape="burst", burst_factor=5, burst_length_ms=1000,
                      burst_every_ms=10_000, burst_first_ms=2000)
    assert shape.rate_at(1999) == 100
    assert shape.rate_at(2000) == 500 and shape.rate_at(2999) == 500
    assert shape.rate_at(3000) == 100 and shape.rate_at(12_500) == 500
    assert shape.rate_max() == 500


@pytest.mark.parametrize("shape", [
    RateShape(base_msgs_per_s=50, shape="diurnal", period_s=10, trough_ratio=0.1, burst_factor=3,
              burst_length_ms=500, burst_every_ms=3000),
    RateShape(base_msgs_per_s=50, shape="step", steps=((0, 0.5), (3, 4.0))),
])
def test_rate_max_bounds_rate_at(shape):
    assert all(shape.rate_at(t) <= shape.rate_max() + 1e-9 for t in range(0, 30_000, 7))


def test_poisson_arrivals_follow_the_rate():
    shape = RateShape(base_msgs_per_s=2000, shape="burst", burst_factor=4, burst_length_ms=1000, burst_every_ms=4000,
                      burst_first_ms=2000)
    arrivals = list(itertools.takewhile(lambda t: t < 8_000_000, iter_arrivals_us(shape, random.Random(1))))
    assert arrivals == sorted(arrivals)
    in_burst = sum(1 for t in arrivals if 2_000_000 <= t < 3_000_000)
    calm = sum(1 for t in arrivals if 0 <= t < 1_000_000)
    assert 1800 < calm < 2200 and 7400 < in_burst < 8600
    # exponential gaps: about as many gaps above the mean as e^-1 predicts
    gaps = [b - a for a, b in zip(arrivals[:1500], arrivals[1:1500])]
    mean = sum(gaps) / len(gaps)
    assert 0.3 < sum(1 for g in gaps if g > mean) / len(gaps) < 0.44


def test_paced_arrivals_are_evenly_spaced():
    shape = RateShape(base_msgs_per_s=1000, arrivals="paced")
    arrivals = list(itertools.islice(iter_arrivals_us(shape, random.Random(1)), 100))
    gaps = {b - a for a, b in zip(arrivals, arrivals[1:])}
    assert gaps <= {999, 1000, 1001}


def test_arrivals_depend_only_on_the_rng():
    shape = RateShape(base_msgs_per_s=300)
    first = list(itertools.islice(iter_arrivals_us(shape, random.Random(4)), 500))
    assert first == list(itertools.islice(iter_arrivals_us(shape, random.Random(4)), 500))


@pytest.mark.parametrize("shape", [
    RateShape(base_msgs_per_s=50, shape="diurnal", period_s=10, peak_at_s=3, trough_at_s=1, trough_ratio=0.01,
              burst_factor=30, burst_length_ms=500, burst_every_ms=3000, burst_first_ms=700),
    RateShape(base_msgs_per_s=50, shape="step", steps=((0.5, 0.01), (3, 400.0), (4, 2.0))),
    RateShape(base_msgs_per_s=50, shape="burst", burst_factor=0.05, burst_length_ms=2000, burst_every_ms=2500),
])
def test_envelope_bounds_the_rate_until_it_changes(shape):
    for t in range(0, 20_000, 13):
        bound, until_ms = shape.envelope(t)
        assert until_ms > t
        probe = t
        while probe < min(until_ms, t + 3000):
            assert shape.rate_at(probe) <= bound
            probe += 7


def test_extreme_bursts_cost_no_more_than_their_messages():
    # A thousandfold burst once an hour: a global bound would draw ~1000 candidates per quiet message.
    shape = RateShape(base_msgs_per_s=100, shape="burst", burst_factor=1000, burst_length_ms=1000,
                      burst_every_ms=3_600_000, burst_first_ms=1_800_000)
    calls = 0

    class CountingRandom(random.Random):
        def random(self):
            nonlocal calls
            calls += 1
            return super().random()

    arrivals = list(itertools.takewhile(lambda t: t < 20_000_000, iter_arrivals_us(shape, CountingRandom(3))))
    assert 1800 < len(arrivals) < 2200
    assert calls < 3 * len(arrivals)
