"""Restamping (pure and through the store) and the metadata entry format, with Hypothesis."""
from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.errors import CorruptDataError, UserError
from mqbench.broker.server.entries import (META_TOPIC, OffsetsSnapshot, OffsetUpdate, TopicUpdate, decode_meta, encode_meta,
                                           meta_message)
from mqbench.broker.store.raft_storage import APPLIED_FILE, AppliedMark, replica_name, replica_node_id
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.configs import TopicConfig
from mqbench.broker.formats.record import Message, check_record, decode_message, encode_message
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_PREPARED
from mqbench.broker.formats.restamp import restamp_inner_batch, restamp_record
from mqbench.broker.store.store import Store

NAMES = st.text(string.ascii_letters + string.digits + "_-%|", min_size=1, max_size=20)
PROPS = st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8),
                        st.text(string.printable.replace("\x01", "").replace("\x02", ""), max_size=12), max_size=4)
HOSTS = st.sampled_from([("127.0.0.1", 10911), ("10.1.2.3", 1), ("::1", 10911), ("fe80::7", 5)])


@st.composite
def messages(draw):
    return Message(topic=draw(NAMES), body=draw(st.binary(max_size=300)), properties=draw(PROPS),
                   queue_id=draw(st.integers(0, 7)), flag=draw(st.integers(-2**31, 2**31 - 1)),
                   sysflag=draw(st.sampled_from([0, 0, 0, SYSFLAG_TX_PREPARED, 0x8])),
                   born_timestamp_ms=draw(st.integers(0, 2**45)), born_host=draw(HOSTS),
                   store_timestamp_ms=draw(st.integers(0, 2**45)), store_host=draw(HOSTS),
                   queue_offset=draw(st.integers(0, 2**40)), physical_offset=draw(st.integers(0, 2**40)),
                   version=draw(st.sampled_from([0, 1, 2])))


def inner_batch_record(n: int, base: str = "0") -> bytes:
    items = [BatchItem(b"i%d" % k, {"K": str(k)}) for k in range(n)]
    from mqbench.broker.formats.batch import encode_batch
    msg = Message(topic="B", body=encode_batch(items), properties={"INNER_NUM": str(n), "INNER_BASE": base},
                  sysflag=SYSFLAG_INNER_BATCH | 0x40)
    return encode_message(msg)


# -- restamp_record (pure) ---------------------------------------------------------------------

def test_restamp_writes_queueoffset_big_endian_at_byte_20():
    record = encode_message(Message(topic="T", body=b"hello", queue_offset=0))
    out = restamp_record(record, 0x0102030405)
    assert out[20:28] == bytes.fromhex("0000000102030405")
    assert out[:20] == record[:20] and out[28:] == record[28:]
    assert restamp_record(out, 0x0102030405) == out
    assert check_record(out, 0, len(out)) == len(out)


@given(messages(), st.integers(0, 2**62))
def test_restamp_changes_only_the_queue_offset_and_is_idempotent(msg, queue_offset):
    record = encode_message(msg)
    once = restamp_record(record, queue_offset)
    assert restamp_record(once, queue_offset) == once
    assert len(once) == len(record) and once[:20] == record[:20] and once[28:] == record[28:]
    decoded, size = decode_message(once)
    assert size == len(once) and decoded.queue_offset == queue_offset and decoded.body == msg.body
    assert restamp_record(record, msg.queue_offset) == record


@given(st.integers(1, 50), st.integers(0, 10**12))
def test_restamp_of_an_inner_batch_rewrites_inner_base(n, base):
    record = inner_batch_record(n)
    out = restamp_record(record, base)
    decoded, _ = decode_message(out)
    assert decoded.queue_offset == base and decoded.properties["INNER_BASE"] == str(base)
    assert decoded.properties["INNER_NUM"] == str(n) and decoded.body == decode_message(record)[0].body
    assert restamp_record(out, base) == out


@given(st.integers(1, 50), st.integers(0, 10**12), PROPS, HOSTS, st.sampled_from([1, 2]), st.booleans())
def test_restamp_inner_batch_writes_the_bytes_restamp_record_writes(n, base, extra, host, version, base_first):
    items = [BatchItem(b"i%d" % k, {"K": str(k)}) for k in range(n)]
    from mqbench.broker.formats.batch import encode_batch
    ordered = {"INNER_BASE": "0", "INNER_NUM": str(n)} if base_first else {"INNER_NUM": str(n)}
    props = {**ordered, **{k: v for k, v in extra.items() if k not in ("INNER_BASE", "INNER_NUM") and v}}
    record = encode_message(Message(topic="B", body=encode_batch(items), properties=props, born_host=host,
                                    store_host=host, version=version, queue_offset=7,
                                    sysflag=SYSFLAG_INNER_BATCH | 0x40))
    assert restamp_inner_batch(record, base) == (restamp_record(record, base), n)


