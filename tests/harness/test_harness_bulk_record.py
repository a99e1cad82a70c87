"""``histograms.record_values`` and a ``Window``'s held-back values: the same histograms as one
``record_value`` per value (counts, total, percentiles, min, max, mean and the encoding)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.harness.histograms import VALUE_US_MAX, encode_histogram, new_histogram, record_values
from mqbench.harness.metrics import PENDING_VALUES_MAX, RunMetrics, Window

_values = st.lists(st.one_of(st.integers(0, 5000), st.integers(0, VALUE_US_MAX),
                             st.sampled_from([0, 1, 2047, 2048, 2049, 4095, 4096, VALUE_US_MAX - 1, VALUE_US_MAX])),
                   max_size=300)


def _one_by_one(values):
    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    return histogram


def _same(a, b):
    """The same counts (the encoding holds every bucket's: percentiles and mean follow), total, min, max."""
    assert encode_histogram(a) == encode_histogram(b)
    assert a.get_total_count() == b.get_total_count()
    if a.get_total_count():
        assert (a.get_min_value(), a.get_max_value()) == (b.get_min_value(), b.get_max_value())


@settings(max_examples=25, deadline=None)
@given(_values)
def test_bulk_recording_gives_the_same_histogram(values):
    bulk = new_histogram()
    record_values(bulk, values)
    _same(bulk, _one_by_one(values))


@settings(max_examples=10, deadline=None)
@given(_values, _values)
def test_a_window_reads_its_held_back_values(first, second):
    """What was recorded is in ``histograms`` whenever it is read (and in the encoding shipped)."""
    window = Window()
    for value in first:
        window.record("publish_latency", value)
    assert window.histograms["publish_latency"].get_total_count() == len(first)   # read: recorded
    for value in second:
        window.record("publish_latency", value)
        window.record("e2e_latency", value)
    _same(window.histograms["publish_latency"], _one_by_one(first + second))
    decoded = Window.decode(window.encode(), "test")
    _same(decoded.histograms["e2e_latency"], _one_by_one(second))


def test_a_window_holds_back_a_bounded_number_of_values():
    window = Window()
    for value in range(PENDING_VALUES_MAX * 2 + 5):
        window.record("publish_delay", value)
        assert sum(map(len, window._pending.values())) < PENDING_VALUES_MAX
    assert window.histograms["publish_delay"].get_total_count() == PENDING_VALUES_MAX * 2 + 5


def test_clamped_values_are_still_counted_and_merged_runs_agree():
    metrics = RunMetrics(0, duration_ms=1000, warmup_ms=0, window_ms=1000)
    metrics.record_ack(10_000, 5_000, 10)              # a clock going backwards: clamped to 0, counted
    metrics.record_send(0, 999_000_000)
    window = metrics.windows[0]
    assert window.counters["clamped_values"] == 1
    assert window.histograms["publish_latency"].get_total_count() == 1
    merged = RunMetrics.from_dict(metrics.to_dict(), "test")
    assert merged.total().histograms["publish_delay"].get_total_count() == 1


@settings(max_examples=15, deadline=None)
@given(_values, st.lists(st.sampled_from([-1, -5000, VALUE_US_MAX * 4, 2 ** 62]), min_size=1, max_size=3))
def test_values_a_histogram_cannot_hold_are_left_out_as_record_value_leaves_them(values, outside):
    """Out of range (never from ``Window.record``, which clamps): each goes as ``record_value`` takes it."""
    bulk = new_histogram()
    record_values(bulk, values + outside)
    _same(bulk, _one_by_one(values + outside))
