"""The parent's live view of a cell: workers' latest counters, backlog samples, per-check latency.

Fed every ``progress``/``done`` message (``observe``); read by the progress line, the max-rate
search (``take_check``) and, after the run, by ``window_backlogs``, which gives each 10-second
window the backlog at its end. Pure: times are passed in.

Backlogs (both in messages, at a sample time):

* ``publish_backlog``: messages whose intended send time has passed but that no producer has sent
  (overdue in the schedule, or waiting in a batch being filled);
* ``consume_backlog``: deliveries owed for acknowledged undelayed messages (one per subscribed
  group that matches the message's tag) minus undelayed messages consumed.

A check of the max-rate search (``start_check`` / ``take_check``) counts what the producers
offered (messages due: taken from the schedule plus overdue and batching) and acknowledged between
their own reports nearest the check's edges, over the time between those reports: the same span
for both. (Counting from the parent's view at the edges mixed reports up to ``progress_ms`` stale
with an exact ``rate x interval``: a 4 s check at 500 ms reports was off by up to 12 %.)

``delayed_pending`` (not a backlog: those messages are not due yet, or only just): deliveries
owed for acknowledged delayed messages minus delayed messages consumed.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from mqbench.harness.maxrate import Observation
from mqbench.harness.histograms import decode_histogram, new_histogram, percentile_us

PRODUCER_SUMS = ("intended", "sent", "acked", "errors", "acked_bytes", "expected_deliveries", "delayed_acked",
                 "delayed_deliveries_owed", "in_flight", "publish_backlog", "measured_sent", "measured_acked",
                 "measured_acked_on_time")
CONSUMER_SUMS = ("consumed", "consumed_undelayed", "consumed_delayed", "consumed_bytes", "foreign")


@dataclass
class Sample:
    t_ns: int
    publish_backlog: int
    consume_backlog: int


class Tracker:
    def __init__(self) -> None:
        self.producers: dict[str, dict] = {}
        self.consumers: dict[str, dict] = {}
        self.samples: list[Sample] = []
        self._interval_histogram = new_histogram()
        self._check_start: dict | None = None
        self.last_check_histogram = new_histogram()  # publish latency of the last check taken
        self._window_histogram = new_histogram()
        self._window_start: dict | None = None
        self._producer_reports: dict[str, tuple[int, dict]] = {}  # worker -> (t_ns, totals) of its last report
        self._check_reports: dict[str, tuple[int, dict]] = {}

    def observe(self, worker_name: str, message: dict) -> None:
        totals = message.get("totals")
        if message.get("type") not in ("progress", "done") or not isinstance(totals, dict):
            return
        (self.producers if message.get("role") == "producer" else self.consumers)[worker_name] = totals
        if message.get("role") == "producer" and isinstance(message.get("t_ns"), int):
            self._producer_reports[worker_name] = (message["t_ns"], totals)
        encoded = message.get("latency_histogram")
        if encoded:
            histogram = decode_histogram(encoded, f"progress of {worker_name}")
            self._interval_histogram.add(histogram)
            self._window_histogram.add(histogram)
        if "t_ns" in message:
            self.sample(message["t_ns"])

    def totals(self) -> dict[str, int]:
        out = {name: sum(t.get(name, 0) for t in self.producers.values()) for name in PRODUCER_SUMS}
        out.update({name: sum(t.get(name, 0) for t in self.consumers.values()) for name in CONSUMER_SUMS})
        out["consume_backlog"] = max(0, out["expected_deliveries"] - out["consumed_undelayed"])
        out["delayed_pending"] = max(0, out["delayed_deliveries_owed"] - out["consumed_delayed"])
        return out

    def sample(self, t_ns: int) -> None:
        totals = self.totals()
        sample = Sample(t_ns, totals["publish_backlog"], totals["consume_backlog"])
        if self.samples and t_ns < self.samples[-1].t_ns:
            return  # a late message from a worker: keep the series in time order
        self.samples.append(sample)

    def drained(self) -> bool:
        """Every owed undelayed delivery has been consumed."""
        totals = self.totals()
        return totals["consumed_undelayed"] >= totals["expected_deliveries"]

    # -- the max-rate search --

    def start_check(self) -> None:
        self._check_start = self.totals()
        self._check_reports = dict(self._producer_reports)
        self._interval_histogram = new_histogram()

    def _report_span(self) -> tuple[int, int, int, int] | None:
        """(span ms, offered, acknowledged, errors) between every producer's report at the check's
        start and its latest one; None unless every producer has reported since the start."""
        spans, offered, acked, errors = [], 0, 0, 0
        for name, (t_ns, totals) in self._producer_reports.items():
            start = self._check_reports.get(name)
            if start is None or t_ns <= start[0]:
                return None
            t0_ns, before = start
            spans.append(t_ns - t0_ns)
            due = totals.get("intended", 0) + totals.get("publish_backlog", 0)
            offered += due - before.get("intended", 0) - before.get("publish_backlog", 0)
            acked += totals.get("acked", 0) - before.get("acked", 0)
            errors += totals.get("errors", 0) - before.get("errors", 0)
        if not spans:
            return None
        return round(sum(spans) / len(spans) / 1_000_000), max(0, offered), acked, errors

    def take_check(self, interval_ms: int, rate_per_s: float) -> Observation:
        """What the check since ``start_check`` showed, as the search's ``Observation``: offered and
        acknowledged over the producers' report span (module doc), else, before every producer has
        reported, acknowledged over ``interval_ms`` against ``rate_per_s x interval_ms``."""
        now = self.totals()
        before = self._check_start or dict.fromkeys(now, 0)
        histogram, self._interval_histogram = self._interval_histogram, new_histogram()
        self.last_check_histogram = histogram
        p99_us = percentile_us(histogram, 99.0)
        self._check_start = now
        span = self._report_span()
        self._check_reports = dict(self._producer_reports)
        if span is not None and span[0] > 0:
            interval_ms, intended, published, errors = span
        else:
            intended = int(rate_per_s * interval_ms / 1000)
            published, errors = now["acked"] - before["acked"], now["errors"] - before["errors"]
        return Observation(interval_ms=interval_ms, intended=intended, published=published, publish_errors=errors,
                           publish_backlog_msgs=now["publish_backlog"], consume_backlog_msgs=now["consume_backlog"],
                           publish_latency_ms_p99=None if p99_us is None else p99_us / 1000.0,
                           publish_in_flight=now["in_flight"])

    # -- the per-window progress lines --

    def take_window(self) -> tuple[dict, dict, object]:
        """(totals now, totals at the previous call, publish latency histogram since then)."""
        now = self.totals()
        before = self._window_start or dict.fromkeys(now, 0)
        histogram, self._window_histogram = self._window_histogram, new_histogram()
        self._window_start = now
        return now, before, histogram

    # -- after the run --

    def window_backlogs(self, measure_start_ns: int, window_ms: int, windows: int) -> list[dict]:
        """For each window, the backlogs of the last sample at or before its end (None before any)."""
        times = [s.t_ns for s in self.samples]
        out = []
        for index in range(windows):
            end_ns = measure_start_ns + (index + 1) * window_ms * 1_000_000
            position = bisect_right(times, end_ns) - 1
            if position < 0:
                out.append({"publish_backlog_msgs": None, "consume_backlog_msgs": None})
            else:
                sample = self.samples[position]
                out.append({"publish_backlog_msgs": sample.publish_backlog,
                            "consume_backlog_msgs": sample.consume_backlog})
        return out
