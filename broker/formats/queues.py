"""ConsumeQueue (20-byte) and BatchConsumeQueue (46-byte) units (spec sections 5 and 6).

Pure code, big-endian, no file I/O.

ConsumeQueue unit; the unit of queue offset q is at logical byte q * 20::

    off  size  type   field
    0    8     int64  commitlog PHYSICALOFFSET of the record
    8    4     int32  record TOTALSIZE
    12   8     int64  tagsCode (Java hashCode of TAGS; deliver time for SCHEDULE_TOPIC_XXXX)

A filler unit ``(0, 0x7FFFFFFF, 0)`` means "no message" (a queue whose first file starts at a
non-zero offset). The data ends at the first unit with offset < 0 or size <= 0 (zeros).

BatchConsumeQueue unit; appended back to back (NOT at queueOffset * 46), no filler::

    off  size  type   field
    0    8     int64  commitlog PHYSICALOFFSET
    8    4     int32  record TOTALSIZE
    12   8     int64  tagsCode
    20   8     int64  STORETIMESTAMP (ms)
    28   8     int64  msgBaseOffset: queue offset of the first message in the entry
    36   2     int16  batchSize: number of messages covered, [base, base + batchSize)
    38   4     int32  compactedOffset, written as -1
    42   4     int32  reserved, 0
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from mqbench.errors import CorruptDataError, UserError

from .buffers import ByteView

CQ_UNIT_BYTES = 20
CQ_FILLER_SIZE = 0x7FFFFFFF
CQ_FILLER = (0, CQ_FILLER_SIZE, 0)
BCQ_UNIT_BYTES = 46
BCQ_INVALID_POS = -1

_CQ = struct.Struct(">qiq")
_BCQ = struct.Struct(">qiqqqhii")


def encode_cq_unit(physical_offset: int, size: int, tags_code: int) -> bytes:
    """One 20-byte ConsumeQueue unit."""
    try:
        return _CQ.pack(physical_offset, size, tags_code)
    except struct.error as exc:
        raise UserError(f"consume queue unit field out of range: {exc}") from None


_CQ_RUNS: dict[int, struct.Struct] = {}      # units in a run -> its Struct (one pack per run)
_CQ_RUNS_MAX = 64                             # run lengths kept; longer or rarer runs built each time


def encode_cq_units(flat: list[int]) -> bytes:
    """Consecutive ConsumeQueue units from ``flat`` = [physical_offset, size, tags_code, ...] (three
    ints a unit): the bytes of ``encode_cq_unit`` of each, joined, in one ``struct`` call."""
    n = len(flat) // 3
    st = _CQ_RUNS.get(n)
    if st is None:
        st = struct.Struct(">" + "qiq" * n)
        if len(_CQ_RUNS) < _CQ_RUNS_MAX:
            _CQ_RUNS[n] = st
    try:
        return st.pack(*flat)
    except struct.error as exc:
        raise UserError(f"consume queue unit field out of range: {exc}") from None


def encode_cq_filler() -> bytes:
    return _CQ.pack(*CQ_FILLER)


def decode_cq_unit(buf: ByteView, pos: int = 0, *, where: str | None = None) -> tuple[int, int, int]:
    """(physical_offset, size, tags_code) at ``buf[pos:pos+20]``; CorruptDataError if short."""
    if pos < 0 or len(buf) - pos < CQ_UNIT_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, a consume queue unit needs {CQ_UNIT_BYTES}",
                               where=where, offset=pos)
    return _CQ.unpack_from(buf, pos)


def decode_cq_units(buf: ByteView) -> list[tuple[int, int, int]]:
    """Every whole 20-byte unit of ``buf`` as (physical_offset, size, tags_code), in order (one
    C-level pass: a pull reads its units this way); a partial unit at the end is left out."""
    whole = len(buf) - len(buf) % CQ_UNIT_BYTES
    return list(_CQ.iter_unpack(buf if whole == len(buf) else memoryview(buf)[:whole]))


def is_cq_filler(physical_offset: int, size: int, tags_code: int = 0) -> bool:
    """True for the "no message" filler unit (only offset and size matter, as in RocketMQ)."""
    return physical_offset == 0 and size == CQ_FILLER_SIZE


def is_cq_end(physical_offset: int, size: int, tags_code: int = 0) -> bool:
    """True where the queue's data ends: offset < 0 or size <= 0 (zero-filled space)."""
    return physical_offset < 0 or size <= 0


@dataclass
class BcqUnit:
    """One BatchConsumeQueue unit; it covers queue offsets [base_offset, base_offset + batch_size)."""

    physical_offset: int
    size: int
    tags_code: int
    store_timestamp_ms: int
    base_offset: int
    batch_size: int
    compacted_offset: int = BCQ_INVALID_POS
    reserved: int = 0

    @property
    def is_valid(self) -> bool:
        """BatchConsumeQueue's recovery test for an entry."""
        return self.physical_offset >= 0 and self.size > 0 and self.base_offset >= 0 and self.batch_size > 0


def encode_bcq_unit(unit: BcqUnit) -> bytes:
    """One 46-byte BatchConsumeQueue unit."""
    try:
        return _BCQ.pack(unit.physical_offset, unit.size, unit.tags_code, unit.store_timestamp_ms,
                         unit.base_offset, unit.batch_size, unit.compacted_offset, unit.reserved)
    except struct.error as exc:
        raise UserError(f"batch consume queue unit field out of range: {exc}") from None


def encode_bcq_units(flat: list[int]) -> bytes:
    """Consecutive BatchConsumeQueue units from ``flat`` = [physical_offset, size, tags_code,
    store_timestamp_ms, base_offset, batch_size, ...] (six ints a unit; compacted offset and reserved
    are the defaults): the bytes of ``encode_bcq_unit`` of each, joined."""
    pack, invalid = _BCQ.pack, BCQ_INVALID_POS
    try:
        return b"".join([pack(*flat[i:i + 6], invalid, 0) for i in range(0, len(flat) - 5, 6)])
    except struct.error as exc:
        raise UserError(f"batch consume queue unit field out of range: {exc}") from None


def decode_bcq_unit(buf: ByteView, pos: int = 0, *, where: str | None = None) -> BcqUnit:
    """The unit at ``buf[pos:pos+46]``; CorruptDataError if short. Check ``.is_valid`` for the end."""
    if pos < 0 or len(buf) - pos < BCQ_UNIT_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, a batch consume queue unit needs "
                               f"{BCQ_UNIT_BYTES}", where=where, offset=pos)
    return BcqUnit(*_BCQ.unpack_from(buf, pos))


def find_bcq_unit(units: list[BcqUnit], queue_offset: int) -> int | None:
    """Index in ``units`` (sorted by base_offset) of the unit covering ``queue_offset``, or None."""
    lo, hi = 0, len(units)
    while lo < hi:
        mid = (lo + hi) // 2
        if units[mid].base_offset <= queue_offset:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return None
    unit = units[lo - 1]
    return lo - 1 if queue_offset < unit.base_offset + unit.batch_size else None
