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
size)``.

Metadata: ``topic_config(name)``, ``create_topic(name, ...)``, ``update_topic(cfg)``,
``commit_offset(group, topic, queue_id, offset)``, ``query_offset(...) -> int (-1 = none)``,
``set_delay_offset(level, offset)``, ``delay_offset(level)``.

Raft (DLedger versions): ``dledger`` (the ``DLedgerLog``), ``append_entry(term, body, *, magic=1,
restamp=True) -> index`` (a replicated entry, on the leader and on followers alike;
``append_replicated(term, body, *, magic=1) -> (index, stored body)`` is the same with restamping,
returning the bytes as written), ``commit(index)``, ``truncate_after(index)``. A replicated record is built by the leader with ``prepare_record(msg)`` /
``prepare_batch_records(...)`` (validated, store time and host stamped, queue and physical offsets
left as placeholders) and gets its offsets when ``append_entry`` writes it: QUEUEOFFSET (and
INNER_BASE of an inner batch) from this store's queue-offset table (or the record's own value when
that is higher, as in a log migrated from elsewhere), PHYSICALOFFSET from the entry position
(``restamp_record``). Every replica holds the same log prefix, so every replica writes the
same bytes; restamping a record that already carries the right values changes nothing.

``flush()`` makes everything durable (log, queues, checkpoint, offsets); ``close()`` flushes and
removes the abort file. All public methods are thread-safe.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mqbench.errors import UserError

from . import reader, versions
from .atomic import AbortMarker, StoreLock
from mqbench.broker.formats.batch import BatchItem, encode_batch
from .commitlog import CommitLog
from mqbench.broker.formats.configs import TopicConfig
from .consume_queue import DEFAULT_BCQ_SEGMENT_BYTES, DEFAULT_CQ_SEGMENT_BYTES
from .dispatch import QueueSet, dispatch_info, dispatch_record, message_dispatch_info
from .dledger_log import DEFAULT_INDEX_SEGMENT_BYTES, DLedgerCommitLog, DLedgerLog
from .flush import (POLICY_INTERVAL, POLICY_SYNC, GroupCommit, IntervalFlusher, WritesUnavailable, is_resource_error,
                    parse_flush_policy)
from .metadata import Metadata
from mqbench.broker.formats.record import (
    SYSFLAG_COMPRESSED,
    SYSFLAG_INNER_BATCH,
    SYSFLAG_NEED_UNWRAP,
    SYSFLAG_TX_MASK,
    SYSFLAG_TX_PREPARED,
    SYSFLAG_TX_ROLLBACK,
    Message,
    message_id,
)
from .reader import ReadResult
from .store_raft import RaftHooks
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


