"""Dispatch: building the consume queues from commitlog records (RocketMQ's ReputMessageService).

``QueueSet`` owns every ``consumequeue/{topic}/{queueId}/`` and ``batchconsumequeue/{topic}/{queueId}/``
of a store, opened lazily; topic folder names found on disk are validated with
``topics.validate_topic`` before they are used as paths (CorruptDataError otherwise).

``dispatch_record(queues, record, physical_offset, is_batch_topic)`` writes the queue unit of one
record (spec 5.2, 6, 4.4):

* transaction PREPARED and ROLLBACK records get no unit;
* an inner-batch record (sysflag INNER_BATCH) gets one BCQ unit with base = its QUEUEOFFSET and
  batchSize = its ``INNER_NUM`` property;
* any other record on a BatchCQ topic gets a BCQ unit with batchSize 1;
* every other record gets a CQ unit ``(physical offset, TOTALSIZE, tagsCode)`` at QUEUEOFFSET * 20.

Re-dispatching a record already dispatched rewrites the same unit (CQ) or is skipped (BCQ), so
recovery can re-dispatch from a conservative point.

``DispatchInfo`` is the few record fields dispatch and the queue-offset table need; reading it
decodes the record without the CRC check (records were checked when the log was recovered).
"""
from __future__ import annotations

import os
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from mqbench.errors import CorruptDataError, UserError

from .consume_queue import BatchConsumeQueue, ConsumeQueue
from mqbench.broker.formats.queues import BcqUnit
from mqbench.broker.formats.record import Message, decode_message
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.tags import message_tags_code
from mqbench.broker.formats.topics import validate_topic
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM

CQ_DIR = "consumequeue"
BCQ_DIR = "batchconsumequeue"


@dataclass(slots=True)
class DispatchInfo:
    topic: str
    queue_id: int
    queue_offset: int
    physical_offset: int
    size: int
    sysflag: int
    tags_code: int
    store_timestamp_ms: int
    inner_num: int            # messages the record holds (INNER_NUM for an inner batch, else 1)

    @property
    def gets_unit(self) -> bool:
        tx = self.sysflag & SYSFLAG_TX_MASK
        return tx not in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK)

    @property
    def is_inner_batch(self) -> bool:
        return bool(self.sysflag & SYSFLAG_INNER_BATCH)


def dispatch_info(record: bytes, where: str | None = None) -> DispatchInfo:
    """The dispatch fields of a whole record (CorruptDataError for a bad INNER_NUM)."""
    msg, size = decode_message(record, 0, check_crc=False, where=where)
    inner = 1
    if msg.sysflag & SYSFLAG_INNER_BATCH:
        try:
            inner = int(msg.properties.get(PROPERTY_INNER_NUM, ""))
        except ValueError:
            raise CorruptDataError(f"inner-batch record without a valid INNER_NUM "
                                   f"({msg.properties.get(PROPERTY_INNER_NUM)!r})", where=where,
                                   offset=msg.physical_offset) from None
        if not 0 < inner <= 0x7FFF:
            raise CorruptDataError(f"INNER_NUM {inner} out of range 1..32767", where=where, offset=msg.physical_offset)
    return DispatchInfo(msg.topic, msg.queue_id, msg.queue_offset, msg.physical_offset, size, msg.sysflag,
                        message_tags_code(msg), msg.store_timestamp_ms, inner)


def message_dispatch_info(msg: Message, size: int) -> DispatchInfo:
    """``DispatchInfo`` of a message just written (no decode needed)."""
    inner = int(msg.properties.get(PROPERTY_INNER_NUM, "1")) if msg.sysflag & SYSFLAG_INNER_BATCH else 1
    return DispatchInfo(msg.topic, msg.queue_id, msg.queue_offset, msg.physical_offset, size, msg.sysflag,
                        message_tags_code(msg), msg.store_timestamp_ms, inner)