def test_restamp_inner_batch_leaves_what_does_not_read_back_to_the_decoding_path():
    record = inner_batch_record(3)
    assert restamp_inner_batch(record, 9) == (restamp_record(record, 9), 3)
    props = {"INNER_NUM": "3", "INNER_BASE": "0", "AA": "bbbbbb"}
    from mqbench.broker.formats.batch import encode_batch
    body = encode_batch([BatchItem(b"x")] * 3)
    good = encode_message(Message(topic="B", body=body, properties=props, sysflag=SYSFLAG_INNER_BATCH | 0x40))
    twice = good.replace(b"AA\x01bbbbbb\x02", b"AA\x01b\x02AA\x01b\x02")     # same length, a duplicate name
    assert len(twice) == len(good) and restamp_inner_batch(twice, 9) is None
    no_num = good.replace(b"INNER_NUM\x013", b"INNER_NUM\x01x")
    assert restamp_inner_batch(no_num, 9) is None
    zero = good.replace(b"INNER_NUM\x013", b"INNER_NUM\x010")
    assert restamp_inner_batch(zero, 9) is None


# -- restamping through the store: leader, follower and catch-up write the same bytes ------------

def _store(root: Path) -> Store:
    return Store.open(root, "v5-dledger", create=True, raft_mode=True, background_flush=False,
                      store_host=("127.0.0.1", 10911), clock_ms=lambda: 1_700_000_000_000)


@settings(max_examples=20)      # three stores on disk per example
@given(st.lists(messages(), min_size=1, max_size=12))
def test_every_replica_stamps_the_same_bytes_and_catch_up_is_idempotent(msgs):
    with tempfile.TemporaryDirectory() as tmp:
        leader, follower, late = (_store(Path(tmp) / name) for name in ("a", "b", "c"))
        try:
            proposed = [leader.replicated.prepare_record(m) for m in msgs]
            for record in proposed:
                leader.replicated.append_entry(1, record)
                follower.replicated.append_entry(1, record)           # the leader's bytes as proposed
            for index in range(len(proposed)):
                late.replicated.append_entry(1, leader.dledger.entry(index)[1])   # bytes read back from disk
            ends = leader.dledger.end_pos
            images = [s.dledger.data.read(0, ends) for s in (leader, follower, late)]
            assert images[0] == images[1] == images[2]
            for s in (leader, follower, late):
                s.replicated.commit(len(proposed) - 1)
            expected: dict[tuple[str, int], int] = {}
            for index in range(len(proposed)):
                stored, _ = decode_message(leader.dledger.entry(index)[1])
                if stored.sysflag & 0xC == SYSFLAG_TX_PREPARED:
                    assert stored.queue_offset == 0
                    continue
                key = (stored.topic, stored.queue_id)
                assert stored.queue_offset == expected.get(key, 0)
                expected[key] = stored.queue_offset + 1
            for (topic, queue_id), count in expected.items():
                assert follower.max_offset(topic, queue_id) == late.max_offset(topic, queue_id) == count
        finally:
            for s in (leader, follower, late):
                s.close()


def test_a_damaged_replicated_record_is_refused_and_nothing_is_written(tmp_path):
    store = _store(tmp_path / "s")
    try:
        record = bytearray(store.replicated.prepare_record(Message(topic="T", body=b"abc")))
        record[-10] ^= 0xFF
        with pytest.raises(CorruptDataError):
            store.replicated.append_entry(1, bytes(record))
        torn = store.replicated.prepare_record(Message(topic="T", body=b"abcdef"))[:-3]
        with pytest.raises(CorruptDataError):
            store.replicated.append_entry(1, torn + b"\x00\x00\x00\x00\x00")
        assert store.dledger.last_index == -1
    finally:
        store.close()


# -- metadata entries --------------------------------------------------------------------------

def test_offset_update_body_is_the_documented_json():
    body = encode_meta(OffsetUpdate("G", "T", 1, 42))
    assert body == b'{"group":"G","offset":42,"queueId":1,"reset":false,"topic":"T","type":"offset","v":1}'
    assert decode_meta(body) == OffsetUpdate("G", "T", 1, 42, False)
    msg = meta_message(OffsetUpdate("G", "T", 1, 42, True))
    assert (msg.topic, msg.queue_id, json.loads(msg.body)["reset"]) == (META_TOPIC, 0, True)


