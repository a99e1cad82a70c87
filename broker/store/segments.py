"""Segment files: one logical byte space split into fixed-size files (RocketMQ's MappedFileQueue).

A ``SegmentQueue`` owns one directory. Every file in it has the same size (``segment_size_bytes``)
and is named by the absolute offset of its first byte, in decimal, zero-padded to 20 digits (spec
2). Offset ``X`` lives in the file named ``X - X % size`` at position ``X % size``.

Contract:

* Files are created at their full size and read as zeros where nothing was written. Creation uses
  ``ftruncate`` (a sparse file), never writes of zeros, so creating a 1 GiB segment is instant.
* ``write(offset, data)`` writes inside ONE segment (the caller places records so they never cross
  a file boundary, as RocketMQ and DLedger do); the segment is created if it is the next one.
* ``read(offset, size)`` may cross segment boundaries; bytes past the last segment are not returned
  (the result is shorter).
* ``truncate(offset)`` makes every byte at and after ``offset`` zero: the tail of the segment that
  holds ``offset`` is cut with ``ftruncate`` down then up again (the kernel zero-fills), and every
  later segment is deleted. It is fsynced before it returns.
* ``combined_writes()`` (a context manager; nests) gathers the writes made inside it that continue
  each other in one segment and hands each run to the kernel with one ``pwrite``: when the block
  ends, when a write does not continue the run, or before any read, truncate or close. A Raft
  append of N entries or the dispatch of N queue units is then a few syscalls instead of N. A
  write of ``COMBINE_MAX_BYTES`` or more (a Raft round built in one buffer) is handed to the
  kernel at once, after the run before it: gathering it would only cost a copy. The
  caller must not announce the bytes (to a flusher thread, a peer or a client) before the block
  ends: until then they are in this process only.
* ``flush()`` fdatasyncs every segment written since the last flush. It may run in another thread
  than ``write``: structural changes (create, delete, close) take ``self.lock``, plain writes to
  existing segments take nothing. A flush takes ``self.lock`` only to pick its segments and runs
  its fdatasyncs under ``self.flush_lock``, which removing segments (truncate, delete, close) also
  takes, so creating the next segment (an append's) never waits for an fdatasync.
* Creating a segment does not fsync the directory: ``flush()`` and ``flush_from()`` do it once for
  every segment created since the last one, with their fdatasyncs, before they return. A new
  segment and its directory entry are thus durable exactly when the bytes written to it are, and
  an append on the event loop that opens the next segment never waits for a directory fsync
  (10-27 ms each under load, the loop-stall probe's finding). ``truncate``/``delete_before`` still
  fsync the directory before they return.
* On open, a file whose name is not 20 digits, whose size differs from the configured size, or a
  gap between file names raises ``CorruptDataError`` naming the file (RocketMQ refuses to start
  too). A last file of length 0 (a crash while creating it) is deleted, as RocketMQ does.

* ``tail_cache_bytes`` > 0 keeps the newest bytes written (at most that many) in memory
  (``tail_cache.TailCache``), and ``read`` answers a range it holds whole from there, without a
  ``pread`` (the pull path's records and consume-queue units, read just after they were written).
  Every ``write`` goes into it, ``truncate`` and ``delete_before`` cut it, so it always holds what
  the files hold. Like ``write``, the cache belongs to the writing thread (``flush`` never
  touches it).

Plain ``os.pwrite``/``os.pread`` on file descriptors are used; no mmap.
"""
from __future__ import annotations

import os
import threading
from bisect import bisect_right
from contextlib import contextmanager
from typing import Iterator
from pathlib import Path

from mqbench.errors import CorruptDataError, InvariantViolation, UserError

from .tail_cache import TailCache

NAME_DIGITS = 20
# inside combined_writes, a write this large goes to the kernel at once (module doc): one pwrite's
# worth already, where gathering it would cost a copy of it
COMBINE_MAX_BYTES = 16 << 10


def segment_name(start_offset: int) -> str:
    """The 20-digit file name of the segment starting at ``start_offset``."""
    return f"{start_offset:0{NAME_DIGITS}d}"


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a create/rename/delete in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Segment:
    __slots__ = ("start", "path", "fd")

    def __init__(self, start: int, path: Path, fd: int):
        self.start = start
        self.path = path
        self.fd = fd


