"""``run.stored`` reads stores by windows (``migrate.scan.summarize``, relaxed) and counts a window
equal to one already counted (another replica's) once: its figures must be exactly those of the
log reader's record-by-record walk (``_walked_tally``, the reference) on every shape a run writes.

Small stores built through the real ``Store``: v4 and v5, plain commitlog and DLedger; single
messages with mqbench's stamps, BatchCQ batches (plain and compressed whole), delayed messages
parked on the delay topics and delivered (``MQBENCH_DELAY_SRC``), metadata records, a property
string that is not ASCII (judged by the reader), several segment files (blanks); replicas that are
copies, a follower that holds fewer records, a damaged record and a torn tail. Each is compared
with the compiled scanner and with the Python one (``MQBENCH_NATIVE=0``'s path).
"""
from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import pytest

from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.compression import sysflag_bits
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.topics import SCHEDULE_TOPIC, TIMER_TOPIC
from mqbench.broker.server.entries import OffsetUpdate, meta_message
from mqbench.broker.store.segment_files import iter_messages
from mqbench.broker.store.store import Store
from mqbench.codecs.registry import parse_codec
from mqbench.migrate import scan
from mqbench.run import stored

ZSTD = parse_codec("zstd:3")
STAMPS = {"mqbRun": "0123abcdef", "mqbIntendedNs": "1234567890123456789"}


def _write(root, version: str, records: int, *, seed: int = 0) -> None:
    batches = not version.startswith("v4")
    with Store.open(root, version, create=True, commitlog_segment_bytes=16 << 10,
                    dledger_index_segment_bytes=32 << 10, flush_policy="none") as store:
        if batches:
            store.create_topic("B", read_queue_nums=2, write_queue_nums=2, attributes={"queue.type": "BatchCQ"})
        store.create_topic("S", read_queue_nums=2, write_queue_nums=2)
        for n in range(records):
            kind = (n + seed) % 9
            stamps = {**STAMPS, "mqbDeliverNs": str(n)} if n % 4 else STAMPS
            if kind == 0 and batches:
                items = [BatchItem(b'{"order":%d,"qty":2}' % i, {"KEYS": f"o{n}-{i}", **stamps}) for i in range(16)]
                store.append_batch("B", n % 2, items, consolidate=True, sysflag=sysflag_bits(ZSTD),
                                   inner_body=ZSTD.compress(encode_batch(items)))
            elif kind == 1 and batches:
                items = [BatchItem(b"p%d" % i, {"KEYS": f"p{n}-{i}", **stamps}) for i in range(1 + n % 7)]
                store.append_batch("B", n % 2, items, consolidate=True)
            elif kind == 2:
                store.append(Message(topic=SCHEDULE_TOPIC if n % 2 else TIMER_TOPIC, body=b"d" * 40, queue_id=0,
                                     properties={"REAL_TOPIC": "S", "REAL_QID": "0", **stamps}))
            elif kind == 3:
                store.append(Message(topic="S", body=b"d" * 40, queue_id=1,
                                     properties={PROPERTY_MQBENCH_DELAY_SOURCE: "SCHEDULE_TOPIC_XXXX:0:1", **stamps}))
            elif kind == 4:
                store.append(meta_message(OffsetUpdate("G", "S", 0, n + 1)))
            elif kind == 5:
                store.append(Message(topic="S", body=b"u" * 30, properties={"KEYS": "caf\u00e9", **stamps}))
            else:
                store.append(Message(topic="S", body=b"y" * (20 + n % 300), queue_id=n % 2,
                                     properties={"KEYS": f"k{n}", "TAGS": "paid", **stamps}))


