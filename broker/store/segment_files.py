"""Read-only access to the files of a store, for ``inspect``: listing, mapped-file queues, and
walking a commitlog (plain or DLedger-framed) record by record (through the one log reader,
``log_reader``, with the REPORT policy).

Nothing here writes, creates or deletes a file: files are opened ``O_RDONLY`` (random reads are
memory-mapped read-only, a few files at a time), so a 1 GiB segment is never read into memory as
a whole. The file size
of a queue is taken from the files themselves (the most common size in the folder).
"""
from __future__ import annotations

import mmap
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from mqbench.errors import CorruptDataError

from .log_reader import REPORT, FolderFiles, LogItem, LogReader, Segment, SegmentDir, list_segments  # noqa: F401
from .log_runs import ROW_AT, ROW_POS, ROW_TOTAL, LogRun, WindowScan
from mqbench.broker.formats.dledger import ENTRY_HEADER_BYTES
from mqbench.broker.formats.record import decode_message
from mqbench.broker.formats.record_peek import peek_fields
from mqbench.broker.formats.record_check import DAMAGE_CRC
from .versions import detect

_ZERO_CHUNK_BYTES = 1 << 20
_RELEASE_EVERY_BYTES = 64 << 20
_RANDOM_RELEASE_EVERY_BYTES = 32 << 20
_FAULT_AROUND_BYTES = 64 << 10


class MappedFile:
    """A read-only mapping of one file (``b""`` for an empty one); use as a context manager."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDONLY)
        size = os.fstat(self.fd).st_size
        self.data = mmap.mmap(self.fd, size, access=mmap.ACCESS_READ) if size else b""

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()
        os.close(self.fd)

    def __enter__(self):
        return self.data

    def __exit__(self, *exc) -> None:
        self.close()


class SegmentReader:
    """Random reads in a segment folder's address space, keeping a few files mapped (LRU)."""

    def __init__(self, segdir: SegmentDir, cache_files: int = 16):
        self.segdir = segdir
        self._by_start = {s.start: s for s in segdir.segments}
        self._open: OrderedDict[int, MappedFile] = OrderedDict()
        self._cache_files = cache_files
        self._touched_bytes = 0

    def locate(self, offset: int, nbytes: int = mmap.PAGESIZE):
        """(mapped bytes, position in file, file start) for ``offset``, or None past the files.

        ``nbytes`` is about how much the caller will read there; once reads add up to 32 MiB the
        pages of every open mapping are dropped, so random reads do not pile up in memory.
        """
        size = self.segdir.file_size_bytes
        if size <= 0 or offset < 0:
            return None
        start = offset - offset % size
        if start not in self._by_start:
            return None
        # The kernel maps up to 64 KiB around each fault ("fault-around"), hence the allowance.
        self._touched_bytes += max(nbytes, mmap.PAGESIZE) + _FAULT_AROUND_BYTES
        if self._touched_bytes >= _RANDOM_RELEASE_EVERY_BYTES:
            self._touched_bytes = 0
            for mapped in self._open.values():
                release(mapped.data, 0, len(mapped.data))
        mapped = self._open.get(start)
        if mapped is None:
            mapped = MappedFile(self._by_start[start].path)
            self._open[start] = mapped
            if len(self._open) > self._cache_files:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(start)
        return mapped.data, offset - start, start

    def close(self) -> None:
        for mapped in self._open.values():
            mapped.close()
        self._open.clear()