class SegmentQueue:
    """A directory of fixed-size segment files addressed by absolute offset (see module doc)."""

    def __init__(self, directory: str | os.PathLike, segment_size_bytes: int, *, create: bool = True,
                 tail_cache_bytes: int = 0):
        if segment_size_bytes <= 0:
            raise UserError(f"segment size must be positive, got {segment_size_bytes}")
        self.directory = Path(directory)
        self.segment_size_bytes = segment_size_bytes
        self.lock = threading.RLock()
        self.flush_lock = threading.RLock()    # fdatasyncs, and what must not close an fd under them
        self._segments: list[_Segment] = []
        self._starts: list[int] = []
        self._dirty: set[int] = set()
        self._closed = False
        self._dir_unsynced = False           # a segment was created since the last directory fsync
        self._combining = 0
        self._run: list[bytes] = []          # combined writes not yet handed to the kernel
        self._run_at = 0
        self._run_bytes = 0
        self._tail = TailCache(tail_cache_bytes) if tail_cache_bytes > 0 else None
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)
        elif not self.directory.is_dir():
            raise UserError(f"{self.directory}: no such directory")
        self._load()

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        names = sorted(p.name for p in self.directory.iterdir() if not p.name.startswith("."))
        for name in names:
            path = self.directory / name
            if len(name) != NAME_DIGITS or not name.isdigit():
                raise CorruptDataError("not a segment file name (20 digits expected)", where=str(path))
            if not path.is_file():
                raise CorruptDataError("segment is not a regular file", where=str(path))
        prev_start = None
        for i, name in enumerate(names):
            path = self.directory / name
            start = int(name)
            size = path.stat().st_size
            if size == 0 and i == len(names) - 1:
                path.unlink()  # crash while creating the newest file; RocketMQ deletes it too
                break
            if size != self.segment_size_bytes:
                raise CorruptDataError(
                    f"segment is {size} bytes, expected {self.segment_size_bytes} "
                    "(all segment files must have the configured size)", where=str(path))
            if start % self.segment_size_bytes:
                raise CorruptDataError(
                    f"segment name is not a multiple of the segment size {self.segment_size_bytes}",
                    where=str(path))
            if prev_start is not None and start != prev_start + self.segment_size_bytes:
                raise CorruptDataError(
                    f"gap in segment files: expected {segment_name(prev_start + self.segment_size_bytes)}",
                    where=str(path))
            prev_start = start
            self._append_segment(start, path, os.open(path, os.O_RDWR))

    def _append_segment(self, start: int, path: Path, fd: int) -> None:
        self._segments.append(_Segment(start, path, fd))
        self._starts.append(start)

    # -- geometry ----------------------------------------------------------------------------

    @property
    def min_offset(self) -> int:
        """Start offset of the first segment (0 for an empty queue)."""
        return self._starts[0] if self._starts else 0

    @property
    def end_offset(self) -> int:
        """One past the last byte of the last segment (0 for an empty queue)."""
        return self._starts[-1] + self.segment_size_bytes if self._starts else 0

    def segment_starts(self) -> list[int]:
        """Start offsets of the segments, ascending."""
        return list(self._starts)

    def segment_start(self, offset: int) -> int:
        """Start offset of the segment that would hold ``offset``."""
        return offset - offset % self.segment_size_bytes

    def remaining_in_segment(self, offset: int) -> int:
        """Bytes from ``offset`` to the end of its segment."""
        return self.segment_size_bytes - offset % self.segment_size_bytes

    def _find(self, offset: int) -> _Segment | None:
        i = bisect_right(self._starts, offset) - 1
        if i < 0:
            return None
        seg = self._segments[i]
        if offset >= seg.start + self.segment_size_bytes:
            return None
        return seg

    def _create(self, start: int) -> _Segment:
        with self.lock:
            seg = self._find(start)
            if seg is not None:
                return seg
            if self._starts and start != self._starts[-1] + self.segment_size_bytes:
                raise InvariantViolation(
                    f"{self.directory}: segment {segment_name(start)} would leave a gap after "
                    f"{segment_name(self._starts[-1])}")
            if start % self.segment_size_bytes:
                raise InvariantViolation(f"{self.directory}: segment start {start} is not aligned")
            path = self.directory / segment_name(start)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            os.ftruncate(fd, self.segment_size_bytes)  # sparse, reads as zeros
            self._dir_unsynced = True                   # the next flush fsyncs the directory (module doc)
            self._append_segment(start, path, fd)
            return self._segments[-1]

    def ensure(self, start_offset: int) -> None:
        """Create the (next) segment starting at ``start_offset`` if it does not exist yet.

        On an empty queue any aligned start is accepted (a queue may begin at a non-zero offset)."""
        self._create(self.segment_start(start_offset))

    @property
    def tail_cache(self) -> TailCache | None:
        """The in-memory tail (module doc), None without one; read it, never write it."""
        return self._tail

    # -- I/O ---------------------------------------------------------------------------------

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at absolute ``offset``; it must fit in one segment."""
        if self._closed:
            raise InvariantViolation(f"{self.directory}: write after close")
        if len(data) > self.remaining_in_segment(offset):
            raise InvariantViolation(
                f"{self.directory}: write of {len(data)} bytes at {offset} crosses a segment boundary")
        seg = self._find(offset) or self._create(self.segment_start(offset))
        if self._tail is not None:
            self._tail.put(offset, data)
        if self._combining and len(data) < COMBINE_MAX_BYTES:
            run = self._run
            if run and offset == self._run_at + self._run_bytes and offset % self.segment_size_bytes:
                run.append(bytes(data))           # continues the run inside the same segment
                self._run_bytes += len(data)
                return
            self._write_run()
            self._run, self._run_at, self._run_bytes = [bytes(data)], offset, len(data)
            return
        if self._run:
            self._write_run()           # what was gathered before it goes first
        self._pwrite(seg, offset, data)

    def _pwrite(self, seg: _Segment, offset: int, data: bytes | bytearray | memoryview) -> None:
        pos = offset - seg.start
        view = memoryview(data)
        while view:
            n = os.pwrite(seg.fd, view, pos)
            view = view[n:]
            pos += n
        self._dirty.add(seg.start)

    def _write_run(self) -> None:
        if not self._run:
            return
        run, at = self._run, self._run_at
        self._run, self._run_bytes = [], 0
        seg = self._find(at)
        if seg is None:
            raise InvariantViolation(f"{self.directory}: combined writes at {at} lost their segment")
        self._pwrite(seg, at, run[0] if len(run) == 1 else b"".join(run))

    @contextmanager
    def combined_writes(self) -> Iterator[None]:
        """Gather contiguous writes inside the block into one ``pwrite`` per run (module doc)."""
        self._combining += 1
        try:
            yield
        finally:
            self._combining -= 1
            if not self._combining:
                self._write_run()

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (shorter where the segments end)."""
        if self._tail is not None:
            held = self._tail.get(offset, size)
            if held is not None:
                return held
        self._write_run()
        parts = []
        while size > 0:
            seg = self._find(offset)
            if seg is None:
                break
            pos = offset - seg.start
            n = min(size, self.segment_size_bytes - pos)
            chunk = os.pread(seg.fd, n, pos)
            parts.append(chunk)
            if len(chunk) < n:
                break
            offset += n
            size -= n
        return b"".join(parts)

    def read_segment(self, start: int) -> bytes:
        """The whole segment starting at ``start`` (used by scans)."""
        return self.read(start, self.segment_size_bytes)

    def flush(self) -> None:
        """fdatasync every segment written since the last flush, and fsync the directory if a
        segment was created since (thread-safe; module doc)."""
        with self.flush_lock:
            with self.lock:
                dirty, self._dirty = self._dirty, set()
                segments = [seg for seg in self._segments if seg.start in dirty]
            self._sync_dir()
            for seg in segments:
                os.fdatasync(seg.fd)

    def _sync_dir(self) -> None:
        """fsync the directory if a segment was created since the last time (under ``flush_lock``)."""
        with self.lock:
            unsynced, self._dir_unsynced = self._dir_unsynced, False
        if unsynced:
            try:
                fsync_dir(self.directory)
            except BaseException:
                self._dir_unsynced = True        # the next flush tries again
                raise

    def flush_from(self, offset: int) -> None:
        """fdatasync every segment from the one holding ``offset`` on (after a recovery, data read
        from the page cache may not be on disk yet)."""
        with self.flush_lock:
            with self.lock:
                segments = [seg for seg in self._segments if seg.start + self.segment_size_bytes > offset]
            self._sync_dir()
            for seg in segments:
                os.fdatasync(seg.fd)

    def truncate(self, offset: int) -> None:
        """Zero every byte at and after ``offset``; delete the segments after it (fsynced)."""
        self._write_run()
        if self._tail is not None:
            self._tail.cut(offset)
        with self.flush_lock, self.lock:
            keep = []
            for seg in self._segments:
                if seg.start + self.segment_size_bytes <= offset:
                    keep.append(seg)
                elif seg.start < offset or (seg.start == offset and not keep):
                    # cut the tail: shrinking then growing back zero-fills it (no writes of zeros);
                    # a first segment cut at its start is kept (empty) so the queue keeps its start
                    os.ftruncate(seg.fd, offset - seg.start)
                    os.ftruncate(seg.fd, self.segment_size_bytes)
                    os.fsync(seg.fd)
                    keep.append(seg)
                else:
                    os.close(seg.fd)
                    seg.path.unlink()
                    self._dirty.discard(seg.start)
            self._segments = keep
            self._starts = [s.start for s in keep]
            fsync_dir(self.directory)

    def delete_before(self, offset: int) -> int:
        """Delete whole segments that end at or before ``offset`` (retention); returns how many."""
        self._write_run()
        with self.flush_lock, self.lock:
            n = 0
            while len(self._segments) > 1 and self._segments[0].start + self.segment_size_bytes <= offset:
                seg = self._segments.pop(0)
                self._starts.pop(0)
                os.close(seg.fd)
                seg.path.unlink()
                self._dirty.discard(seg.start)
                n += 1
            if self._tail is not None:
                self._tail.drop_before(self.min_offset)
            if n:
                fsync_dir(self.directory)
            return n

    def close(self) -> None:
        """Flush and close every file descriptor."""
        with self.flush_lock, self.lock:
            if self._closed:
                return
            self._write_run()
            self.flush()
            for seg in self._segments:
                os.close(seg.fd)
            self._closed = True