def _replica(src, dst) -> None:
    """A copy of the store's log and marker (queues are derived and not read; skipped: fast)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("consumequeue", "batchconsumequeue", "index"))


def _log_file_of(root, rec) -> str:
    return os.path.join(root, rec["file"])


def _damage(root, which: int) -> None:
    """Flip a byte in the body of the ``which``-th record (a CRC mismatch: not counted, the walk goes on)."""
    rec = list(iter_messages(str(root)))[which]
    with open(_log_file_of(root, rec), "r+b") as f:
        f.seek(rec["offset"] + 100)          # in the body (an IPv4 record's body starts at 92)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def _cut_after(root, keep: int, garbage: bytes = b"") -> None:
    """Zero the log after the first ``keep`` records (a follower that holds fewer), then ``garbage``."""
    recs = list(iter_messages(str(root)))
    last = recs[keep - 1]
    path = _log_file_of(root, last)
    end = last["offset"] + last["size_bytes"]
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(garbage + bytes(size - end - len(garbage)))
    for rec in recs[keep:]:          # later files: zeroed whole
        other = _log_file_of(root, rec)
        if other != path and os.path.getsize(other):
            with open(other, "r+b") as f:
                f.write(bytes(os.path.getsize(other)))


def _both(stores, batch_topics, user_topics, codec, monkeypatch, python_scan: bool):
    with monkeypatch.context() as m:
        if python_scan:
            m.setattr(stored, "window_scan", SimpleNamespace(
                hop=scan.hop_py, summarize=lambda *a, relaxed: scan.summarize_py(bytes(a[0]), *a[1:], relaxed=relaxed)))
        got = stored.stored_figures(stores, batch_topics, user_topics, codec)
        m.setattr(stored, "_store_tally", stored._walked_tally)
        want = stored.stored_figures(stores, batch_topics, user_topics, codec)
    assert got == want
    return got


@pytest.mark.parametrize("python_scan", [False, True], ids=["native-or-default", "python-scan"])
@pytest.mark.parametrize("version", ["v5-dledger", "v5", "v4-dledger", "v4"])
def test_window_figures_equal_the_walked_ones(tmp_path, monkeypatch, version, python_scan):
    _write(tmp_path / "n0", version, 160)
    _replica(tmp_path / "n0", tmp_path / "n1")                     # a replica byte for byte
    _replica(tmp_path / "n0", tmp_path / "n2")
    _cut_after(tmp_path / "n2", 97)                                # a follower behind
    _write(tmp_path / "m0", version, 60, seed=4)                   # another group
    _damage(tmp_path / "m0", 20)
    _cut_after(tmp_path / "m0", 50, garbage=b"\x7f" * 33)          # a torn tail after the last record
    stores = [("a", tmp_path / "n0"), ("a", tmp_path / "n1"), ("a", tmp_path / "n2"), ("b", tmp_path / "m0"),
              ("b", tmp_path / "missing")]
    figures = _both(stores, {"B"}, {"B", "S"}, ZSTD, monkeypatch, python_scan)
    # the shapes are there: every class, stamps, metadata, several files per log
    assert figures.plain_msgs and figures.parked_msgs and figures.delivered_msgs and figures.meta_records
    assert figures.stamp_bytes > 0
    if not version.startswith("v4"):
        assert max(figures.batch.counts) == 16 and figures.batched_bytes
    assert len(os.listdir(next(p for p in (tmp_path / "n0").rglob("*") if p.name in ("commitlog", "data")))) > 1
    # the follower and the damaged group count less than a whole replica
    single = stored.stored_figures([("a", tmp_path / "n0")], {"B"}, {"B", "S"}, ZSTD)
    assert single.user_records * 2 < figures.user_records < single.user_records * 4


def test_a_window_met_again_is_not_read_again(tmp_path, monkeypatch):
    _write(tmp_path / "n0", "v5-dledger", 40)
    _replica(tmp_path / "n0", tmp_path / "n1")
    calls = []
    real = stored._run_tally
    monkeypatch.setattr(stored, "_run_tally", lambda *a: calls.append(a[0].pos) or real(*a))
    two = stored.stored_figures([("a", tmp_path / "n0"), ("a", tmp_path / "n1")], set(), {"S"})
    one = stored.stored_figures([("a", tmp_path / "n0")], set(), {"S"})
    assert len(calls) == 2 * len(set(calls))        # each run tallied once per call, not per replica
    assert two.user_bytes == 2 * one.user_bytes and two.plain_msgs == one.plain_msgs
