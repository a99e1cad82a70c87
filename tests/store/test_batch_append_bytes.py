"""A client batch is built and placed a batch at a time (``RecordBuilder.batch_records``,
``DLedgerLog.append_records``, ``ReplicatedCommitLog``'s runs) and must write exactly the bytes the
per-message path writes: ``batch`` + ``stamp`` + ``encode_message`` per record, then
``restamp_record`` + ``DLedgerLog.append_stored`` per entry (both kept as the reference here)."""
import dataclasses
import random

import pytest

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.record import encode_message
from mqbench.broker.formats.record_layout import SYSFLAG_TX_PREPARED
from mqbench.broker.formats.restamp import restamp_inner_batch, restamp_record
from mqbench.broker.store.dledger_log import DLedgerLog
from mqbench.broker.store.record_builder import RecordBuilder
from mqbench.errors import UserError

from store_files_helpers import replica_store

CLOCK_MS = 1_700_000_000_123


def _items(rng, n):
    out = []
    for i in range(n):
        props = {}
        if rng.random() < 0.6:
            props["TAGS"] = rng.choice(["a", "tag-b", "ünï"])
        if rng.random() < 0.5:
            props["KEYS"] = f"k{i} k{i + 1}"
        if rng.random() < 0.5:
            props["UNIQ_KEY"] = f"{i:032X}"
        out.append(BatchItem(rng.randbytes(rng.choice([0, 1, 128, 700])), props, rng.randrange(-5, 5)))
    return out


def _per_message(builder, topic, queue_id, items, **kw):
    msgs, _ = builder.batch(topic, queue_id, items, consolidate=False, flag=0, **kw)
    for m in msgs:
        builder.stamp(m)
    return [encode_message(m) for m in msgs]


@pytest.mark.parametrize("version", ["v4", "v5", "v4-dledger", "v5-dledger"])
@pytest.mark.parametrize("topic", ["T", "t" * 127])
@pytest.mark.parametrize("born_host", [("10.1.2.3", 5555), ("::1", 7)])
def test_batch_records_are_the_per_message_records(version, topic, born_host):
    builder = RecordBuilder(version, lambda: CLOCK_MS, ("192.168.0.9", 10911), lambda t: False)
    rng = random.Random(f"{version}{topic}{born_host}")
    for born_ts in (0, 1_600_000_000_000):
        items = _items(rng, 20)
        kw = dict(properties={"WAIT": "true", "UNIQ_KEY": "BATCH"}, sysflag=0, born_timestamp_ms=born_ts,
                  born_host=born_host)
        _, built = builder.batch_records(topic, 3, items, **kw)
        assert [r for r, _ in built] == _per_message(builder, topic, 3, items, **kw)


def test_batch_records_refuse_what_the_per_message_path_refuses():
    builder = RecordBuilder("v5-dledger", lambda: CLOCK_MS, ("127.0.0.1", 1), lambda t: False)
    kw = dict(properties=None, sysflag=0, born_timestamp_ms=0, born_host=("127.0.0.1", 1))
    for topic, queue_id, items, sysflag in [("T", 0, [], 0), ("bad topic!", 0, [BatchItem(b"x")], 0),
                                            ("T", -1, [BatchItem(b"x")], 0),
                                            ("T", 0, [BatchItem(b"x")], SYSFLAG_TX_PREPARED),
                                            ("T", 0, [BatchItem(b"x", {"a\x01": "b"})], 0)]:
        with pytest.raises(UserError):
            builder.batch_records(topic, queue_id, items, **{**kw, "sysflag": sysflag})


def _reference_append(log, term, records, queue_offsets):
    return [log.append_stored(term, restamp_record(r, q)) for r, q in zip(records, queue_offsets)]


