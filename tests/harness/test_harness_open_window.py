"""``RunMetrics`` with its open window (values held back, folded when read) and its bulk forms
(``record_sends``/``record_acks``/``record_consumes``): every window's histograms (their encoding),
counters and the warm-up/after-end counts equal an independent model's that windows each event by
the module doc's rule and records each value with one ``record_value``, for random event sequences
around the window edges, with reads in between."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.harness.histograms import VALUE_US_MAX, encode_histogram, new_histogram
from mqbench.harness.metrics import COUNTERS, HISTOGRAMS, MAXIMA, PENDING_VALUES_MAX, RunMetrics

START_NS, WARMUP_MS, DURATION_MS, WINDOW_MS = 1_000_000_000, 2, 5, 2      # windows [2,4) [4,6) [6,7) ms
MEASURE_NS = START_NS + WARMUP_MS * 1_000_000
END_NS = MEASURE_NS + DURATION_MS * 1_000_000
EDGES = [START_NS, MEASURE_NS, MEASURE_NS + 2_000_000, MEASURE_NS + 4_000_000, END_NS]

_time = st.one_of(st.integers(START_NS - 1000, END_NS + 1000),
                  st.sampled_from(EDGES).flatmap(lambda edge: st.integers(edge - 2, edge + 1)))
# a value's source time relative to the event: late, early (negative: clamped to 0) or beyond the max
_lag = st.one_of(st.integers(0, 3_000_000), st.integers(-5000, 5000),
                 st.sampled_from([VALUE_US_MAX * 1000, VALUE_US_MAX * 1000 + 999, (VALUE_US_MAX + 1) * 1000]))
_size = st.integers(0, 2000)
_send = st.tuples(st.just("send"), _time, _lag)
_ack = st.tuples(st.just("ack"), _time, _lag, _size)
_error = st.tuples(st.just("error"), _time)
_consume = st.tuples(st.just("consume"), _time, _lag, _size, st.one_of(st.none(), _lag), st.booleans(),
                     st.booleans(), st.one_of(st.none(), st.integers(0, 5_000_000)))
_read = st.tuples(st.just("read"))
_event = st.one_of(_send, _ack, _error, _consume, _read)


class Model:
    """One event at a time, windowed by the rule, each value recorded on its own (no caching)."""

    def __init__(self):
        self.windows: dict[int, tuple[dict, dict]] = {}
        self.events_in_warmup = self.events_after_end = 0

    def window(self, t_ns):
        if t_ns < MEASURE_NS:
            self.events_in_warmup += 1
            return None
        if t_ns >= END_NS:
            self.events_after_end += 1
            return None
        index = (t_ns - MEASURE_NS) // (WINDOW_MS * 1_000_000)
        if index not in self.windows:
            self.windows[index] = ({n: new_histogram() for n in HISTOGRAMS}, dict.fromkeys(COUNTERS, 0))
        return self.windows[index]

    @staticmethod
    def record(window, name, value_us):
        histograms, counters = window
        if value_us < 0 or value_us > VALUE_US_MAX:
            counters["clamped_values"] += 1
            value_us = 0 if value_us < 0 else VALUE_US_MAX
        histograms[name].record_value(value_us)

    def event(self, kind, *args):
        if kind == "send":
            t, lag = args
            if (w := self.window(t)) is not None:
                self.record(w, "publish_delay", lag // 1000)
        elif kind == "ack":
            t, lag, size = args
            if (w := self.window(t)) is not None:
                self.record(w, "publish_latency", lag // 1000)
                w[1]["published"] += 1
                w[1]["published_bytes"] += size
        elif kind == "error":
            if (w := self.window(args[0])) is not None:
                w[1]["publish_errors"] += 1
        elif kind == "consume":
            t, lag, size, due_lag, redelivered, duplicate, gap = args
            if (w := self.window(t)) is None:
                return
            c = w[1]
            c["consumed"] += 1
            c["consumed_bytes"] += size
            c["redeliveries"] += redelivered
            c["duplicates"] += duplicate
            if gap is not None:
                c["consume_gap_max_us"] = max(c["consume_gap_max_us"], gap // 1000)
            if due_lag is None:
                self.record(w, "e2e_latency", lag // 1000)
            else:
                c["delayed_consumed"] += 1
                if due_lag < 0:
                    c["early_deliveries"] += 1
                    self.record(w, "delay_error_early", -due_lag // 1000)
                else:
                    self.record(w, "delay_error_late", due_lag // 1000)

    def as_dict(self):
        return {str(i): {"histograms": {n: encode_histogram(h) for n, h in hs.items()}, "counters": dict(c)}
                for i, (hs, c) in sorted(self.windows.items())}


def _new():
    return RunMetrics(START_NS, duration_ms=DURATION_MS, warmup_ms=WARMUP_MS, window_ms=WINDOW_MS)


def _one_by_one(metrics, kind, *args):
    if kind == "send":
        t, lag = args
        metrics.record_send(t - lag, t)
    elif kind == "ack":
        t, lag, size = args
        metrics.record_ack(t - lag, t, size)
    elif kind == "error":
        metrics.record_publish_error(args[0])
    elif kind == "consume":
        t, lag, size, due_lag, redelivered, duplicate, gap = args
        metrics.record_consume(t - lag, t, size, None if due_lag is None else t - due_lag,
                               redelivered=redelivered, duplicate=duplicate, gap_ns=gap)
    else:
        metrics.to_dict()          # a read between events: what is held back is folded, then recording goes on


def _same(metrics, model, *, aggregates=False):
    got = metrics.to_dict()
    assert (got["events_in_warmup"], got["events_after_end"]) == (model.events_in_warmup, model.events_after_end)
    assert got["windows"] == model.as_dict()
    if aggregates:
        assert metrics.aggregates() == RunMetrics.from_dict(got).aggregates()
        assert metrics.window_series() == RunMetrics.from_dict(got).window_series()


@settings(max_examples=15, deadline=None)
@given(st.lists(_event, max_size=60))
def test_each_event_on_its_own_matches_the_model(events):
    metrics, model = _new(), Model()
    for event in events:
        _one_by_one(metrics, *event)
        model.event(*event)
    _same(metrics, model)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(_time, st.lists(st.one_of(_send, _ack, _consume), min_size=1, max_size=6)), max_size=12))
def test_bulk_forms_match_the_model(turns):
    """Each turn's events happen at one time ``t`` (a loop turn): one bulk call per kind."""
    metrics, model = _new(), Model()
    for t, events in turns:
        sends = [lag for kind, _, lag, *_ in events if kind == "send"]
        acks = [(lag, rest[0]) for kind, _, lag, *rest in events if kind == "ack"]
        consumes = [rest for kind, _, *rest in events if kind == "consume"]
        for kind, _, *rest in events:
            model.event(kind, t, *rest)
        metrics.record_sends(t, [t - lag for lag in sends])
        metrics.record_acks(t, [t - lag for lag, _ in acks], sum(size for _, size in acks))
        gaps = [gap for *_, gap in consumes if gap is not None]
        metrics.record_consumes(t, [t - lag for lag, _, due_lag, *_ in consumes if due_lag is None],
                                sum(size for _, size, *_ in consumes),
                                [t - due_lag for _, _, due_lag, *_ in consumes if due_lag is not None],
                                redeliveries=sum(c[3] for c in consumes), duplicates=sum(c[4] for c in consumes),
                                gap_max_ns=max(gaps) if gaps else None)
    _same(metrics, model)


