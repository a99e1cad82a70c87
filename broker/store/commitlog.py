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
import struct
from typing import Iterator

from mqbench.errors import UserError

from .log_reader import STOP, LogReader, QueueFiles
from mqbench.broker.formats.record import Message, encode_blank, encode_message
from mqbench.broker.formats.record_layout import BLANK_MIN_BYTES
from .segments import SegmentQueue

_PHYSICAL_OFFSET = struct.Struct(">q")
_PHYSICAL_OFFSET_AT = 28     # record field 7, spec 3.2


class CommitLog:
    """Plain commitlog over a SegmentQueue (see module doc)."""

    kind = "plain"

    def __init__(self, directory: str | os.PathLike, segment_size_bytes: int, *, tail_cache_bytes: int = 0):
        self.segments = SegmentQueue(directory, segment_size_bytes, tail_cache_bytes=tail_cache_bytes)
        self.segment_size_bytes = segment_size_bytes
        self.end_offset = self.segments.min_offset
        self.last_store_timestamp_ms = 0

    @property
    def min_offset(self) -> int:
        return self.segments.min_offset

    @property
    def tail_cache(self):
        """The newest bytes written, held in memory (``segments.SegmentQueue.tail_cache``)."""
        return self.segments.tail_cache

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
        the first invalid one or ``stop`` (the one log reader, policy STOP); sets
        ``self._walk_end`` to where the walk ended."""
        self._walk_end = start
        if not self.segments.segment_starts() or start >= self.segments.end_offset:
            return
        reader = LogReader(QueueFiles(self.segments, "commitlog"), dledger=False, policy=STOP, check_crc=check_crc)
        for item in reader.items(start, stop):
            self._walk_end = item.next
            yield item.pos, item.length, item.buf, item.at
        self._walk_end = reader.end

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
