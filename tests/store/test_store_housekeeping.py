"""The store's background housekeeping: what it syncs on its timer, what it leaves alone in memory
durability, that its fsyncs never hold up an append, and the "did these queues grow" counter the
delay service reads on every commit."""
from __future__ import annotations

import asyncio
import os
import threading
import time

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.store.store import Store
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.service import INDEX_CHECKPOINT_MS, DelayService


def _count_syncs(monkeypatch) -> list[str]:
    calls: list[str] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def counted(fd, _real=real, _name=name):
            calls.append(_name)
            return _real(fd)
        monkeypatch.setattr(os, name, counted)
    return calls


def _put_and_commit(store: Store, n: int, group_offset: int) -> None:
    log = store.replicated
    records = [log.prepare_record(Message(topic="T", body=b"m%d" % i, properties={"TAGS": "a"})) for i in range(n)]
    placed = log.append_replicated_batch([(1, record, 1) for record in records])
    log.commit(placed[-1][0])
    store.commit_offset("G", "T", 0, group_offset)


def test_a_memory_mode_store_fsyncs_and_rewrites_nothing_on_its_timer(tmp_path, monkeypatch):
    with Store.open(tmp_path / "s", "v5-dledger", create=True, raft_mode=True, background_flush=False) as store:
        calls = _count_syncs(monkeypatch)
        _put_and_commit(store, 5, 3)             # (creating the files fsyncs their folders)
        calls.clear()
        store._background_flush()                # fsync mode: queues, checkpoint, offsets, DLedger checkpoint
        assert calls
        calls.clear()
        store.sync_on_timer = False              # memory mode, as the broker sets it
        files = [store.root / "checkpoint", store.root / "config" / "consumerOffset.json"]
        before = [path.read_bytes() for path in files]
        for round_ in range(3):
            _put_and_commit(store, 5, 10 + round_)
            store._background_flush()
        assert calls == []
        assert [path.read_bytes() for path in files] == before   # every claim stays what the last sync made true
        # only the commit point a restart starts from is kept up to date (unsynced: a kill -9 keeps it)
        assert b"committedIndex=19" in store.dledger.checkpoint_path.read_bytes()
        assert store.max_offset("T", 0) == 20 and store.query_offset("G", "T", 0) == 12
    # a clean close still makes everything durable
    with Store.open(tmp_path / "s", "v5-dledger", raft_mode=True, background_flush=False) as store:
        assert store.query_offset("G", "T", 0) == 12
        assert store.dledger.last_index == 19


def test_an_append_is_not_held_up_while_the_flusher_syncs(tmp_path, monkeypatch):
    """The flusher blocks in an fdatasync of the consume queue; an append that opens the queue's next
    segment meanwhile must not wait for it (it used to: the segment lock was held over the sync,
    and the append waited for it holding the store's lock)."""
    with Store.open(tmp_path / "s", "v5", create=True, cq_segment_bytes=80, background_flush=False) as store:
        for i in range(3):
            store.append(Message(topic="T", body=b"x%d" % i))
        started, release = threading.Event(), threading.Event()
        real = os.fdatasync

        def slow(fd):
            if threading.current_thread().name == "slow-flusher":
                started.set()
                release.wait(30)     # held until the appends are done: far beyond the bound below
            return real(fd)
        monkeypatch.setattr(os, "fdatasync", slow)
        flusher = threading.Thread(target=store._background_flush, name="slow-flusher")
        flusher.start()
        try:
            assert started.wait(5)
            t0 = time.monotonic()
            for i in range(3, 9):                  # units 4.. open the queue's second and third segments
                store.append(Message(topic="T", body=b"x%d" % i))
            elapsed = time.monotonic() - t0
        finally:
            release.set()
            flusher.join()
        # held up, they wait the flusher's 30 s; not held up, milliseconds, or seconds of the machine's
        # own fsyncs (a new segment) on a loaded disk
        assert elapsed < 10.0, f"appends waited {elapsed:.1f} s for the flusher's fdatasync"
        assert store.max_offset("T", 0) == 9


def test_growth_counts_only_records_dispatched_to_the_watched_topics(tmp_path):
    with Store.open(tmp_path / "s", "v5", create=True, background_flush=False) as store:
        for q in range(50):                       # many queues: reading the counter does not walk them
            store.append(Message(topic="Other", body=b"o", queue_id=q))
        growth = store.queues.watch((SCHEDULE_TOPIC, "W", "W"))
        other = store.queues.watch(("Z",))
        assert growth.count == 0
        store.append(Message(topic="Other", body=b"o"))
        assert growth.count == 0
        store.append_batch("W", 1, [BatchItem(b"a"), BatchItem(b"b"), BatchItem(b"c")], consolidate=False)
        store.append(Message(topic=SCHEDULE_TOPIC, body=b"d", properties={"DELAY": "1"}))
        assert growth.count == 4 and other.count == 0
        store.queues.unwatch(growth)
        store.append(Message(topic="W", body=b"e"))
        assert growth.count == 4
        assert set(store.queues.watched) == {"Z"}


def test_the_delay_index_checkpoints_on_its_timer_only_when_the_store_syncs_on_one(tmp_path):
    with Store.open(tmp_path / "s", "v5-dledger", create=True, raft_mode=True, background_flush=False) as store:
        service = DelayService(store, put=None, clock_ms=lambda: 0, config=DelayConfig())
        asyncio.run(service._open_index())
        try:
            later = INDEX_CHECKPOINT_MS + 1
            assert service._checkpoint_due(later)
            store.sync_on_timer = False
            assert not service._checkpoint_due(later)
            service.index.checkpoint_slots = 0          # the memory bound still checkpoints
            assert service._checkpoint_due(later)
        finally:
            service.index.close()
