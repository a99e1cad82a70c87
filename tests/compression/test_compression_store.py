"""Batch consolidation and compression through the real Store: append on a BatchCQ topic (plain and
compressed whole), read back message by message, mixed with per-message compressed records in one
queue, and damaged compressed bodies that must surface as CorruptDataError naming the place."""
import pytest

from mqbench.broker.formats import compression as comp
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP
from mqbench.broker.store.store import Store
from mqbench.codecs.registry import parse_codec
from mqbench.errors import CorruptDataError, UserError

VERSIONS = ["v5", "v5-dledger"]
CODECS = ["zlib:5", "zstd:3", "lz4", "snappy"]


class Clock:
    def __init__(self):
        self.now_ms = 1_700_000_000_000

    def __call__(self):
        self.now_ms += 1
        return self.now_ms


def open_store(path, version, create=True):
    return Store.open(path, version, create=create, clock_ms=Clock(), background_flush=False,
                      commitlog_segment_bytes=1 << 20)


def batch_items(prefix, n):
    return [BatchItem((f"{prefix}-{i} " * (20 + i)).encode(), {"KEYS": f"{prefix}-{i}", "TAGS": f"t{i % 3}",
                                                                "UNIQ_KEY": f"U{prefix}{i}"}, flag=i)
            for i in range(n)]


def append_client_batch(store, topic, items, codec, **kw):
    """What the broker does with a SEND_BATCH body on a BatchCQ topic (the contract in compression.py)."""
    wire, bits = comp.encode_client_batch(items, codec)
    batch = comp.decode_client_batch(wire, bits)
    return store.append_batch(topic, 0, batch.items, consolidate=True, properties={"UNIQ_KEY": "BATCH"},
                              sysflag=batch.sysflag_bits, inner_body=batch.stored_body, **kw)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("spec", CODECS)