def test_topic_update_round_trips():
    cfg = TopicConfig("Orders", read_queue_nums=4, write_queue_nums=8, perm=6, order=True,
                      attributes={"queue.type": "BatchCQ"})
    for mode in ("upsert", "create"):
        assert decode_meta(encode_meta(TopicUpdate(cfg, mode))) == TopicUpdate(cfg, mode)
    with pytest.raises(UserError):
        encode_meta(TopicUpdate(cfg, "merge"))
    with pytest.raises(UserError):
        encode_meta(OffsetUpdate("G", "../x", 0, 1))


@pytest.mark.parametrize("body", [
    b"", b"\xff\xfe", b"[]", b'{"v":2,"type":"offset"}', b'{"v":1,"type":"what"}',
    b'{"group":"G","offset":42,"queueId":1,"reset":false,"topic":"T","type":"offset","v":1} trailing',
    b'{"group":"G","offset":"42","queueId":1,"reset":false,"topic":"T","type":"offset","v":1}',
    b'{"group":"G","offset":-1,"queueId":1,"reset":false,"topic":"T","type":"offset","v":1}',
    b'{"group":"G","offset":1,"queueId":1,"reset":false,"topic":"../x","type":"offset","v":1}',
    b'{"group":"G","offset":1,"queueId":true,"reset":false,"topic":"T","type":"offset","v":1}',
    b'{"group":"G","offset":1,"queueId":1,"reset":false,"topic":"T","type":"offset","v":1,"x":0}',
    b'{"config":{"topicName":"a/b"},"mode":"upsert","type":"topic","v":1}',
    b'{"config":{"topicName":"T","perm":"x"},"mode":"upsert","type":"topic","v":1}',
    b'{"config":{},"mode":"upsert","type":"topic","v":1}',
    b'{"config":{"topicName":"T"},"mode":"merge","type":"topic","v":1}',
])
def test_bad_metadata_bodies_are_corrupt_data(body):
    with pytest.raises(CorruptDataError):
        decode_meta(body)


def test_every_prefix_of_a_body_is_refused():
    body = encode_meta(OffsetUpdate("G", "T", 1, 42))
    for n in range(len(body)):
        with pytest.raises(CorruptDataError):
            decode_meta(body[:n])


@given(st.binary(max_size=200))
def test_decode_meta_fuzz_bytes(body):
    try:
        decode_meta(body)
    except CorruptDataError:
        pass


@given(st.dictionaries(st.sampled_from(["v", "type", "group", "topic", "queueId", "offset", "reset", "mode", "config"]),
                       st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5),
                                 st.dictionaries(st.text(max_size=12), st.integers(-2, 20), max_size=3))))
def test_decode_meta_fuzz_documents(doc):
    try:
        update = decode_meta(json.dumps(doc).encode())
    except CorruptDataError:
        return
    assert decode_meta(encode_meta(update)) == update


# -- glue files --------------------------------------------------------------------------------

def test_replica_names_follow_the_layout():
    assert [replica_name(i) for i in (1, 2, 3)] == ["n0", "n1", "n2"]
    assert replica_node_id("n2") == 3
    with pytest.raises(ValueError):
        replica_node_id("x1")


def test_applied_mark_round_trip_and_damage(tmp_path):
    store = _store(tmp_path / "s")
    try:
        assert AppliedMark(store).index == 0
        AppliedMark(store).save(store, 17)
        assert AppliedMark(store).index == 17
        assert json.loads((tmp_path / "s" / APPLIED_FILE).read_text()) == {
            "schema": "mqbench.raft-applied/1", "appliedIndex": 17}
        for bad in (b"{", b'{"schema":"mqbench.raft-applied/1","appliedIndex":-1}', b'{"appliedIndex":3}'):
            (tmp_path / "s" / APPLIED_FILE).write_bytes(bad)
            for backup in (tmp_path / "s").glob(APPLIED_FILE + ".bak"):
                backup.unlink()
            with pytest.raises(UserError, match="raft-applied.json"):
                AppliedMark(store)
    finally:
        store.close()


