"""The Store API: appends, batches of both kinds, reads, offsets, metadata, versions, names."""
import os
import zlib

import pytest

from store_files_helpers import FixedClock, open_store
from mqbench.broker.formats import configs
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.queues import decode_bcq_unit, decode_cq_unit
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP, SYSFLAG_TX_PREPARED
from mqbench.broker.store.segments import segment_name
from mqbench.codecs.registry import codec_for_type_id, parse_codec
from mqbench.errors import UserError

EXAMPLE_1 = bytes.fromhex(
    "00000061daa320a73610a686000000000000000000000000000000000000000000000000000000000000018bcfe568007f0000010000"
    "30390000018bcfe568017f00000100002a9f0000000000000000000000000000000568656c6c6f01540000")


def example_message():
    return Message(topic="T", body=b"hello", born_timestamp_ms=1_700_000_000_000, born_host=("127.0.0.1", 12345))


def test_plain_commitlog_bytes_match_spec_example_1(tmp_path):
    store = open_store(tmp_path / "s", "v4")
    r = store.append(example_message())
    store.close()
    assert (r.physical_offset, r.queue_offset, r.size_bytes) == (0, 0, 97)
    assert r.msg_ids == ["7F00000100002A9F0000000000000000"]
    data = (tmp_path / "s" / "commitlog" / segment_name(0)).read_bytes()
    assert data[:97] == EXAMPLE_1 and not any(data[97:])
    cq = (tmp_path / "s" / "consumequeue" / "T" / "0" / segment_name(0)).read_bytes()
    assert decode_cq_unit(cq, 0) == (0, 97, 0)


def test_dledger_bytes_match_spec_example_7(tmp_path):
    store = open_store(tmp_path / "s", "v4-dledger")
    r = store.append(example_message(), term=1)
    store.close()
    assert (r.physical_offset, r.index) == (48, 0)
    data = (tmp_path / "s" / "dledger-n0" / "data" / segment_name(0)).read_bytes()
    header = bytes.fromhex("00000001000000910000000000000000000000000000000100000000000000000000000000000000"
                           "0000000000000061")
    record = EXAMPLE_1[:28] + (48).to_bytes(8, "big") + EXAMPLE_1[36:]
    # bodyCrc (bytes 40..44, always 0 in DLedger's files) carries our torn-entry check
    assert data[40:44] == (zlib.crc32(record) & 0x7FFFFFFF).to_bytes(4, "big")
    assert data[:40] + data[44:145] == header[:40] + header[44:] + record and not any(data[145:])
    index = (tmp_path / "s" / "dledger-n0" / "index" / segment_name(0)).read_bytes()
    assert index[:32] == bytes.fromhex("00000001000000000000000000000091" "0000000000000000" "0000000000000001")
    assert (tmp_path / "s" / "dledger-n0" / "checkpoint").read_text() == "endIndex=0\ncommittedIndex=0\n"


