"""Reading messages back through the consume queues (the read side of ``store.Store``).

``read_queue(log, queues, topic, queue_id, offset, max_messages, max_bytes) -> ReadResult``:

* ``offset`` below the queue's minimum starts at the minimum; at the maximum the status is
  ``NO_MESSAGE``, past it ``OFFSET_OVERFLOW`` (``next_offset`` = the maximum); no such queue:
  ``NO_QUEUE``.
* At least one message is returned when there is one, then more while the count stays within
  ``max_messages`` and the size (records for a ConsumeQueue, bodies for a BatchConsumeQueue)
  within ``max_bytes``; ``next_offset`` is the offset after the last message returned, so a
  consumer never skips one.
* An inner-batch record (BatchCQ topics) is unwrapped into its messages, message ``i`` at queue
  offset ``base + i``; they inherit topic, queue, hosts, timestamps, reconsume times and commitlog
  offset from the record, and its sysflag without the NEED_UNWRAP/INNER_BATCH bits.
* An inner batch compressed whole (sysflag COMPRESSED and codec bits on the record, see
  ``compression.py``) is decompressed first, within ``compression.PLAIN_BYTES_MAX``, then unwrapped;
  its messages carry plain bodies and no compression bits. It must hold exactly ``INNER_NUM``
  messages. A record compressed per message is returned as stored (body and sysflag): the
  consumer decompresses it, as RocketMQ's does.
* Every record read is decoded with its CRC checked and must be the record of that queue at that
  offset (``queue_record``); anything else raises CorruptDataError naming the place.

``read_queue_records(log, queues, topic, queue_id, offset, max_messages, max_bytes, tags=None)
-> RecordsRead``: the same walk for a pull, answering with the stored record bytes themselves,
back to back (a pull body, spec protocols.md section 8), with no decode and no re-encode:

* The consume-queue units are walked; the records they point at are read with one ``log.read`` per
  run of records that lie close together in the log (at most ``RUN_GAP_BYTES_MAX`` apart: the
  DLedger entry header of 48 bytes before each record, or a small metadata entry, is read and left
  out), so a pull of 32 messages written together is one ``pread``. Only the records are returned:
  a DLedger store's entry framing is stripped, the record bytes are unchanged.
* Each record is checked to be the one the unit points at without decoding it: TOTALSIZE equal to
  the unit's size, a record magic, QUEUEID, QUEUEOFFSET and the topic; a mismatch raises
  CorruptDataError naming the place. BODYCRC is not checked here (RocketMQ's broker does not either;
  the consumer checks it).
* ``tags`` (a set of tag strings, None for all): a unit is a candidate when its tags code is the
  hash of one of them (spec 5.1); a candidate's TAGS property is then read to confirm it, so the
  answer is exactly the messages whose TAGS is in ``tags``. ``skipped`` counts the others;
  ``next_offset`` is after the last unit looked at.
* A BatchConsumeQueue (BatchCQ topics) is read with ``read_queue`` and its messages are encoded one
  record each, inner batches unwrapped: RocketMQ 5 would send the stored inner-batch record and
  leave the unwrapping to its Java client, but the C++ client and ali-ons cannot unwrap one.
  With ``batches_as_stored`` (a client that unwraps them asked for it) and no tag filter, the
  records are sent as stored instead, as RocketMQ 5 does: each unit's whole record (checked in
  place as above), the first one possibly holding messages below ``offset`` (the client leaves
  them out), more while the messages from ``offset`` on stay within ``max_messages`` and the
  records within ``max_bytes``; ``count`` is the messages from ``offset`` on.
* Where the accelerator ``_reader`` is built (``mqbench.native``) a ConsumeQueue pull without
  tags whose records the log's tail cache holds (``tail_cache``: what was just written) is taken
  in one C call that checks and copies them out of the cache; anything else (a filler, a record
  not held, one that fails its check) is left to the loop below, which is the reference.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from mqbench import native
from mqbench.errors import CorruptDataError

from mqbench.broker.formats.compression import SYSFLAG_COMPRESSION_BITS, inner_batch_items
from .consume_queue import BatchConsumeQueue
from .dispatch import QueueSet
from mqbench.broker.formats.record import Message, decode_message, encode_message
from mqbench.broker.formats.record_layout import MAGIC_V1, MAGIC_V2, SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP
from mqbench.broker.formats.record_peek import is_record_of, peek_properties, peek_topic
from mqbench.broker.formats.tags import java_hash
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM, PROPERTY_TAGS

RUN_GAP_BYTES_MAX = 4096
_native = native.load("mqbench.broker.store._reader")
_RECORD_HEAD = struct.Struct(">ii4xi4xq")     # TOTALSIZE MAGICCODE (BODYCRC) QUEUEID (FLAG) QUEUEOFFSET
_MAGICS = (MAGIC_V1, MAGIC_V2)


@dataclass
class ReadResult:
    status: str                   # FOUND, NO_MESSAGE, OFFSET_OVERFLOW, NO_QUEUE
    messages: list[Message]
    next_offset: int
    min_offset: int
    max_offset: int


def read_record(log, physical_offset: int, size: int) -> Message:
    """The record at ``physical_offset`` of ``size`` bytes, CRC checked (CorruptDataError if not)."""
    raw = log.read(physical_offset, size) if physical_offset >= 0 and size > 0 else b""
    if len(raw) < max(size, 1):
        raise CorruptDataError(f"no record of {size} bytes there (log ends at {log.end_offset})",
                               where="commitlog", offset=physical_offset)
    try:
        msg, _ = decode_message(raw, 0)
    except CorruptDataError as exc:
        reason = str(exc).removeprefix(f"at offset {exc.offset}: ")   # the offset in ``raw``; ours is absolute
        raise CorruptDataError(reason, where="commitlog", offset=physical_offset) from None
    return msg


def queue_record(log, topic: str, queue_id: int, queue_offset: int, physical_offset: int, size: int) -> Message:
    """The record a queue unit points at, checked to be that queue's record at that offset."""
    msg = read_record(log, physical_offset, size)
    if (msg.topic, msg.queue_id, msg.queue_offset) != (topic, queue_id, queue_offset):
        raise CorruptDataError(
            f"queue unit {topic}/{queue_id}@{queue_offset} points at a record of "
            f"{msg.topic}/{msg.queue_id}@{msg.queue_offset}", where="consume queue", offset=physical_offset)
    return msg