def test_raft_storage_serves_recent_entries_exactly_as_stored(tmp_path):
    from mqbench.broker.store.dledger_storage import DLedgerStorage
    from mqbench.broker.raft.types import Entry, EntryKind
    from mqbench.broker.store import raft_storage
    from mqbench.broker.store.raft_storage import RaftLogStorage

    store = _store(tmp_path / "s")
    try:
        storage = RaftLogStorage(store)
        disk = DLedgerStorage(store.dledger.directory, log=store.dledger)   # the files, no cache
        records = [store.replicated.prepare_record(Message(topic="T", body=b"r%d" % n)) for n in range(6)]
        storage.append([Entry(1, 1, b"", EntryKind.NOOP)] + [Entry(2 + n, 1, r) for n, r in enumerate(records)])
        assert storage.entries(1, 8) == disk.entries(1, 8)
        assert [decode_message(e.data)[0].queue_offset for e in storage.entries(2, 8)] == list(range(6))
        # a new leader's entries replace the suffix from index 5 on
        storage.append([Entry(5, 2, records[0]), Entry(6, 2, records[1])])
        assert storage.last_index() == 6 and storage.term(6) == disk.term(6) == 2
        assert storage.entries(1, 7) == disk.entries(1, 7)
        assert [decode_message(e.data)[0].queue_offset for e in storage.entries(2, 7)] == [0, 1, 2, 3, 4]
        old_limit = raft_storage.CACHE_ENTRIES
        raft_storage.CACHE_ENTRIES = 2                 # older entries come from the files
        try:
            storage.append([Entry(7, 2, records[2])])
            assert storage.entries(1, 8) == disk.entries(1, 8)
            assert storage.stored_body(3) == disk.entries(3, 4)[0].data
        finally:
            raft_storage.CACHE_ENTRIES = old_limit
        # a follower given the leader's stored entries keeps them as they are (the same objects),
        # and serves exactly what its files hold
        follower_store = _store(tmp_path / "f")
        try:
            follower = RaftLogStorage(follower_store)
            given = storage.entries(1, 8)
            follower.append(given)
            kept = follower.entries(1, 8)
            assert kept == given and all(a is b for a, b in zip(kept, given))
            assert kept == DLedgerStorage(follower_store.dledger.directory, log=follower_store.dledger).entries(1, 8)
        finally:
            follower_store.close()
    finally:
        store.close()


def test_frame_bytes_is_the_encoded_length():
    from mqbench.broker.raft.types import Entry, EntryKind, Message as RaftMessage, MsgType
    from mqbench.broker.raft.wire import encode_frame, frame_bytes
    for entries in [(), (Entry(1, 1, b""),), (Entry(1, 1, b"x" * 300), Entry(2, 1, b"", EntryKind.NOOP), Entry(3, 2, b"ab"))]:
        m = RaftMessage(MsgType.APP, 1, 2, 3, 1, 0, entries, 0)
        assert frame_bytes(m) == len(encode_frame(m))


