"""Latency histograms in integer microseconds (HdrHistogram, 1 us .. 1 h, 3 significant figures):
building, bulk recording, the compressed base64 encoding that crosses processes, merging, and
the percentiles, means and summaries read from them. ``metrics`` keeps them per time window and
per run; everything here is a pure function of its histograms."""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from itertools import accumulate
from typing import Iterable

from hdrh.histogram import HdrHistogram

from mqbench.errors import CorruptDataError

VALUE_US_MIN = 1
VALUE_US_MAX = 3_600_000_000  # one hour: anything slower is clamped and counted
SIGNIFICANT_FIGURES = 3  # 0.1 % value resolution; 5 digits would make each histogram 16x larger
PERCENTILES = (("p50", 50.0), ("p75", 75.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9), ("p9999", 99.99))




def new_histogram() -> HdrHistogram:
    """An empty latency histogram: 1 us .. 1 h, 3 significant figures."""
    return HdrHistogram(VALUE_US_MIN, VALUE_US_MAX, SIGNIFICANT_FIGURES)


def record_values(histogram: HdrHistogram, values: list[int]) -> None:
    """Record ``values`` (each within the histogram's range) in ``histogram``: the same counts, total,
    percentiles, mean, min, max and encoding as one ``record_value`` per value (the same fields
    change), at a small part of its cost (a load generator records two or three values per
    message): each value's counts index is computed in one expression and each index counted once.
    A histogram of another layout (unit magnitude > 0) or a value out of its range goes one by one
    (``record_value`` ignores a value it cannot hold)."""
    if not values:
        return
    low, high = min(values), max(values)
    if histogram.unit_magnitude or low < 0 or histogram.get_counts_array_index(high) >= histogram.counts_len:
        for value in values:        # not our histograms' layout (1 us units), or out of range: one by one
            histogram.record_value(value)
        return
    # hdrh's record_value, per value: counts index = ((bucket + 1) << half magnitude) + (value >>
    # bucket) - half count, with bucket = bit length of (value | sub-bucket mask) - (half magnitude
    # + 1); counted per index (one Counter pass in C), then each index's count added once, and the
    # total, min and max updated once (the same fields record_value keeps).
    magnitude, half = histogram.sub_bucket_half_count_magnitude, histogram.sub_bucket_half_count
    mask, top = histogram.sub_bucket_mask, histogram.sub_bucket_half_count_magnitude + 1
    counts = histogram.counts
    for index, count in Counter([(((b := (v | mask).bit_length() - top) + 1) << magnitude) + (v >> b) - half
                                 for v in values]).items():
        counts[index] += count
    histogram.total_count += len(values)
    histogram.min_value = min(histogram.min_value, low)
    histogram.max_value = max(histogram.max_value, high)


def encode_histogram(histogram: HdrHistogram) -> str:
    """HdrHistogram's compressed V2 encoding, base64 text (what the Java and C libraries read too)."""
    return histogram.encode().decode("ascii")


def decode_histogram(text: str, where: str = "histogram") -> HdrHistogram:
    """The inverse of ``encode_histogram``; CorruptDataError naming ``where`` for anything else."""
    if not isinstance(text, str) or not text:
        raise CorruptDataError("encoded histogram must be a non-empty base64 string", where=where)
    try:
        histogram = HdrHistogram.decode(text.encode("ascii"))
    except Exception as exc:  # the library raises binascii, zlib, ctypes and its own errors
        raise CorruptDataError(f"not an encoded HdrHistogram ({type(exc).__name__}: {exc})", where=where) from exc
    if (histogram.lowest_trackable_value, histogram.highest_trackable_value) != (VALUE_US_MIN, VALUE_US_MAX):
        raise CorruptDataError(f"histogram range {histogram.lowest_trackable_value}..{histogram.highest_trackable_value} us "
                               f"is not mqbench's {VALUE_US_MIN}..{VALUE_US_MAX} us", where=where)
    return histogram


def merge_histograms(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """A new histogram holding every count of ``histograms`` (the inputs are not changed)."""
    merged = new_histogram()
    for histogram in histograms:
        if histogram.get_total_count():
            merged.add(histogram)
    return merged


def _cumulative_counts(histogram: HdrHistogram) -> list[int]:
    """Running totals of the counts array up to the highest recorded value (slicing is done in C)."""
    top = histogram.get_counts_array_index(histogram.get_max_value())
    return list(accumulate(histogram.counts[: top + 1]))


def _index_of_rank(cumulative: list[int], rank: int) -> int:
    return min(bisect_left(cumulative, rank), len(cumulative) - 1)


def _rank_value(histogram: HdrHistogram, rank: int, cumulative: list[int] | None = None) -> int:
    """The value (highest equivalent) of the ``rank``-th smallest recorded value, 1-based."""
    cumulative = cumulative if cumulative is not None else _cumulative_counts(histogram)
    index = _index_of_rank(cumulative, rank)
    return histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))


