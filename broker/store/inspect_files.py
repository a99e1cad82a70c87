"""Read-only access to the files of a store, for ``inspect``: listing, mapped-file queues, and
walking a commitlog (plain or DLedger-framed) record by record.

Nothing here writes, creates or deletes a file: files are opened ``O_RDONLY`` and memory-mapped
read-only, one at a time, so a 1 GiB segment is never read into memory as a whole. The file size
of a queue is taken from the files themselves (the most common size in the folder).
"""
from __future__ import annotations

import mmap
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

from mqbench.errors import CorruptDataError

from . import dledger as dl
from .record import RECORD_BLANK, check_record, decode_message, peek_fields
from .versions import detect

NAME_DIGITS = 20
_ZERO_CHUNK_BYTES = 1 << 20
_RELEASE_EVERY_BYTES = 64 << 20
_RANDOM_RELEASE_EVERY_BYTES = 32 << 20
_FAULT_AROUND_BYTES = 64 << 10


@dataclass
class Segment:
    start: int
    path: str
    size_bytes: int


@dataclass
class SegmentDir:
    """A folder of fixed-size files named by their 20-digit start offset."""

    path: str
    segments: list[Segment] = field(default_factory=list)
    file_size_bytes: int = 0
    problems: list[dict] = field(default_factory=list)

    @property
    def end_offset(self) -> int:
        return self.segments[-1].start + self.file_size_bytes if self.segments else 0


def list_segments(path: str, rel: str) -> SegmentDir:
    """The segment files under ``path`` (``rel`` names it in reports). Odd names, odd sizes and gaps
    go to ``problems`` (RocketMQ would refuse to start on them); odd-sized files are skipped."""
    result = SegmentDir(path)
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return result
    found = []
    for name in names:
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            continue
        if len(name) != NAME_DIGITS or not name.isdigit():
            if not name.endswith((".bak", ".tmp")):
                result.problems.append({"kind": "unexpected_file", "file": f"{rel}/{name}",
                                        "detail": "not a 20-digit segment name"})
            continue
        found.append(Segment(int(name), full, os.path.getsize(full)))
    found.sort(key=lambda s: s.start)
    sizes = Counter(s.size_bytes for s in found if s.size_bytes > 0)
    if not sizes:
        return result
    result.file_size_bytes = size = sizes.most_common(1)[0][0]
    for seg in found:
        rel_name = f"{rel}/{os.path.basename(seg.path)}"
        if seg.size_bytes != size:
            result.problems.append({"kind": "file_size_mismatch", "file": rel_name, "size_bytes": seg.size_bytes,
                                    "detail": f"{seg.size_bytes} bytes, the other files have {size}"})
            continue
        if seg.start % size:
            result.problems.append({"kind": "unexpected_file", "file": rel_name,
                                    "detail": f"start offset is not a multiple of the file size {size}"})
            continue
        if result.segments and seg.start != result.segments[-1].start + size:
            result.problems.append({"kind": "offset_gap", "file": rel_name,
                                    "detail": f"previous file ends at {result.segments[-1].start + size}"})
        result.segments.append(seg)
    return result


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
class LogRecord:
    """A record found in the log: where it is and its fixed fields (not decoded further)."""

    rel_file: str
    file_start: int
    data: object  # the mapped file
    pos: int  # record start in the file
    size: int
    address: int  # RocketMQ's physical offset of the record (DLedger: entry pos + 48)
    queue_id: int
    queue_offset: int
    stored_physical_offset: int
    sysflag: int
    crc_ok: bool
    entry_index: int | None = None
    entry_term: int | None = None
    entry_size: int | None = None


@dataclass
class WalkEnd:
    valid_end_offset: int
    records: int = 0
    blanks: int = 0
    entries: int = 0


def iter_log(segdir: SegmentDir, rel: str, dledger: bool, end: WalkEnd | None = None) -> Iterator[LogRecord | dict]:
    """Walk every record of a commitlog (``dledger`` False) or DLedger data folder in address order,
    one mapped file at a time.

    Yields a ``LogRecord`` per record (also for a record whose body CRC is wrong, with ``crc_ok``
    False, right after a ``crc_mismatch`` damage dict) and damage dicts: ``crc_mismatch``,
    ``corrupt_record`` (invalid bytes followed by valid data in a later file), ``bad_entry_body``
    (a DLedger entry that does not hold a record), ``torn_tail`` (where the valid data ends and how
    many non-zero bytes follow it up to the end of the files). A LogRecord's ``data`` is only valid
    until the walk resumes. Totals go to ``end``.
    """
    size = segdir.file_size_bytes
    end = end if end is not None else WalkEnd(0)
    end.valid_end_offset = segdir.segments[0].start if segdir.segments else 0
    pending: dict | None = None  # where the data ended, until we know whether more follows
    for seg in segdir.segments:
        rel_file = f"{rel}/{os.path.basename(seg.path)}"
        with MappedFile(seg.path) as data:
            pos = released = 0
            found = False
            while pos < size:
                out: list = []
                if dledger:
                    step = _dledger_step(data, pos, size, seg.start, rel_file, out, end)
                else:
                    step = _plain_step(data, pos, size, seg.start, rel_file, out)
                if step == 0:
                    break
                if not found and pending is not None:
                    yield {"kind": "corrupt_record", "file": pending["file"], "offset": pending["offset"],
                           "nonzero_after_bytes": pending["nonzero_after_bytes"],
                           "detail": "invalid bytes, but valid data follows in a later file"}
                    pending = None
                found = True
                yield from out
                if step < 0:  # end-of-file blank: the rest of the file is unused
                    end.blanks += 1
                    pos = size
                    break
                end.records += 1
                pos += step
                if pos - released >= _RELEASE_EVERY_BYTES:
                    release(data, released, pos)
                    released = pos
            if found:
                end.valid_end_offset = seg.start + pos
            if pos < size:
                nonzero = count_nonzero(data, pos, size)
                if pending is None:
                    pending = {"file": rel_file, "offset": pos, "address": seg.start + pos, "nonzero_after_bytes": nonzero}
                else:
                    pending["nonzero_after_bytes"] += nonzero
    if pending is not None and pending["nonzero_after_bytes"]:
        yield {"kind": "torn_tail", "file": pending["file"], "offset": pending["offset"],
               "valid_end_offset": pending["address"], "nonzero_after_bytes": pending["nonzero_after_bytes"],
               "detail": "the valid data ends here and non-zero bytes follow"}


