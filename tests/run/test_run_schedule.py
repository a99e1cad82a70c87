"""Schedules: workers' shares add up to the workload, rates are exact, re-timing loses nothing."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.run.schedule import Schedule
from mqbench.workloads.message import TraceMessage

S = 1_000_000_000
MS = 1_000_000


def messages(count, gap_us=1000, delayed_every=0):
    return [TraceMessage(send_offset_us=i * gap_us, topic="t", body=b"x%d" % i,
                         delay_ms=1000 if delayed_every and i % delayed_every == 0 else 0,
                         delay_level=1 if delayed_every and i % delayed_every == 0 else 0) for i in range(count)]


def drain(schedule):
    out = []
    while schedule.peek_ns() is not None:
        out.append(schedule.take())
    return out


def test_as_recorded_times_are_the_offsets_and_stop_at_the_end():
    schedule = Schedule(iter(messages(100)), 5 * S, 5 * S + 50 * MS)
    taken = drain(schedule)
    assert [t for t, _ in taken] == [5 * S + i * MS for i in range(50)]
    assert [m.body for _, m in taken] == [b"x%d" % i for i in range(50)]


@given(st.integers(1, 5), st.integers(0, 60))
def test_the_workers_shares_are_exactly_the_workload(workers, count):
    source = messages(count)
    seen = []
    for index in range(workers):
        seen += [m.body for _, m in drain(Schedule(iter(source), 0, 10 * S, worker_index=index, workers=workers))]
    assert sorted(seen) == sorted(m.body for m in source)


def test_at_a_rate_the_workers_interleave_on_the_total_rate():
    times = []
    for index in range(2):
        schedule = Schedule(iter(messages(1000)), 0, S, rate=100, worker_index=index, workers=2)
        times += [t for t, _ in drain(schedule)]
    assert sorted(times) == [k * 10 * MS for k in range(100)]


def test_overdue_counts_without_losing_messages():
    schedule = Schedule(iter(messages(100)), 0, S, rate=1000)
    assert schedule.overdue(9 * MS + 1) == 10
    assert schedule.overdue(9 * MS + 1) == 10  # counting again does not move anything
    taken = drain(schedule)
    assert len(taken) == 100 and [m.body for _, m in taken] == [b"x%d" % i for i in range(100)]


def test_set_rate_retimes_what_is_not_due_and_a_pause_keeps_everything():
    schedule = Schedule(iter(messages(50)), 0, 10 * S, rate="max")
    assert schedule.peek_ns() is None and schedule.paused
    schedule.set_rate(100, 0)
    assert schedule.overdue(95 * MS) == 10  # read ahead: messages 0..9 due by 95 ms
    schedule.set_rate(0, 50 * MS)  # pause at 50 ms: messages 0..5 stay due, 6..9 go back
    first = drain(schedule)
    assert [t for t, _ in first] == [k * 10 * MS for k in range(6)]
    assert schedule.paused
    schedule.set_rate(1000, S)
    rest = drain(schedule)
    assert [m.body for _, m in first + rest] == [b"x%d" % i for i in range(50)]
    assert [t for t, _ in rest] == [S + k * MS for k in range(44)]


def test_strip_delays_sends_delayed_messages_undelayed():
    kept = drain(Schedule(iter(messages(10, delayed_every=3)), 0, S))
    stripped = drain(Schedule(iter(messages(10, delayed_every=3)), 0, S, strip_delays=True))
    assert sum(1 for _, m in kept if m.delay_ms) == 4
    assert all(m.delay_ms == 0 and m.delay_level == 0 for _, m in stripped)


@pytest.mark.parametrize("rate", [0, -1, True, "fast"])
def test_bad_rates_are_user_errors(rate):
    with pytest.raises(UserError):
        Schedule(iter(messages(1)), 0, S, rate=rate)


def test_bad_worker_numbers_and_set_rate_without_a_rate_are_user_errors():
    with pytest.raises(UserError):
        Schedule(iter(messages(1)), 0, S, worker_index=2, workers=2)
    with pytest.raises(UserError):
        Schedule(iter(messages(1)), 0, S).set_rate(10, 0)
    schedule = Schedule(iter(messages(1)), 0, S)
    schedule.take()
    with pytest.raises(UserError):
        schedule.take()


def test_a_profile_workload_is_split_the_same_way():
    from mqbench.workloads.source import open_workload

    whole = [m.body for m in itertools.islice(open_workload("orders", 3).messages, 60)]
    halves = []
    for index in range(2):
        schedule = Schedule(open_workload("orders", 3).messages, 0, 10 * S, rate=1000, worker_index=index, workers=2)
        halves += [m.body for _, m in (schedule.take() for _ in range(30))]
    assert sorted(halves) == sorted(whole)


def test_overdue_of_an_endless_workload_at_a_rate_reads_no_message_ahead():
    # a generated profile never ends; counting the backlog must not generate it (each generated
    # message costs ~40-130 µs: a worker far behind a fast rate stalled in its progress report)
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield TraceMessage(send_offset_us=i, topic="t", body=b"x%d" % i)

    schedule = Schedule(endless(), 0, 100 * S, rate=20_000, worker_index=1, workers=4, endless=True)
    first = schedule.take()
    assert schedule.overdue(60 * S, cap=10**9) == 60 * 5_000 - 1   # 5 000/s for this worker; one taken
    assert len(pulled) <= 8
    assert schedule.overdue(60 * S, cap=7) == 7
    assert schedule.take()[0] > first[0] and [m.body for _, m in (first,)] == [b"x1"]


def test_overdue_of_an_endless_workload_counts_what_was_read_ahead_and_returned():
    endless = (TraceMessage(send_offset_us=i, topic="t", body=b"x%d" % i) for i in itertools.count())
    schedule = Schedule(endless, 0, 10 * S, rate=100, endless=True)
    assert schedule.overdue(95 * MS) == 10
    schedule.set_rate(0, 50 * MS)                    # 0..5 stay due, 6..9 go back to the workload
    assert schedule.overdue(S) == 6
    schedule.set_rate(1000, S)
    assert schedule.overdue(S + 9 * MS) == 6 + 10


def test_a_worker_with_its_own_messages_takes_them_all_on_its_share_of_the_rate():
    pulled = []

    def own():
        for i in itertools.count():
            pulled.append(i)
            yield TraceMessage(send_offset_us=0, topic="t", body=b"x%d" % i)

    schedule = Schedule(own(), 0, S, rate=100, worker_index=1, workers=2, endless=True, own_messages=True)
    taken = drain(schedule)
    assert [t for t, _ in taken] == [10 * MS + k * 20 * MS for k in range(50)]   # worker 1 of 2 at 100/s
    assert [m.body for _, m in taken] == [b"x%d" % i for i in range(50)] and len(pulled) <= 51


def test_own_messages_need_a_rate():
    with pytest.raises(UserError, match="own messages"):
        Schedule(iter(messages(3)), 0, S, worker_index=1, workers=2, own_messages=True)


@settings(max_examples=40)
@given(st.sampled_from([None, 900.0, 3000.0]), st.integers(0, 40), st.booleans(),
       st.lists(st.integers(0, 3 * MS), max_size=60))
def test_take_due_is_peek_then_take_when_due(rate, count, own, steps):
    """``take_due(now)`` gives what ``take()`` gives when ``peek_ns() <= now``, else None with
    nothing taken, as recorded and at a rate (own messages or a share), to the schedule's end."""
    if rate is None:
        own = False
    source = messages(count, gap_us=700)
    one, two = (Schedule(iter(source), 5 * S, 5 * S + 20 * MS, rate=rate, workers=1 if own else 2,
                         own_messages=own) for _ in range(2))
    now = 5 * S
    for step in steps:
        now += step
        want = two.take() if two.peek_ns() is not None and two.peek_ns() <= now else None
        assert one.take_due(now) == want
        assert one.taken == two.taken and one.peek_ns() == two.peek_ns()
    assert drain(one) == drain(two)