class Store(RaftHooks):
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
        self._lockfile = StoreLock(root)
        try:
            self._abort = AbortMarker(root)
            self.recovered_abnormally = self._abort.was_present
            self.meta = Metadata(root, version, clock_ms)
            self.checkpoint = CheckpointFile(root, version)
            self.dledger: DLedgerLog | None = None
            if versions.is_dledger(version):
                self.dledger = DLedgerLog(root / f"dledger-{DLEDGER_SELF_ID}",
                                          data_segment_bytes=commitlog_segment_bytes,
                                          index_segment_bytes=dledger_index_segment_bytes,
                                          recover_from=self.checkpoint.state.durable_offset)
                self.log = DLedgerCommitLog(self.dledger)
            else:
                self.log = CommitLog(root / "commitlog", commitlog_segment_bytes)
            self.queues = QueueSet(root, cq_segment_bytes=cq_segment_bytes, bcq_segment_bytes=bcq_segment_bytes)
            self._recover()
        except BaseException:
            self._lockfile.release()
            raise
        self._abort.create(os.getpid())
        self.group_commit = GroupCommit(self._sync_log, written_offset=self.log.end_offset)
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
        self._dispatched = limit
        self._reset_pending()
        self._rebuild_queue_table()
        self.queues.flush()
        stamp = max(self.log.last_store_timestamp_ms, ck.physic_msg_timestamp_ms)
        self.checkpoint.write(CheckpointState(stamp, stamp, self.log.end_offset, self._dispatched), fsync=True)

    def _rebuild_queue_table(self) -> None:
        """Next queue offsets: the queues' ends, then the records written but not yet dispatched."""
        self._next_offset = self.queues.max_offsets()
        for _, record, _ in self.log.scan(self._dispatched, None):
            self._note_offsets(dispatch_info(record, where="commitlog"))

    def _note_offsets(self, info) -> None:
        if info.gets_unit:
            key = (info.topic, info.queue_id)
            self._next_offset[key] = max(self._next_offset.get(key, 0), info.queue_offset + info.inner_num)

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
                self._dispatch_to(min(flushed, self.log.end_offset))
        return flushed

    async def durable(self, offset: int) -> int:
        """``wait_durable`` for an asyncio caller: the fdatasync runs in a worker thread."""
        return await asyncio.to_thread(self.wait_durable, offset)

    def _flush_queues_and_checkpoint(self) -> None:
        with self._lock:
            dispatched = self._dispatched
            queues = [q for _, q in self.queues.all()]
        for q in queues:
            q.flush()
        st = self.checkpoint.state
        self.checkpoint.write(CheckpointState(st.physic_msg_timestamp_ms, st.physic_msg_timestamp_ms,
                                              st.durable_offset, dispatched))
        self.meta.persist()
        if self.dledger is not None:
            with self._lock:
                self.dledger.save_checkpoint()

    def _background_flush(self) -> None:
        if self.policy.kind == POLICY_INTERVAL:
            self.group_commit.flush()
        self._flush_queues_and_checkpoint()

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

    def _dispatch_to(self, limit: int) -> None:
        """Dispatch every record that ends at or below ``limit``: from the records appended by this
        process (kept in ``_pending``, no decode needed) or, below ``_pending_from``, by a scan."""
        if limit <= self._dispatched:
            return
        if self._dispatched < self._pending_from:
            stop = min(limit, self._pending_from)
            for _, record, _ in self.log.scan(self._dispatched, stop):
                dispatch_record(self.queues, dispatch_info(record, where="commitlog"), self.meta.is_batch_topic)
            self._dispatched = stop
        pending = self._pending
        while pending and pending[0][0] <= limit:
            # dropped only once written: a dispatch that failed (disk full) is tried again
            dispatch_record(self.queues, pending[0][1], self.meta.is_batch_topic)
            pending.popleft()
        self._dispatched = limit

    def _reset_pending(self) -> None:
        self._pending: deque = deque()        # (record end, DispatchInfo) appended, not dispatched
        self._pending_from = self.log.end_offset

    def _after_append(self, end: int) -> None:
        self.group_commit.written(end)
        if self.dledger is not None and not self.raft_mode:
            self.dledger.set_committed(self.dledger.last_index)
        if self.policy.kind != POLICY_SYNC and not self.raft_mode:
            self._dispatch_to(end)

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

    def _prepare(self, msg: Message) -> None:
        validate_topic(msg.topic)
        if not 0 <= msg.queue_id < 1 << 31:
            raise UserError(f"queue id {msg.queue_id} is out of range")
        now = self.clock_ms()
        msg.store_timestamp_ms = now
        if not msg.born_timestamp_ms:
            msg.born_timestamp_ms = now
        msg.store_host = self.store_host
        if versions.major(self.version) == 4:
            msg.version = 1
            if msg.sysflag & (SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP):
                raise UserError(f"inner-batch records need a v5 store, this one is {self.version}")

    def _assign(self, msg: Message, count: int) -> None:
        if msg.sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            msg.queue_offset = 0   # half/rollback records take no queue slot (spec 3.10)
            return
        key = (msg.topic, msg.queue_id)
        msg.queue_offset = self._next_offset.get(key, 0)
        self._next_offset[key] = msg.queue_offset + count
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            msg.properties["INNER_BASE"] = str(msg.queue_offset)

    def _write(self, msgs: list[Message], counts: list[int], term: int, wait: bool) -> AppendResult:
        with self._lock:
            self._check_open()
            for m in msgs:
                self._prepare(m)
            saved = {(m.topic, m.queue_id): self._next_offset.get((m.topic, m.queue_id)) for m in msgs}
            for m, n in zip(msgs, counts):
                self._assign(m, n)
            try:
                placed = self.log.append_messages(msgs, term)
            except BaseException:
                for key, value in saved.items():   # nothing was written: give the offsets back
                    if value is None:
                        self._next_offset.pop(key, None)
                    else:
                        self._next_offset[key] = value
                raise
            for m, (phys, size) in zip(msgs, placed):
                self._pending.append((phys + size, message_dispatch_info(m, size)))
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
        msgs, counts = self._batch_messages(topic, queue_id, items, consolidate=consolidate, properties=properties,
                                            flag=flag, sysflag=sysflag, born_timestamp_ms=born_timestamp_ms,
                                            born_host=born_host, inner_body=inner_body)
        return self._write(msgs, counts, term, wait_durable)

    def _batch_messages(self, topic: str, queue_id: int, items: list[BatchItem], *, consolidate: bool,
                        properties: dict[str, str] | None, flag: int, sysflag: int, born_timestamp_ms: int,
                        born_host: tuple[str, int], inner_body: bytes | None = None) -> tuple[list[Message], list[int]]:
        """The records of a client batch and the messages each holds (UserError for a bad batch)."""
        validate_topic(topic)
        if not items:
            raise UserError("an empty batch")
        if sysflag & (SYSFLAG_TX_MASK | SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP):
            raise UserError("a batch cannot be transactional or carry inner-batch flags (spec 4.3)")
        if inner_body is not None and not consolidate:
            raise UserError("inner_body is the body of a consolidated batch; pass consolidate=True")
        if sysflag & SYSFLAG_COMPRESSED and inner_body is None:
            raise UserError("a compressed batch is stored consolidated from its compressed body (inner_body)")
        batch_props = dict(properties or {})
        common = dict(topic=topic, queue_id=queue_id, sysflag=sysflag,
                      born_timestamp_ms=born_timestamp_ms, born_host=born_host)
        if consolidate:
            if not versions.has_batch_cq(self.version):
                raise UserError(f"consolidated batches need a v5 store, this one is {self.version}")
            if not self.meta.is_batch_topic(topic):
                raise UserError(f"topic {topic} is not a BatchCQ topic (attribute queue.type=BatchCQ)")
            if len(items) > 0x7FFF:
                raise UserError(f"a consolidated batch holds at most 32767 messages, got {len(items)}")
            # INNER_BASE is filled in when the queue offset is assigned (_assign / restamp_record)
            props = {**batch_props, "INNER_NUM": str(len(items)), "INNER_BASE": ""}
            msg = Message(body=encode_batch(items) if inner_body is None else bytes(inner_body),
                          properties=props, flag=flag,
                          **{**common, "sysflag": sysflag | SYSFLAG_NEED_UNWRAP | SYSFLAG_INNER_BATCH})
            return [msg], [len(items)]
        dledger = versions.is_dledger(self.version)
        msgs = [Message(body=item.body, flag=item.flag,
                        properties=dict(item.properties) if dledger else {**item.properties, **batch_props},
                        **common) for item in items]
        return msgs, [1] * len(msgs)

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

    def set_delay_offset(self, level: int, offset: int) -> None:
        self.meta.set_delay_offset(level, offset)

    def delay_offset(self, level: int) -> int:
        return self.meta.delay_offset(level)

