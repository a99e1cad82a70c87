"""Metrics: merged histograms equal one histogram fed everything, warm-up, windows, signed delay error."""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.errors import CorruptDataError, UserError
from mqbench.harness.histograms import VALUE_US_MAX, decode_histogram, encode_histogram, merge_histograms, new_histogram, signed_percentile_us
from mqbench.harness.metrics import RunMetrics, Window, merge_runs

MS = 1_000_000
START = 7_000_000_000


def _run(**kw) -> RunMetrics:
    kw.setdefault("duration_ms", 30_000)
    kw.setdefault("warmup_ms", 5_000)
    return RunMetrics(START, **kw)


@given(values=st.lists(st.integers(0, 10_000_000), min_size=1, max_size=300), workers=st.integers(1, 5),
       seed=st.integers(0, 1000))
def test_merged_histograms_have_the_percentiles_of_one_histogram_fed_everything(values, workers, seed):
    rng = random.Random(seed)
    one = new_histogram()
    parts = [new_histogram() for _ in range(workers)]
    for value in values:
        one.record_value(value)
        rng.choice(parts).record_value(value)
    # Ship every part through the compressed encoding, as a worker process would.
    merged = merge_histograms(decode_histogram(encode_histogram(p)) for p in parts)
    percentiles = [1, 25, 50, 75, 90, 99, 99.9, 99.99, 100]
    assert merged.get_percentile_to_value_dict(percentiles) == one.get_percentile_to_value_dict(percentiles)
    assert merged.get_total_count() == one.get_total_count() == len(values)
    assert merged.get_max_value() == one.get_max_value()


@given(events=st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 3_000_000), st.integers(1, 5000)),
                       min_size=1, max_size=200),
       workers=st.integers(2, 4))
def test_worker_metrics_merged_window_by_window_equal_one_recorder(events, workers):
    one = _run()
    parts = [_run() for _ in range(workers)]
    for position, (at_ms, latency_us, size) in enumerate(events):
        sent = START + at_ms * MS
        for metrics in (one, parts[position % workers]):
            metrics.record_send(sent - latency_us * 10, sent)
            metrics.record_ack(sent, sent + latency_us * 1000, size)
            metrics.record_consume(sent, sent + latency_us * 2000, size)
    shipped = [RunMetrics.from_dict(json.loads(json.dumps(p.to_dict()))) for p in parts]
    merged = merge_runs(shipped)
    assert merged.aggregates() == one.aggregates()
    assert merged.window_series() == one.window_series()


def test_warmup_is_discarded_and_counted():
    metrics = _run(warmup_ms=5_000, duration_ms=10_000)
    for at_ms in range(0, 15_000, 100):
        sent = START + at_ms * MS
        # Warm-up sends are slow (cold caches): they must not leak into the percentiles.
        latency_ns = 40 * MS if at_ms < 5_000 else 2 * MS
        metrics.record_ack(sent, sent + latency_ns, 100)
    # An ack that completes after the warm-up counts even though it was sent during it.
    metrics.record_ack(START + 4_990 * MS, START + 5_030 * MS, 100)
    aggregates = metrics.aggregates()
    assert aggregates["published"] == 101
    assert aggregates["events_in_warmup"] == 50
    assert aggregates["publish_latency_ms_max"] == pytest.approx(40, rel=0.002)
    assert aggregates["publish_latency_ms_p99"] == pytest.approx(2, rel=0.002)
    assert aggregates["throughput_msgs_per_s"] == pytest.approx(10.1)


def test_window_boundaries_and_a_short_last_window():
    metrics = _run(warmup_ms=1_000, duration_ms=25_000, window_ms=10_000)
    measure = START + 1_000 * MS
    assert metrics.window_index(measure - 1) is None
    assert metrics.window_index(measure) == 0
    assert metrics.window_index(measure + 10_000 * MS - 1) == 0
    assert metrics.window_index(measure + 10_000 * MS) == 1
    assert metrics.window_index(measure + 25_000 * MS - 1) == 2
    assert metrics.window_index(measure + 25_000 * MS) is None
    for at in (measure, measure + 10_000 * MS - 1, measure + 10_000 * MS, measure + 20_000 * MS, measure + 25_000 * MS):
        metrics.record_ack(at - MS, at, 1000)
    series = metrics.window_series()
    assert [w["published"] for w in series] == [2, 1, 1]
    assert [w["duration_ms"] for w in series] == [10_000, 10_000, 5_000]
    assert [w["window_start_ms"] for w in series] == [0, 10_000, 20_000]
    assert series[0]["throughput_msgs_per_s"] == pytest.approx(0.2)
    assert series[2]["throughput_msgs_per_s"] == pytest.approx(0.2)  # 1 message in a 5 s window
    assert metrics.events_after_end == 1
    aggregates = metrics.aggregates()
    assert aggregates["published"] == 4
    assert aggregates["throughput_mb_per_s"] == pytest.approx(4000 / 1e6 / 25)


def test_empty_windows_are_reported_with_zero_counts():
    metrics = _run(warmup_ms=0, duration_ms=30_000)
    metrics.record_ack(START, START + 25_000 * MS, 10)
    series = metrics.window_series()
    assert [w["published"] for w in series] == [0, 0, 1]
    assert series[0]["publish_latency_ms_p99"] is None and series[0]["publish_latency_count"] == 0