def test_the_held_back_values_stay_bounded_and_all_arrive():
    metrics, model = _new(), Model()
    count = PENDING_VALUES_MAX * 2 + 7
    for i in range(count):
        event = ("ack", MEASURE_NS + i, 1000 + i, 3) if i % 2 else ("send", MEASURE_NS + i, 2000 + i)
        _one_by_one(metrics, *event)
        model.event(*event)
        assert len(metrics._delays) < PENDING_VALUES_MAX and len(metrics._latencies) < PENDING_VALUES_MAX
    _same(metrics, model, aggregates=True)
    assert metrics.total().counters["published"] == count // 2


def test_merging_runs_that_hold_back_values():
    a, b, model = _new(), _new(), Model()
    for i, t in enumerate(range(MEASURE_NS - 3, END_NS + 3, 250_001)):
        event = ("ack", t, 1000 * i, i)
        _one_by_one(a if i % 3 else b, *event)
        model.event(*event)
    a.merge(b)
    _same(a, model, aggregates=True)
    assert not MAXIMA - set(COUNTERS)


def test_every_edge_and_clamp_one_by_one_and_in_bulk():
    """Each kind at each window edge (and 1 ns either side) with values at the clamps' bounds."""
    lags = [-1001, -1, 0, 999, 1000, VALUE_US_MAX * 1000 + 999, (VALUE_US_MAX + 1) * 1000]
    one, bulk, model = _new(), _new(), Model()
    for edge in EDGES:
        for t in (edge - 1, edge, edge + 1):
            for lag in lags:
                events = [("send", t, lag), ("ack", t, lag, 7), ("error", t),
                          ("consume", t, lag, 5, None, False, True, lag if lag >= 0 else None),
                          ("consume", t, 0, 5, lag, True, False, None)]
                for event in events:
                    _one_by_one(one, *event)
                    model.event(*event)
                bulk.record_sends(t, [t - lag])
                bulk.record_acks(t, [t - lag], 7)
                bulk.record_consumes(t, [t - lag], 10, [t - lag], redeliveries=1, duplicates=1,
                                     gap_max_ns=lag if lag >= 0 else None)
            bulk.record_publish_error(t, len(lags))        # one request of several messages failed
    _same(one, model, aggregates=True)
    _same(bulk, model)
