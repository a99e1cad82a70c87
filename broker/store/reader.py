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
"""
from __future__ import annotations

from dataclasses import dataclass

from mqbench.errors import CorruptDataError

from mqbench.broker.formats.compression import SYSFLAG_COMPRESSION_BITS, inner_batch_items
from .consume_queue import BatchConsumeQueue
from .dispatch import QueueSet
from mqbench.broker.formats.record import SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP, Message, decode_message


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
    declared = record.properties.get("INNER_NUM")
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
