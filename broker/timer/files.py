"""The timer store's two files: the append-only timer log and the timing-wheel file.

Both layouts are the spec's (section 10) and are packed in ``mqbench.broker.formats.timer_formats``
(the field tables are there: TimerLog unit 52 B, end-of-file blank 16 B, wheel slot 32 B).

``TimerLog`` (``{root}/timerlog/``, segment files of ``segment_bytes``, 20-digit names):

* ``append(unit) -> pos``: the unit's log offset. A unit never crosses a file: when fewer than
  52 + 16 bytes would stay free in the file, a 16-byte blank (remaining, 0, BLANK_MAGIC) is written
  and the unit starts the next file (spec 10.1).
* Appends are buffered (``buffer_bytes``) and written with ``pwrite`` by ``flush``; ``read_unit``
  serves buffered units too. No mmap: pending timers cost disk and page cache, never process RSS.
* ``recover(from_pos) -> end``: walks units from a known-good position (the checkpoint) to the
  first byte that is neither a unit nor a blank, zeroes everything after it (a torn tail) and
  returns the end. ``scan(from_pos, to_pos)`` yields ``(pos, unit)`` in between.

``TimerWheel`` (``{root}/timerwheel``, one file of 2 x 604800 slots x 32 B = 38 707 200 bytes,
created sparse): ``get(slot_time)`` and ``put(slot_time, slot)`` where ``slot_time`` = time //
precision. Changed slots are kept in memory (``dirty``) and written by ``flush`` only; the index
flushes the log (fdatasync) before the wheel, so the wheel on disk never points past the durable
log. A slot whose stored time differs from the time asked for is empty (spec 10.2). An existing
wheel file of another length is refused (CorruptDataError), as RocketMQ refuses to start.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from mqbench.broker.store.segments import SegmentQueue
from mqbench.broker.formats.timer_formats import (
    EMPTY_SLOT,
    SLOTS_TOTAL,
    TIMER_LOG_BLANK_BYTES,
    TIMER_LOG_FILE_BYTES,
    TIMER_LOG_UNIT_BYTES,
    TIMER_WHEEL_FILE_BYTES,
    UNIT_BLANK,
    WHEEL_SLOT_BYTES,
    TimerLogUnit,
    WheelSlot,
    check_timer_unit,
    decode_timer_unit,
    decode_wheel_slot,
    encode_timer_blank,
    encode_timer_unit,
    encode_wheel_slot,
)
from mqbench.errors import CorruptDataError, UserError

TIMERLOG_DIR = "timerlog"
WHEEL_FILE = "timerwheel"
DEFAULT_BUFFER_BYTES = 256 * 1024
_WALK_CHUNK_BYTES = 1 << 20


class TimerLog:
    """The append-only timer log of one store (see module doc)."""

    def __init__(self, folder: str | os.PathLike, *, segment_bytes: int = TIMER_LOG_FILE_BYTES,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES):
        if segment_bytes < TIMER_LOG_UNIT_BYTES + TIMER_LOG_BLANK_BYTES:
            raise UserError(f"timer log segment of {segment_bytes} bytes cannot hold a unit and a blank")
        self.folder = Path(folder)
        self.files = SegmentQueue(self.folder, segment_bytes)
        self.segment_bytes = segment_bytes
        self.buffer_bytes = buffer_bytes
        self.end = self.files.end_offset    # set properly by recover()
        self._buf = bytearray()
        self._buf_start = self.end

    @property
    def flushed_end(self) -> int:
        return self._buf_start

    def recover(self, from_pos: int) -> int:
        """Find the end of the valid units from ``from_pos`` on; zero what follows (see module doc)."""
        pos = max(from_pos, self.files.min_offset)
        for _ in self._walk(pos, None):
            pass  # walking to the end is what sets ``_walk_end``
        self.end = self._walk_end
        self.files.truncate(self.end)
        self.files.ensure(self.end)
        self._buf = bytearray()
        self._buf_start = self.end
        return self.end

    def truncate(self, pos: int) -> None:
        """Drop every unit at and after ``pos`` (the bytes are zeroed)."""
        self.flush(fsync=False)
        self.files.truncate(pos)
        self.files.ensure(pos)
        self.end = self._buf_start = pos

    def _walk(self, pos: int, stop: int | None) -> Iterator[tuple[int, bytes]]:
        """(pos, raw unit) from ``pos`` until ``stop`` or the first non-unit, reading 1 MiB at a
        time; ``_walk_end`` is left at the end reached."""
        self._walk_end = pos
        while stop is None or pos < stop:
            seg_left = self.segment_bytes - pos % self.segment_bytes
            want = min(_WALK_CHUNK_BYTES, seg_left)
            data = self.read(pos, want)
            at = 0
            while stop is None or pos + at < stop:
                kind = check_timer_unit(data, at, len(data))
                if kind != TIMER_LOG_UNIT_BYTES:
                    break
                yield pos + at, bytes(data[at:at + TIMER_LOG_UNIT_BYTES])
                at += TIMER_LOG_UNIT_BYTES
                self._walk_end = pos + at
            else:
                return                                   # reached stop
            if kind == UNIT_BLANK:
                pos += seg_left                          # the rest of this file is the blank
                self._walk_end = pos
                continue
            cut = len(data) == want < seg_left and len(data) - at < TIMER_LOG_UNIT_BYTES
            if not cut:
                return                                   # zeros or garbage: the end
            pos += at                                    # a unit was cut by the chunk: read on

    def scan(self, from_pos: int, to_pos: int) -> Iterator[tuple[int, TimerLogUnit]]:
        """Every unit between two log offsets, in order (CorruptDataError if one does not parse)."""
        for pos, raw in self._walk(from_pos, to_pos):
            yield pos, decode_timer_unit(raw, 0, where=str(self.folder))

    def append(self, unit: TimerLogUnit) -> int:
        """Append one unit; returns its log offset."""
        left = self.segment_bytes - self.end % self.segment_bytes
        if left < TIMER_LOG_UNIT_BYTES + TIMER_LOG_BLANK_BYTES:
            self._buf += encode_timer_blank(left)
            self.flush(fsync=False)
            self.end += left
            self._buf_start = self.end
            self.files.ensure(self.end)
        pos = self.end
        self._buf += encode_timer_unit(unit)
        self.end += TIMER_LOG_UNIT_BYTES
        if len(self._buf) >= self.buffer_bytes:
            self.flush(fsync=False)
        return pos

    def read(self, pos: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``pos`` (buffered bytes included)."""
        if pos >= self._buf_start:
            at = pos - self._buf_start
            return bytes(self._buf[at:at + size])
        data = self.files.read(pos, min(size, self._buf_start - pos))
        if len(data) < size and pos + len(data) == self._buf_start:
            data += bytes(self._buf[:size - len(data)])
        return data

    def read_unit(self, pos: int) -> TimerLogUnit:
        return decode_timer_unit(self.read(pos, TIMER_LOG_UNIT_BYTES), 0, where=f"{self.folder} at {pos}")

    def flush(self, *, fsync: bool = True) -> None:
        """Write the buffered units; with ``fsync`` also make them durable."""
        if self._buf:
            start = self._buf_start
            while self._buf:   # the buffer never crosses a file (a blank flushes it)
                self.files.write(start, self._buf)
                start += len(self._buf)
                self._buf = bytearray()
            self._buf_start = start
        if fsync:
            self.files.flush()

    def close(self) -> None:
        self.flush()
        self.files.close()


