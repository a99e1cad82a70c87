"""Writing the target store's log and queues through the store's file layer.

``TargetLog.open(root, version, segment_bytes, self_id)`` is the target's log:

* plain versions: ``commitlog/`` over a ``SegmentQueue``; records are placed as RocketMQ places
  them (a record that does not fit in the current file with 8 bytes to spare is preceded by the
  end-of-file blank ``(remaining, BLANK_MAGIC)`` and goes to the next file); PHYSICALOFFSET is
  the record's own address;
* DLedger versions: ``dledger-{self_id}/`` through ``dledger_log.DLedgerLog``: one entry per
  record with PHYSICALOFFSET = entry pos + 48; a Raft index and term can be given per entry so a
  DLedger source keeps its indexes and terms (a replica stays a consistent member of its group);
  non-record entries (no-ops, config changes, metadata) are appended with their magic.

``append_record(record, term, index)`` writes raw record bytes (PHYSICALOFFSET is patched; a
5.2+ ``__CRC32#`` property that was valid is recomputed, since it covers PHYSICALOFFSET) and
returns ``(physical_offset, size)``. A v4 target writes property strings as a 4.x broker does,
without the final ``\x02`` (``record.strip_trailing_separator``); v5 targets keep each record's
property string as the source stored it (every version reads both forms). ``rewind(end, last_index)`` cuts the log back to a journal
checkpoint; ``flush`` fdatasyncs.

``TargetQueues`` builds ``consumequeue/`` and ``batchconsumequeue/`` (``dispatch.QueueSet``) as
records are written, and can cut every queue back to the sizes a checkpoint recorded.
"""
from __future__ import annotations

import functools
import shutil
import struct
from pathlib import Path

from mqbench.broker.formats import dledger as dl
from mqbench.broker.store import versions
from mqbench.broker.store.dispatch import BCQ_DIR, CQ_DIR, DispatchInfo, QueueSet, dispatch_record
from mqbench.broker.store.dledger_log import DEFAULT_INDEX_SEGMENT_BYTES, DLedgerLog
from mqbench.broker.formats.record import PROPERTY_CRC32, Message, body_crc, crc_digits, encode_blank, verify_property_crc
from mqbench.broker.formats.record_layout import BLANK_MIN_BYTES, CRC_PROPERTY_BYTES, SYSFLAG_INNER_BATCH
from mqbench.broker.formats.tags import java_hash, message_tags_code
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.formats.record_check import strip_trailing_separator
from mqbench.broker.store.segments import SegmentQueue
from mqbench.errors import CorruptDataError, InvariantViolation, UserError
from mqbench.broker.formats.properties import PROPERTY_DELAY, PROPERTY_INNER_NUM, PROPERTY_TAGS

_I64 = struct.Struct(">q")
_PHYSICAL_OFFSET_AT = 28          # record field PHYSICALOFFSET (spec 3.2)
_CRC_PREFIX = PROPERTY_CRC32.encode() + b"\x01"
GATHER_BYTES = 4 << 20


@functools.lru_cache(maxsize=8192)
def _tags_hash(tags: str) -> int:
    return java_hash(tags)     # a Python loop per character: tags repeat, so it is cached


def dispatch_info_of(msg: Message, size: int) -> DispatchInfo:
    """``dispatch.message_dispatch_info`` with the TAGS hash cached."""
    if msg.topic == SCHEDULE_TOPIC and PROPERTY_DELAY in msg.properties:
        tags_code = message_tags_code(msg)       # the deliver time (spec 5.3)
    else:
        tags = msg.properties.get(PROPERTY_TAGS)
        tags_code = _tags_hash(tags) if tags else 0
    inner = 1
    if msg.sysflag & SYSFLAG_INNER_BATCH:
        text = msg.properties.get(PROPERTY_INNER_NUM, "")
        inner = int(text) if text.isdigit() else 0
        if not 0 < inner <= 0x7FFF:
            raise CorruptDataError(f"inner-batch record with INNER_NUM {text!r} (1..32767 expected)")
    return DispatchInfo(msg.topic, msg.queue_id, msg.queue_offset, msg.physical_offset, size, msg.sysflag,
                        tags_code, msg.store_timestamp_ms, inner)


def patch_record(record: bytes, physical_offset: int) -> bytes:
    """``record`` with PHYSICALOFFSET set and a valid ``__CRC32#`` property recomputed."""
    had_crc = verify_property_crc(record) is True
    out = bytearray(record)
    _I64.pack_into(out, _PHYSICAL_OFFSET_AT, physical_offset)
    if had_crc:
        head = bytes(out[:-CRC_PROPERTY_BYTES])
        out[-CRC_PROPERTY_BYTES:] = _CRC_PREFIX + crc_digits(body_crc(head)) + b"\x02"
    return bytes(out)


