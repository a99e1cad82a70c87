"""The Store API the broker calls: one store root, one storage format version.

Opening::

    store = Store.open(root, "v5", create=True, flush_policy="sync")

``Store.open(root, version=None, *, create=False, commitlog_segment_bytes=1 GiB,
cq_segment_bytes=6_000_000, bcq_segment_bytes=13_800_000, dledger_index_segment_bytes=167_772_160,
flush_policy="none", clock_ms=None, store_host=("127.0.0.1", 10911), raft_mode=False,
background_flush=True)``

* ``version`` is checked against the store's marker (``versions.detect_version``): a store of
  another version is refused (UserError). ``create=True`` makes a new store (and writes the marker);
  without it a missing store is a UserError.
* A ``lock`` file (flock) keeps a second process out; an ``abort`` file is created on open and
  removed by ``close``. Recovery (``recovery.py``) always validates the commitlog tail from the
  checkpoint (records by magic, size and CRC), zeroes a torn tail and makes the consume queues agree.
* ``clock_ms`` (a callable returning ms since the epoch) stamps STORETIMESTAMP and born timestamps
  left at 0; it defaults to the wall clock.

Writing (the queue offsets are assigned here, from a table derived from the log):

* ``append(msg, *, term=0, wait_durable=True) -> AppendResult``
* ``append_batch(topic, queue_id, items, *, consolidate, properties=None, flag=0, sysflag=0,
  born_timestamp_ms=0, born_host=..., term=0, wait_durable=True) -> AppendResult``:
  with ``consolidate=True`` on a BatchCQ topic of a v5 store the batch is ONE record (spec 4.4:
  body = the client batch body, sysflag NEED_UNWRAP|INNER_BATCH, ``INNER_NUM``/``INNER_BASE``, one
  BCQ unit); ``consolidate=True`` anywhere else is a UserError. Otherwise one record per message
  (spec 4.2), written together. ``inner_body`` (consolidate only) is the BODY to store instead of
  ``encode_batch(items)``: the batch compressed whole, with the codec's bits in ``sysflag``, as
  ``compression.decode_client_batch`` returns it (``stored_body``, ``sysflag_bits``) after checking
  it decodes to ``items``. A COMPRESSED sysflag without ``inner_body`` is a UserError.
* ``AppendResult.end_offset`` is the log position to make durable. With ``flush_policy="sync"``
  and ``wait_durable=True`` the call returns only after the fdatasync covering it (group commit).
  An asyncio broker passes ``wait_durable=False`` and then ``await store.durable(result.end_offset)``
  (``wait_durable`` in ``asyncio.to_thread``): the fdatasync runs in a thread, the loop keeps serving.

Dispatch point (when appended messages become readable through ``read_queue``):

* ``none`` / ``interval``: at once after the write (RocketMQ's behaviour; a crash may take back
  what was read but not yet flushed).
* ``sync``: after the fdatasync that covers them (a consumer never sees a message that a crash
  could take back).
* ``raft_mode=True`` (DLedger versions): only committed entries; the Raft adapter calls
  ``commit(index)``. Without raft mode a DLedger store commits each entry as it is written.

Reading: ``read_queue(topic, queue_id, offset, max_messages=32, max_bytes=4 MiB) -> ReadResult``
(messages with their queue offsets, inner batches unwrapped into messages ``base+i``, the next
offset, status); ``min_offset``/``max_offset(topic, queue_id)``; ``read_message(physical_offset,
size)``; ``read_queue_records(..., tags=None) -> RecordsRead`` is the pull's read: the stored
record bytes back to back, no decode (``reader.read_queue_records``). The commitlog's newest
``tail_cache.LOG_TAIL_BYTES`` and each consume queue's newest ``QUEUE_TAIL_BYTES`` stay in memory
(``segments.SegmentQueue``'s tail cache), so reads of what was just written need no ``pread``.

Metadata: ``topic_config(name)``, ``create_topic(name, ...)``, ``update_topic(cfg)``,
``commit_offset(group, topic, queue_id, offset)``, ``query_offset(...) -> int (-1 = none)``,
``set_delay_offset(level, offset)``, ``delay_offset(level)``.

Raft (DLedger versions): ``dledger`` (the ``DLedgerLog``) and ``replicated``, the
``ReplicatedCommitLog`` this store owns (None for a plain commitlog): the leader builds the
records it proposes there (``prepare_record``), every replica places its entries there
(``append_replicated_batch``, restamped so that all replicas write the same bytes), and the Raft
adapter moves the commit point there (``commit``, ``truncate_after``); see ``replicated_log``.
It shares this store's lock, queue-offset table and dispatch (``dispatch.Dispatcher``) and record
rules (``record_builder.RecordBuilder``).

``flush()`` makes everything durable (log, queues, checkpoint, offsets); ``close()`` flushes and
removes the abort file. All public methods are thread-safe.

Housekeeping (``background_flush``): once a second (or at the ``interval`` policy's pace) a thread
fdatasyncs the consume queues, then records in the checkpoint how far they are durable, writes the
changed offset files and the DLedger checkpoint (``endIndex``/``committedIndex``), all with fsync.
It takes the store's lock only to read what to write: its fsyncs never hold up an append (nor do a
segment's: ``SegmentQueue.flush`` syncs outside the lock that creating a segment takes).
``sync_on_timer = False`` (a Raft group in ``memory`` durability, set by the broker) turns the
fsyncs off: on its timer the housekeeping only rewrites the DLedger checkpoint, without fsync
(the commit point a restart after a kill -9 starts from; a power cut may leave an older one, which
recovery clamps to the log anyway). Every other file's claim stays what the last real fsync made
true (at open, ``flush()``, ``close()``, a truncation): after a kill -9, recovery re-checks the log
and re-dispatches the queues from there, which takes longer the longer the replica ran since it
opened (as long again as its DLedger log check, which memory mode never shortened: nothing moves
its durable point). The offset files are the Raft group's to persist (``AppliedMark``).
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mqbench.errors import UserError

from . import reader, versions
from .atomic import AbortMarker, StoreLock
from mqbench.broker.formats.batch import BatchItem
from .commitlog import CommitLog
from mqbench.broker.formats.configs import TopicConfig
from .consume_queue import DEFAULT_BCQ_SEGMENT_BYTES, DEFAULT_CQ_SEGMENT_BYTES
from .dispatch import Dispatcher, QueueSet, message_dispatch_info
from .dledger_log import DEFAULT_INDEX_SEGMENT_BYTES, DLedgerCommitLog, DLedgerLog
from .flush import (POLICY_INTERVAL, POLICY_SYNC, GroupCommit, IntervalFlusher, WritesUnavailable, is_resource_error,
                    parse_flush_policy)
from .metadata import Metadata
from mqbench.broker.formats.properties import PROPERTY_INNER_BASE
from mqbench.broker.formats.record import Message, message_id
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from .reader import ReadResult
from .record_builder import RecordBuilder
from .tail_cache import LOG_TAIL_BYTES, QUEUE_TAIL_BYTES
from .replicated_log import ReplicatedCommitLog
from .recovery import CheckpointFile, CheckpointState, commitlog_scan_start, recover_queues
from mqbench.broker.formats.topics import validate_topic

DEFAULT_COMMITLOG_SEGMENT_BYTES = 1 << 30
DEFAULT_STORE_HOST = ("127.0.0.1", 10911)
HOUSEKEEPING_MS = 1000
DLEDGER_SELF_ID = "n0"


@dataclass
class AppendResult:
    physical_offset: int          # of the first record written
    queue_offset: int             # of the first message
    message_count: int
    record_count: int
    size_bytes: int               # all records written
    end_offset: int               # log position to pass to wait_durable
    msg_ids: list[str] = field(default_factory=list)
    index: int | None = None      # DLedger index of the last entry written (DLedger versions)


class Store:
    """One store root (see module doc). Build it with ``Store.open``."""

    @classmethod
    def open(cls, root: str | os.PathLike, version: str | None = None, *, create: bool = False,
             commitlog_segment_bytes: int = DEFAULT_COMMITLOG_SEGMENT_BYTES,
             cq_segment_bytes: int = DEFAULT_CQ_SEGMENT_BYTES, bcq_segment_bytes: int = DEFAULT_BCQ_SEGMENT_BYTES,
             dledger_index_segment_bytes: int = DEFAULT_INDEX_SEGMENT_BYTES, flush_policy: str = "none",
             clock_ms: Callable[[], int] | None = None, store_host: tuple[str, int] = DEFAULT_STORE_HOST,
             raft_mode: bool = False, background_flush: bool = True) -> "Store":
        root = Path(root)
        policy = parse_flush_policy(flush_policy)
        if version is not None and version not in versions.STORE_VERSIONS:
            raise UserError(f"unknown store version {version!r} (one of {', '.join(versions.STORE_VERSIONS)})")
        fresh = not root.exists() or (root.is_dir() and not any(root.iterdir()))
        if fresh:
            if not create:
                raise UserError(f"no store at {root} (pass create to make one)")
            if version is None:
                raise UserError("a new store needs a version")
            root.mkdir(parents=True, exist_ok=True)
            versions.write_marker(str(root), version)
        found = versions.detect_version(str(root))
        if version is not None and found != version:
            raise UserError(f"the store at {root} is {found}, not {version}")
        if raft_mode and not versions.is_dledger(found):
            raise UserError(f"raft mode needs a DLedger store, {root} is {found}")
        return cls(root, found, policy=policy, commitlog_segment_bytes=commitlog_segment_bytes,
                   cq_segment_bytes=cq_segment_bytes, bcq_segment_bytes=bcq_segment_bytes,
                   dledger_index_segment_bytes=dledger_index_segment_bytes,
                   clock_ms=clock_ms or (lambda: time.time_ns() // 1_000_000), store_host=store_host,
                   raft_mode=raft_mode, background_flush=background_flush)

    def __init__(self, root: Path, version: str, *, policy, commitlog_segment_bytes: int, cq_segment_bytes: int,
                 bcq_segment_bytes: int, dledger_index_segment_bytes: int, clock_ms: Callable[[], int],
                 store_host: tuple[str, int], raft_mode: bool, background_flush: bool):
        self.root = root
        self.version = version
        self.policy = policy
        self.clock_ms = clock_ms
        self.store_host = store_host
        self.raft_mode = raft_mode
        self._msg_id_prefix = message_id(store_host, 0)[:-16]   # offsetMsgId = host hex + offset hex
        self._lock = threading.RLock()
        self._closed = False
        self.sync_on_timer = True      # housekeeping fsyncs on its timer (module doc)
        self._lockfile = StoreLock(root)
        try:
            self._abort = AbortMarker(root)
            self.recovered_abnormally = self._abort.was_present
            self.meta = Metadata(root, version, clock_ms, topics_in_background=raft_mode)
            # through self.clock_ms, so a clock assigned to the store later stamps records too
            self.builder = RecordBuilder(version, lambda: self.clock_ms(), store_host, self.meta.is_batch_topic)
            self.checkpoint = CheckpointFile(root, version)
            self.dledger: DLedgerLog | None = None
            if versions.is_dledger(version):
                self.dledger = DLedgerLog(root / f"dledger-{DLEDGER_SELF_ID}",
                                          data_segment_bytes=commitlog_segment_bytes,
                                          index_segment_bytes=dledger_index_segment_bytes,
                                          recover_from=self.checkpoint.state.durable_offset,
                                          tail_cache_bytes=LOG_TAIL_BYTES)
                self.log = DLedgerCommitLog(self.dledger)
            else:
                self.log = CommitLog(root / "commitlog", commitlog_segment_bytes, tail_cache_bytes=LOG_TAIL_BYTES)
            self.queues = QueueSet(root, cq_segment_bytes=cq_segment_bytes, bcq_segment_bytes=bcq_segment_bytes,
                                   tail_cache_bytes=QUEUE_TAIL_BYTES)
            self._recover()
        except BaseException:
            self._lockfile.release()
            raise
        self._abort.create(os.getpid())
        self.group_commit = GroupCommit(self._sync_log, written_offset=self.log.end_offset)
        self.replicated: ReplicatedCommitLog | None = None
        if self.dledger is not None:
            self.replicated = ReplicatedCommitLog(
                self.dledger, self.log, lock=self._lock, dispatcher=self.dispatcher, builder=self.builder,
                queues=self.queues, group_commit=self.group_commit, checkpoint=self.checkpoint,
                check_open=self._check_open, written=self._after_append)
        self._flusher = None
        if background_flush:
            interval = self.policy.interval_ms if self.policy.kind == POLICY_INTERVAL else HOUSEKEEPING_MS
            # the flush thread runs on real time; the injected clock only stamps records
            self._flusher = IntervalFlusher(self._background_flush, interval,
                                            lambda: time.monotonic_ns() // 1_000_000)

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self) -> None:
        ck = self.checkpoint.state
        if isinstance(self.log, CommitLog):
            segs = self.log.segments.segment_starts()
            start = commitlog_scan_start(segs, self.log.segment_size_bytes, ck.durable_offset)
            self.log.recover(start, check_crc=True)
            self.log.segments.flush_from(min(start, self.log.end_offset))
        else:
            if not self.raft_mode:
                self.dledger.set_committed(self.dledger.last_index)
        limit = self._dispatch_limit_unflushed()
        dispatched = ck.dispatched_offset if ck.dispatched_offset is not None else self.log.min_offset
        self.redispatched_from, self.records_redispatched = recover_queues(
            self.queues, self.log.scan, dispatched, limit, self.meta.is_batch_topic)
        self.dispatcher = Dispatcher(self.log, self.queues, self.meta.is_batch_topic, limit)
        self.queues.flush()
        stamp = max(self.log.last_store_timestamp_ms, ck.physic_msg_timestamp_ms)
        self.checkpoint.write(CheckpointState(stamp, stamp, self.log.end_offset, limit), fsync=True)

    def _dispatch_limit_unflushed(self) -> int:
        if self.raft_mode:
            return self.log.committed_end()
        return self.log.end_offset

    # -- durability --------------------------------------------------------------------------

    def _sync_log(self) -> None:
        end = self.log.end_offset
        self.log.flush()
        st = self.checkpoint.state
        self.checkpoint.write(CheckpointState(max(self.log.last_store_timestamp_ms, st.physic_msg_timestamp_ms),
                                              st.logics_msg_timestamp_ms, max(end, st.durable_offset or 0),
                                              st.dispatched_offset))

    def wait_durable(self, offset: int) -> int:
        """Block until every log byte below ``offset`` is fdatasynced (group commit); returns the
        durable offset. Under the sync policy this also makes the covered messages readable."""
        flushed = self.group_commit.wait_durable(offset)
        if self.policy.kind == POLICY_SYNC and not self.raft_mode:
            with self._lock:
                self.dispatcher.dispatch_to(min(flushed, self.log.end_offset))
        return flushed

    async def durable(self, offset: int) -> int:
        """``wait_durable`` for an asyncio caller: the fdatasync runs in a worker thread."""
        return await asyncio.to_thread(self.wait_durable, offset)

    def _flush_queues_and_checkpoint(self) -> None:
        with self._lock:
            dispatched = self.dispatcher.dispatched
            queues = [q for _, q in self.queues.all()]
        for q in queues:
            q.flush()
        st = self.checkpoint.state
        self.checkpoint.write(CheckpointState(st.physic_msg_timestamp_ms, st.physic_msg_timestamp_ms,
                                              st.durable_offset, dispatched))
        self.meta.persist()
        if self.dledger is not None:
            with self._lock:
                values = self.dledger.checkpoint_values()
            self.dledger.save_checkpoint(values)     # its fsyncs outside the lock appends take

    def _background_flush(self) -> None:
        if self.policy.kind == POLICY_INTERVAL:
            self.group_commit.flush()
        if self.sync_on_timer:
            self._flush_queues_and_checkpoint()
        elif self.dledger is not None:
            # the commit point a restart after a kill -9 starts from: the page cache keeps it
            with self._lock:
                values = self.dledger.checkpoint_values()
            self.dledger.save_checkpoint(values, durable=False)

    def flush(self) -> None:
        """Make the log, the queues, the checkpoint and the offsets durable."""
        self.wait_durable(self.log.end_offset)
        self._flush_queues_and_checkpoint()

    def close(self) -> None:
        """Flush everything, release the files and remove the abort marker (a clean shutdown)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._flusher is not None:
            self._flusher.stop()
        self.flush()
        self.meta.close()
        with self._lock:
            self.queues.close()
            self.log.close()
            self.checkpoint.close()
            self._abort.remove()
            self._lockfile.release()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- dispatch ----------------------------------------------------------------------------

    def _after_append(self, end: int) -> None:
        """Every append (ours and ``replicated``'s) ends here, under the lock."""
        self.group_commit.written(end)
        if self.dledger is not None and not self.raft_mode:
            self.dledger.set_committed(self.dledger.last_index)
        if self.policy.kind != POLICY_SYNC and not self.raft_mode:
            self.dispatcher.dispatch_to(end)

    # -- writing -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UserError(f"the store at {self.root} is closed")
        error = self._flusher.error if self._flusher is not None else None
        if error is not None:
            if is_resource_error(error):
                raise WritesUnavailable(f"the store at {self.root} cannot flush ({error.strerror or error}); "
                                        "writes are refused until that passes")
            raise UserError(f"the store at {self.root} stopped flushing: {error}")

    def _assign(self, msg: Message, count: int) -> None:
        if msg.sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            msg.queue_offset = 0   # half/rollback records take no queue slot (spec 3.10)
            return
        msg.queue_offset = self.dispatcher.take((msg.topic, msg.queue_id), count)
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            msg.properties[PROPERTY_INNER_BASE] = str(msg.queue_offset)

    def _write(self, msgs: list[Message], counts: list[int], term: int, wait: bool) -> AppendResult:
        with self._lock:
            self._check_open()
            for m in msgs:
                self.builder.stamp(m)
            saved = self.dispatcher.saved({(m.topic, m.queue_id) for m in msgs})
            for m, n in zip(msgs, counts):
                self._assign(m, n)
            try:
                placed = self.log.append_messages(msgs, term)
            except BaseException:
                self.dispatcher.restore(saved)   # nothing was written: give the offsets back
                raise
            for m, (phys, size) in zip(msgs, placed):
                self.dispatcher.appended(phys + size, message_dispatch_info(m, size))
            end = self.log.end_offset
            self._after_append(end)
        result = AppendResult(
            physical_offset=placed[0][0], queue_offset=msgs[0].queue_offset, message_count=sum(counts),
            record_count=len(msgs), size_bytes=sum(s for _, s in placed), end_offset=end,
            msg_ids=[f"{self._msg_id_prefix}{p:016X}" for p, _ in placed],
            index=self.dledger.last_index if self.dledger is not None else None)
        if wait and self.policy.kind == POLICY_SYNC:
            self.wait_durable(end)
        return result

    def append(self, msg: Message, *, term: int = 0, wait_durable: bool = True) -> AppendResult:
        """Store one message (its queue offset, physical offset and store time are filled in)."""
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            raise UserError("use append_batch(consolidate=True) for inner-batch records")
        return self._write([msg], [1], term, wait_durable)

    def append_batch(self, topic: str, queue_id: int, items: list[BatchItem], *, consolidate: bool,
                     properties: dict[str, str] | None = None, flag: int = 0, sysflag: int = 0,
                     born_timestamp_ms: int = 0, born_host: tuple[str, int] = ("127.0.0.1", 0),
                     term: int = 0, wait_durable: bool = True, inner_body: bytes | None = None) -> AppendResult:
        """Store a client batch (see module doc); ``properties`` are the batch-level properties."""
        msgs, counts = self.builder.batch(topic, queue_id, items, consolidate=consolidate, properties=properties,
                                          flag=flag, sysflag=sysflag, born_timestamp_ms=born_timestamp_ms,
                                          born_host=born_host, inner_body=inner_body)
        return self._write(msgs, counts, term, wait_durable)

    # -- reading -----------------------------------------------------------------------------

    def read_message(self, physical_offset: int, size: int) -> Message:
        """The record at ``physical_offset`` (CorruptDataError if it is not a whole valid record)."""
        return reader.read_record(self.log, physical_offset, size)

    def min_offset(self, topic: str, queue_id: int) -> int:
        q = self.queues.find(topic, queue_id)
        return q.min_offset if q is not None else 0

    def max_offset(self, topic: str, queue_id: int) -> int:
        """The next queue offset to be dispatched (what consumers can read up to)."""
        q = self.queues.find(topic, queue_id)
        return q.max_offset if q is not None else 0

    def read_queue(self, topic: str, queue_id: int, offset: int, max_messages: int = 32,
                   max_bytes: int = 4 << 20) -> ReadResult:
        """Messages from ``offset`` on (see ``reader.read_queue``)."""
        validate_topic(topic)
        with self._lock:
            return reader.read_queue(self.log, self.queues, topic, queue_id, offset, max_messages, max_bytes)

    def read_queue_records(self, topic: str, queue_id: int, offset: int, max_messages: int = 32,
                           max_bytes: int = 4 << 20, tags: set[str] | None = None, *,
                           batches_as_stored: bool = False) -> reader.RecordsRead:
        """The stored records from ``offset`` on, as one pull body (see ``reader.read_queue_records``)."""
        validate_topic(topic)
        with self._lock:
            return reader.read_queue_records(self.log, self.queues, topic, queue_id, offset, max_messages,
                                             max_bytes, tags, batches_as_stored=batches_as_stored)

    def _queue_record(self, topic: str, queue_id: int, queue_offset: int, physical_offset: int,
                      size: int) -> Message:
        return reader.queue_record(self.log, topic, queue_id, queue_offset, physical_offset, size)

    # -- metadata ----------------------------------------------------------------------------

    def topic_config(self, name: str) -> TopicConfig | None:
        return self.meta.topic(name)

    def create_topic(self, name: str, **fields) -> TopicConfig:
        return self.meta.create_topic(name, **fields)

    def update_topic(self, cfg: TopicConfig) -> TopicConfig:
        return self.meta.update_topic(cfg)

    def commit_offset(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        self.meta.commit_offset(group, topic, queue_id, offset)

    def query_offset(self, group: str, topic: str, queue_id: int) -> int:
        return self.meta.query_offset(group, topic, queue_id)

    def raise_offsets(self, offsets: dict[tuple[str, str, int], int]) -> None:
        """``Metadata.raise_offsets``: an offsets snapshot's offsets, each only if greater."""
        self.meta.raise_offsets(offsets)

    def set_delay_offset(self, level: int, offset: int) -> None:
        self.meta.set_delay_offset(level, offset)

    def delay_offset(self, level: int) -> int:
        return self.meta.delay_offset(level)

