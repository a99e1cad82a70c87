"""``ConsumerDriver.take`` (a received batch counted in a few loops and one ``record_consumes``)
gives the same totals, metrics (every window's encoded histograms and counters), queue gaps and
duplicate memory as the per-message steps it replaced: ``read_stamp``, ``seen_before`` and
``record_consume`` for each message, on random batches (other runs' traffic, unparsable stamps,
delayed messages early and late, repeated ids also within a batch, no UNIQ_KEY, redeliveries,
several queues, batches across window edges and the warm-up)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.broker.formats.properties import PROPERTY_UNIQ_KEY
from mqbench.broker.formats.record import encode_properties
from mqbench.client.messages import ReceivedMessage
from mqbench.run.consumer_driver import ConsumerDriver, RecentIds
from mqbench.run.stamps import PROPERTY_DELIVER_NS, PROPERTY_INTENDED_NS, PROPERTY_RUN, read_stamp

START_NS = 10_000_000_000
SPEC = {"run_id": "r1", "duration_ms": 4, "warmup_ms": 1, "window_ms": 2}
MEASURE_NS = START_NS + 1_000_000

_stamp = st.one_of(
    st.tuples(st.just("r1"), st.integers(0, 30_000_000).map(str), st.none()),
    st.tuples(st.just("r1"), st.integers(0, 30_000_000).map(str), st.integers(-2_000_000, 2_000_000)),
    st.tuples(st.sampled_from(["r0", "r1"]), st.sampled_from(["", "x1", None]), st.none()),   # foreign
    st.tuples(st.just("r1"), st.just("5"), st.just("")))                                       # bad deliver
_message = st.tuples(_stamp, st.sampled_from(["a", "b", "c", None]), st.integers(0, 3),
                     st.sampled_from(["t1", "t2"]), st.integers(0, 1), st.binary(max_size=20), st.booleans())
_batch = st.tuples(st.integers(START_NS, START_NS + 7_000_000), st.lists(_message, min_size=1, max_size=8))


def _received(now, stamp, uniq, reconsume, topic, queue_id, body, as_text):
    run, intended, deliver = stamp
    properties = {PROPERTY_RUN: run}
    if intended is not None:
        properties[PROPERTY_INTENDED_NS] = intended
    if deliver is not None:
        properties[PROPERTY_DELIVER_NS] = deliver if isinstance(deliver, str) else str(now - deliver)
    if uniq is not None:
        properties[PROPERTY_UNIQ_KEY] = uniq
    return ReceivedMessage(topic, "b0", queue_id, 0, body,
                           encode_properties(properties).decode() if as_text else properties,
                           0, 0, ("127.0.0.1", 1), ("127.0.0.1", 10911), 100 * queue_id, 0, reconsume)


def _per_message(driver, batch, now, group, seen):
    """The receive loop's body before ``take`` (one call of each step per message)."""
    totals, last_ns = driver.totals, driver._last_ns
    for message in batch:
        stamp = read_stamp(message.properties, "r1")
        if stamp is None:
            totals.foreign += 1
            continue
        intended_ns, deliver_ns = stamp
        size = len(message.body)
        duplicate = seen.seen_before(message.msg_id)
        queue = (group, message.topic, message.broker_name, message.queue_id)
        last = last_ns.get(queue)
        last_ns[queue] = now
        driver.metrics.record_consume(intended_ns, now, size, deliver_at_ns=deliver_ns,
                                      redelivered=message.reconsume_times > 0, duplicate=duplicate,
                                      gap_ns=None if last is None else now - last)
        if duplicate:
            continue
        totals.consumed += 1
        totals.consumed_bytes += size
        if deliver_ns is None:
            totals.consumed_undelayed += 1
        else:
            totals.consumed_delayed += 1


def _driver():
    driver = ConsumerDriver(dict(SPEC), lambda _: None)
    driver.begin(START_NS)
    return driver


@settings(max_examples=30, deadline=None)
@given(st.lists(_batch, max_size=8), st.integers(1, 6))
def test_take_counts_a_batch_as_one_step_per_message_did(batches, window):
    old, new = _driver(), _driver()
    old_seen, new_seen = RecentIds(window), RecentIds(window)
    now = START_NS
    for offset, messages in batches:
        now = max(now, offset)          # receive times do not go back
        old_batch = [_received(now, *m) for m in messages]
        new_batch = [_received(now, *m) for m in messages]
        _per_message(old, old_batch, now, "g", old_seen)
        new.take(new_batch, now, "g", new_seen)
        assert new.totals == old.totals
        assert new._last_ns == old._last_ns
        assert (new_seen._new, new_seen._old) == (old_seen._new, old_seen._old)
    assert new.metrics.to_dict() == old.metrics.to_dict()


def test_seen_among_is_seen_before_in_turn():
    ids = ["a", "b", "a", "c", "d", "e", "a", "b", "f", "f"]
    one, many = RecentIds(3), RecentIds(3)
    expected = [i for i, msg_id in enumerate(ids) if one.seen_before(msg_id)]
    assert many.seen_among(ids) == expected == [2, 6, 7, 9]
    assert (many._new, many._old) == (one._new, one._old)


def test_the_longest_gap_of_a_batch_of_several_queues():
    old, new = _driver(), _driver()
    old_seen, new_seen = RecentIds(), RecentIds()
    stamp = ("r1", str(MEASURE_NS), None)
    steps = [(MEASURE_NS, [(0, "t1")]), (MEASURE_NS + 100_000, [(1, "t2"), (0, "t2")]),
             (MEASURE_NS + 900_000, [(0, "t1"), (1, "t2"), (0, "t2"), (0, "t1")]),
             (MEASURE_NS + 2_500_000, [(1, "t2"), (0, "t1"), (1, "t1")])]
    for now, queues in steps:
        messages = [(stamp, None, 0, topic, queue_id, b"x", False) for queue_id, topic in queues]
        _per_message(old, [_received(now, *m) for m in messages], now, "g", old_seen)
        new.take([_received(now, *m) for m in messages], now, "g", new_seen)
    assert new.metrics.to_dict() == old.metrics.to_dict()
    assert new.metrics.windows[0].counters["consume_gap_max_us"] == 900