def test_append_records_writes_the_per_entry_bytes_across_segment_ends(tmp_path):
    """Small data and index segments, so runs cross both kinds of file end; a NOOP between runs."""
    rng = random.Random(7)
    builder = RecordBuilder("v5-dledger", lambda: CLOCK_MS, ("127.0.0.1", 10911), lambda t: False)
    logs = [DLedgerLog(tmp_path / name, data_segment_bytes=4096, index_segment_bytes=32 * 7) for name in "ab"]
    next_offset = 0
    for term in (1, 1, 2, 3):
        _, built = builder.batch_records("T", 1, _items(rng, rng.randrange(1, 30)), properties=None, sysflag=0,
                                         born_timestamp_ms=0, born_host=("127.0.0.1", 2))
        records = [r for r, _ in built]
        offsets = list(range(next_offset, next_offset + len(records)))
        next_offset += len(records)
        new = logs[0].append_records(term, records, offsets)
        old = _reference_append(logs[1], term, records, offsets)
        assert [(i, p, bytes(b)) for i, p, b in new] == [(i, p, bytes(b)) for i, p, b in old]
        for log in logs:
            log.append(term, b"", magic=2)
    for log in logs:
        log.close()
    for sub in ("data", "index"):
        a = sorted((tmp_path / "a" / sub).iterdir())
        b = sorted((tmp_path / "b" / sub).iterdir())
        assert [p.name for p in a] == [p.name for p in b] and len(a) > 1
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))


def test_a_replica_places_a_batch_as_the_per_message_path_did(tmp_path):
    """Leader (its own built records), follower (the leader's stored bytes) and a reference store
    fed the per-message records one entry at a time hold the same log and the same queues."""
    rng = random.Random(3)
    leader, follower, reference = (replica_store(tmp_path / n, CLOCK_MS) for n in ("l", "f", "r"))
    try:
        index = -1
        for queue_id in (0, 1, 0):
            items = _items(rng, 40)
            kw = dict(properties={"WAIT": "true"}, born_timestamp_ms=5, born_host=("127.0.0.1", 9))
            records = [r for r, _ in leader.replicated.prepare_batch_records("T", queue_id, items,
                                                                              consolidate=False, **kw)]
            placed = leader.replicated.append_replicated_batch([(1, r, 1) for r in records])
            again = follower.replicated.append_replicated_batch([(1, b, 1) for _, b in placed])
            # the follower writes the leader's stored bytes unchanged, as the same objects
            assert all(b is s for (_, b), (_, s) in zip(again, placed))
            msgs, _ = RecordBuilder("v5-dledger", lambda: CLOCK_MS, ("127.0.0.1", 10911), lambda t: False).batch(
                "T", queue_id, items, consolidate=False, flag=0, sysflag=0, **kw)
            for m in msgs:
                reference.replicated.append_entry(1, reference.replicated.prepare_record(dataclasses.replace(m)))
            index += len(records)
        end = leader.dledger.end_pos
        assert leader.dledger.data.read(0, end) == follower.dledger.data.read(0, end) \
            == reference.dledger.data.read(0, end)
        for s in (leader, follower, reference):
            s.replicated.commit(index)
        for queue_id, count in ((0, 80), (1, 40)):
            assert leader.max_offset("T", queue_id) == follower.max_offset("T", queue_id) \
                == reference.max_offset("T", queue_id) == count
    finally:
        for s in (leader, follower, reference):
            s.close()


def test_a_run_of_queue_units_is_the_units_put_one_by_one(tmp_path):
    from mqbench.broker.store.consume_queue import ConsumeQueue
    rng = random.Random(5)
    units = [(rng.randrange(1 << 40), rng.randrange(1, 1 << 20), rng.randrange(-(1 << 40), 1 << 40)) for _ in range(50)]
    a, b = ConsumeQueue(tmp_path / "a", 20 * 7), ConsumeQueue(tmp_path / "b", 20 * 7)   # 7 units per file
    for q in (a, b):
        q.put(0, *units[0])
    a.put_run(1, units[1:30])
    a.put_run(10, units[10:50])               # again over written units, then past the end
    for i, unit in enumerate(units[1:], 1):
        b.put(i, *unit)
    assert a.max_offset == b.max_offset == 50
    a.close()
    b.close()
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(names) > 5
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)