def test_compressed_batch_is_one_record_read_back_message_by_message(tmp_path, version, spec):
    codec = parse_codec(spec)
    store = open_store(tmp_path / "s", version)
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    items = batch_items("a", 40)
    r = append_client_batch(store, "B", items, codec)
    assert (r.queue_offset, r.message_count, r.record_count) == (0, 40, 1)
    record = store.read_message(r.physical_offset, r.size_bytes)
    inner = SYSFLAG_NEED_UNWRAP | SYSFLAG_INNER_BATCH
    assert record.sysflag == inner | comp.sysflag_bits(codec)
    assert record.properties["INNER_NUM"] == "40" and record.properties["INNER_BASE"] == "0"
    plain_bytes = len(comp.encode_client_batch(items, None)[0])
    assert len(record.body) < plain_bytes / 3           # stored compressed, as sent
    got = store.read_queue("B", 0, 0, max_messages=100).messages
    assert [m.queue_offset for m in got] == list(range(40))
    assert [(m.body, m.properties, m.flag) for m in got] == [(i.body, i.properties, i.flag) for i in items]
    assert all(m.sysflag == 0 and m.physical_offset == r.physical_offset for m in got)
    mid = store.read_queue("B", 0, 17, max_messages=5)
    assert [m.queue_offset for m in mid.messages] == [17, 18, 19, 20, 21] and mid.next_offset == 22
    assert mid.messages[0].properties["KEYS"] == "a-17"
    store.close()
    store = open_store(tmp_path / "s", version, create=False)   # recovery re-reads the same record
    assert store.max_offset("B", 0) == 40
    assert [m.body for m in store.read_queue("B", 0, 38).messages] == [items[38].body, items[39].body]
    store.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_compressed_and_uncompressed_messages_mixed_in_one_queue(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    zstd, zlib5 = parse_codec("zstd:3"), parse_codec("zlib:5")
    expected = []                                               # (body as the consumer sees it, properties)

    def single(body, codec, over_bytes):
        stored, bits = comp.compress_body(body, codec, over_bytes)
        store.append(Message(topic="B", body=stored, sysflag=bits, properties={"KEYS": f"s{len(expected)}"}))
        expected.append((body, {"KEYS": f"s{len(expected)}"}))

    single(b"small plain", zlib5, 4096)                         # under the threshold: stored plain
    single(b"{\"order\": 1} " * 400, zlib5, 4096)               # over it: zlib, sysflag 0x1
    for codec in (None, zstd, parse_codec("lz4")):              # whole batches: plain, zstd, lz4
        items = batch_items(f"b{len(expected)}", 7)
        append_client_batch(store, "B", items, codec)
        expected += [(i.body, i.properties) for i in items]
    single(b"tiny", zstd, 0)                                    # threshold 0: even 4 bytes are compressed
    plain = store.append_batch("B", 0, batch_items("p", 3), consolidate=False)  # ordinary records
    expected += [(i.body, i.properties) for i in batch_items("p", 3)]
    assert plain.record_count == 3
    got = store.read_queue("B", 0, 0, max_messages=1000).messages
    assert [m.queue_offset for m in got] == list(range(len(expected))) == list(range(27))
    readable = [comp.decompress_body(m.body, m.sysflag) for m in got]    # what a consumer does
    assert [(body, m.properties) for body, m in zip(readable, got)] == expected
    # per-message compressed records are served as stored: the client decompresses them
    assert got[1].sysflag == SYSFLAG_COMPRESSED and got[1].body != expected[1][0]
    assert got[-4].sysflag == comp.sysflag_bits(zstd) and got[-4].body != b"tiny"
    # reading from inside a compressed batch starts at the asked offset
    assert [m.queue_offset for m in store.read_queue("B", 0, 12, max_messages=3).messages] == [12, 13, 14]
    store.close()


def test_max_bytes_counts_the_plain_bodies_of_a_compressed_batch(tmp_path):
    store = open_store(tmp_path / "s", "v5")
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    items = [BatchItem(b"x" * 1000) for _ in range(10)]
    append_client_batch(store, "B", items, parse_codec("zstd:3"))
    got = store.read_queue("B", 0, 0, max_messages=100, max_bytes=3500)
    assert len(got.messages) == 3 and got.next_offset == 3
    store.close()


def test_compressed_batches_need_a_batchcq_topic_and_their_body(tmp_path):
    store = open_store(tmp_path / "s", "v5")
    items = batch_items("a", 2)
    wire, bits = comp.encode_client_batch(items, parse_codec("zstd:3"))
    batch = comp.decode_client_batch(wire, bits)
    with pytest.raises(UserError, match="not a BatchCQ topic"):
        store.append_batch("T", 0, items, consolidate=True, sysflag=bits, inner_body=batch.stored_body)
    with pytest.raises(UserError, match="consolidate"):
        store.append_batch("T", 0, items, consolidate=False, sysflag=bits, inner_body=batch.stored_body)
    with pytest.raises(UserError, match="compressed"):
        store.append_batch("T", 0, items, consolidate=False, sysflag=bits)
    store.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_compressed_body_that_does_not_decompress_is_named_not_a_traceback(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    store.append(Message(topic="B", body=b"before"))
    items = batch_items("a", 3)
    good = comp.encode_client_batch(items, parse_codec("zstd:3"))[0][comp.ENVELOPE_HEAD_BYTES:]
    damaged = good[:-6] + bytes(6)               # a store writes what it is given; the reader must catch it
    r = store.append_batch("B", 0, items, consolidate=True, sysflag=comp.sysflag_bits(parse_codec("zstd")),
                           inner_body=damaged)
    with pytest.raises(CorruptDataError, match=rf"commitlog inner batch at offset {r.physical_offset}: "
                                               r"compressed body: zstd"):
        store.read_queue("B", 0, 1)
    assert [m.body for m in store.read_queue("B", 0, 0, max_messages=1).messages] == [b"before"]
    store.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_batch_holding_other_than_inner_num_messages_is_refused(tmp_path, version):
    store = open_store(tmp_path / "s", version)
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    items = batch_items("a", 3)
    two = comp.encode_client_batch(items[:2], parse_codec("lz4"))[0][comp.ENVELOPE_HEAD_BYTES:]
    store.append_batch("B", 0, items, consolidate=True, sysflag=comp.sysflag_bits(parse_codec("lz4")),
                       inner_body=two)
    with pytest.raises(CorruptDataError, match="holds 2 messages, its INNER_NUM says '3'"):
        store.read_queue("B", 0, 0)
    store.close()


def test_a_flipped_byte_on_disk_in_a_compressed_batch_names_the_commitlog_offset(tmp_path):
    store = open_store(tmp_path / "s", "v5")
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    r = append_client_batch(store, "B", batch_items("a", 5), parse_codec("zlib:5"))
    store.append(Message(topic="T", body=b"after"))         # the damaged record is not the log's tail
    store.close()
    segment = next((tmp_path / "s" / "commitlog").iterdir())
    data = bytearray(segment.read_bytes())
    data[r.physical_offset + 100] ^= 0xFF        # inside the compressed body: BODYCRC no longer matches
    segment.write_bytes(bytes(data))
    store = open_store(tmp_path / "s", "v5", create=False)
    with pytest.raises(CorruptDataError, match=rf"commitlog at offset {r.physical_offset}: body CRC mismatch"):
        store.read_queue("B", 0, 0)
    store.close()