def unwrap(record: Message, base: int) -> list[Message]:
    """The messages of a record: itself, or an inner batch's messages at ``base + i``
    (decompressed first when the record is compressed whole). CorruptDataError naming the
    commitlog offset for a body that does not decompress or split into ``INNER_NUM`` messages."""
    if not record.sysflag & SYSFLAG_INNER_BATCH:
        record.queue_offset = base
        return [record]
    items = inner_batch_items(record.body, record.sysflag, where="commitlog inner batch",
                              offset=record.physical_offset)
    declared = record.properties.get(PROPERTY_INNER_NUM)
    if declared != str(len(items)):
        raise CorruptDataError(f"inner batch holds {len(items)} messages, its INNER_NUM says {declared!r}",
                               where="commitlog inner batch", offset=record.physical_offset)
    flags = record.sysflag & ~(SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP | SYSFLAG_COMPRESSION_BITS)
    return [Message(topic=record.topic, body=item.body, properties=dict(item.properties), flag=item.flag,
                    queue_id=record.queue_id, queue_offset=base + i, physical_offset=record.physical_offset,
                    sysflag=flags, born_timestamp_ms=record.born_timestamp_ms, born_host=record.born_host,
                    store_timestamp_ms=record.store_timestamp_ms, store_host=record.store_host,
                    reconsume_times=record.reconsume_times, version=record.version)
            for i, item in enumerate(items)]