@pytest.mark.parametrize("wire", [b"", b"TAGS\x01a\x02KEYS\x01k1 k2\x02", b"TAGS\x01a\x02KEYS\x01k", b"A\x01x\x02A\x01y\x02",
                                  b"A\x01x\x02\x02B\x01y\x02", b"ab\x02A\x01x\x02", b"A\x01\x02B\x01y\x02"])
def test_a_decoded_batch_stores_what_encoding_its_properties_gives(wire):
    """Property strings taken as sent (``wire_properties``) only when re-encoding gives them back."""
    import struct

    from mqbench.broker.formats.batch import decode_batch
    from mqbench.broker.formats.record import encode_properties
    body = b"payload"
    item = struct.pack(">iiiii", 22 + len(body) + len(wire), 0, 0, 7, len(body)) + body + struct.pack(">h", len(wire)) + wire
    [decoded] = decode_batch(item * 1)
    assert (decoded.wire_properties is not None) == (encode_properties(decoded.properties) == wire)
    builder = RecordBuilder("v5-dledger", lambda: CLOCK_MS, ("127.0.0.1", 1), lambda t: False)
    kw = dict(properties=None, sysflag=0, born_timestamp_ms=1, born_host=("127.0.0.1", 2))
    _, built = builder.batch_records("T", 0, [decoded], **kw)
    assert [r for r, _ in built] == _per_message(builder, "T", 0, [BatchItem(decoded.body, decoded.properties, 7)], **kw)



