"""Latency histograms and counters per time window and per run, mergeable across processes.

What is recorded (all latencies in integer microseconds inside HdrHistograms, reported in ms):

========================  ==========================================================================
histogram                 value
========================  ==========================================================================
``publish_latency``       ack time - actual send time (failed sends are counted, not timed)
``publish_delay``         actual send time - intended send time (the open-loop schedule's lag: a
                          sender that falls behind shows up here, so coordinated omission is visible)
``e2e_latency``           consumer receive time - born (send) time, for messages without a delay
``delay_error_late``      receive time - requested delivery time, delayed messages delivered on time
                          or late (value >= 0)
``delay_error_early``     requested delivery time - receive time, delayed messages delivered early
                          (value > 0; the signed error is its negative). HdrHistogram cannot hold
                          negative values and an offset would cost resolution near zero, so early
                          deliveries get their own histogram and their own count.
========================  ==========================================================================

Counters: ``published`` (acknowledged), ``publish_errors``, ``consumed``, ``published_bytes``,
``consumed_bytes``, ``delayed_consumed``, ``early_deliveries``, ``clamped_values`` (values outside
the histogram range, recorded at the nearest bound and counted so the clamp is never silent),
``redeliveries`` (deliveries the broker marked as a retry: reconsumeTimes > 0, e.g. a POP message
not acked in its invisible time), ``duplicates`` (deliveries of a message id the consumer group had
already received: a pull rebalance that restarts from the committed offset, or a redelivery).
Maximum (merged by max, not summed): ``consume_gap_max_us``, the longest time between two
consecutive deliveries from one queue, over the queues (the pause a rebalance or a stalled consumer
causes), windowed by the delivery that ends the gap.

Time: the run starts at ``start_ns`` (any monotonic clock, passed in). The first ``warmup_ms`` are
discarded. The measured phase ``[start + warmup, start + warmup + duration)`` is cut into windows of
``window_ms`` (10 s by default, as OpenMessaging Benchmark reports): window ``k`` holds the events
whose time ``t`` satisfies ``measure_start + k*window <= t < measure_start + (k+1)*window``; the last
window may be shorter when the duration is not a multiple of the window. Each event is windowed by
the time it happened: a send by its send time, an ack or error by its completion time, a consume by
its receive time. Events after the measured phase are counted in ``events_after_end`` and dropped.

Merging: several worker processes each keep a ``RunMetrics`` with the same ``start_ns``, warm-up,
duration and window; each ships ``to_dict()`` (histograms in HdrHistogram's compressed base64 form)
and the coordinator ``merge``s them window by window. Percentiles are always read from merged
histograms, never averaged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from hdrh.histogram import HdrHistogram

from mqbench.errors import CorruptDataError, UserError
from mqbench.harness.histograms import (VALUE_US_MAX, decode_histogram, delay_error_summary,
                                       encode_histogram, latency_summary, new_histogram,
                                       record_values)

DEFAULT_WINDOW_MS = 10_000
MB = 1_000_000

HISTOGRAMS = ("publish_latency", "publish_delay", "e2e_latency", "delay_error_late", "delay_error_early")
COUNTERS = ("published", "publish_errors", "consumed", "published_bytes", "consumed_bytes",
            "delayed_consumed", "early_deliveries", "clamped_values", "redeliveries", "duplicates",
            "consume_gap_max_us")
MAXIMA = frozenset({"consume_gap_max_us"})                       # merged by max
OPTIONAL_COUNTERS = frozenset({"redeliveries", "duplicates", "consume_gap_max_us"})   # absent before POP
METRICS_SCHEMA = "mqbench.metrics/1"


#: values a window holds back before recording them in bulk (``record_values``): bounded memory
PENDING_VALUES_MAX = 4096


# --- windows and runs ------------------------------------------------------------------------------


@dataclass
class Window:
    """The histograms and counters of one time window (or of a whole run, when merged).

    ``record`` holds values back and records them in bulk (``record_values``) when the histograms
    are read, or every ``PENDING_VALUES_MAX`` values: ``histograms`` is always up to date."""

    _histograms: dict[str, HdrHistogram] = field(default_factory=lambda: {n: new_histogram() for n in HISTOGRAMS})
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    _pending: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def histograms(self) -> dict[str, HdrHistogram]:
        if self._pending:
            self._flush()
        return self._histograms

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for name, values in pending.items():
            record_values(self._histograms[name], values)

    def record(self, name: str, value_us: int) -> None:
        if value_us < 0:
            # Only a clock going backwards gives this; keep the event, count the clamp.
            value_us = self._clamp(0)
        elif value_us > VALUE_US_MAX:
            value_us = self._clamp(VALUE_US_MAX)
        values = self._pending.get(name)
        if values is None:
            if name not in self._histograms:
                raise KeyError(name)
            values = self._pending[name] = []
        values.append(value_us)
        if len(values) >= PENDING_VALUES_MAX:
            self._flush()

    def record_many(self, name: str, values_us: list[int]) -> None:
        """``record(name, v)`` for each of ``values_us``, in one step (clamps counted per value)."""
        if not values_us:
            return
        if min(values_us) < 0 or max(values_us) > VALUE_US_MAX:
            values_us = [self._clamp(0) if v < 0 else self._clamp(VALUE_US_MAX) if v > VALUE_US_MAX else v
                         for v in values_us]
        values = self._pending.get(name)
        if values is None:
            if name not in self._histograms:
                raise KeyError(name)
            values = self._pending[name] = []
        values.extend(values_us)
        if len(values) >= PENDING_VALUES_MAX:
            self._flush()

    def _record_in_range(self, name: str, values_us: list[int]) -> None:
        """Values already within the histogram's range, straight into it (``RunMetrics``' fold)."""
        record_values(self._histograms[name], values_us)

    def _clamp(self, bound: int) -> int:
        self.counters["clamped_values"] += 1
        return bound

    def add(self, other: "Window") -> None:
        for name in HISTOGRAMS:
            if other.histograms[name].get_total_count():
                self.histograms[name].add(other.histograms[name])
        for name in COUNTERS:
            if name in MAXIMA:
                self.counters[name] = max(self.counters[name], other.counters[name])
            else:
                self.counters[name] += other.counters[name]

    def summary(self, duration_ms: int) -> dict[str, float | int | None]:
        """Aggregates of this window over ``duration_ms``: rates, percentiles, counters."""
        seconds = duration_ms / 1000.0
        c = self.counters
        out: dict[str, float | int | None] = {
            "duration_ms": duration_ms,
            "published": c["published"], "publish_errors": c["publish_errors"], "consumed": c["consumed"],
            "published_bytes": c["published_bytes"], "consumed_bytes": c["consumed_bytes"],
            "delayed_consumed": c["delayed_consumed"], "early_deliveries": c["early_deliveries"],
            "clamped_values": c["clamped_values"],
            "throughput_msgs_per_s": c["published"] / seconds if seconds else 0.0,
            "throughput_mb_per_s": c["published_bytes"] / MB / seconds if seconds else 0.0,
            "consume_msgs_per_s": c["consumed"] / seconds if seconds else 0.0,
            "consume_mb_per_s": c["consumed_bytes"] / MB / seconds if seconds else 0.0,
            "publish_errors_per_s": c["publish_errors"] / seconds if seconds else 0.0,
            "redeliveries": c["redeliveries"], "duplicates": c["duplicates"],
            "consume_gap_ms_max": c["consume_gap_max_us"] / 1000.0 if c["consumed"] else None,
        }
        for name in ("publish_latency", "publish_delay", "e2e_latency"):
            out.update(latency_summary(name, self.histograms[name]))
        out.update(delay_error_summary(self.histograms["delay_error_early"], self.histograms["delay_error_late"]))
        return out

    def encode(self) -> dict:
        return {"histograms": {n: encode_histogram(h) for n, h in self.histograms.items()},
                "counters": dict(self.counters)}

    @classmethod
    def decode(cls, data: dict, where: str) -> "Window":
        if not isinstance(data, dict) or not isinstance(data.get("histograms"), dict) \
                or not isinstance(data.get("counters"), dict):
            raise CorruptDataError("a window needs 'histograms' and 'counters' objects", where=where)
        window = cls()
        for name in HISTOGRAMS:
            if name not in data["histograms"]:
                raise CorruptDataError(f"histogram {name!r} is missing", where=where)
            window.histograms[name] = decode_histogram(data["histograms"][name], f"{where}: {name}")
        for name in COUNTERS:
            value = data["counters"].get(name, 0 if name in OPTIONAL_COUNTERS else None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise CorruptDataError(f"counter {name!r} must be a non-negative integer, got {value!r}", where=where)
            window.counters[name] = value
        return window


class RunMetrics:
    """Recorders for one run (or one worker's share of it): per window, warm-up discarded.

    Every ``record_*`` call takes the times (integer ns, one monotonic clock for the whole run) at
    which things happened; nothing here reads a clock.

    The per-message calls cost one Python call each: the window last recorded in stays *open* with
    its bounds, and an event inside them whose value is within range only appends the value to a
    list held here (an ack's count and bytes follow from its list). The lists go into the window's
    histograms and counters (``_fold``) when the next event falls in another window, every
    ``PENDING_VALUES_MAX`` values, and whenever ``windows`` is read, so every reader sees exactly
    what one call per event would have recorded. The ``record_sends``/``record_acks``/
    ``record_consumes`` forms take the events that happened at one time (one loop turn) together.
    """

    def __init__(self, start_ns: int, *, duration_ms: int, warmup_ms: int = 0, window_ms: int = DEFAULT_WINDOW_MS):
        if duration_ms <= 0 or window_ms <= 0 or warmup_ms < 0:
            raise UserError(f"metrics need duration_ms > 0, window_ms > 0, warmup_ms >= 0 "
                            f"(got {duration_ms}, {window_ms}, {warmup_ms})")
        self.start_ns = int(start_ns)
        self.warmup_ms = int(warmup_ms)
        self.duration_ms = int(duration_ms)
        self.window_ms = int(window_ms)
        self.measure_start_ns = self.start_ns + self.warmup_ms * 1_000_000
        self.end_ns = self.measure_start_ns + self.duration_ms * 1_000_000
        self._windows: dict[int, Window] = {}
        self.events_in_warmup = 0
        self.events_after_end = 0
        # the open window and its bounds [from, to): [0, 0) holds nothing, the first event opens one
        self._open: Window | None = None
        self._open_from_ns = 0
        self._open_to_ns = 0
        self._delays: list[int] = []        # publish_delay values of the open window, in range
        self._latencies: list[int] = []     # publish_latency values, in range: one per acked message
        self._published_bytes = 0           # the bytes of the acks in ``_latencies``

    @property
    def windows(self) -> dict[int, Window]:
        """Window index -> ``Window`` (created at its first event), every recorded event in it."""
        if self._open is not None:
            self._fold()
        return self._windows

    # -- windowing --

    @property
    def window_count(self) -> int:
        return -(-self.duration_ms // self.window_ms)

    def window_index(self, t_ns: int) -> int | None:
        """Which window holds an event at ``t_ns``; None in the warm-up or after the end."""
        if t_ns < self.measure_start_ns:
            return None
        if t_ns >= self.end_ns:
            return None
        return (t_ns - self.measure_start_ns) // (self.window_ms * 1_000_000)

    def window_duration_ms(self, index: int) -> int:
        return min(self.window_ms, self.duration_ms - index * self.window_ms)

    def _fold(self) -> None:
        """The open window's held-back values and counts into it."""
        window = self._open
        if window is None:
            return
        if self._delays:
            window._record_in_range("publish_delay", self._delays)
            self._delays.clear()
        latencies = self._latencies
        if latencies:
            window._record_in_range("publish_latency", latencies)
            window.counters["published"] += len(latencies)
            window.counters["published_bytes"] += self._published_bytes
            self._published_bytes = 0
            latencies.clear()

    def _window_at(self, t_ns: int, events: int = 1) -> Window | None:
        """The window of ``events`` events at ``t_ns`` (opened, the one before folded); None in the
        warm-up or after the end, where the events are counted."""
        if self._open_from_ns <= t_ns < self._open_to_ns:
            return self._open      # events come in time order, mostly in the window of the one before
        index = self.window_index(t_ns)
        if index is None:
            if t_ns < self.measure_start_ns:
                self.events_in_warmup += events
            else:
                self.events_after_end += events
            return None
        if self._open is not None:
            self._fold()
        window = self._windows.get(index)
        if window is None:
            window = self._windows[index] = Window()
        window_from_ns = self.measure_start_ns + index * self.window_ms * 1_000_000
        self._open = window
        self._open_from_ns = window_from_ns
        self._open_to_ns = min(window_from_ns + self.window_ms * 1_000_000, self.end_ns)
        return window

    # -- recording --

    def record_send(self, intended_ns: int, sent_ns: int) -> None:
        """A send started at ``sent_ns`` for a message the schedule wanted at ``intended_ns``."""
        if self._open_from_ns <= sent_ns < self._open_to_ns:
            value = (sent_ns - intended_ns) // 1000
            if 0 <= value <= VALUE_US_MAX:
                delays = self._delays
                delays.append(value)
                if len(delays) >= PENDING_VALUES_MAX:
                    self._fold()
                return
        window = self._window_at(sent_ns)
        if window is not None:
            window.record("publish_delay", (sent_ns - intended_ns) // 1000)

    def record_sends(self, sent_ns: int, intended_ns: list[int]) -> None:
        """``record_send(i, sent_ns)`` for each ``i`` of ``intended_ns`` (sends started together)."""
        if intended_ns:
            window = self._window_at(sent_ns, len(intended_ns))
            if window is not None:
                window.record_many("publish_delay", [(sent_ns - i) // 1000 for i in intended_ns])

    def record_ack(self, sent_ns: int, acked_ns: int, size_bytes: int) -> None:
        """The broker acknowledged a message of ``size_bytes`` sent at ``sent_ns``."""
        if self._open_from_ns <= acked_ns < self._open_to_ns:
            value = (acked_ns - sent_ns) // 1000
            if 0 <= value <= VALUE_US_MAX:
                latencies = self._latencies
                latencies.append(value)
                self._published_bytes += size_bytes
                if len(latencies) >= PENDING_VALUES_MAX:
                    self._fold()
                return
        window = self._window_at(acked_ns)
        if window is not None:
            window.record("publish_latency", (acked_ns - sent_ns) // 1000)
            window.counters["published"] += 1
            window.counters["published_bytes"] += size_bytes

    def record_acks(self, acked_ns: int, sent_ns: list[int], size_bytes: int) -> None:
        """``record_ack(s, acked_ns, size)`` for each ``s`` of ``sent_ns`` (acks read together);
        ``size_bytes``: their sizes' sum."""
        if sent_ns:
            window = self._window_at(acked_ns, len(sent_ns))
            if window is not None:
                window.record_many("publish_latency", [(acked_ns - s) // 1000 for s in sent_ns])
                window.counters["published"] += len(sent_ns)
                window.counters["published_bytes"] += size_bytes

    def record_publish_error(self, failed_ns: int, count: int = 1) -> None:
        """``count`` messages (one request's) failed at ``failed_ns``."""
        window = self._window_at(failed_ns, count)
        if window is not None:
            window.counters["publish_errors"] += count

    def record_consume(self, born_ns: int, received_ns: int, size_bytes: int, deliver_at_ns: int | None = None, *,
                       redelivered: bool = False, duplicate: bool = False, gap_ns: int | None = None) -> None:
        """A consumer received a message born (sent) at ``born_ns``.

        For a delayed message pass the requested delivery time ``deliver_at_ns``: its signed
        delivery error (``received - deliver_at``) is recorded instead of an end-to-end latency.
        ``redelivered``/``duplicate`` count it (module doc); ``gap_ns``: time since the previous
        delivery from the same queue.
        """
        if deliver_at_ns is None:
            self.record_consumes(received_ns, [born_ns], size_bytes, redeliveries=int(redelivered),
                                 duplicates=int(duplicate), gap_max_ns=gap_ns)
        else:
            self.record_consumes(received_ns, [], size_bytes, [deliver_at_ns], redeliveries=int(redelivered),
                                 duplicates=int(duplicate), gap_max_ns=gap_ns)

    def record_consumes(self, received_ns: int, born_ns: list[int], size_bytes: int,
                        deliver_at_ns: list[int] | tuple[()] = (), *, redeliveries: int = 0, duplicates: int = 0,
                        gap_max_ns: int | None = None) -> None:
        """Deliveries received together at ``received_ns``: ``record_consume`` of each message born at
        one of ``born_ns`` (undelayed) and each delayed one due at one of ``deliver_at_ns``.
        ``size_bytes``: their sizes' sum; ``redeliveries``/``duplicates``: how many of them are;
        ``gap_max_ns``: the longest of their gaps (None: none had a previous delivery)."""
        count = len(born_ns) + len(deliver_at_ns)
        if not count:
            return
        window = self._window_at(received_ns, count)
        if window is None:
            return
        counters = window.counters
        counters["consumed"] += count
        counters["consumed_bytes"] += size_bytes
        if redeliveries:
            counters["redeliveries"] += redeliveries
        if duplicates:
            counters["duplicates"] += duplicates
        if gap_max_ns is not None and gap_max_ns // 1000 > counters["consume_gap_max_us"]:
            counters["consume_gap_max_us"] = gap_max_ns // 1000
        if born_ns:
            window.record_many("e2e_latency", [(received_ns - born) // 1000 for born in born_ns])
        if deliver_at_ns:
            counters["delayed_consumed"] += len(deliver_at_ns)
            late = [error for error in [received_ns - due for due in deliver_at_ns] if error >= 0]
            if late:
                window.record_many("delay_error_late", [error // 1000 for error in late])
            if len(late) < len(deliver_at_ns):
                early = [(due - received_ns) // 1000 for due in deliver_at_ns if received_ns - due < 0]
                counters["early_deliveries"] += len(early)
                window.record_many("delay_error_early", early)

    # -- reading --

    def window_series(self) -> list[dict]:
        """One summary per window of the measured phase (empty windows included), in time order."""
        series = []
        for index in range(self.window_count):
            window = self.windows.get(index) or Window()
            row = {"window_index": index, "window_start_ms": index * self.window_ms}
            row.update(window.summary(self.window_duration_ms(index)))
            series.append(row)
        return series

    def total(self) -> Window:
        """The whole measured phase: every window merged."""
        merged = Window()
        windows = self.windows
        for index in sorted(windows):
            merged.add(windows[index])
        return merged

    def aggregates(self) -> dict:
        """Whole-run summary (see ``Window.summary``) plus the warm-up and window settings."""
        out = {"warmup_ms": self.warmup_ms, "window_ms": self.window_ms, "events_in_warmup": self.events_in_warmup,
               "events_after_end": self.events_after_end}
        out.update(self.total().summary(self.duration_ms))
        return out

    def encoded_histograms(self) -> dict[str, str]:
        """The whole-run histograms, encoded (what a result file stores)."""
        return {name: encode_histogram(h) for name, h in self.total().histograms.items()}

    # -- shipping between processes --

    def to_dict(self) -> dict:
        return {"schema": METRICS_SCHEMA, "start_ns": self.start_ns, "warmup_ms": self.warmup_ms,
                "duration_ms": self.duration_ms, "window_ms": self.window_ms,
                "events_in_warmup": self.events_in_warmup, "events_after_end": self.events_after_end,
                "windows": {str(i): w.encode() for i, w in sorted(self.windows.items())}}

    @classmethod
    def from_dict(cls, data: dict, where: str = "metrics") -> "RunMetrics":
        if not isinstance(data, dict) or data.get("schema") != METRICS_SCHEMA:
            raise CorruptDataError(f"not a {METRICS_SCHEMA} document", where=where)
        try:
            metrics = cls(data["start_ns"], duration_ms=data["duration_ms"], warmup_ms=data["warmup_ms"],
                          window_ms=data["window_ms"])
            metrics.events_in_warmup = int(data["events_in_warmup"])
            metrics.events_after_end = int(data["events_after_end"])
            windows = data["windows"]
        except (KeyError, TypeError, ValueError, UserError) as exc:
            raise CorruptDataError(f"bad metrics header: {exc}", where=where) from exc
        if not isinstance(windows, dict):
            raise CorruptDataError("'windows' must be an object", where=where)
        for key, encoded in windows.items():
            if not key.isdigit() or int(key) >= metrics.window_count:
                raise CorruptDataError(f"window index {key!r} is outside 0..{metrics.window_count - 1}", where=where)
            metrics.windows[int(key)] = Window.decode(encoded, f"{where}: window {key}")
        return metrics

    def merge(self, other: "RunMetrics") -> None:
        """Add another worker's metrics of the same run (same start, warm-up, duration and window)."""
        mine = (self.start_ns, self.warmup_ms, self.duration_ms, self.window_ms)
        theirs = (other.start_ns, other.warmup_ms, other.duration_ms, other.window_ms)
        if mine != theirs:
            raise UserError(f"cannot merge metrics of different runs: (start_ns, warmup_ms, duration_ms, window_ms) "
                            f"{mine} vs {theirs}")
        for index, window in other.windows.items():
            self.windows.setdefault(index, Window()).add(window)
        self.events_in_warmup += other.events_in_warmup
        self.events_after_end += other.events_after_end


def merge_runs(parts: Iterable[RunMetrics]) -> RunMetrics:
    """One ``RunMetrics`` holding every part's counts (the parts are not changed)."""
    parts = list(parts)
    if not parts:
        raise UserError("nothing to merge: no worker metrics")
    first = parts[0]
    merged = RunMetrics(first.start_ns, duration_ms=first.duration_ms, warmup_ms=first.warmup_ms,
                        window_ms=first.window_ms)
    for part in parts:
        merged.merge(part)
    return merged