class Growth:
    """Records dispatched to some watched topics since the watch began (``QueueSet.watch``): a
    counter that only grows."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def _grew(watchers: list[Growth], n: int) -> None:
    for growth in watchers:
        growth.count += n


QUEUE_ID_MAX = 0x7FFFFFFF       # QUEUEID is an int32; a negative one has no queue


def queue_id_of_folder(name: str) -> int | None:
    """The queue id a ``{topic}/{queueId}`` folder name stands for, None when it is not one: the
    one rule for a folder a run writes (``str(queue_id)``) and a folder a resumed run reads back."""
    if not name.isdigit() or (len(name) > 1 and name[0] == "0") or len(name) > 10:
        return None
    queue_id = int(name)
    return queue_id if queue_id <= QUEUE_ID_MAX else None


class QueueSet:
    """Every consume queue and batch consume queue of a store (see module doc)."""

    def __init__(self, root: str | os.PathLike, *, cq_segment_bytes: int, bcq_segment_bytes: int,
                 tail_cache_bytes: int = 0):
        self.root = Path(root)
        self.cq_segment_bytes = cq_segment_bytes
        self.bcq_segment_bytes = bcq_segment_bytes
        self.tail_cache_bytes = tail_cache_bytes      # each queue's (segments.SegmentQueue)
        self.cqs: dict[tuple[str, int], ConsumeQueue] = {}
        self.bcqs: dict[tuple[str, int], BatchConsumeQueue] = {}
        self._combining: ExitStack | None = None
        self._combined: set[int] = set()
        # topic -> the counters of those who ``watch`` it (bumped by dispatch)
        self.watched: dict[str, list[Growth]] = {}
        # (topic, queue_id) of every queue dispatch wrote to since the last ``take_grown``
        self.grown: set[tuple[str, int]] = set()
        for kind in (CQ_DIR, BCQ_DIR):
            for topic, qid in self._on_disk(kind):
                self.get(topic, qid, batch=kind == BCQ_DIR)

    def _on_disk(self, kind: str) -> Iterator[tuple[str, int]]:
        base = self.root / kind
        if not base.is_dir():
            return
        for topic_dir in sorted(base.iterdir()):
            try:
                validate_topic(topic_dir.name)
            except UserError as exc:
                raise CorruptDataError(f"not a topic folder: {exc}", where=str(topic_dir)) from None
            for qdir in sorted(topic_dir.iterdir()):
                queue_id = queue_id_of_folder(qdir.name)
                if queue_id is None:
                    raise CorruptDataError("not a queue id folder (0..2147483647, no leading zeros)", where=str(qdir))
                yield topic_dir.name, queue_id

    def get(self, topic: str, queue_id: int, *, batch: bool, combine: bool = True) -> ConsumeQueue | BatchConsumeQueue:
        """The queue, opened (created) on first use; inside ``combined_writes`` its writes are
        combined too unless ``combine`` is False (a caller that writes its units as one run,
        ``put_flat``, gains nothing from it)."""
        key = (validate_topic(topic), queue_id)
        if not 0 <= queue_id <= QUEUE_ID_MAX:
            raise UserError(f"queue id {queue_id} is outside 0..{QUEUE_ID_MAX}")
        table = self.bcqs if batch else self.cqs
        q = table.get(key)
        if q is None:
            path = self.root / (BCQ_DIR if batch else CQ_DIR) / topic / str(queue_id)
            q = (BatchConsumeQueue(path, self.bcq_segment_bytes, tail_cache_bytes=self.tail_cache_bytes) if batch
                 else ConsumeQueue(path, self.cq_segment_bytes, tail_cache_bytes=self.tail_cache_bytes))
            table[key] = q
        if combine and self._combining is not None and id(q) not in self._combined:
            self._combined.add(id(q))
            self._combining.enter_context(q.segments.combined_writes())
        return q

    @contextmanager
    def combined_writes(self) -> Iterator[None]:
        """Within the block, the units written to each queue are combined into one write per run
        (``SegmentQueue.combined_writes``), written when the block ends (dispatching a Raft commit
        of N records is then one write per queue, not N)."""
        if self._combining is not None:      # nested: the outer block writes
            yield
            return
        with ExitStack() as stack:
            self._combining = stack
            try:
                yield
            finally:
                self._combining = None
                self._combined.clear()

    def watch(self, topics: tuple[str, ...]) -> "Growth":
        """Count the records dispatched to ``topics`` from now on: a cheap "did these queues grow"
        signal for a reader woken on commits (the delay service). Dispatch bumps the returned
        counter as it writes the units, so reading it costs nothing per commit, however many
        queues the store has. ``unwatch`` it when done."""
        growth = Growth()
        for topic in set(topics):
            self.watched.setdefault(topic, []).append(growth)
        return growth

    def unwatch(self, growth: "Growth") -> None:
        for topic in [t for t, watchers in self.watched.items() if growth in watchers]:
            watchers = self.watched[topic]
            watchers.remove(growth)
            if not watchers:
                del self.watched[topic]

    def take_grown(self) -> set[tuple[str, int]]:
        """The (topic, queue_id) of every queue that dispatch wrote units to since the last call
        (the broker wakes the pulls waiting on those after a commit; at most one key per queue)."""
        grown, self.grown = self.grown, set()
        return grown

    def find(self, topic: str, queue_id: int) -> ConsumeQueue | BatchConsumeQueue | None:
        key = (topic, queue_id)
        return self.bcqs.get(key) or self.cqs.get(key)

    def all(self) -> Iterator[tuple[tuple[str, int], ConsumeQueue | BatchConsumeQueue]]:
        yield from self.cqs.items()
        yield from self.bcqs.items()

    def max_offsets(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for key, q in self.all():
            out[key] = max(out.get(key, 0), q.max_offset)
        return out

    def truncate_physical(self, log_end: int) -> int | None:
        """Drop units pointing at or past ``log_end`` in every queue. Returns None when nothing was
        dropped, else the lowest log position from which records must be dispatched again."""
        resumes = [r for r in (q.truncate_physical(log_end) for _, q in list(self.all())) if r is not None]
        return min(resumes) if resumes else None

    def flush(self) -> None:
        for _, q in self.all():
            q.flush()

    def close(self) -> None:
        for _, q in self.all():
            q.close()


def dispatch_record(queues: QueueSet, info: DispatchInfo, is_batch_topic: Callable[[str], bool]) -> None:
    """Write the queue unit for one record (see module doc)."""
    if not info.gets_unit:
        return
    watchers = queues.watched.get(info.topic)
    if watchers:
        _grew(watchers, 1)
    queues.grown.add((info.topic, info.queue_id))
    if info.is_inner_batch or is_batch_topic(info.topic):
        q = queues.get(info.topic, info.queue_id, batch=True)
        q.put(BcqUnit(info.physical_offset, info.size, info.tags_code, info.store_timestamp_ms,
                      info.queue_offset, info.inner_num))
    else:
        q = queues.get(info.topic, info.queue_id, batch=False)
        q.put(info.queue_offset, info.physical_offset, info.size, info.tags_code)


_NO_UNIT_TX = (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK)    # transaction states that get no unit


class PlainRun:
    """Records appended as one run (``Dispatcher.appended_run``) that each get a plain CQ unit:
    their units already gathered per queue, ``groups`` = {(topic, queue_id): [first queue offset,
    flat units [physical_offset, size, tags_code, ...]]} (each queue's offsets consecutive), so
    dispatching the run is one ``put_flat`` per queue and no per-record step. ``first_end``: where
    its first record ends; ``expand()``: the per-record (end, DispatchInfo) pairs, for a commit
    point inside the run. It stands in ``pending`` as one item (``inner_num`` 0 stops the
    per-record gatherers at it)."""

    __slots__ = ("groups", "first_end", "expand")
    sysflag = 0
    inner_num = 0

    def __init__(self, groups: dict[tuple[str, int], list], first_end: int,
                 expand: Callable[[], list[tuple[int, DispatchInfo]]]):
        self.groups = groups
        self.first_end = first_end
        self.expand = expand


class Dispatcher:
    """The write-side index every writer of one store shares (``Store``'s own appends and its
    ``ReplicatedCommitLog``): the next queue offset of every queue, and the records appended but
    not yet dispatched into the consume queues.

    * ``next_offset(topic, queue_id)``: the queues' ends (``QueueSet.max_offsets``) raised by every
      record in the log past ``dispatched`` (``note``); ``take(key, count)`` hands out ``count``
      offsets (the plain write path), ``saved(keys)``/``restore(saved)`` give them back when the
      write that took them failed.
    * ``appended(end, info)``: a record written up to log position ``end``; ``dispatch_to(limit)``
      dispatches every record ending at or below ``limit``: the appended ones from ``info``
      (no decode), older ones (below where this process started appending) by a log scan. A
      dispatch that fails (disk full) is tried again by the next call.
    * ``truncated(end)``: the log was cut at ``end``: forget what was past it and rebuild the table.

    Not thread-safe: callers hold the store's lock.
    """

    def __init__(self, log, queues: QueueSet, is_batch_topic: Callable[[str], bool], dispatched: int):
        self.log = log
        self.queues = queues
        self.is_batch_topic = is_batch_topic
        self.dispatched = dispatched
        self._reset_pending()
        self._rebuild()

    # -- queue offsets -----------------------------------------------------------------------

    def next_offset(self, topic: str, queue_id: int) -> int:
        return self._next.get((topic, queue_id), 0)

    def take(self, key: tuple[str, int], count: int) -> int:
        first = self._next.get(key, 0)
        self._next[key] = first + count
        return first

    def saved(self, keys) -> dict[tuple[str, int], int | None]:
        return {key: self._next.get(key) for key in keys}

    def restore(self, saved: dict[tuple[str, int], int | None]) -> None:
        for key, value in saved.items():
            if value is None:
                self._next.pop(key, None)
            else:
                self._next[key] = value

    def note(self, info: DispatchInfo) -> None:
        """Count a record written to the log in the queue-offset table."""
        if info.gets_unit:
            key = (info.topic, info.queue_id)
            self._next[key] = max(self._next.get(key, 0), info.queue_offset + info.inner_num)

    def note_next(self, key: tuple[str, int], next_offset: int) -> None:
        """``note`` for a run of one queue's records: the queue's next offset is at least
        ``next_offset`` (the offsets table updated once per batch)."""
        if self._next.get(key, 0) < next_offset:
            self._next[key] = next_offset

    def _rebuild(self) -> None:
        """Next queue offsets: the queues' ends, then the records written but not yet dispatched."""
        self._next = self.queues.max_offsets()
        for _, record, _ in self.log.scan(self.dispatched, None):
            self.note(dispatch_info(record, where="commitlog"))

    # -- dispatch ----------------------------------------------------------------------------

    def appended(self, end: int, info: DispatchInfo) -> None:
        self._pending.append((end, info))

    def appended_run(self, end: int, run: PlainRun) -> None:
        """Records written up to log position ``end`` as one ``PlainRun``."""
        self._pending.append((end, run))

    def dispatch_to(self, limit: int) -> None:
        if limit <= self.dispatched:
            return
        if self.dispatched < self._pending_from:
            stop = min(limit, self._pending_from)
            for _, record, _ in self.log.scan(self.dispatched, stop):
                dispatch_record(self.queues, dispatch_info(record, where="commitlog"), self.is_batch_topic)
            self.dispatched = stop
        pending = self._pending
        queues, is_batch_topic = self.queues, self.is_batch_topic
        while pending:
            end, info = pending[0]
            if type(info) is PlainRun:
                if end <= limit:
                    self._dispatch_runs(limit)
                    continue
                if info.first_end > limit:
                    break
                pending.popleft()           # the commit point is inside the run: record by record
                pending.extendleft(reversed(info.expand()))
                continue
            if end > limit:
                break
            # dropped only once written: a dispatch that failed (disk full) is tried again
            if self._dispatch_plain(limit) or self._dispatch_batched(limit):
                continue
            dispatch_record(queues, info, is_batch_topic)
            pending.popleft()
        self.dispatched = limit

    def _dispatch_runs(self, limit: int) -> None:
        """Dispatch the ``PlainRun``s at the head of ``pending`` ending at or below ``limit``: each
        queue's units of consecutive runs joined (while its offsets continue), one ``put_flat``
        per queue."""
        pending, queues = self._pending, self.queues
        groups: dict[tuple[str, int], list] = {}        # key -> [first offset, next offset, flats]
        count = 0
        for end, run in pending:
            if type(run) is not PlainRun or end > limit:
                break
            if count and any(key in groups and groups[key][1] != first for key, (first, _) in run.groups.items()):
                break
            for key, (first, flat) in run.groups.items():
                group = groups.get(key)
                if group is None:
                    groups[key] = [first, first + len(flat) // 3, [flat]]
                else:
                    group[1] += len(flat) // 3
                    group[2].append(flat)
            count += 1
        watched, cqs = queues.watched, queues.cqs
        queues.grown.update(groups)
        for key, (first, next_offset, flats) in groups.items():
            if watched:
                watchers = watched.get(key[0])
                if watchers:
                    _grew(watchers, next_offset - first)
            q = cqs.get(key)
            if q is None:
                q = queues.get(key[0], key[1], batch=False, combine=False)
            q.put_flat(first, flats[0] if len(flats) == 1 else [f for flat in flats for f in flat])
        for _ in range(count):          # dropped only once written (a failed write is tried again)
            pending.popleft()

    def _dispatch_plain(self, limit: int) -> bool:
        """Dispatch the plain records at the head of ``pending`` (ending at or below ``limit``, CQ
        units, not inner batches nor on a BatchCQ topic), one ``put_flat`` per queue: a batch's
        records (one queue) and single sends spread over a topic's queues alike (the same units,
        each queue's in order). The gathering stops before the first record that is not plain or
        does not continue its queue's consecutive offsets (the next call starts there). False,
        with nothing written, when the head record is not plain (the per-record path takes it)."""
        pending, queues, is_batch_topic = self._pending, self.queues, self.is_batch_topic
        groups: dict[tuple[str, int], list] = {}        # key -> [first offset, next offset, flat units]
        batch_topics: dict[str, bool] = {}
        count = 0
        for end, info in pending:
            sysflag = info.sysflag
            if (end > limit or info.inner_num != 1 or sysflag & SYSFLAG_INNER_BATCH
                    or (sysflag & SYSFLAG_TX_MASK) in _NO_UNIT_TX):
                break
            topic = info.topic
            batch = batch_topics.get(topic)
            if batch is None:
                batch = batch_topics[topic] = is_batch_topic(topic)
            if batch:
                break
            key = (topic, info.queue_id)
            group = groups.get(key)
            if group is None:
                groups[key] = [info.queue_offset, info.queue_offset + 1,
                               [info.physical_offset, info.size, info.tags_code]]
            elif group[1] != info.queue_offset:
                break
            else:
                group[1] += 1
                group[2] += (info.physical_offset, info.size, info.tags_code)
            count += 1
        if not count:
            return False
        watched, cqs = queues.watched, queues.cqs
        queues.grown.update(groups)
        for key, (first, _, flat) in groups.items():
            if watched:
                watchers = watched.get(key[0])
                if watchers:
                    _grew(watchers, len(flat) // 3)
            # one run per queue: written as it is (combining it would only add steps)
            q = cqs.get(key)
            if q is None:
                q = queues.get(key[0], key[1], batch=False, combine=False)
            q.put_flat(first, flat)
        for _ in range(count):
            pending.popleft()
        return True

    def _dispatch_batched(self, limit: int) -> bool:
        """``_dispatch_plain`` for BatchConsumeQueue units: the records at the head of ``pending``
        (ending at or below ``limit``) that get a BCQ unit (an inner batch, or any record on a
        BatchCQ topic), one ``BatchConsumeQueue.put_flat`` per queue, each queue's units in order
        while their bases continue (base + messages held). False, with nothing written, when the
        head record is not one (the per-record path takes it)."""
        pending, queues, is_batch_topic = self._pending, self.queues, self.is_batch_topic
        groups: dict[tuple[str, int], list] = {}        # key -> [next base, flat units]
        batch_topics: dict[str, bool] = {}
        count = 0
        for end, info in pending:
            sysflag = info.sysflag
            if end > limit or not info.inner_num or (sysflag & SYSFLAG_TX_MASK) in _NO_UNIT_TX:
                break
            topic = info.topic
            if not sysflag & SYSFLAG_INNER_BATCH:
                batch = batch_topics.get(topic)
                if batch is None:
                    batch = batch_topics[topic] = is_batch_topic(topic)
                if not batch:
                    break
            key = (topic, info.queue_id)
            group = groups.get(key)
            unit = (info.physical_offset, info.size, info.tags_code, info.store_timestamp_ms, info.queue_offset,
                    info.inner_num)
            if group is None:
                groups[key] = [info.queue_offset + info.inner_num, list(unit)]
            elif group[0] != info.queue_offset:
                break
            else:
                group[0] += info.inner_num
                group[1] += unit
            count += 1
        if not count:
            return False
        watched = queues.watched
        queues.grown.update(groups)
        for key, (_, flat) in groups.items():
            if watched:
                watchers = watched.get(key[0])
                if watchers:
                    _grew(watchers, len(flat) // 6)
            queues.get(key[0], key[1], batch=True, combine=False).put_flat(flat)
        for _ in range(count):
            pending.popleft()
        return True

    def _reset_pending(self) -> None:
        self._pending: deque[tuple[int, DispatchInfo]] = deque()
        self._pending_from = self.log.end_offset

    def truncated(self, end: int) -> None:
        self.dispatched = min(self.dispatched, end)
        self._reset_pending()
        self._rebuild()