def read_queue(log, queues: QueueSet, topic: str, queue_id: int, offset: int, max_messages: int,
               max_bytes: int) -> ReadResult:
    """Messages of ``topic``/``queue_id`` from ``offset`` on (see module doc)."""
    q = queues.find(topic, queue_id)
    if q is None:
        return ReadResult("NO_QUEUE", [], 0, 0, 0)
    lo, hi = q.min_offset, q.max_offset
    if offset >= hi:
        return ReadResult("OFFSET_OVERFLOW" if offset > hi else "NO_MESSAGE", [], hi, lo, hi)
    offset = max(offset, lo)
    out: list[Message] = []
    used = 0
    if isinstance(q, BatchConsumeQueue):
        full = False
        for unit in q.read_units(offset, max(1, max_messages)):
            record = queue_record(log, topic, queue_id, unit.base_offset, unit.physical_offset, unit.size)
            for m in unwrap(record, unit.base_offset):
                if m.queue_offset < offset:
                    continue
                if out and (len(out) >= max_messages or used + len(m.body) > max_bytes):
                    full = True
                    break
                out.append(m)
                used += len(m.body)
            if full:
                break
    else:
        for qoff, phys, size, _ in q.read_units(offset, max(1, max_messages)):
            if out and used + size > max_bytes:
                break
            out.append(queue_record(log, topic, queue_id, qoff, phys, size))
            used += size
    nxt = out[-1].queue_offset + 1 if out else offset
    return ReadResult("FOUND" if out else "NO_MESSAGE", out, nxt, lo, hi)


@dataclass
class RecordsRead:
    status: str                   # FOUND, NO_MESSAGE, OFFSET_OVERFLOW, NO_QUEUE
    body: bytes                   # the records handed out, back to back
    count: int                    # messages in ``body``
    skipped: int                  # messages looked at and left out by the tag filter
    next_offset: int
    min_offset: int
    max_offset: int


def _stored_record(buf: bytes, at: int, size: int, topic_bytes: bytes, queue_id: int, queue_offset: int,
                   physical_offset: int) -> None:
    """Check that the ``size`` bytes at ``at`` are the record of ``topic``/``queue_id`` at
    ``queue_offset`` (module doc); CorruptDataError naming the commitlog offset if not."""
    why = None
    if at + size > len(buf):
        why = f"no record of {size} bytes there (the log ends before it)"
    else:
        total, magic, got_queue, got_offset = _RECORD_HEAD.unpack_from(buf, at)
        if total != size or magic not in _MAGICS:
            why = f"the unit's record of {size} bytes is not there (TOTALSIZE {total}, magic {magic})"
        elif got_queue != queue_id or got_offset != queue_offset:
            why = f"it points at a record of queue {got_queue} offset {got_offset}"
        else:
            try:
                topic = peek_topic(buf, at)
            except (CorruptDataError, struct.error):
                topic = None
            if topic is None or topic.encode() != topic_bytes:
                why = f"it points at a record of topic {topic!r}"
    if why is not None:
        raise CorruptDataError(f"queue unit {topic_bytes.decode()}/{queue_id}@{queue_offset}: {why}",
                               where="consume queue", offset=physical_offset)


def _wanted(buf: bytes, at: int, tags: set[str]) -> bool:
    try:
        return peek_properties(buf, at).get(PROPERTY_TAGS) in tags
    except (CorruptDataError, struct.error):
        return False


@functools.lru_cache(maxsize=1024)
def _tag_codes(tags: frozenset[str]) -> frozenset[int]:
    """The consume-queue tag codes of a subscription's tags (hashed once per tag set, not per pull)."""
    return frozenset(java_hash(t) if t else 0 for t in tags)