class GatheredWrites:
    """A ``SegmentQueue`` whose writes are gathered: contiguous writes inside one segment leave as
    one ``pwrite`` of up to ``limit_bytes`` (a migration writes sequentially, so most of its
    records, entries, DLedger index units and queue units go out in large writes). Every other use
    of the queue (read, flush, truncate, close, its size...) writes what is pending first, so the
    files are always what an ungathered writer would have left at that point."""

    def __init__(self, inner: SegmentQueue, limit_bytes: int = GATHER_BYTES):
        self._inner = inner
        self._limit = limit_bytes
        self._buf = bytearray()
        self._at = 0
        self.segment_size_bytes = inner.segment_size_bytes

    def write(self, offset: int, data) -> None:
        size = self.segment_size_bytes
        if self._buf and (offset != self._at + len(self._buf) or offset // size != self._at // size
                          or len(self._buf) >= self._limit):
            self.drain()
        if not self._buf:
            self._at = offset
        self._buf += data

    def drain(self) -> None:
        if self._buf:
            self._inner.write(self._at, self._buf)
            self._buf = bytearray()

    def segment_start(self, offset: int) -> int:
        return offset - offset % self.segment_size_bytes

    def remaining_in_segment(self, offset: int) -> int:
        return self.segment_size_bytes - offset % self.segment_size_bytes

    def __getattr__(self, name: str):
        self.drain()
        return getattr(self._inner, name)


class TargetLog:
    """The target store's log (see module doc)."""

    def __init__(self, root: Path, version: str, segment_bytes: int, self_id: str):
        self.root = Path(root)
        self.version = version
        self.segment_bytes = segment_bytes
        # a 4.x broker stores property strings without the final \x02 (spec 3.5): so does a v4 target
        self.strip_separator = versions.major(version) == 4
        if versions.is_dledger(version):
            self.folder = self.root / f"dledger-{self_id}"
        else:
            self.folder = self.root / "commitlog"
        self._open()

    def _open(self) -> None:
        self.dledger: DLedgerLog | None = None
        self.segments: SegmentQueue | None = None
        if versions.is_dledger(self.version):
            self.dledger = DLedgerLog(self.folder, data_segment_bytes=self.segment_bytes,
                                      index_segment_bytes=DEFAULT_INDEX_SEGMENT_BYTES)
            self.dledger.data = GatheredWrites(self.dledger.data)       # type: ignore[assignment]
            self.dledger.index = GatheredWrites(self.dledger.index)     # type: ignore[assignment]
        else:
            self.segments = GatheredWrites(SegmentQueue(self.folder, self.segment_bytes))   # type: ignore[assignment]
            self.end = self.segments.min_offset

    @property
    def end_offset(self) -> int:
        return self.dledger.end_pos if self.dledger is not None else self.end

    @property
    def last_index(self) -> int:
        return self.dledger.last_index if self.dledger is not None else -1

    def _next_index(self, index: int | None) -> None:
        log = self.dledger
        if index is None or index == log.last_index + 1:
            return
        if log.last_index >= log.first_index or log.end_pos != log.data.min_offset:
            raise InvariantViolation(f"DLedger index {index} does not follow {log.last_index}")
        # a source whose first entries were deleted: the target log starts at the same index
        log.first_index, log.last_index = index, index - 1
        log.index.ensure(index * dl.INDEX_UNIT_BYTES)

    def append_record(self, record: bytes, term: int = 0, index: int | None = None) -> tuple[int, int]:
        """Write one record; returns (physical offset, size)."""
        size = len(record)
        if self.dledger is not None:
            if self.strip_separator:
                record = strip_trailing_separator(record)
                size = len(record)
            self._next_index(index)
            pos = self.dledger.next_entry_pos(size)
            _, pos = self.dledger.append(term, patch_record(record, pos + dl.ENTRY_HEADER_BYTES))
            return pos + dl.ENTRY_HEADER_BYTES, size
        if self.strip_separator:
            record = strip_trailing_separator(record)
            size = len(record)
        if size + BLANK_MIN_BYTES > self.segment_bytes:
            raise UserError(f"a record of {size} bytes does not fit in a commitlog file of {self.segment_bytes} "
                            "bytes (pass a larger --segment-bytes)")
        pos = self.end
        remaining = self.segments.remaining_in_segment(pos)
        if size + BLANK_MIN_BYTES > remaining:
            self.segments.write(pos, encode_blank(remaining))
            pos += remaining
        self.segments.write(pos, patch_record(record, pos))
        self.end = pos + size
        return pos, size

    def append_entry(self, term: int, body: bytes, magic: int, index: int | None) -> None:
        """A DLedger entry that holds no record (DLedger targets only)."""
        self._next_index(index)
        self.dledger.append(term, body, magic=magic)

    def rewind(self, end: int, last_index: int) -> None:
        """Cut the log back to ``end`` (plain) / after ``last_index`` (DLedger): a journal
        checkpoint. Back to nothing, the log folder is made anew (as an uninterrupted run has it)."""
        files_end = self.dledger.end_pos if self.dledger is not None else self.segments.end_offset
        if files_end < end or (self.dledger is not None and self.dledger.last_index < last_index):
            raise CorruptDataError(f"the target log ends before the journal's checkpoint at {end}",
                                   where=str(self.folder))
        if end <= 0 and last_index < 0:
            self.close()
            shutil.rmtree(self.folder)
            self._open()
            return
        if self.dledger is not None:
            self.dledger.truncate_after(last_index)
            if self.dledger.end_pos != end:
                raise CorruptDataError(f"the target log's entry {last_index} does not end at the journal's "
                                       f"checkpoint {end}", where=str(self.folder))
            return
        self.segments.truncate(end)
        self.end = max(end, self.segments.min_offset)

    def flush(self) -> None:
        if self.dledger is not None:
            self.dledger.sync()
        else:
            self.segments.flush()

    def close(self) -> None:
        """fdatasync and close the files (a DLedger checkpoint is written by the caller, once)."""
        if self.dledger is not None:
            self.dledger.sync()
            self.dledger.data.close()
            self.dledger.index.close()
        else:
            self.segments.close()

    @property
    def last_term(self) -> int:
        return self.dledger.last_term if self.dledger is not None else 0


