"""``mqbench.run.stored``: figures read from the stores themselves (issue 16, findings 2 and 3).

A store written through the real ``Store`` with known records: consolidated batches on a BatchCQ
topic, single messages, and metadata records. The figures must count messages per stored record
(not per request), split user bytes from metadata bytes, and count each broker group's records once.
"""
from __future__ import annotations

from mqbench.broker.server.entries import OffsetUpdate, meta_message
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.record import Message
from mqbench.broker.store.store import Store
from mqbench.run.stored import BatchFigures, stored_figures

DLEDGER_ENTRY_HEADER_BYTES = 48


def _write(root, batches, singles, metas):
    with Store.open(root, "v5-dledger", create=True, commitlog_segment_bytes=1 << 20, flush_policy="none") as store:
        store.create_topic("B", read_queue_nums=2, write_queue_nums=2, attributes={"queue.type": "BatchCQ"})
        store.create_topic("S", read_queue_nums=2, write_queue_nums=2)
        for n, count in enumerate(batches):
            items = [BatchItem(b"x" * 100, {"KEYS": f"k{n}-{i}"}) for i in range(count)]
            store.append_batch("B", n % 2, items, consolidate=True)
        for n in range(singles):
            store.append(Message(topic="S", body=b"y" * 50, queue_id=n % 2))
        for n in range(metas):
            store.append(meta_message(OffsetUpdate("G", "S", 0, n + 1)))



def test_batches_are_counted_per_stored_record_and_metadata_apart(tmp_path):
    for replica in ("n0", "n1"):
        _write(tmp_path / replica, batches=[64, 64, 10], singles=5, metas=7)
    stores = [("broker-a", tmp_path / "n0"), ("broker-a", tmp_path / "n1")]
    figures = stored_figures(stores, {"B"}, {"B", "S"})
    batch = figures.batch.as_dict()
    # one replica per group: 3 records holding 138 messages; the singles are not on a batched topic
    assert (batch["records_total"], batch["msgs_total"]) == (3, 138)
    assert batch["msgs_per_record_p50"] == 64 and batch["msgs_per_record_p99"] == 64
    assert batch["msgs_per_record_mean"] == 46
    assert (figures.user_records, figures.meta_records) == (2 * 8, 2 * 7)   # every replica's bytes count
    single = stored_figures([("broker-a", tmp_path / "n0")], {"B"}, {"B", "S"})
    assert figures.user_bytes == 2 * single.user_bytes and figures.meta_bytes == 2 * single.meta_bytes
    # a batch of 64 bodies of 100 bytes stores more than its bodies, a record far less than 64 records
    assert 64 * 100 < single.user_bytes < 3 * 64 * 100 + 10 * 100 + 5 * 200
    assert 7 * DLEDGER_ENTRY_HEADER_BYTES < single.meta_bytes < 7 * 400


def test_without_batched_topics_every_user_record_counts_once(tmp_path):
    _write(tmp_path / "n0", batches=[], singles=9, metas=1)
    batch = stored_figures([("g", tmp_path / "n0"), ("g", tmp_path / "missing")], set(), {"S"}).batch.as_dict()
    assert batch == {"records_total": 9, "msgs_total": 9, "msgs_per_record_mean": 1.0, "msgs_per_record_p50": 1,
                     "msgs_per_record_p99": 1}


def test_percentiles_are_over_records():
    figures = BatchFigures()
    for _ in range(98):
        figures.add(64)
    figures.add(1)
    figures.add(2)
    assert figures.percentile(0.5) == 64 and figures.percentile(0.01) == 1 and figures.percentile(0.02) == 2
    assert BatchFigures().as_dict()["msgs_per_record_mean"] is None


def test_mqbench_timing_stamps_are_not_billed_to_the_user(tmp_path):
    # The stamps (mqbRun, mqbIntendedNs) are the benchmark's own bytes: counted apart, exactly where
    # properties are plain, by recompressing the batch without them where it is compressed whole.
    from mqbench.broker.formats.compression import sysflag_bits
    from mqbench.codecs.registry import parse_codec

    zstd = parse_codec("zstd:3")
    stamps = {"mqbRun": "0123abcdef", "mqbIntendedNs": "1234567890123456789"}
    stamp_bytes = len("mqbRun\x010123abcdef\x02mqbIntendedNs\x011234567890123456789\x02")

    def write(root, with_stamps):
        extra = stamps if with_stamps else {}
        with Store.open(root, "v5-dledger", create=True, commitlog_segment_bytes=1 << 20, flush_policy="none") as store:
            store.create_topic("B", read_queue_nums=1, write_queue_nums=1, attributes={"queue.type": "BatchCQ"})
            store.create_topic("S", read_queue_nums=1, write_queue_nums=1)
            for n in range(3):
                store.append(Message(topic="S", body=b"y" * 50, properties={"KEYS": f"k{n}", **extra}))
            items = [BatchItem(b'{"order":%d,"sku":"A-1","qty":2}' % i, {"KEYS": f"o{i}", **extra}) for i in range(64)]
            store.append_batch("B", 0, items, consolidate=True, sysflag=sysflag_bits(zstd),
                               inner_body=zstd.compress(encode_batch(items)))
            plain = [BatchItem(b"p%d" % i, {"KEYS": f"p{i}", **extra}) for i in range(8)]
            store.append_batch("B", 0, plain, consolidate=True)

    write(tmp_path / "with", True)
    write(tmp_path / "without", False)
    stamped = stored_figures([("g", tmp_path / "with")], {"B"}, {"B", "S"}, zstd)
    bare = stored_figures([("g", tmp_path / "without")], {"B"}, {"B", "S"}, zstd)
    assert bare.stamp_bytes == 0
    # singles and the plain batch exactly; the compressed batch by recompression (its share is small)
    assert stamped.stamp_bytes > (3 + 8) * stamp_bytes
    assert abs(stamped.user_bytes - bare.user_bytes) <= 16     # what is left is the users' own record
    assert stamped.batched_bytes - bare.batched_bytes <= 16