def test_signed_delay_error_with_early_deliveries():
    metrics = _run(warmup_ms=0, duration_ms=10_000)
    errors_ms = [-900, -500, -500, -300, -100, 0, 20, 50, 200, 700]
    for position, error_ms in enumerate(errors_ms):
        deliver_at = START + (1000 + position) * MS
        metrics.record_consume(START, deliver_at + error_ms * MS, 64, deliver_at_ns=deliver_at)
    aggregates = metrics.aggregates()
    assert aggregates["early_deliveries"] == 5
    assert aggregates["delayed_consumed"] == 10
    assert aggregates["e2e_latency_count"] == 0  # delayed messages are judged by their delay error only
    assert aggregates["delay_error_ms_min"] == pytest.approx(-900, rel=0.002)
    assert aggregates["delay_error_ms_max"] == pytest.approx(700, rel=0.002)
    # p50 of 10 values is the 5th smallest: -100 ms (early), not a magnitude.
    assert aggregates["delay_error_ms_p50"] == pytest.approx(-100, rel=0.002)
    assert aggregates["delay_error_ms_p1"] == pytest.approx(-900, rel=0.002)
    assert aggregates["delay_error_ms_p99"] == pytest.approx(700, rel=0.002)


@given(errors_us=st.lists(st.integers(-2_000_000, 2_000_000), min_size=1, max_size=200),
       percentile=st.sampled_from([1.0, 10.0, 50.0, 90.0, 99.0, 99.9]))
def test_signed_percentiles_match_the_sorted_values(errors_us, percentile):
    window = Window()
    for error in errors_us:
        if error < 0:
            window.record("delay_error_early", -error)
        else:
            window.record("delay_error_late", error)
    got = signed_percentile_us(window.histograms["delay_error_early"], window.histograms["delay_error_late"], percentile)
    ordered = sorted(errors_us)
    rank = max(1, int(percentile * len(ordered) / 100 + 0.5))
    expected = ordered[rank - 1]
    assert abs(got - expected) <= max(1, abs(expected) * 0.001)
    assert (got < 0) == (expected < 0) or expected == 0 or got == 0


def test_out_of_range_values_are_clamped_and_counted():
    metrics = _run(warmup_ms=0, duration_ms=10_000)
    metrics.record_send(START - (VALUE_US_MAX + 5_000_000) * 1000, START)  # over an hour behind schedule
    metrics.record_ack(START + 5 * MS, START + 4 * MS, 1)  # clock went backwards
    aggregates = metrics.aggregates()
    assert aggregates["clamped_values"] == 2
    assert aggregates["publish_latency_count"] == 1
    assert aggregates["publish_delay_ms_max"] == pytest.approx(VALUE_US_MAX / 1000, rel=0.002)


def test_bad_encodings_and_mismatched_merges_are_named():
    with pytest.raises(CorruptDataError, match="not an encoded HdrHistogram"):
        decode_histogram("bm90IGEgaGlzdG9ncmFt", "worker 3")
    with pytest.raises(CorruptDataError, match="non-empty"):
        decode_histogram("", "worker 3")
    with pytest.raises(CorruptDataError, match="mqbench.metrics/1"):
        RunMetrics.from_dict({"schema": "other"})
    shipped = _run().to_dict()
    shipped["windows"] = {"99": Window().encode()}
    with pytest.raises(CorruptDataError, match="outside"):
        RunMetrics.from_dict(shipped)
    with pytest.raises(UserError, match="different runs"):
        _run().merge(_run(warmup_ms=0))
    with pytest.raises(UserError):
        RunMetrics(START, duration_ms=0)


@given(values=st.lists(st.integers(0, 50_000_000), min_size=1, max_size=100),
       percentile=st.sampled_from([0.1, 1.0, 50.0, 99.0, 99.9, 100.0]))
def test_fast_percentiles_agree_with_the_library(values, percentile):
    from mqbench.harness.histograms import percentile_us

    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    assert percentile_us(histogram, percentile) == histogram.get_value_at_percentile(percentile)


@settings(max_examples=30, deadline=None)   # a histogram per example: 100 took ~10 s of CI under load
@given(values=st.lists(st.integers(0, 50_000_000), min_size=1, max_size=30))
def test_fast_mean_agrees_with_the_library(values):
    from mqbench.harness.histograms import mean_us

    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    assert mean_us(histogram) == pytest.approx(histogram.get_mean_value(), rel=1e-12)


@given(text=st.text(max_size=80) | st.binary(max_size=80).map(lambda b: __import__("base64").b64encode(b).decode()))
def test_fuzzed_histogram_encodings_are_corrupt_data(text):
    try:
        histogram = decode_histogram(text, "fuzz")
    except CorruptDataError:
        return
    assert histogram.get_total_count() >= 0


@given(mutation=st.dictionaries(st.sampled_from(["start_ns", "warmup_ms", "duration_ms", "window_ms",
                                                 "events_in_warmup", "events_after_end", "windows"]),
                                st.none() | st.integers(-5, 5) | st.text(max_size=4) | st.just({"0": {}}), max_size=3))
def test_fuzzed_worker_documents_are_corrupt_data(mutation):
    shipped = _run().to_dict()
    shipped.update(mutation)
    try:
        RunMetrics.from_dict(shipped)
    except CorruptDataError:
        pass