class TargetQueues:
    """The target's consume queues, built as records are written (see module doc)."""

    def __init__(self, root: Path, is_batch_topic, *, cq_segment_bytes: int, bcq_segment_bytes: int):
        self.root = Path(root)
        self.is_batch_topic = is_batch_topic
        self.queues = QueueSet(root, cq_segment_bytes=cq_segment_bytes, bcq_segment_bytes=bcq_segment_bytes)

    def dispatch(self, msg: Message, size: int, where: str, offset: int) -> None:
        """Write the queue unit of a record just written (``msg.physical_offset`` is its new address)."""
        try:
            info = dispatch_info_of(msg, size)
            dispatch_record(self.queues, info, self.is_batch_topic)
            q = self.queues.find(info.topic, info.queue_id)
            if q is not None and not isinstance(q.segments, GatheredWrites):
                q.segments = GatheredWrites(q.segments, 1 << 20)     # its units go out together
        except InvariantViolation as exc:
            raise CorruptDataError(f"record of {msg.topic}/{msg.queue_id} with queue offset {msg.queue_offset} "
                                   f"does not continue its queue ({exc})", where=where, offset=offset) from None
        except UserError as exc:
            raise CorruptDataError(f"record has a bad topic or queue: {exc}", where=where, offset=offset) from None

    def sizes(self) -> list[list]:
        """[kind, topic, queue id, size] of every queue: its max offset (CQ) / unit count (BCQ)."""
        out = []
        for (topic, qid), q in sorted(self.queues.cqs.items()):
            out.append(["cq", topic, qid, q.max_offset])
        for (topic, qid), q in sorted(self.queues.bcqs.items()):
            out.append(["bcq", topic, qid, q.count])
        return out

    def rewind(self, sizes: list[list]) -> None:
        """Cut every queue back to ``sizes`` (from ``sizes()`` at a checkpoint); queues created
        after it are deleted."""
        keep = {(kind, topic, qid): size for kind, topic, qid, size in sizes}
        for (topic, qid), q in list(self.queues.cqs.items()):
            size = keep.get(("cq", topic, qid))
            if size is None:
                self._drop(CQ_DIR, topic, qid, q, self.queues.cqs)
            else:
                q.truncate(size)
        for (topic, qid), q in list(self.queues.bcqs.items()):
            size = keep.get(("bcq", topic, qid))
            if size is None:
                self._drop(BCQ_DIR, topic, qid, q, self.queues.bcqs)
            else:
                q.truncate_units(size)

    def _drop(self, kind: str, topic: str, qid: int, q, table: dict) -> None:
        q.close()
        del table[(topic, qid)]
        shutil.rmtree(self.root / kind / topic / str(qid))
        topic_dir = self.root / kind / topic
        if topic_dir.is_dir() and not any(topic_dir.iterdir()):
            topic_dir.rmdir()

    def flush(self) -> None:
        self.queues.flush()

    def close(self) -> None:
        self.queues.close()