def _plain_step(data, pos, size, start, rel_file, out: list) -> int:
    """One commitlog position: >0 record size, -1 blank, 0 end of valid data."""
    step = check_record(data, pos, size)
    if step == RECORD_BLANK:
        return -1
    crc_ok = True
    if step == 0:
        step = check_record(data, pos, size, check_crc=False)
        if step <= 0:
            return 0
        crc_ok = False
        out.append({"kind": "crc_mismatch", "file": rel_file, "offset": pos, "physical_offset": start + pos,
                    "detail": "body CRC does not match the stored BODYCRC"})
    total, queue_id, queue_offset, stored, sysflag = peek_fields(data, pos)
    out.append(LogRecord(rel_file, start, data, pos, total, start + pos, queue_id, queue_offset, stored, sysflag, crc_ok))
    return step


def _dledger_step(data, pos, size, start, rel_file, out: list, end: WalkEnd) -> int:
    step = dl.check_entry(data, pos, size, start + pos)
    if step == dl.ENTRY_BLANK:
        return -1
    if step == 0:
        return 0
    end.entries += 1
    header = dl.decode_entry_header(data, pos)
    body_at, body_end = pos + dl.ENTRY_HEADER_BYTES, pos + step
    if header.magic != dl.DLEDGER_MAGIC or header.body_length == 0:
        return step  # NOOP / config-change entries carry no message
    record_size = check_record(data, body_at, body_end)
    crc_ok = True
    if record_size <= 0:
        record_size = check_record(data, body_at, body_end, check_crc=False)
        if record_size <= 0:
            out.append({"kind": "bad_entry_body", "file": rel_file, "offset": pos, "entry_index": header.index,
                        "detail": "DLedger entry body is not a valid message record"})
            return step
        crc_ok = False
        out.append({"kind": "crc_mismatch", "file": rel_file, "offset": body_at, "physical_offset": start + body_at,
                    "detail": "body CRC does not match the stored BODYCRC"})
    total, queue_id, queue_offset, stored, sysflag = peek_fields(data, body_at)
    out.append(LogRecord(rel_file, start, data, body_at, total, start + body_at, queue_id, queue_offset, stored, sysflag,
                         crc_ok, header.index, header.term, header.size))
    return step


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


def iter_messages(root: str, limit: int | None = None) -> Iterator[dict]:
    """Each message of the log in address order, as a dict with topic, queue_id, queue_offset,
    physical_offset, properties, body_size_bytes, store_timestamp_ms, file and offset. Streams:
    one file mapped at a time. Records with a bad CRC are included with ``crc_ok`` False."""
    root = os.path.abspath(root)
    detection = detect(root)
    if limit is not None and limit <= 0:
        return
    count = 0
    for rel, is_dl in log_dirs(root, detection.dledger_dirs):
        segdir = list_segments(os.path.join(root, rel), rel)
        for rec in iter_log(segdir, rel, is_dl):
            if isinstance(rec, dict):
                continue
            try:
                msg, _ = decode_message(rec.data, rec.pos, check_crc=False)
            except CorruptDataError as exc:
                yield {"topic": None, "queue_id": rec.queue_id, "queue_offset": rec.queue_offset,
                       "physical_offset": rec.address, "size_bytes": rec.size, "body_size_bytes": None,
                       "sysflag": rec.sysflag, "store_timestamp_ms": None, "properties": {}, "crc_ok": rec.crc_ok,
                       "file": rec.rel_file, "offset": rec.pos, "error": str(exc)}
                continue
            yield {"topic": msg.topic, "queue_id": msg.queue_id, "queue_offset": msg.queue_offset,
                   "physical_offset": rec.address, "size_bytes": rec.size, "body_size_bytes": len(msg.body),
                   "sysflag": msg.sysflag, "store_timestamp_ms": msg.store_timestamp_ms,
                   "properties": msg.properties, "crc_ok": rec.crc_ok, "file": rec.rel_file, "offset": rec.pos}
            count += 1
            if limit is not None and count >= limit:
                return
