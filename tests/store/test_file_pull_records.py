"""``Store.read_queue_records``: a pull body made of the stored record bytes themselves."""
import pytest

from store_files_helpers import open_store
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.record import Message, decode_message, encode_message
from mqbench.broker.store import reader
from mqbench.errors import CorruptDataError


@pytest.fixture(params=["v4", "v5", "v4-dledger", "v5-dledger"])
def version(request):
    return request.param


def _records(body: bytes) -> list:
    out, pos = [], 0
    while pos < len(body):
        msg, size = decode_message(body, pos)
        out.append((msg, body[pos:pos + size]))
        pos += size
    return out


def _stored(store, topic, queue_id, offset, count) -> bytes:
    q = store.queues.find(topic, queue_id)
    return b"".join(store.log.read(p, s) for _, p, s, _ in q.read_units(offset, count))


def test_the_body_is_the_stored_records_with_dledger_framing_left_out(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    for i in range(10):
        store.append(Message(topic="T", queue_id=i % 2, body=f"m{i}".encode(), properties={"TAGS": f"t{i % 3}"}),
                     term=1)
    store.append_batch("T", 0, [BatchItem(b"b%d" % i, {"UNIQ_KEY": f"{i:032X}"}) for i in range(4)],
                       consolidate=False, term=1)
    got = store.read_queue_records("T", 0, 1, 32)
    assert (got.status, got.count, got.next_offset, got.min_offset, got.max_offset) == ("FOUND", 8, 9, 0, 9)
    assert got.body == _stored(store, "T", 0, 1, 32)
    assert b"".join(encode_message(m) for m in store.read_queue("T", 0, 1, 32).messages) == got.body
    assert [m.queue_offset for m, _ in _records(got.body)] == list(range(1, 9))
    # limits: at least one message, then within max_messages and max_bytes
    assert store.read_queue_records("T", 0, 0, 3).count == 3
    one = store.read_queue_records("T", 0, 0, 32, max_bytes=1)
    assert one.count == 1 and one.next_offset == 1
    assert store.read_queue_records("T", 0, 9).status == "NO_MESSAGE"
    assert store.read_queue_records("T", 0, 12).status == "OFFSET_OVERFLOW"
    assert store.read_queue_records("T", 7, 0).status == "NO_QUEUE"
    store.close()


def test_tags_filter_exactly_and_count_what_they_skip(tmp_path):
    store = open_store(tmp_path / "s", "v5-dledger")
    tags = ["a", "b", None, "a", "Aa", "BB"]   # "Aa" and "BB" share Java's hashCode (2112)
    for i, tag in enumerate(tags):
        store.append(Message(topic="T", body=b"x%d" % i, properties={"TAGS": tag} if tag else {}), term=1)
    got = store.read_queue_records("T", 0, 0, 32, tags={"a", "BB"})
    assert [m.queue_offset for m, _ in _records(got.body)] == [0, 3, 5]
    assert (got.count, got.skipped, got.next_offset) == (3, 3, 6)
    none = store.read_queue_records("T", 0, 1, 2, tags={"zz"})
    assert (none.status, none.count, none.skipped, none.next_offset) == ("NO_MESSAGE", 0, 2, 3)
    store.close()


def test_runs_are_read_once_and_other_entries_between_records_are_left_out(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s", "v5-dledger", raft_mode=True)
    idx = []
    for i in range(6):
        record = store.replicated.prepare_record(Message(topic="T", body=b"r%d" % i))
        idx.append(store.replicated.append_entry(1, record))
        store.replicated.append_entry(1, b"metadata entry %d" % i)     # not a record: passed over by the queue
    store.replicated.commit(idx[-1] + 1)
    reads = []
    real_read = store.log.read
    monkeypatch.setattr(store.log, "read", lambda pos, size: reads.append(size) or real_read(pos, size))
    accelerated = store.read_queue_records("T", 0, 0, 32)     # the C path (where built) slices the tail cache
    assert accelerated.count == 6 and (len(reads) == 0 or reader._native is None)
    reads.clear()
    monkeypatch.setattr(reader, "_native", None)              # the Python loop: one read per run
    got = store.read_queue_records("T", 0, 0, 32)
    assert got.count == 6 and len(reads) == 1 and got == accelerated
    assert got.body == _stored(store, "T", 0, 0, 32)
    store.close()


def test_a_unit_that_points_elsewhere_is_damage(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    for i in range(3):
        store.append(Message(topic="T", body=b"m%d" % i), term=1)
    for _ in range(2):
        store.append(Message(topic="U", body=b"other"), term=1)
    q = store.queues.find("T", 0)
    _, phys, size, code = q.read_units(0, 3)[1]
    other = store.queues.find("U", 0).read_units(0, 2)[1]     # queue 0 offset 1 as well, another topic
    q.segments.write(1 * 20, (other[1]).to_bytes(8, "big") + other[2].to_bytes(4, "big") + code.to_bytes(8, "big"))
    with pytest.raises(CorruptDataError, match="T/0@1: it points at a record of topic 'U'"):
        store.read_queue_records("T", 0, 0, 32)
    q.segments.write(1 * 20, (phys + 1).to_bytes(8, "big") + size.to_bytes(4, "big") + code.to_bytes(8, "big"))
    with pytest.raises(CorruptDataError, match="T/0@1"):
        store.read_queue_records("T", 0, 0, 32)
    store.close()


def test_an_inner_batch_is_handed_out_unwrapped(tmp_path):
    store = open_store(tmp_path / "s", "v5-dledger")
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    store.append_batch("B", 0, [BatchItem(b"i%d" % i, {"TAGS": "x" if i % 2 else "y"}) for i in range(5)],
                       consolidate=True, term=1)
    got = store.read_queue_records("B", 0, 1, 32)
    msgs = [m for m, _ in _records(got.body)]
    assert [(m.queue_offset, m.body) for m in msgs] == [(i, b"i%d" % i) for i in range(1, 5)]
    assert not any(m.sysflag & 0xC0 for m in msgs)
    tagged = store.read_queue_records("B", 0, 0, 32, tags={"x"})
    assert (tagged.count, tagged.skipped) == (2, 3)
    store.close()


def test_inner_batches_as_stored_give_the_client_what_the_unwrapped_records_give(tmp_path):
    """``batches_as_stored``: the BatchCQ queue's records as stored (RocketMQ 5's pull), whole
    batches within the message bound, counting messages from the offset on; mqbench's client
    decodes them to the messages the unwrapped answer holds (below the offset left out); a
    tag filter or another client gets the unwrapped records as before."""
    from mqbench.client.messages import decode_pulled

    store = open_store(tmp_path / "s", "v5-dledger")
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    for n in (5, 3, 4):
        store.append_batch("B", 0, [BatchItem(b"i%d" % i, {"TAGS": "x" if i % 2 else "y"}) for i in range(n)],
                           consolidate=True, term=1)
    store.append(Message(topic="B", body=b"single"), term=1)          # one plain record: a unit of 1
    units = store.queues.find("B", 0).read_units(0, 8)
    for offset, wanted in ((0, 32), (1, 32), (6, 32), (2, 6), (2, 7), (2, 1), (12, 5), (13, 5)):
        stored = store.read_queue_records("B", 0, offset, wanted, batches_as_stored=True)
        plain = store.read_queue_records("B", 0, offset, 32)
        ahead = [u for u in units if u.base_offset + u.batch_size > offset]
        records = [store.log.read(u.physical_offset, u.size) for u in ahead]
        if stored.status != "FOUND":
            assert (offset, stored.status, plain.status) == (13, "NO_MESSAGE", "NO_MESSAGE")
            continue
        k = next(k for k in range(1, len(records) + 1) if b"".join(records[:k]) == stored.body)   # whole records
        assert k == 1 or stored.count <= wanted
        assert k == len(records) or stored.count + ahead[k].batch_size > wanted   # all the bound lets in
        got = [(m.queue_offset, m.body) for m in decode_pulled(stored.body, "b") if m.queue_offset >= offset]
        expect = [(m.queue_offset, m.body) for m in decode_pulled(plain.body, "b")]
        assert len(got) == stored.count and got == expect[:len(got)]
        assert stored.next_offset == offset + stored.count
    tagged = store.read_queue_records("B", 0, 0, 32, tags={"x"}, batches_as_stored=True)
    assert not any(m.sysflag & 0xC0 for m, _ in _records(tagged.body)) and tagged.skipped
    store.close()


def test_far_apart_records_are_read_apart(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s", "v5", commitlog_segment_bytes=1 << 20)
    store.append(Message(topic="T", body=b"first"))
    store.append(Message(topic="U", body=bytes(reader.RUN_GAP_BYTES_MAX + 1)))   # another queue's big record
    store.append(Message(topic="T", body=b"second"))
    reads = []
    real_read = store.log.read
    monkeypatch.setattr(store.log, "read", lambda pos, size: reads.append(size) or real_read(pos, size))
    got = store.read_queue_records("T", 0, 0, 32)
    assert got.count == 2 and len(reads) == 2 and max(reads) < reader.RUN_GAP_BYTES_MAX
    store.close()