def _rank_value_low(histogram: HdrHistogram, rank: int) -> int:
    index = _index_of_rank(_cumulative_counts(histogram), rank)
    return histogram.get_lowest_equivalent_value(histogram.get_value_from_index(index))


def _target_rank(percentile: float, total: int) -> int:
    # HdrHistogram's own rule, so signed percentiles agree with the library's unsigned ones.
    return max(1, int(percentile * total / 100.0 + 0.5))


def percentile_us(histogram: HdrHistogram, percentile: float, cumulative: list[int] | None = None) -> int | None:
    """Same value as the library's ``get_value_at_percentile`` (None when empty), without scanning
    the whole counts array in Python."""
    total = histogram.get_total_count()
    if not total:
        return None
    return _rank_value(histogram, _target_rank(percentile, total), cumulative)


def mean_us(histogram: HdrHistogram, cumulative: list[int] | None = None) -> float:
    """The library's ``get_mean_value`` (each count at its bucket's median), over recorded buckets only."""
    total = histogram.get_total_count()
    if not total:
        return 0.0
    top = histogram.get_counts_array_index(histogram.get_max_value())
    weighted = 0
    for index, count in enumerate(histogram.counts[: top + 1]):
        if count:
            value = histogram.get_value_from_index(index)
            low = histogram.get_lowest_equivalent_value(value)
            size = histogram.get_highest_equivalent_value(value) - low + 1
            weighted += count * (low + (size >> 1))
    return weighted / total


def latency_summary(name: str, histogram: HdrHistogram) -> dict[str, float | int | None]:
    """``{name}_ms_p50 .. _p9999``, ``_max``, ``_mean`` and ``{name}_count``; None when empty."""
    total = histogram.get_total_count()
    out: dict[str, float | int | None] = {}
    if total:
        cumulative = _cumulative_counts(histogram)
        for label, percentile in PERCENTILES:
            out[f"{name}_ms_{label}"] = percentile_us(histogram, percentile, cumulative) / 1000.0
        out[f"{name}_ms_max"] = histogram.get_max_value() / 1000.0
        out[f"{name}_ms_mean"] = mean_us(histogram, cumulative) / 1000.0
    else:
        for label, _ in PERCENTILES:
            out[f"{name}_ms_{label}"] = None
        out[f"{name}_ms_max"] = None
        out[f"{name}_ms_mean"] = None
    out[f"{name}_count"] = total
    return out


def signed_percentile_us(early: HdrHistogram, late: HdrHistogram, percentile: float) -> int | None:
    """Percentile of the signed error whose negative part is ``early`` (magnitudes) and rest ``late``."""
    early_total, late_total = early.get_total_count(), late.get_total_count()
    total = early_total + late_total
    if total == 0:
        return None
    rank = _target_rank(percentile, total)
    if rank <= early_total:
        # The k-th smallest signed value is minus the (E-k+1)-th smallest early magnitude.
        return -_rank_value_low(early, early_total - rank + 1)
    return _rank_value(late, rank - early_total)


def delay_error_summary(early: HdrHistogram, late: HdrHistogram) -> dict[str, float | int | None]:
    """Signed delivery error of delayed messages in ms: negative is early."""
    out: dict[str, float | int | None] = {}
    for label, percentile in (("p1", 1.0), ("p50", 50.0), ("p99", 99.0), ("p999", 99.9)):
        value = signed_percentile_us(early, late, percentile)
        out[f"delay_error_ms_{label}"] = None if value is None else value / 1000.0
    if early.get_total_count():
        out["delay_error_ms_min"] = -early.get_max_value() / 1000.0
    elif late.get_total_count():
        out["delay_error_ms_min"] = late.get_min_value() / 1000.0
    else:
        out["delay_error_ms_min"] = None
    if late.get_total_count():
        out["delay_error_ms_max"] = late.get_max_value() / 1000.0
    elif early.get_total_count():
        out["delay_error_ms_max"] = -early.get_min_value() / 1000.0
    else:
        out["delay_error_ms_max"] = None
    return out
