"""The plain commitlog of ``v4``/``v5`` stores: records back to back in ``{root}/commitlog/``.

Records are laid out as RocketMQ lays them (spec 3.8): a record (or an ordinary batch, as a whole)
that does not fit in the current segment with 8 bytes to spare is preceded by an end-of-file blank
``(remaining, BLANK_MAGIC)`` and written at the start of the next segment. A record's
PHYSICALOFFSET is its own absolute offset.

Both commitlog kinds (this one and ``dledger_log.DLedgerCommitLog``) offer the same interface to
the store:

* ``end_offset``: the write position (one past the last byte written);
* ``append_messages(msgs, term=0) -> list[(physical_offset, size)]``: fills each message's
  PHYSICALOFFSET, encodes and writes them (the caller has assigned queue offsets);
* ``read(physical_offset, size) -> bytes``: a record's bytes;
* ``scan(start, stop, check_crc=...)``: yields ``(physical_offset, record_bytes, next_position)``
  for every record whose entry starts in ``[start, stop)``; ``next_position`` is where the next
  entry starts, the value to resume a scan (or to checkpoint a dispatch) from;
* ``recover(start, check_crc)``: walk from ``start`` (a segment start), stop at the first invalid
  record (spec 3.9), zero everything after it, and return the new end;
* ``flush()``, ``truncate(position)``, ``close()``.
"""
from __future__ import annotations

import os
import re
import struct
from typing import Iterator

from mqbench.errors import UserError

from .record import (BLANK_MIN_BYTES, RECORD_BLANK, RECORD_END, SYSFLAG_BORNHOST_V6, SYSFLAG_STOREHOST_V6, Message,
                     check_record, encode_blank, encode_message)
from .segments import SegmentQueue

SCAN_CHUNK_BYTES = 4 << 20

_PHYSICAL_OFFSET = struct.Struct(">q")
_PHYSICAL_OFFSET_AT = 28     # record field 7, spec 3.2
_SYSFLAG_AT = 36             # field 8
_BODY_LENGTH_AT = 68         # field 15 sits at 68 + BH + SH (84 with two IPv4 hosts)
_I32 = struct.Struct(">i")
_U16 = struct.Struct(">H")
_U8 = struct.Struct(">B")
_TOPIC_BYTES = re.compile(rb"[%|a-zA-Z0-9_-]+")
_MAGIC_V1_BYTES = bytes.fromhex("daa320a7")


def physical_offset_field(buf, pos: int) -> int:
    """PHYSICALOFFSET of the record at ``buf[pos:]``: its own log offset when it was written."""
    return int.from_bytes(buf[pos + 28:pos + 36], "big", signed=True)


def record_tail_sound(buf, pos: int, size: int) -> bool:
    """The part of a record the body CRC does not cover, checked for a torn (zero-filled) tail.

    BODYCRC covers only the body, so a crash that loses the last bytes of a record (its topic or
    properties now read as zeros) can leave a record that passes ``check_record``. A record that
    the broker wrote has a topic of legal characters and, when it has properties, a property
    string ending with ``\\x02`` (RocketMQ's writer always ends it so); recovery requires both.
    ``buf[pos:pos+size]`` must already have passed ``check_record``.
    """
    # Fields read (spec 3.2; BH/SH = 8 for an IPv4 host, 20 for IPv6):
    #   off           size  field
    #   4             4     MAGICCODE (V1: 1-byte topic length, V2: 2 bytes)
    #   36            4     SYSFLAG (0x10 / 0x20: born / store host is IPv6)
    #   68+BH+SH      4     BODYLENGTH B, then B bytes of BODY
    #   72+BH+SH+B    1|2   TOPICLENGTH T, then T bytes of TOPIC
    #   ...           2     PROPERTIESLENGTH P, then P bytes of PROPERTIES (the record's last bytes)
    (sysflag,) = _I32.unpack_from(buf, pos + _SYSFLAG_AT)
    born = 20 if sysflag & SYSFLAG_BORNHOST_V6 else 8
    stored = 20 if sysflag & SYSFLAG_STOREHOST_V6 else 8
    at = pos + _BODY_LENGTH_AT + born + stored
    (body_len,) = _I32.unpack_from(buf, at)
    at += _I32.size + body_len
    if bytes(buf[pos + 4:pos + 8]) == _MAGIC_V1_BYTES:
        (topic_len,) = _U8.unpack_from(buf, at)
        at += _U8.size
    else:
        (topic_len,) = _U16.unpack_from(buf, at)
        at += _U16.size
    if not _TOPIC_BYTES.fullmatch(bytes(buf[at:at + topic_len])):
        return False
    (props_len,) = _U16.unpack_from(buf, at + topic_len)
    return props_len == 0 or buf[pos + size - 1] == 2


