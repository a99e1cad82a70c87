"""The pull's C read from the commitlog's tail cache (``_reader.pull_from_tail``) against the Python
loop of ``reader.read_queue_records`` it stands in for: the same answers on the same stores, the
same errors on damaged bytes, and no crash on arbitrary input."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from mqbench import native
from mqbench.broker.formats.record import Message
from mqbench.broker.store import reader
from mqbench.broker.store import store as store_module
from mqbench.broker.store.store import Store
from mqbench.errors import CorruptDataError

_C = native.load("mqbench.broker.store._reader")
needs_c = pytest.mark.skipif(_C is None, reason="accelerators off or not built (MQBENCH_NATIVE=0)")
QUEUES = 5


def _store(root, version: str, tail_bytes: int, segment_bytes: int, seed: int) -> Store:
    rng = random.Random(seed)
    old = store_module.LOG_TAIL_BYTES
    store_module.LOG_TAIL_BYTES = tail_bytes
    try:
        store = Store.open(root, version, create=True, commitlog_segment_bytes=segment_bytes)
    finally:
        store_module.LOG_TAIL_BYTES = old
    store.create_topic("orders", read_queue_nums=QUEUES, write_queue_nums=QUEUES)
    store.create_topic("o", read_queue_nums=QUEUES, write_queue_nums=QUEUES)
    for i in range(400):       # interleaved queues, two topics, IPv4 and IPv6 hosts
        host = ("::1", 7000) if rng.random() < 0.2 else ("10.0.0.1", 7000)
        store.append(Message(topic=rng.choice(("orders", "o")), queue_id=rng.randrange(QUEUES),
                             body=rng.randbytes(rng.randrange(0, 400)), born_host=host,
                             properties={"TAGS": rng.choice("ab"), "KEYS": f"k{i}"}))
    return store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    # a cache that holds everything; ones that wrap (records split by the ring's edge) and drop
    # what lies before a new segment (the log's end of segment leaves a gap)
    made = [_store(tmp_path_factory.mktemp(f"s{i}"), version, tail, segment, i)
            for i, (version, tail, segment) in enumerate([("v5-dledger", 4 << 20, 1 << 20), ("v5-dledger", 9_000, 1 << 16),
                                                          ("v4", 20_000, 1 << 16), ("v4-dledger", 4 << 20, 1 << 20)])]
    yield made
    for store in made:
        store.close()


def _read(store, accelerated: bool, topic, queue_id, offset, count, max_bytes):
    """The pull's read with the C path (where built) or the Python loop only."""
    saved = reader._native
    reader._native = saved if accelerated else None
    try:
        return store.read_queue_records(topic, queue_id, offset, count, max_bytes)
    except CorruptDataError as exc:
        return ("error", str(exc))
    finally:
        reader._native = saved


@needs_c
@settings(max_examples=150, deadline=None)
@given(which=st.integers(0, 3), topic=st.sampled_from(["orders", "o", "none"]), queue_id=st.integers(0, QUEUES),
       back=st.integers(-2, 120), count=st.integers(1, 70), max_bytes=st.integers(1, 30_000))
def test_c_and_python_give_the_same_pull(stores, which, topic, queue_id, back, count, max_bytes):
    store = stores[which]
    offset = max(0, store.max_offset(topic, queue_id) - back)
    c = _read(store, True, topic, queue_id, offset, count, max_bytes)
    assert c == _read(store, False, topic, queue_id, offset, count, max_bytes)


@needs_c
@settings(max_examples=40, deadline=None)
@given(queue_id=st.integers(0, QUEUES - 1), back=st.integers(1, 40), count=st.integers(1, 40),
       flips=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 140), st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_cached_records_are_refused_as_python_refuses_them(stores, queue_id, back, count, flips):
    store = stores[0]
    ring, _, _ = store.log.tail_cache.held()
    saved = bytes(ring)
    offset = max(0, store.max_offset("orders", queue_id) - back)
    units = store.queues.find("orders", queue_id).read_units(offset, count)
    try:
        for which, at, value in flips:     # damage the records' heads and topics where the cache holds them
            _, phys, size, _ = units[which % len(units)]
            ring[(phys + at % size) % len(ring)] = value
        c = _read(store, True, "orders", queue_id, offset, count, 1 << 20)
        assert c == _read(store, False, "orders", queue_id, offset, count, 1 << 20)
    finally:
        ring[:] = saved


@needs_c
@settings(max_examples=150, deadline=None)
@given(ring=st.binary(min_size=0, max_size=300), start=st.integers(-5, 400), span=st.integers(-5, 400),
       units=st.binary(max_size=100), first=st.integers(-3, 1 << 40), topic=st.binary(max_size=130),
       queue_id=st.integers(-(1 << 31), (1 << 31) - 1), max_bytes=st.integers(-1, 1 << 20))
def test_arbitrary_input_gives_none_or_records_inside_the_ring(ring, start, span, units, first, topic, queue_id,
                                                               max_bytes):
    got = _C.pull_from_tail(ring, start, start + span, units, first, topic, queue_id, max_bytes)
    if got is not None:
        body, count, next_offset = got
        assert count >= 1 and next_offset == first + count and len(body) <= len(ring)


@needs_c
def test_a_units_record_at_an_offset_the_ring_does_not_hold_falls_back():
    assert _C.pull_from_tail(bytearray(100), 0, 100, b"\0" * 7 + b"\x90" + b"\0\0\0\x58" + b"\0" * 8, 0,
                             b"t", 0, 1000) is None


@needs_c
def test_recent_records_are_taken_by_the_c_path(stores):
    store = stores[0]
    q = store.queues.find("orders", 1)
    top = store.max_offset("orders", 1)
    taken = reader._from_tail(store.log, *q.raw_units(top - 10, 32), b"orders", 1, 1 << 20)
    assert taken is not None and taken[1:] == (10, top)
    assert _read(store, False, "orders", 1, top - 10, 32, 1 << 20).body == taken[0]


def test_a_negative_body_length_is_named_damage_not_an_index_error(tmp_path):
    store = _store(tmp_path / "s", "v5-dledger", 4 << 20, 1 << 20, 7)
    try:
        q = store.queues.find("orders", 2)
        _, phys, size, _ = q.read_units(store.max_offset("orders", 2) - 1, 1)[0]
        ring, _, _ = store.log.tail_cache.held()
        ring[(phys + 84) % len(ring)] = 0x80          # BODYLEN (two IPv4 hosts) < 0
        with pytest.raises(CorruptDataError):
            store.read_queue_records("orders", 2, store.max_offset("orders", 2) - 1, 1)
    finally:
        store.close()


@needs_c
@pytest.mark.parametrize("field", ["topic", "queue_offset", "queue_id", "size", "magic"])
def test_a_record_that_is_not_the_units_is_refused_by_both(stores, field):
    from mqbench.broker.formats.record_peek import _tail_positions
    store = stores[0]
    ring, _, _ = store.log.tail_cache.held()
    saved = bytes(ring)
    top = store.max_offset("orders", 3)
    _, phys, _, _ = store.queues.find("orders", 3).read_units(top - 2, 1)[0]
    at = {"topic": _tail_positions(ring, phys % len(ring))[0] + 5, "queue_offset": 27, "queue_id": 15,
          "size": 3, "magic": 7}[field]
    try:
        ring[at if field == "topic" else (phys + at) % len(ring)] ^= 1
        c = _read(store, True, "orders", 3, top - 3, 8, 1 << 20)
        assert c[0] == "error" and c == _read(store, False, "orders", 3, top - 3, 8, 1 << 20)
    finally:
        ring[:] = saved