def release(data, start: int, end: int) -> None:
    """Drop the pages of ``data[start:end]`` from this process's mapping (they are re-read from the
    file if touched again), so walking a 1 GiB file does not keep 1 GiB resident."""
    if not isinstance(data, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    lo = start - start % mmap.PAGESIZE
    hi = min(end, len(data))
    hi -= hi % mmap.PAGESIZE
    if hi > lo:
        data.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def count_nonzero(data, start: int, end: int) -> int:
    """Non-zero bytes in ``data[start:end]``, read in 1 MiB chunks (released as they are read)."""
    total = 0
    for at in range(start, end, _ZERO_CHUNK_BYTES):
        stop = min(end, at + _ZERO_CHUNK_BYTES)
        chunk = data[at:stop]
        total += len(chunk) - chunk.count(0)
        release(data, at, stop)
    return total


@dataclass
class WalkEnd:
    valid_end_offset: int
    records: int = 0
    blanks: int = 0
    entries: int = 0


def iter_log(segdir: SegmentDir, rel: str, dledger: bool, end: WalkEnd | None = None,
             scan: WindowScan | None = None) -> Iterator[LogItem | LogRun | dict]:
    """Walk every record and DLedger entry of a log folder in address order with the one log
    reader (``log_reader``, policy REPORT): ``LogItem``s and damage dicts (``crc_mismatch``,
    ``wrong_physical_offset``, ``bad_entry_body``, ``dledger_index_gap``, ``corrupt_record``,
    ``torn_tail``). A LogItem's ``buf`` is only valid until the walk resumes. Totals go to ``end``.
    With ``scan`` (``mqbench.migrate.scan``) the records it passes come as ``LogRun``s, many at a
    time (``log_runs``); everything else is the same."""
    end = end if end is not None else WalkEnd(0)
    files = FolderFiles(segdir, rel)
    reader = LogReader(files, dledger=dledger, policy=REPORT, scan=scan)
    try:
        yield from reader.items()
    finally:
        files.close()
        end.valid_end_offset = reader.end
        end.records, end.blanks, end.entries = reader.records, reader.blanks, reader.entries


def iter_files(root: str) -> Iterator[tuple[str, int]]:
    """(relative path, size) of every regular file under ``root``, without following links."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                size = os.path.getsize(full)
            except OSError:
                continue
            yield os.path.relpath(full, root), size


def folder_of(rel_path: str) -> str:
    """The report group of a file: ``consumequeue``, ``dledger-n0/data``, ``config``, or the file itself."""
    parts = rel_path.split(os.sep)
    if len(parts) == 1:
        return parts[0]
    if parts[0].startswith("dledger-") and len(parts) > 2:
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def log_dirs(root: str, dledger_dirs: list[str]) -> list[tuple[str, bool]]:
    """(relative folder, is DLedger) of the log, in address order: an upgraded store keeps its old
    ``commitlog/`` below the DLedger data."""
    dirs = []
    if os.path.isdir(os.path.join(root, "commitlog")):
        dirs.append(("commitlog", False))
    if dledger_dirs:
        dirs.append((f"{dledger_dirs[0]}/data", True))
    return dirs


class MultiReader:
    """Random reads over the whole log address space (old ``commitlog/`` below DLedger data)."""

    def __init__(self, segdirs: list[SegmentDir]):
        self.readers = [SegmentReader(s, cache_files=4) for s in segdirs if s.segments]

    def locate(self, offset: int, nbytes: int = mmap.PAGESIZE):
        for reader in self.readers:
            hit = reader.locate(offset, nbytes)
            if hit is not None:
                return hit
        return None

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def iter_messages(root: str, limit: int | None = None, scan: WindowScan | None = None) -> Iterator[dict]:
    """Each message of the log in address order, as a dict with topic, queue_id, queue_offset,
    physical_offset, properties, body_size_bytes, store_timestamp_ms, file and offset. Streams:
    one file mapped at a time. Records with a bad CRC are included with ``crc_ok`` False.
    ``scan``: ``iter_log``'s (the same messages)."""
    root = os.path.abspath(root)
    detection = detect(root)
    if limit is not None and limit <= 0:
        return
    count = 0
    for rel, is_dl in log_dirs(root, detection.dledger_dirs):
        segdir = list_segments(os.path.join(root, rel), rel)
        head = ENTRY_HEADER_BYTES if is_dl else 0
        for rec in iter_log(segdir, rel, is_dl, scan=scan):
            if type(rec) is LogRun:
                buf, seg, file = rec.buf, rec.seg, rec.file
                for row in rec.rows:         # records the reader passed: they decode (ASCII topic, properties)
                    msg, _ = decode_message(buf, row[ROW_AT], check_crc=False)
                    address = row[ROW_POS] + head
                    yield {"topic": msg.topic, "queue_id": msg.queue_id, "queue_offset": msg.queue_offset,
                           "physical_offset": address, "size_bytes": row[ROW_TOTAL], "body_size_bytes": len(msg.body),
                           "sysflag": msg.sysflag, "store_timestamp_ms": msg.store_timestamp_ms,
                           "properties": msg.properties, "crc_ok": True, "file": file, "offset": address - seg}
                    count += 1
                    if limit is not None and count >= limit:
                        return
                continue
            if isinstance(rec, dict) or not rec.is_record:
                continue
            crc_ok = rec.damage != DAMAGE_CRC
            offset = rec.file_offset + (rec.address - rec.pos)
            try:
                msg, _ = decode_message(rec.buf, rec.at, check_crc=False)
            except CorruptDataError as exc:
                total, queue_id, queue_offset, _, sysflag = peek_fields(rec.buf, rec.at)
                yield {"topic": None, "queue_id": queue_id, "queue_offset": queue_offset,
                       "physical_offset": rec.address, "size_bytes": rec.length, "body_size_bytes": None,
                       "sysflag": sysflag, "store_timestamp_ms": None, "properties": {}, "crc_ok": crc_ok,
                       "file": rec.file, "offset": offset, "error": str(exc)}
                continue
            yield {"topic": msg.topic, "queue_id": msg.queue_id, "queue_offset": msg.queue_offset,
                   "physical_offset": rec.address, "size_bytes": rec.length, "body_size_bytes": len(msg.body),
                   "sysflag": msg.sysflag, "store_timestamp_ms": msg.store_timestamp_ms,
                   "properties": msg.properties, "crc_ok": crc_ok, "file": rec.file, "offset": offset}
            count += 1
            if limit is not None and count >= limit:
                return