def test_damaged_replicated_records_are_refused_whole_or_stored_valid(tmp_path):
    """A follower fed a damaged record (a flipped byte, cut short, trailing bytes) refuses it with
    CorruptDataError and writes nothing, or (a byte in a field no check covers) stores a valid
    record with its own offsets."""
    store = _store(tmp_path / "s")

    @settings(max_examples=100)
    @given(st.data())
    def feed(data):
        record = bytearray(store.replicated.prepare_record(data.draw(messages())))
        kind = data.draw(st.sampled_from(["flip", "cut", "trail"]))
        if kind == "flip":
            at = data.draw(st.integers(0, len(record) - 1))
            record[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            record = record[:data.draw(st.integers(8, len(record) - 1))]
        else:
            record += data.draw(st.binary(min_size=1, max_size=20))
        before = (store.dledger.end_pos, store.dledger.last_index)
        try:
            index = store.replicated.append_entry(1, bytes(record))
        except CorruptDataError:
            assert (store.dledger.end_pos, store.dledger.last_index) == before
            return
        assert kind == "flip"
        pos, _ = store.dledger.entry_span(index)
        stored = store.dledger.entry(index)[1]
        if stored[4:8] in (b"\xda\xa3\x20\xa7", b"\xda\xa3\x20\xab"):
            assert check_record(stored, 0, len(stored)) == len(stored)
            assert decode_message(stored)[0].physical_offset == pos + 48

    try:
        feed()
    finally:
        store.close()


def test_a_record_that_carries_a_higher_queue_offset_keeps_it(tmp_path):
    """A log written elsewhere (a migrated store whose queue starts at 1000) replicates as it is."""
    source, replica = _store(tmp_path / "a"), _store(tmp_path / "b")
    try:
        migrated = encode_message(Message(topic="T", body=b"old", queue_offset=1000, store_timestamp_ms=1,
                                          store_host=("127.0.0.1", 10911)))
        for store in (source, replica):
            store.replicated.append_entry(1, migrated)
            store.replicated.append_entry(1, store.replicated.prepare_record(Message(topic="T", body=b"new")))
            store.replicated.commit(1)
            assert [(m.queue_offset, m.body) for m in store.read_queue("T", 0, 1000).messages] == [
                (1000, b"old"), (1001, b"new")]
        assert source.dledger.entry(0)[1] == replica.dledger.entry(0)[1]
    finally:
        source.close()
        replica.close()


def test_same_entry_ignores_the_placement_fields_and_nothing_else():
    """The follower's conflict check (raft ``same_entry``): the leader's copy of a record (offsets
    0, or stamped) is the same entry as the follower's restamped one; another body is not."""
    from mqbench.broker.raft.types import Entry
    from mqbench.broker.store.raft_storage import RaftLogStorage
    from mqbench.broker.formats.record import set_physical_offset

    sent = encode_message(Message(topic="T", body=b"real", queue_offset=0))
    stored = set_physical_offset(restamp_record(sent, 41), 4096)
    forged = encode_message(Message(topic="T", body=b"fake", queue_offset=0))
    assert RaftLogStorage.same_entry(Entry(3, 1, stored), Entry(3, 1, sent))
    assert RaftLogStorage.same_entry(Entry(3, 1, stored), Entry(3, 1, stored))
    assert not RaftLogStorage.same_entry(Entry(3, 1, stored), Entry(3, 1, forged))
    assert not RaftLogStorage.same_entry(Entry(3, 1, stored), Entry(3, 1, b"garbage"))
    batch = inner_batch_record(3)
    assert RaftLogStorage.same_entry(Entry(3, 1, restamp_record(batch, 7)), Entry(3, 1, batch))
    assert not RaftLogStorage.same_entry(Entry(3, 1, restamp_record(batch, 7)), Entry(3, 1, inner_batch_record(4)))


def test_an_offsets_snapshot_is_the_documented_json_and_round_trips():
    snapshot = OffsetsSnapshot({("G", "T", 0): 5, ("G", "T", 12): 7, ("H", "U", 1): 0})
    body = encode_meta(snapshot)
    assert body == b'{"offsets":{"G":{"T":{"0":5,"12":7}},"H":{"U":{"1":0}}},"type":"offsets","v":1}'
    assert decode_meta(body) == snapshot
    for n in range(len(body)):
        with pytest.raises(CorruptDataError):
            decode_meta(body[:n])
    with pytest.raises(UserError):
        encode_meta(OffsetsSnapshot({}))
    with pytest.raises(UserError):
        encode_meta(OffsetsSnapshot({("G", "../x", 0): 1}))


@pytest.mark.parametrize("body", [
    b'{"offsets":{},"type":"offsets","v":1}',
    b'{"offsets":{"G":{"T":{"x":1}}},"type":"offsets","v":1}',
    b'{"offsets":{"G":{"T":{"0":-1}}},"type":"offsets","v":1}',
    b'{"offsets":{"G":{"T":{"0":true}}},"type":"offsets","v":1}',
    b'{"offsets":{"G":{"T":[1]}},"type":"offsets","v":1}',
    b'{"offsets":{"G":3},"type":"offsets","v":1}',
    b'{"offsets":{"G":{"../x":{"0":1}}},"type":"offsets","v":1}',
    b'{"offsets":{"G":{"T":{"0":1}}},"type":"offsets","v":1,"x":1}',
])
def test_bad_offsets_snapshots_are_corrupt_data(body):
    with pytest.raises(CorruptDataError):
        decode_meta(body)


@given(st.dictionaries(st.tuples(st.sampled_from(["G", "H"]), st.sampled_from(["T", "U"]), st.integers(0, 300)),
                       st.integers(0, 2**63 - 1), min_size=1, max_size=20))
def test_offsets_snapshots_round_trip(offsets):
    assert decode_meta(encode_meta(OffsetsSnapshot(offsets))) == OffsetsSnapshot(offsets)


def test_a_follower_writes_the_leaders_stored_bytes_as_they_are(tmp_path):
    """The leader sends its stored record (``raft.driver``); a follower whose log agrees writes
    that very object: no restamp, no copy, the same bytes on disk."""
    leader, follower = _store(tmp_path / "a"), _store(tmp_path / "b")
    try:
        for body in (b"one", b"two"):
            _, stored = leader.replicated.append_replicated(1, leader.replicated.prepare_record(Message(topic="T", body=body)))
            _, written = follower.replicated.append_replicated(1, stored)
            assert written is stored
        assert leader.dledger.data.read(0, leader.dledger.end_pos) == follower.dledger.data.read(0, follower.dledger.end_pos)
    finally:
        leader.close()
        follower.close()
