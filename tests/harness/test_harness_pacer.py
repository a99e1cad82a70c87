"""Pacer: exact intended send times for each rate shape; a late sender shows up as publish delay."""
from __future__ import annotations

import asyncio
import copy
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.harness.metrics import RunMetrics
from mqbench.harness.pacer import Pacer, run_open_loop
from mqbench.workloads.rates import RateShape

S = 1_000_000_000
MS = 1_000_000


def test_constant_rate_schedule_is_exact_and_does_not_drift():
    pacer = Pacer(3, 10)
    assert [pacer.take() for _ in range(4)] == [10, 10 + 333_333_333, 10 + 666_666_666, 10 + S]
    pacer = Pacer(7, 0)
    for _ in range(10_000):
        pacer.take()
    # Message 10,000 of a 7 msgs/s schedule is at exactly floor(10000 / 7 s), however many came before.
    assert pacer.peek_ns() == (10_000 * S) // 7
    assert pacer.taken == 10_000


@given(rate=st.floats(0.5, 1e6), count=st.integers(1, 300), start=st.integers(0, 10**15))
def test_constant_schedule_times_are_index_over_rate(rate, count, start):
    pacer = Pacer(rate, start)
    times = [pacer.take() for _ in range(count)]
    exact = pacer._segments[0][1]  # the rational rate the pacer works with (within 1e-9 of ``rate``)
    assert abs(float(exact) - rate) <= max(1e-9, rate * 1e-12) * 10
    assert times == [start + (k * S * exact.denominator) // exact.numerator for k in range(count)]
    assert all(b >= a for a, b in zip(times, times[1:]))


def test_steps_burst_pause_and_end():
    # 2 msgs/s, a pause from 1 s, a 4 msgs/s burst from 2 s; the run ends at 3 s.
    pacer = Pacer([(0, 2), (1000, 0), (2000, 4)], 0, end_ns=3 * S)
    assert pacer.due(10 * S) == [0, S // 2, 2 * S, 2 * S + S // 4, 2 * S + S // 2, 2 * S + 3 * S // 4]
    assert pacer.peek_ns() is None
    with pytest.raises(UserError, match="ended"):
        pacer.take()


def test_steps_starting_later_and_a_final_pause():
    pacer = Pacer([(500, 10), (700, 0)], 1_000)
    assert pacer.due(S) == [1_000 + 500 * MS, 1_000 + 600 * MS]
    assert pacer.peek_ns() is None


def test_due_takes_only_what_is_due_and_respects_the_limit():
    pacer = Pacer(1000, 0)
    assert pacer.due(-1) == []
    assert pacer.due(5 * MS, limit=3) == [0, MS, 2 * MS]
    assert pacer.due(5 * MS) == [3 * MS, 4 * MS, 5 * MS]
    assert pacer.taken == 6


def test_rate_function_and_workload_rate_shape():
    pacer = Pacer(lambda t_ms: 0 if t_ms < 5 else 1000, 0, end_ns=10 * MS)
    assert pacer.due(S) == [5 * MS, 6 * MS, 7 * MS, 8 * MS, 9 * MS]
    shape = RateShape(base_msgs_per_s=100, shape="step", arrivals="paced", steps=((1.0, 3.0),))
    pacer = Pacer(shape, 0, end_ns=2 * S)
    times = pacer.due(2 * S)
    assert len(times) == pytest.approx(100 + 300, abs=2)
    assert times[1] - times[0] == 10 * MS
    assert times[-1] - times[-2] == round(S / 300)


def test_set_rate_changes_the_future_only():
    pacer = Pacer(1000, 0)
    assert pacer.due(3 * MS) == [0, MS, 2 * MS, 3 * MS]
    pacer.set_rate(10, 3 * MS)
    assert pacer.due(S) == [103 * MS, 203 * MS, 303 * MS, 403 * MS, 503 * MS, 603 * MS, 703 * MS, 803 * MS, 903 * MS]
    with pytest.raises(UserError, match="before the last taken"):
        pacer.set_rate(5, 0)
    pacer.set_rate(0, S)
    assert pacer.peek_ns() is None


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "fast", True])
def test_bad_rates_are_user_errors(bad):
    with pytest.raises(UserError, match="rate"):
        Pacer(bad, 0)


@pytest.mark.parametrize("steps, message", [
    ([], "at least one"), ([(0, 1), (0, 2)], "after the previous"), ([(-5, 1)], "start_ms"),
    ([(0, -1)], "rate"), ([(0,)], r"\(start_ms, rate_per_s\)"),
])
def test_bad_steps_are_user_errors(steps, message):
    with pytest.raises(UserError, match=message):
        Pacer(steps, 0)


def test_a_rate_function_returning_garbage_or_without_an_end_is_a_user_error():
    with pytest.raises(UserError, match="rate function returned"):
        Pacer(lambda t: -3, 0, end_ns=S)
    with pytest.raises(UserError, match="needs an end time"):
        Pacer(lambda t: 0, 0)