class SegmentWindow:
    """Reads a segment through a sliding in-memory window, so a scan of a 1 GiB segment never
    holds more than a few MiB (plus the largest record)."""

    def __init__(self, segments: SegmentQueue, segment_start: int, chunk_bytes: int = SCAN_CHUNK_BYTES):
        self.segments = segments
        self.segment_start = segment_start
        self.segment_end = segment_start + segments.segment_size_bytes
        self.chunk_bytes = chunk_bytes
        self.base = segment_start
        self.buf = b""

    def view(self, offset: int, need: int) -> tuple[bytes, int, int]:
        """(buffer, position of ``offset`` in it, usable end) with at least ``need`` bytes from
        ``offset`` when the segment has them."""
        rel = offset - self.base
        if rel < 0 or rel + need > len(self.buf):
            size = max(self.chunk_bytes, need)
            size = min(size, self.segment_end - offset)
            self.buf = self.segments.read(offset, size)
            self.base = offset
            rel = 0
        return self.buf, rel, len(self.buf)


def _peek_size(buf: bytes, pos: int, end: int) -> int:
    return int.from_bytes(buf[pos:pos + 4], "big", signed=True) if end - pos >= 4 else 0


class CommitLog:
    """Plain commitlog over a SegmentQueue (see module doc)."""

    kind = "plain"

    def __init__(self, directory: str | os.PathLike, segment_size_bytes: int):
        self.segments = SegmentQueue(directory, segment_size_bytes)
        self.segment_size_bytes = segment_size_bytes
        self.end_offset = self.segments.min_offset
        self.last_store_timestamp_ms = 0

    @property
    def min_offset(self) -> int:
        return self.segments.min_offset

    # -- writing -----------------------------------------------------------------------------

    def append_messages(self, msgs: list[Message], term: int = 0) -> list[tuple[int, int]]:
        """Write ``msgs`` back to back in one segment (a batch moves to the next segment whole).

        Each record is encoded once; its PHYSICALOFFSET (outside the body, so outside BODYCRC) is
        filled in when its place is known."""
        records = [bytearray(encode_message(m)) for m in msgs]
        total = sum(len(r) for r in records)
        if total + BLANK_MIN_BYTES > self.segment_size_bytes:
            raise UserError(f"a batch of {total} bytes does not fit in a commitlog segment of "
                            f"{self.segment_size_bytes} bytes")
        pos = self.end_offset
        remaining = self.segments.remaining_in_segment(pos)
        if total + BLANK_MIN_BYTES > remaining:
            self.segments.write(pos, encode_blank(remaining))
            pos += remaining
        out = []
        at = pos
        for msg, record in zip(msgs, records):
            msg.physical_offset = at
            _PHYSICAL_OFFSET.pack_into(record, _PHYSICAL_OFFSET_AT, at)
            out.append((at, len(record)))
            at += len(record)
        self.segments.write(pos, b"".join(records))
        self.end_offset = at
        if msgs:
            self.last_store_timestamp_ms = msgs[-1].store_timestamp_ms
        return out

    def read(self, physical_offset: int, size: int) -> bytes:
        return self.segments.read(physical_offset, size)

    def flush(self) -> None:
        self.segments.flush()

    def truncate(self, position: int) -> None:
        self.segments.truncate(position)
        self.end_offset = max(position, self.segments.min_offset)

    def close(self) -> None:
        self.segments.close()

    # -- scanning and recovery ---------------------------------------------------------------

    def _walk(self, start: int, stop: int | None, check_crc: bool) -> Iterator[tuple[int, int, bytes, int]]:
        """Yield (offset, size, buffer, position-in-buffer) for valid records from ``start`` until
        the first invalid one or ``stop``; sets ``self._walk_end`` to where the walk ended."""
        pos = start
        self._walk_end = pos
        starts = self.segments.segment_starts()
        if not starts or pos >= self.segments.end_offset:
            return
        window = None
        while stop is None or pos < stop:
            seg_start = self.segments.segment_start(pos)
            if seg_start not in starts:
                break
            if window is None or window.segment_start != seg_start:
                window = SegmentWindow(self.segments, seg_start)
            buf, rel, end = window.view(pos, 8)
            size = _peek_size(buf, rel, end)
            if size > 8 and end - rel < size:
                buf, rel, end = window.view(pos, size)
            result = check_record(buf, rel, end, check_crc=check_crc)
            if result == RECORD_BLANK:
                if size != seg_start + self.segment_size_bytes - pos:
                    break   # a "blank" that does not close the segment is garbage, not a blank
                pos = seg_start + self.segment_size_bytes
                self._walk_end = pos
                continue
            if (result == RECORD_END or not record_tail_sound(buf, rel, result)
                    or physical_offset_field(buf, rel) != pos):
                break   # torn, garbage, or a record that does not know where it is
            yield pos, result, buf, rel
            pos += result
            self._walk_end = pos

    def scan(self, start: int, stop: int | None = None, *, check_crc: bool = False
             ) -> Iterator[tuple[int, bytes, int]]:
        for offset, size, buf, rel in self._walk(start, stop, check_crc):
            yield offset, bytes(buf[rel:rel + size]), offset + size

    def recover(self, start: int, *, check_crc: bool = True) -> int:
        """Find the end of valid data from ``start``, zero everything after it; returns the end."""
        start = max(start, self.segments.min_offset)
        for _ in self._walk(start, None, check_crc):
            pass
        end = self._walk_end
        if end < self.segments.end_offset:
            self.segments.truncate(end)
        self.end_offset = max(end, self.segments.min_offset)
        return self.end_offset

    def entry_end(self, position: int) -> int:
        """Plain records: a dispatch limit is already a byte position."""
        return position