class TimerWheel:
    """The timing-wheel file (see module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exists = self.path.exists()
        if exists:
            size = self.path.stat().st_size
            if size not in (0, TIMER_WHEEL_FILE_BYTES):
                raise CorruptDataError(f"timer wheel file of {size} bytes, {TIMER_WHEEL_FILE_BYTES} expected",
                                       where=str(self.path))
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self.fd, TIMER_WHEEL_FILE_BYTES)   # sparse: untouched slots read as zeros
        self.dirty: dict[int, bytes] = {}      # slot time -> the 32 packed bytes (compact in memory)
        self._unsynced = False                 # slots written since the last fdatasync

    @staticmethod
    def _file_pos(slot_time: int) -> int:
        return (slot_time % (2 * SLOTS_TOTAL)) * WHEEL_SLOT_BYTES

    def get(self, slot_time: int) -> WheelSlot:
        raw = self.dirty.get(slot_time)
        if raw is None:
            raw = os.pread(self.fd, WHEEL_SLOT_BYTES, self._file_pos(slot_time))
        slot = decode_wheel_slot(raw, 0, where=str(self.path))
        return slot if slot.time_div_precision == slot_time and slot.num > 0 else EMPTY_SLOT

    def put(self, slot_time: int, slot: WheelSlot) -> None:
        self.dirty[slot_time] = encode_wheel_slot(slot)

    def flush(self, *, fsync: bool = True) -> None:
        """Write the changed slots; with ``fsync`` make them durable (no fdatasync when nothing was
        written since the last one: the timer checkpoints every second, busy or not)."""
        for slot_time in sorted(self.dirty, key=self._file_pos):
            os.pwrite(self.fd, self.dirty[slot_time], self._file_pos(slot_time))
            self._unsynced = True
        self.dirty.clear()
        if fsync and self._unsynced:
            os.fdatasync(self.fd)
            self._unsynced = False

    def reset(self) -> None:
        """Forget every slot (a rebuild): the file is cut to zeros."""
        self.dirty.clear()
        os.ftruncate(self.fd, 0)
        os.ftruncate(self.fd, TIMER_WHEEL_FILE_BYTES)
        self._unsynced = True

    def close(self) -> None:
        self.flush()
        os.close(self.fd)