def test_a_replica_places_inner_batches_as_the_decoding_path_did(tmp_path, monkeypatch):
    """BatchCQ: leader and follower place each inner-batch record with only its property string
    rebuilt (``restamp_inner_batch``) and hold exactly the log and BCQ units of a reference replica
    that places the same records through the decoding path (decode, restamp, encode)."""
    from mqbench.broker.store import replicated_log

    fast = []

    def counted(record, queue_offset):
        out = restamp_inner_batch(record, queue_offset)
        fast.append(out is not None)
        return out

    monkeypatch.setattr(replicated_log, "restamp_inner_batch", counted)
    rng = random.Random(11)
    stores = leader, follower, reference = [replica_store(tmp_path / n, CLOCK_MS) for n in ("l", "f", "r")]
    try:
        for s in stores:
            s.create_topic("B", attributes={"queue.type": "BatchCQ"})
        proposed = []
        for n, term in ((1, 1), (5, 1), (64, 2), (3, 2)):
            props = {"WAIT": "true", "UNIQ_KEY": f"B{n}", "KEYS": "a b"} if n != 3 else None
            [(record, count)] = leader.replicated.prepare_batch_records(
                "B", n % 2, _items(rng, n), consolidate=True, properties=props, born_timestamp_ms=5,
                born_host=("::1", 9) if n == 5 else ("10.0.0.1", 9))
            assert count == n
            placed = leader.replicated.append_replicated_batch([(term, record, 1)])
            again = follower.replicated.append_replicated_batch([(term, b, 1) for _, b in placed])
            assert [bytes(b) for _, b in again] == [bytes(b) for _, b in placed]
            proposed.append((term, record))
        assert fast == [True] * 8
        monkeypatch.setattr(replicated_log, "restamp_inner_batch", lambda record, queue_offset: None)
        for term, record in proposed:
            reference.replicated.append_replicated_batch([(term, record, 1)])
        end = leader.dledger.end_pos
        assert leader.dledger.data.read(0, end) == follower.dledger.data.read(0, end) \
            == reference.dledger.data.read(0, end) and reference.dledger.end_pos == end
        last = placed[-1][0]
        for s in stores:
            s.replicated.commit(last)
        for queue_id, count in ((0, 64), (1, 9)):
            got = [[(m.queue_offset, m.body) for m in s.read_queue("B", queue_id, 0, max_messages=100).messages]
                   for s in stores]
            assert got[0] == got[1] == got[2] and [o for o, _ in got[0]] == list(range(count))
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize("born_host", [("10.0.0.1", 9), ("::1", 7)])
def test_a_leaders_inner_batch_record_is_the_message_paths(tmp_path, born_host):
    """``prepare_batch_records(consolidate=True)`` builds the inner-batch record from its fields
    (``RecordBuilder.consolidated_fields`` + ``encode_fields``): the bytes of the Message path
    (``batch`` + ``stamp`` + INNER_BASE placeholder 0 + ``encode_message``), for items, for a
    message count with the body as sent, and for a compressed body; it refuses what that refuses."""
    from mqbench.broker.formats.batch import encode_batch
    from mqbench.broker.formats.properties import PROPERTY_INNER_BASE
    from mqbench.broker.formats.record import encode_properties
    from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED

    rng = random.Random(f"inner{born_host}")
    store = replica_store(tmp_path / "l", CLOCK_MS)
    try:
        store.create_topic("B", attributes={"queue.type": "BatchCQ"})
        builder = RecordBuilder("v5-dledger", lambda: CLOCK_MS, ("127.0.0.1", 10911), lambda t: t == "B")
        for n, props, sysflag, as_count in ((1, None, 0, False), (5, {"WAIT": "true", "TAGS": "t"}, 0, False),
                                            (64, {"KEYS": "a b", "UNIQ_KEY": "U"}, 0, True), (3, None, 0, True),
                                            (7, {"TAGS": "z"}, SYSFLAG_COMPRESSED, False),
                                            (2, {"INNER_NUM": "9", "K": "v"}, 0, True), (2, {"INNER_BASE": "4"}, 0, True)):
            items = _items(rng, n)
            body = encode_batch(items) if sysflag == 0 else rng.randbytes(50)
            kw = dict(properties=props, sysflag=sysflag, born_timestamp_ms=rng.choice([0, 5]), born_host=born_host,
                      inner_body=body if as_count or sysflag else None, flag=rng.randrange(-3, 3))
            [(record, count)] = store.replicated.prepare_batch_records("B", 1, n if as_count else items,
                                                                       consolidate=True, **kw)
            # the batch's property string as sent (encode_properties' bytes) gives the same record
            wire = encode_properties(props or {})
            assert store.replicated.prepare_batch_records("B", 1, n if as_count else items, consolidate=True,
                                                          wire_properties=wire, **kw) == [(record, count)]
            [msg], [expected] = builder.batch("B", 1, n if as_count else items, consolidate=True, **kw)
            builder.stamp(msg)
            msg.properties[PROPERTY_INNER_BASE] = "0"
            assert (record, count) == (encode_message(msg), expected) and count == n
        for topic, queue_id, items, sysflag, inner in [("B", 0, [], 0, None), ("bad topic!", 0, 2, 0, b"x"),
                                                       ("B", -1, [BatchItem(b"x")], 0, None),
                                                       ("T", 0, [BatchItem(b"x")], 0, None),
                                                       ("B", 0, [BatchItem(b"x")], SYSFLAG_TX_PREPARED, None),
                                                       ("B", 0, 2, 0, None), ("B", 0, 2, SYSFLAG_COMPRESSED, b"x"),
                                                       ("B", 0, [BatchItem(b"x")], SYSFLAG_COMPRESSED, None),
                                                       ("B", 0, 0x8000, 0, b"x"),
                                                       ("B", 0, [BatchItem(b"x", {"a\x01": "b"})], 0, None)]:
            with pytest.raises(UserError):
                store.replicated.prepare_batch_records(topic, queue_id, items, consolidate=True, properties=None,
                                                       sysflag=sysflag, inner_body=inner)
    finally:
        store.close()