def read_queue_records(log, queues: QueueSet, topic: str, queue_id: int, offset: int, max_messages: int,
                       max_bytes: int, tags: set[str] | None = None, *,
                       batches_as_stored: bool = False) -> RecordsRead:
    """The stored records of ``topic``/``queue_id`` from ``offset`` on (see module doc)."""
    q = queues.find(topic, queue_id)
    if q is None:
        return RecordsRead("NO_QUEUE", b"", 0, 0, 0, 0, 0)
    lo, hi = q.min_offset, q.max_offset
    if offset >= hi:
        return RecordsRead("OFFSET_OVERFLOW" if offset > hi else "NO_MESSAGE", b"", 0, 0, hi, lo, hi)
    if isinstance(q, BatchConsumeQueue):
        if batches_as_stored and tags is None:
            return _stored_batch_queue(log, q, topic, queue_id, offset, max_messages, max_bytes)
        return _encoded_batch_queue(log, queues, topic, queue_id, offset, max_messages, max_bytes, tags)
    topic_bytes = topic.encode()
    first, raw = q.raw_units(max(offset, lo), max(1, max_messages))
    if _native is not None and tags is None:
        taken = _from_tail(log, first, raw, topic_bytes, queue_id, max_bytes)
        if taken is not None:
            return RecordsRead("FOUND", taken[0], taken[1], 0, taken[2], lo, hi)
    units = q.units_of(first, raw)
    wanted_codes = None if tags is None else _tag_codes(tags if type(tags) is frozenset else frozenset(tags))
    parts: list = []
    count = skipped = used = 0
    next_offset = max(offset, lo)
    i, n = 0, len(units)
    while i < n:
        # a run: units whose records lie close together in the log, read with one log.read
        j, start = i + 1, units[i][1]
        end = start + units[i][2]
        taken = used + units[i][2]
        while j < n and 0 <= units[j][1] - end <= RUN_GAP_BYTES_MAX and taken + units[j][2] <= max_bytes:
            end = units[j][1] + units[j][2]
            taken += units[j][2]
            j += 1
        buf = log.read(start, end - start)
        view = memoryview(buf)
        full = False
        for qoff, phys, size, code in units[i:j]:
            if count and used + size > max_bytes:
                full = True
                break
            at = phys - start
            if not is_record_of(buf, at, size, topic_bytes, queue_id, qoff):
                _stored_record(buf, at, size, topic_bytes, queue_id, qoff, phys)   # names what is wrong
            next_offset = qoff + 1
            if wanted_codes is not None and (code not in wanted_codes or not _wanted(buf, at, tags)):
                skipped += 1
                continue
            parts.append(view[at:at + size])
            count += 1
            used += size
        if full:
            break
        i = j
    body = parts[0].tobytes() if len(parts) == 1 else b"".join(parts)
    return RecordsRead("FOUND" if count else "NO_MESSAGE", body, count, skipped, next_offset, lo, hi)


def _from_tail(log, first: int, raw: bytes, topic_bytes: bytes, queue_id: int,
               max_bytes: int) -> tuple[bytes, int, int] | None:
    """(body, count, next offset) of the loop in ``read_queue_records`` (no tags) over the units
    ``raw`` from ``first`` on, taken by the C accelerator from the log's tail cache, or None where
    the loop must run (module doc)."""
    tail = getattr(log, "tail_cache", None)
    held = tail.held() if tail is not None else None
    if held is None or not raw:
        return None
    ring, start, end = held
    return _native.pull_from_tail(ring, start, end, raw, first, topic_bytes, queue_id, max_bytes)


def _encoded_batch_queue(log, queues: QueueSet, topic: str, queue_id: int, offset: int, max_messages: int,
                         max_bytes: int, tags: set[str] | None) -> RecordsRead:
    """``read_queue_records`` of a BatchConsumeQueue: its messages (inner batches unwrapped)
    encoded one record each (module doc)."""
    result = read_queue(log, queues, topic, queue_id, offset, max_messages, max_bytes)
    chosen = [m for m in result.messages if tags is None or m.properties.get(PROPERTY_TAGS) in tags]
    return RecordsRead("FOUND" if chosen else result.status, b"".join(encode_message(m) for m in chosen),
                       len(chosen), len(result.messages) - len(chosen), result.next_offset, result.min_offset,
                       result.max_offset)


def _stored_batch_queue(log, q: BatchConsumeQueue, topic: str, queue_id: int, offset: int, max_messages: int,
                        max_bytes: int) -> RecordsRead:
    """``read_queue_records`` of a BatchConsumeQueue with ``batches_as_stored``: each unit's record
    as stored (module doc)."""
    lo, hi = q.min_offset, q.max_offset
    offset = max(offset, lo)
    topic_bytes = topic.encode()
    parts: list[bytes] = []
    count = used = 0
    next_offset = offset
    for unit in q.read_units(offset, max(1, max_messages)):
        fresh = unit.base_offset + unit.batch_size - max(offset, unit.base_offset)
        if parts and (count + fresh > max_messages or used + unit.size > max_bytes):
            break
        record = log.read(unit.physical_offset, unit.size)
        _stored_record(record, 0, unit.size, topic_bytes, queue_id, unit.base_offset, unit.physical_offset)
        parts.append(record)
        count += fresh
        used += unit.size
        next_offset = unit.base_offset + unit.batch_size
    return RecordsRead("FOUND" if parts else "NO_MESSAGE", b"".join(parts), count, 0, next_offset, lo, hi)