class FakeClock:
    """Virtual time: sleeping and working advance it; nothing really waits."""

    def __init__(self, now_ns: int = 0):
        self.now_ns = now_ns
        self.sleeps = 0

    def __call__(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now_ns += max(0, round(seconds * S))


def _drive(rate, cost_ns_for, duration_ms=2_000):
    clock = FakeClock()
    metrics = RunMetrics(0, duration_ms=duration_ms, warmup_ms=0, window_ms=1_000)
    pacer = Pacer(rate, 0, end_ns=duration_ms * MS)
    sends = []

    def start_send(intended_ns, sent_ns):
        sends.append((intended_ns, sent_ns))
        clock.now_ns += cost_ns_for(len(sends))  # the send itself takes this long

    started = asyncio.run(run_open_loop(pacer, start_send, clock_ns=clock, sleep=clock.sleep, metrics=metrics))
    return started, sends, metrics


def test_on_time_sender_sends_at_the_intended_times():
    started, sends, metrics = _drive(1000, lambda n: 10_000)
    assert started == 2000
    assert all(sent == intended for intended, sent in sends)
    assert metrics.aggregates()["publish_delay_ms_max"] == 0.0


def test_a_stalled_sender_shows_up_in_publish_delay_and_no_message_is_skipped():
    # One 300 ms stall (a GC pause, a full socket buffer) at message 500 of a 1000 msgs/s schedule.
    started, sends, metrics = _drive(1000, lambda n: 300 * MS if n == 500 else 10_000)
    assert started == 2000  # open loop: the schedule is not thinned while the sender is stuck
    assert [i for i, _ in sends] == [k * MS for k in range(2000)]
    delays_ms = [(sent - intended) / MS for intended, sent in sends]
    assert max(delays_ms) == pytest.approx(300 - 1, abs=0.1)  # message 501 waited out the stall
    # The backlog is sent back to back (10 us each) until the sender has caught up again.
    late = [d for d in delays_ms if d > 0]
    assert len(late) == pytest.approx(300, abs=5)
    aggregates = metrics.aggregates()
    assert aggregates["publish_delay_ms_max"] == pytest.approx(299, rel=0.002)
    assert aggregates["publish_delay_ms_p95"] > 100  # ~15 % of the messages were late


def test_a_sender_slower_than_the_schedule_falls_further_behind():
    # Each send costs 2 ms against a 1 ms schedule: coordinated omission would hide this by
    # offering 500 msgs/s; open loop keeps all 2000 intended messages and the delay grows.
    started, sends, metrics = _drive(1000, lambda n: 2 * MS, duration_ms=2_000)
    assert started == 2000
    delays = [sent - intended for intended, sent in sends]
    assert delays == sorted(delays)
    assert delays[-1] == pytest.approx(1999 * MS, rel=0.001)
    series = metrics.window_series()
    assert series[0]["publish_delay_count"] == 500 and series[1]["publish_delay_count"] == 500
    assert series[0]["publish_delay_ms_p50"] < series[1]["publish_delay_ms_p50"]
    assert metrics.events_after_end == 1000  # sends that only happened after the run's end


def test_run_open_loop_stops_at_until_and_awaits_backpressure():
    clock = FakeClock()
    pacer = Pacer(100, 0)
    drained = []

    async def send(intended_ns, sent_ns):
        drained.append(intended_ns)
        await clock.sleep(0.001)

    started = asyncio.run(run_open_loop(pacer, send, clock_ns=clock, sleep=clock.sleep, until_ns=S))
    assert started == 100 and drained[-1] == 990 * MS
    assert pacer.peek_ns() == S


def test_overdue_counts_the_backlog_without_moving_the_schedule():
    pacer = Pacer(1000, 0)
    pacer.due(2 * MS)
    assert pacer.overdue(10 * MS) == 8
    assert pacer.overdue(10 * MS, cap=3) == 3
    assert pacer.peek_ns() == 3 * MS and pacer.taken == 3
    assert pacer.overdue(MS) == 0


@given(rate=st.floats(0.5, 200_000), taken=st.integers(0, 50), now_ms=st.integers(0, 3000),
       end_ms=st.one_of(st.none(), st.integers(1, 3000)), cap=st.integers(0, 10**6))
def test_overdue_of_a_constant_rate_is_counted_not_walked_and_agrees_with_walking(rate, taken, now_ms, end_ms, cap):
    pacer = Pacer(rate, 7 * MS, end_ns=None if end_ms is None else 7 * MS + end_ms * MS)
    for _ in range(taken):
        if pacer.peek_ns() is None:
            break
        pacer.take()
    walked = len(copy.copy(pacer).due(now_ms * MS, limit=cap))
    assert pacer.overdue(now_ms * MS, cap=cap) == walked


def test_overdue_far_behind_a_fast_rate_costs_no_walk():
    # a worker offered 20 000 msgs/s that sends 300: a minute behind is 1.2M intended times; the
    # progress report counts them every 500 ms, so the count must not step through them
    pacer = Pacer(20_000, 0)
    started = time.process_time()
    assert pacer.overdue(60 * S, cap=10**9) == 1_200_001
    assert time.process_time() - started < 0.05