def test_single_messages_round_trip_across_segments(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    sent = []
    for i in range(60):   # ~6 KB of records: crosses the 4096-byte segments with a blank
        msg = Message(topic="Orders", queue_id=i % 2, body=os.urandom(i + 1), properties={"TAGS": f"t{i % 3}"})
        r = store.append(msg)
        assert r.queue_offset == i // 2
        sent.append((i % 2, r, msg.body))
    for qid in (0, 1):
        got = store.read_queue("Orders", qid, 0, max_messages=100)
        assert got.status == "FOUND" and got.next_offset == 30 == store.max_offset("Orders", qid)
        want = [(r.queue_offset, r.physical_offset, body) for q, r, body in sent if q == qid]
        assert [(m.queue_offset, m.physical_offset, m.body) for m in got.messages] == want
        assert all(m.store_timestamp_ms == FixedClock().now_ms for m in got.messages)
    store.close()
    seg_dir = tmp_path / "s" / ("commitlog" if "dledger" not in version else "dledger-n0/data")
    assert len(os.listdir(seg_dir)) >= 2


def test_read_limits_and_statuses(tmp_path):
    store = open_store(tmp_path / "s", "v5")
    for _ in range(10):
        store.append(Message(topic="T", body=b"x" * 100))
    r = store.read_queue("T", 0, 3, max_messages=4)
    assert [m.queue_offset for m in r.messages] == [3, 4, 5, 6] and r.next_offset == 7
    r = store.read_queue("T", 0, 0, max_messages=32, max_bytes=400)
    assert len(r.messages) == 2                   # records are 192 bytes each
    r = store.read_queue("T", 0, 0, max_messages=32, max_bytes=1)
    assert len(r.messages) == 1                   # at least one message
    assert store.read_queue("T", 0, 10).status == "NO_MESSAGE"
    assert store.read_queue("T", 0, 11).status == "OFFSET_OVERFLOW"
    assert store.read_queue("T", 5, 0).status == "NO_QUEUE"
    assert (store.min_offset("T", 0), store.max_offset("T", 0)) == (0, 10)
    store.close()


def test_ordinary_batch_is_one_record_per_message(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    store.append(Message(topic="T", body=b"first"))
    items = [BatchItem(b"a", {"KEYS": "k1"}), BatchItem(b"bc", {"KEYS": "k2"}, flag=7)]
    r = store.append_batch("T", 0, items, consolidate=False, properties={"UNIQ_KEY": "U"})
    assert (r.queue_offset, r.message_count, r.record_count) == (1, 2, 2)
    got = store.read_queue("T", 0, 0).messages
    assert [(m.queue_offset, m.body, m.flag) for m in got] == [(0, b"first", 0), (1, b"a", 0), (2, b"bc", 7)]
    if "dledger" in version:   # DLedger never appends the batch properties (spec 4.2)
        assert got[1].properties == {"KEYS": "k1"}
    else:                      # 4.8.0-5.3.3 append them to every record
        assert got[1].properties == {"KEYS": "k1", "UNIQ_KEY": "U"}
    (q1, p1, s1, _), (q2, p2, s2, _) = store.queues.find("T", 0).read_units(1, 2)
    assert (q1, q2, p1, s1 + s2) == (1, 2, r.physical_offset, r.size_bytes)
    assert p2 == p1 + s1 + (48 if "dledger" in version else 0)   # back to back (DLedger: one entry each)
    store.close()


@pytest.mark.parametrize("version", ["v5", "v5-dledger"])
def test_consolidated_batch_is_one_record_with_one_bcq_unit(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    store.append(Message(topic="B", body=b"single"))                  # a BCQ unit of batch size 1
    items = [BatchItem(b"m%d" % i, {"KEYS": f"k{i}"}) for i in range(5)]
    r = store.append_batch("B", 0, items, consolidate=True, properties={"UNIQ_KEY": "U1"})
    assert (r.queue_offset, r.message_count, r.record_count) == (1, 5, 1)
    r2 = store.append_batch("B", 0, items[:2], consolidate=False)       # plain records on a BatchCQ topic
    assert r2.queue_offset == 6
    assert store.max_offset("B", 0) == 8
    record = store.read_message(r.physical_offset, r.size_bytes)
    assert record.sysflag & (SYSFLAG_NEED_UNWRAP | SYSFLAG_INNER_BATCH) == SYSFLAG_NEED_UNWRAP | SYSFLAG_INNER_BATCH
    assert record.properties["INNER_NUM"] == "5" and record.properties["INNER_BASE"] == "1"
    assert record.queue_offset == 1
    got = store.read_queue("B", 0, 0, max_messages=100).messages
    assert [(m.queue_offset, m.body) for m in got] == [(0, b"single")] + [(1 + i, b"m%d" % i) for i in range(5)] + [
        (6, b"m0"), (7, b"m1")]
    assert got[3].properties == {"KEYS": "k2"} and not got[3].sysflag & SYSFLAG_INNER_BATCH
    mid = store.read_queue("B", 0, 3, max_messages=2)
    assert [m.queue_offset for m in mid.messages] == [3, 4] and mid.next_offset == 5
    store.close()
    bcq = (tmp_path / "s" / "batchconsumequeue" / "B" / "0" / segment_name(0)).read_bytes()
    units = [decode_bcq_unit(bcq, i * 46) for i in range(4)]
    assert [(u.base_offset, u.batch_size) for u in units] == [(0, 1), (1, 5), (6, 1), (7, 1)]
    assert units[1].physical_offset == r.physical_offset and units[1].size == r.size_bytes
    assert not (tmp_path / "s" / "consumequeue" / "B").exists()
    store = open_store(tmp_path / "s", version, create=False)
    assert store.max_offset("B", 0) == 8
    assert store.append_batch("B", 0, items, consolidate=True).queue_offset == 8
    store.close()


def test_consolidate_is_refused_where_it_cannot_apply(tmp_path):
    store = open_store(tmp_path / "s5", "v5")
    with pytest.raises(UserError, match="not a BatchCQ topic"):
        store.append_batch("T", 0, [BatchItem(b"a")], consolidate=True)
    with pytest.raises(UserError, match="empty batch"):
        store.append_batch("T", 0, [], consolidate=False)
    store.close()
    store = open_store(tmp_path / "s4", "v4")
    with pytest.raises(UserError, match="v5 store"):
        store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    with pytest.raises(UserError, match="v5 store"):
        store.append_batch("T", 0, [BatchItem(b"a")], consolidate=True)
    store.close()


def test_mixed_compressed_and_plain_bodies(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    bodies = []
    for i, spec in enumerate(["none", "zstd:3", "none", "lz4", "zlib"]):
        raw = (b"order %d " % i) * 200
        codec = parse_codec(spec)
        sysflag = 0 if codec.is_none else SYSFLAG_COMPRESSED | (codec.type_id << 8)
        store.append(Message(topic="T", body=codec.compress(raw), sysflag=sysflag))
        bodies.append(raw)
    got = store.read_queue("T", 0, 0).messages
    out = []
    for m in got:
        if m.sysflag & SYSFLAG_COMPRESSED:
            out.append(codec_for_type_id((m.sysflag >> 8) & 7).decompress(m.body))
        else:
            out.append(m.body)
    assert out == bodies
    store.close()


def test_transaction_half_records_take_no_queue_slot(tmp_path):
    store = open_store(tmp_path / "s", "v5")
    store.append(Message(topic="T", body=b"a"))
    half = store.append(Message(topic="T", body=b"half", sysflag=SYSFLAG_TX_PREPARED))
    assert half.queue_offset == 0
    assert store.append(Message(topic="T", body=b"b")).queue_offset == 1
    assert [m.body for m in store.read_queue("T", 0, 0).messages] == [b"a", b"b"]
    store.close()


def test_topic_config_round_trip(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    cfg = store.create_topic("Orders", read_queue_nums=4, write_queue_nums=4)
    with pytest.raises(UserError, match="already exists"):
        store.create_topic("Orders")
    cfg.perm = 4
    store.update_topic(cfg)
    with pytest.raises(UserError, match="does not exist"):
        store.update_topic(configs.TopicConfig(topic_name="Nope"))
    with pytest.raises(UserError, match="queue count"):
        store.create_topic("Bad", read_queue_nums=0)
    store.close()
    text = (tmp_path / "s" / "config" / "topics.json").read_text()
    assert '"topicName":"Orders"' in text and "\t" in text
    assert configs.parse_topics_json(text).topics["Orders"].perm == 4
    assert (tmp_path / "s" / "config" / "topics.json.bak").exists()
    store = open_store(tmp_path / "s", version, create=False)
    got = store.topic_config("Orders")
    assert (got.read_queue_nums, got.write_queue_nums, got.perm) == (4, 4, 4)
    assert store.topic_config("Missing") is None
    store.close()


def test_consumer_and_delay_offsets_round_trip(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    assert store.query_offset("g1", "T", 0) == -1
    store.commit_offset("g1", "T", 0, 250)
    store.commit_offset("g1", "T", 3, 12)
    store.commit_offset("g2", "%RETRY%g2", 0, 1)
    store.set_delay_offset(3, 17)
    store.flush()
    store.commit_offset("g1", "T", 0, 251)
    store.close()
    cfg = tmp_path / "s" / "config"
    parsed = configs.parse_consumer_offsets_json((cfg / "consumerOffset.json").read_text())
    assert parsed.offsets[("T", "g1")] == {0: 251, 3: 12}
    assert configs.parse_consumer_offsets_json((cfg / "consumerOffset.json.bak").read_text()).offsets[
        ("T", "g1")][0] == 250
    assert "{3:17" in (cfg / "delayOffset.json").read_text()
    store = open_store(tmp_path / "s", version, create=False)
    assert store.query_offset("g1", "T", 0) == 251 and store.query_offset("g1", "T", 3) == 12
    assert store.query_offset("g2", "%RETRY%g2", 0) == 1 and store.delay_offset(3) == 17
    assert store.delay_offset(1) == 0
    store.close()
    (cfg / "consumerOffset.json").write_text("{not json")        # a torn file: the .bak is used
    store = open_store(tmp_path / "s", version, create=False)
    assert store.query_offset("g1", "T", 0) == 250
    store.close()


def test_other_version_and_missing_store_are_refused(tmp_path):
    open_store(tmp_path / "s", "v4").close()
    with pytest.raises(UserError, match="is v4, not v5"):
        open_store(tmp_path / "s", "v5", create=False)
    with pytest.raises(UserError, match="is v4, not v4-dledger"):
        open_store(tmp_path / "s", "v4-dledger", create=True)
    with pytest.raises(UserError, match="no store"):
        open_store(tmp_path / "none", "v4", create=False)
    with pytest.raises(UserError, match="unknown store version"):
        open_store(tmp_path / "x", "v6")
    with pytest.raises(UserError, match="raft mode"):
        open_store(tmp_path / "s", "v4", create=False, raft_mode=True)
    store = open_store(tmp_path / "s", None, create=False)
    assert store.version == "v4"
    with pytest.raises(UserError, match="another process"):
        open_store(tmp_path / "s", "v4", create=False)
    store.close()


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 128, "..", "top ic", "t\0"])
def test_bad_topic_names_never_reach_a_path(tmp_path, name):
    store = open_store(tmp_path / "s", "v5")
    with pytest.raises(UserError):
        store.append(Message(topic=name, body=b"x"))
    with pytest.raises(UserError):
        store.append_batch(name, 0, [BatchItem(b"x")], consolidate=False)
    with pytest.raises(UserError):
        store.read_queue(name, 0, 0)
    with pytest.raises(UserError):
        store.create_topic(name)
    with pytest.raises(UserError):
        store.commit_offset("g", name, 0, 1)
    with pytest.raises(UserError):
        store.commit_offset("../g", "T", 0, 1)
    store.close()
    assert sorted(os.listdir(tmp_path)) == ["s"]
    assert not (tmp_path / "s" / "consumequeue").exists() or os.listdir(tmp_path / "s" / "consumequeue") == []


def test_a_foreign_folder_in_consumequeue_is_reported(tmp_path):
    from mqbench.errors import CorruptDataError
    open_store(tmp_path / "s", "v5").close()
    (tmp_path / "s" / "consumequeue" / "bad name" / "0").mkdir(parents=True)
    with pytest.raises(CorruptDataError, match="not a topic folder"):
        open_store(tmp_path / "s", "v5", create=False)


def test_sync_policy_dispatches_only_durable_messages(tmp_path):
    store = open_store(tmp_path / "s", "v5", flush_policy="sync")
    r = store.append(Message(topic="T", body=b"a"), wait_durable=False)
    assert store.max_offset("T", 0) == 0            # not yet durable, not yet readable
    assert store.group_commit.flushed_offset < r.end_offset
    assert store.wait_durable(r.end_offset) >= r.end_offset
    assert store.max_offset("T", 0) == 1
    syncs = store.group_commit.sync_count
    for _ in range(5):
        store.append(Message(topic="T", body=b"b"), wait_durable=False)
    r = store.append(Message(topic="T", body=b"c"))   # waits: one fdatasync covers all six
    assert store.group_commit.sync_count == syncs + 1
    assert store.max_offset("T", 0) == 7
    store.close()


def test_none_and_interval_policies(tmp_path):
    import time
    store = open_store(tmp_path / "n", "v5", flush_policy="none")
    r = store.append(Message(topic="T", body=b"a"))
    assert store.max_offset("T", 0) == 1                 # readable at once
    assert store.group_commit.flushed_offset < r.end_offset
    store.flush()
    assert store.group_commit.flushed_offset == r.end_offset
    store.close()
    store = open_store(tmp_path / "i", "v5", flush_policy="interval:10ms", background_flush=True)
    r = store.append(Message(topic="T", body=b"a"))
    deadline = time.monotonic() + 5
    while store.group_commit.flushed_offset < r.end_offset and time.monotonic() < deadline:
        time.sleep(0.005)
    assert store.group_commit.flushed_offset == r.end_offset
    store.close()


def test_raft_mode_dispatches_committed_entries_and_truncates_the_rest(tmp_path):
    store = open_store(tmp_path / "s", "v5-dledger", raft_mode=True)
    results = [store.append(Message(topic="T", body=b"m%d" % i), term=1) for i in range(5)]
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert store.max_offset("T", 0) == 0
    store.replicated.commit(2)
    assert [m.body for m in store.read_queue("T", 0, 0).messages] == [b"m0", b"m1", b"m2"]
    store.replicated.truncate_after(2)
    assert store.dledger.last_index == 2
    assert store.append(Message(topic="T", body=b"new"), term=2).queue_offset == 3
    assert store.dledger.term_at(3) == 2
    from mqbench.errors import InvariantViolation
    with pytest.raises(InvariantViolation):
        store.replicated.truncate_after(1)
    # a follower's replicated entry: the leader's record bytes
    leader_record = store.dledger.entry(3)[1]
    store.replicated.truncate_after(2)
    assert store.replicated.append_entry(2, leader_record) == 3
    store.replicated.commit(3)
    assert [m.body for m in store.read_queue("T", 0, 0).messages][-1] == b"new"
    assert store.replicated.append_entry(2, b"", magic=2) == 4          # a leader's no-op: no message
    store.replicated.commit(4)
    assert store.max_offset("T", 0) == 4
    store.close()
    store = open_store(tmp_path / "s", "v5-dledger", create=False, raft_mode=True)
    assert store.dledger.committed_index == 4 and store.dledger.last_index == 4
    assert store.max_offset("T", 0) == 4 and store.dledger.entry(4)[0].magic == 2
    store.close()


def test_a_byte_limit_inside_an_inner_batch_never_skips_a_message(tmp_path):
    store = open_store(tmp_path / "s", "v5")
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    store.append_batch("B", 0, [BatchItem(b"a" * 50), BatchItem(b"b" * 50)], consolidate=True)
    store.append_batch("B", 0, [BatchItem(b"c")], consolidate=True)
    offset, seen = 0, []
    while True:
        got = store.read_queue("B", 0, offset, max_messages=10, max_bytes=60)
        if not got.messages:
            break
        seen += [m.body[:1] for m in got.messages]
        offset = got.next_offset
    assert seen == [b"a", b"b", b"c"]
    store.close()


def test_a_bad_message_in_a_batch_leaves_nothing_behind(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    store.append(Message(topic="T", body=b"ok"))
    bad = BatchItem(b"x", {"K": "v" * 40000})          # properties over 32767 bytes
    with pytest.raises(UserError):
        store.append_batch("T", 0, [BatchItem(b"a"), BatchItem(b"b"), bad], consolidate=False)
    assert store.append(Message(topic="T", body=b"next")).queue_offset == 1
    assert [m.body for m in store.read_queue("T", 0, 0).messages] == [b"ok", b"next"]
    store.close()
    store = open_store(tmp_path / "s", version, create=False)
    assert [m.body for m in store.read_queue("T", 0, 0).messages] == [b"ok", b"next"]
    store.close()


def test_an_asyncio_caller_awaits_durability_in_a_thread(tmp_path):
    import asyncio
    import threading
    store = open_store(tmp_path / "s", "v5", flush_policy="sync")
    loop_thread = threading.get_ident()
    sync_threads = []
    real_sync = store.group_commit._sync_fn

    def recording_sync():
        sync_threads.append(threading.get_ident())
        real_sync()
    store.group_commit._sync_fn = recording_sync

    async def main():
        results = [store.append(Message(topic="T", body=b"m%d" % i), wait_durable=False) for i in range(3)]
        assert store.max_offset("T", 0) == 0
        ticks = 0

        async def ticker():
            nonlocal ticks
            for _ in range(3):
                ticks += 1
                await asyncio.sleep(0)
        await asyncio.gather(store.durable(results[-1].end_offset), ticker())
        return ticks
    assert asyncio.run(main()) == 3
    assert sync_threads and loop_thread not in sync_threads
    assert store.max_offset("T", 0) == 3
    store.close()


@pytest.mark.parametrize("born,stored,topic", [
    (("127.0.0.1", 1), ("127.0.0.1", 2), "T"), (("::1", 1), ("127.0.0.1", 2), "T"),
    (("127.0.0.1", 1), ("::1", 2), "x" * 200), (("::1", 1), ("::1", 2), "Orders")])
def test_record_tail_check_finds_zeroed_topics_and_properties(born, stored, topic):
    from mqbench.broker.formats.record import encode_message
    from mqbench.broker.formats.record_layout import RECORD_END
    from mqbench.broker.formats.record_check import record_verdict

    def valid(rec):
        return record_verdict(rec, 0, len(rec), address=0)[0] == len(rec)

    rec = bytearray(encode_message(Message(topic=topic, body=b"body", properties={"TAGS": "a"},
                                           born_host=born, store_host=stored)))
    assert valid(rec)
    torn = bytearray(rec)
    torn[-1] = 0                                   # last property byte lost
    assert record_verdict(torn, 0, len(torn))[0] == RECORD_END
    torn = bytearray(rec)
    torn[-len(b"TAGS\x01a\x02") - 2 - 1] = 0       # last topic byte lost
    assert record_verdict(torn, 0, len(torn))[0] == RECORD_END
    bare = encode_message(Message(topic=topic, body=b"", born_host=born, store_host=stored))
    assert valid(bare)                             # no properties: nothing to end with
    # a 4.9.8 broker stores the property string without the trailing \x02 (spec 3.5, corrected)
    real = bytearray(rec[:-1])
    real[0:4] = len(real).to_bytes(4, "big")
    real[-len(b"TAGS\x01a") - 2:-len(b"TAGS\x01a")] = len(b"TAGS\x01a").to_bytes(2, "big")
    assert valid(real)
