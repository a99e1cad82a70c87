"""Helpers shared by the store-files tests: small segment sizes, a fixed clock, a store built
with known content, and the checks recovery must pass."""
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.store.consume_queue import BatchConsumeQueue
from mqbench.broker.store.dispatch import CQ_DIR
from mqbench.broker.formats.record import Message
from mqbench.broker.store.segments import segment_name
from mqbench.broker.store.store import Store

SMALL = dict(commitlog_segment_bytes=4096, cq_segment_bytes=200, bcq_segment_bytes=460,
             dledger_index_segment_bytes=320)
T0_MS = 1_700_000_000_001


class FixedClock:
    def __init__(self, now_ms: int = T0_MS):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def open_store(path, version, *, create=True, flush_policy="none", **kw):
    args = dict(SMALL, clock_ms=FixedClock(), background_flush=False)
    args.update(kw)
    return Store.open(path, version, create=create, flush_policy=flush_policy, **args)


def replica_store(root: Path, now_ms: int, *, batch_topic: str | None = None) -> Store:
    """A replica's store as the replicated-log tests open it: v5-dledger in Raft mode, default
    segment sizes, no background flush, store host 127.0.0.1:10911, the clock fixed at ``now_ms``;
    ``batch_topic`` (if given) is created as a BatchCQ topic."""
    store = Store.open(root, "v5-dledger", create=True, raft_mode=True, background_flush=False,
                       store_host=("127.0.0.1", 10911), clock_ms=FixedClock(now_ms))
    if batch_topic is not None:
        store.create_topic(batch_topic, attributes={"queue.type": "BatchCQ"})
    return store


def queue_files(root: Path, dirs: tuple[str, ...] = (CQ_DIR,)) -> dict[str, bytes]:
    """Every queue file under ``root``'s ``dirs`` (relative path -> bytes), to compare two stores."""
    return {str(p.relative_to(root)): p.read_bytes() for kind in dirs
            for p in sorted((root / kind).rglob("*")) if p.is_file()}



SEG = 4096
VERSIONS = ["v5", "v5-dledger"]


@pytest.fixture
def fast_dir(tmp_path):
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else str(tmp_path)
    d = Path(tempfile.mkdtemp(prefix="mqbench-recovery-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def data_dir(root: Path, version: str) -> Path:
    return root / ("dledger-n0/data" if "dledger" in version else "commitlog")


def span(version: str, result) -> tuple[int, int]:
    """[start, end) of the record's bytes in the log, with its DLedger entry header."""
    start = result.physical_offset - (48 if "dledger" in version else 0)
    return start, result.physical_offset + result.size_bytes


def build(root: Path, version: str, rng: random.Random, checkpoint_after: int | None = None):
    """A store with single messages on T/0 and T/1, then a consolidated batch on B/0, then one last
    message on T/1. Returns (expected messages, spans of the records, early checkpoint bytes)."""
    store = open_store(root, version)
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    expected = []    # (topic, queue, queue offset, body, record end)
    spans = []
    early = None
    for i in range(30):
        qid = i % 2
        body = rng.randbytes(rng.randrange(1, 120))
        r = store.append(Message(topic="T", queue_id=qid, body=body, properties={"TAGS": "a"}))
        spans.append(span(version, r))
        expected.append(("T", qid, r.queue_offset, body, spans[-1][1]))
        if checkpoint_after == i:
            store.flush()
            early = (root / "checkpoint").read_bytes()
    items = [BatchItem(rng.randbytes(20), {"KEYS": f"k{i}"}) for i in range(4)]
    r = store.append_batch("B", 0, items, consolidate=True, properties={"UNIQ_KEY": "u"})
    spans.append(span(version, r))
    for i, item in enumerate(items):
        expected.append(("B", 0, r.queue_offset + i, item.body, spans[-1][1]))
    body = b"last message"
    r = store.append(Message(topic="T", queue_id=1, body=body))
    spans.append(span(version, r))
    expected.append(("T", 1, r.queue_offset, body, spans[-1][1]))
    store.close()
    return expected, spans, early


def zero_from(directory: Path, start: int, end: int) -> None:
    """Make log bytes [start, end) zero, across segment files."""
    pos = start
    while pos < end:
        seg = pos - pos % SEG
        n = min(end, seg + SEG) - pos
        with open(directory / segment_name(seg), "r+b") as f:
            f.seek(pos - seg)
            f.write(b"\0" * n)
        pos += n


def crash_marker(root: Path) -> None:
    (root / "abort").write_text("12345")


def check_store(root: Path, version: str, expected, cut: int):
    """Reopen after a crash and check what the module doc promises."""
    store = open_store(root, version, create=False)
    try:
        assert store.recovered_abnormally
        survivors = [e for e in expected if e[4] <= cut]
        for topic, qid in {(e[0], e[1]) for e in expected}:
            want = [(e[2], e[3]) for e in survivors if (e[0], e[1]) == (topic, qid)]
            got = store.read_queue(topic, qid, 0, max_messages=1000, max_bytes=1 << 30)
            assert [(m.queue_offset, m.body) for m in got.messages] == want, (topic, qid, cut)
            assert store.max_offset(topic, qid) == (want[-1][0] + 1 if want else 0)
        assert_queues_agree(store)
        end = store.log.end_offset
        assert end == max([e[4] for e in survivors], default=0) or end % SEG == 0
        tail = store.log.read(end, SEG - end % SEG) if end % SEG else b""
        assert not any(tail), "bytes after the recovered end must be zero"
        # appends continue at the right offsets
        nxt = store.max_offset("T", 1)
        assert store.append(Message(topic="T", queue_id=1, body=b"after")).queue_offset == nxt
        assert store.read_queue("T", 1, nxt).messages[0].body == b"after"
    finally:
        store.close()


def assert_queues_agree(store):
    """Every queue unit points at a valid record of that topic/queue/offset, and no record in the
    log lacks its unit."""
    seen = set()
    for (topic, qid), q in store.queues.all():
        if isinstance(q, BatchConsumeQueue):
            for unit in q.read_units(0, q.count - q.first_unit):
                store._queue_record(topic, qid, unit.base_offset, unit.physical_offset, unit.size)
                seen.add(unit.physical_offset)
        else:
            for qoff, phys, size, _ in q.read_units(q.min_offset, q.max_offset - q.min_offset):
                store._queue_record(topic, qid, qoff, phys, size)   # CorruptDataError if it is not
                seen.add(phys)
    in_log = {phys for phys, _, _ in store.log.scan(store.log.min_offset, None)}
    assert in_log == seen, (f"{len(in_log - seen)} records without a queue unit, "
                            f"{len(seen - in_log)} units without a record")


def read_log(directory: Path, start: int, end: int) -> bytes:
    out = b""
    pos = start
    while pos < end:
        seg = pos - pos % SEG
        n = min(end, seg + SEG) - pos
        out += (directory / segment_name(seg)).read_bytes()[pos - seg:pos - seg + n]
        pos += n
    return out


def intact_end(spans, original: bytes, base: int, cut: int) -> int:
    """Where the intact records end after zeroing from ``cut``: a record whose zeroed bytes were
    zeros already (a record without properties ends with the length 0000) is not torn."""
    for start, end in spans:
        if start < cut < end and not any(original[cut - base:end - base]):
            return end
    return cut


