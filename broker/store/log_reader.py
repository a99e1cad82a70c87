"""The one reader of a store's log, shared by the broker's recovery, ``inspect`` and ``migrate``.

A log is a folder of fixed-size segment files (spec 2) holding either plain commitlog records
(``commitlog/``, spec 3) or DLedger entries (``dledger-{id}/data/``, spec 11). ``LogReader``
walks one such folder position by position. What is valid has ONE definition, in the pure
format modules: ``record.record_verdict`` for a record (also inside an entry) and
``dledger.entry_verdict`` for an entry's framing; this module only reads bytes and applies the
caller's damage policy:

====== =========================================================================================
STOP   recovery: the first position that is not valid ends the walk; what follows is not read
       (the caller truncates there). A record with a bad CRC or PHYSICALOFFSET, an index gap, a
       DLedger entry holding a torn record: all end the walk.
REPORT ``inspect``: damage is yielded as ``LogDamage`` and the walk goes on. A whole record with a
       bad CRC or PHYSICALOFFSET is reported and yielded (``item.damage`` names the kind); an
       index gap is reported and the walk follows the entries; where the valid data ends, the
       rest of the files is read: non-zero bytes after it are ``torn_tail``, valid data in a later
       file makes the end a ``corrupt_record``.
RAISE  ``migrate``: the first damage raises ``CorruptDataError`` naming the file and the byte
       offset in it; invalid bytes where the data ends are fine only when every byte after them,
       to the end of the files, is zero.
====== =========================================================================================

Files come through ``LogFiles``: ``FolderFiles`` opens a folder read-only (``O_RDONLY``,
``pread``; nothing is ever created, written or deleted; holes of sparse files are skipped with
``SEEK_DATA``), ``QueueFiles`` adapts the broker's ``SegmentQueue``. Reads go through a window of
``WINDOW_BYTES`` (or the largest record), so memory stays flat whatever the log's size.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from mqbench.errors import CorruptDataError

from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.record_layout import RECORD_BLANK, RECORD_END
from mqbench.broker.formats.record_check import record_verdict

from .log_runs import ROW_INDEX, LogRun, WindowCursor, WindowScan

STOP, REPORT, RAISE = "stop", "report", "raise"
WINDOW_BYTES = 8 << 20
NAME_DIGITS = 20
_ZERO_CHUNK_BYTES = 1 << 20
_ZEROS = bytes(_ZERO_CHUNK_BYTES)
_SEEK_DATA = getattr(os, "SEEK_DATA", None)
_FADV_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


# --- the files of a log ------------------------------------------------------------------------

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


def zeros_from(path: str, pos: int) -> bool:
    """Whether every byte of the file at ``path`` from ``pos`` on is zero (holes skipped)."""
    segdir = SegmentDir(os.path.dirname(path), [Segment(0, path, os.path.getsize(path))], os.path.getsize(path))
    files = FolderFiles(segdir, os.path.dirname(path))
    try:
        return files.nonzero_from(pos, segdir.file_size_bytes, first_only=True) == 0
    finally:
        files.close()


class LogFiles:
    """What the reader needs of a segment folder (see the two implementations below)."""

    rel: str
    segment_size_bytes: int
    starts: list[int]

    def read(self, offset: int, size: int) -> bytes:           # pragma: no cover - interface
        raise NotImplementedError

    def nonzero_from(self, offset: int, stop: int, *, first_only: bool = False) -> int:
        """Non-zero bytes in ``[offset, stop)`` of one file (holes skipped); with ``first_only``
        the count stops at the first non-zero chunk (a yes/no answer)."""
        total = 0
        while offset < stop:
            offset = self._next_data(offset, stop)
            if offset >= stop:
                break
            chunk = self.read(offset, min(_ZERO_CHUNK_BYTES, stop - offset))
            if not chunk:
                break
            if chunk != _ZEROS[:len(chunk)]:
                total += len(chunk) - chunk.count(0)
                if first_only:
                    return total
            offset += len(chunk)
        return total

    def _next_data(self, offset: int, stop: int) -> int:
        return offset

    def prefetch(self, offset: int, size: int) -> None:
        """Ask the kernel to start reading ``[offset, offset + size)`` of one file in the background
        (a sequential reader overlaps the disk with its own work); a hint, nothing is returned."""

    def file_name(self, start: int) -> str:
        return f"{self.rel}/{start:0{NAME_DIGITS}d}"


class FolderFiles(LogFiles):
    """A segment folder opened read-only (``list_segments``); ``close()`` releases the files."""

    def __init__(self, segdir: SegmentDir, rel: str):
        self.rel = rel
        self.segdir = segdir
        self.segment_size_bytes = segdir.file_size_bytes
        self.starts = [s.start for s in segdir.segments]
        self._paths = {s.start: s.path for s in segdir.segments}
        self._fds: dict[int, int] = {}

    def _fd(self, start: int) -> int | None:
        fd = self._fds.get(start)
        if fd is None:
            path = self._paths.get(start)
            if path is None:
                return None
            if len(self._fds) >= 4:
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = self._fds[start] = os.open(path, os.O_RDONLY)
        return fd

    def read(self, offset: int, size: int) -> bytes:
        start = offset - offset % self.segment_size_bytes
        fd = self._fd(start)
        if fd is None:
            return b""
        return os.pread(fd, min(size, start + self.segment_size_bytes - offset), offset - start)

    def read_into(self, offset: int, view) -> int:
        """``read`` into a writable buffer (no copy); returns the bytes read (0: no file there)."""
        start = offset - offset % self.segment_size_bytes
        fd = self._fd(start)
        if fd is None:
            return 0
        size = min(len(view), start + self.segment_size_bytes - offset)
        done = 0
        while done < size:
            n = os.preadv(fd, [view[done:size]], offset - start + done)
            if n <= 0:
                break
            done += n
        return done

    def prefetch(self, offset: int, size: int) -> None:
        start = offset - offset % self.segment_size_bytes
        fd = self._fd(start)
        if fd is not None and _FADV_WILLNEED is not None:
            os.posix_fadvise(fd, offset - start, min(size, start + self.segment_size_bytes - offset), _FADV_WILLNEED)

    def _next_data(self, offset: int, stop: int) -> int:
        if _SEEK_DATA is None:
            return offset
        start = offset - offset % self.segment_size_bytes
        fd = self._fd(start)
        if fd is None:
            return stop
        try:
            return start + os.lseek(fd, offset - start, _SEEK_DATA)
        except OSError:          # ENXIO: only a hole from here to the end of the file
            return stop

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class QueueFiles(LogFiles):
    """The broker's ``SegmentQueue`` (read through its own file descriptors)."""

    def __init__(self, segments, rel: str):
        self.rel = rel
        self.segments = segments
        self.segment_size_bytes = segments.segment_size_bytes
        self.starts = segments.segment_starts()

    def read(self, offset: int, size: int) -> bytes:
        start = offset - offset % self.segment_size_bytes
        return self.segments.read(offset, min(size, start + self.segment_size_bytes - offset))

    def close(self) -> None:
        pass


# --- what the walk yields ----------------------------------------------------------------------

class LogItem:
    """A record or a DLedger entry found by the walk.

    ``pos``: where it starts in the folder's byte space (the entry's pos in DLedger); ``next``:
    where the next one starts. ``address``: RocketMQ's physical offset of the record (DLedger:
    entry pos + 48), or the entry's pos for an entry that holds no record. ``is_record``; ``buf``
    and ``at``: the window and the position of the record (or of a non-record entry's body) in
    it, ``length`` its size: valid only until the walk goes on (``record``/``body`` copy them).
    ``index``/``term``/``magic``/``entry_size``: the DLedger header (None for a plain log).
    ``damage``: None, or (REPORT policy only) the kind of damage of a whole record.
    """

    __slots__ = ("pos", "next", "address", "is_record", "buf", "at", "length", "index", "term", "magic",
                 "entry_size", "damage", "file", "file_offset")

    def __init__(self, pos, nxt, address, is_record, buf, at, length, file, file_offset,
                 index=None, term=None, magic=None, entry_size=None, damage=None):
        self.pos, self.next, self.address, self.is_record = pos, nxt, address, is_record
        self.buf, self.at, self.length = buf, at, length
        self.file, self.file_offset = file, file_offset
        self.index, self.term, self.magic, self.entry_size, self.damage = index, term, magic, entry_size, damage

    @property
    def record(self) -> bytes | None:
        return bytes(self.buf[self.at:self.at + self.length]) if self.is_record else None

    @property
    def body(self) -> bytes:
        """The bytes after the entry header (the record, for a record entry)."""
        return bytes(self.buf[self.at:self.at + self.length])


def damage_doc(kind: str, file: str, offset: int, detail: str, **extra) -> dict:
    return {"kind": kind, "file": file, "offset": offset, **extra, "detail": detail}


# --- the walk ----------------------------------------------------------------------------------

class LogReader:
    """Walk one log folder (see module doc). ``items(start, stop)`` yields ``LogItem`` (and, with
    REPORT, damage dicts); afterwards ``end`` is the position after the last valid item (a
    segment start after a closing blank), ``records``/``entries``/``blanks`` count what was seen.

    ``start`` must be an item boundary (or a segment start); ``stop``: items starting at or after
    it are not yielded. ``expected_index``: the DLedger index the first entry must have (None:
    any). ``check_crc``: check BODYCRC (recovery may skip it below its durable point).
    ``accept_torn_tail`` (RAISE): invalid bytes after the last valid item of the file where the
    data ends are what RocketMQ's recovery cuts after a killed broker: the walk ends there and
    ``torn_tail`` says where (file, offset, why) instead of raising; valid data or non-zero bytes
    in a later file still raise.

    ``scan`` (``log_runs``; ``mqbench.migrate.scan``): read by windows, and yield the records the
    scan passed as ``LogRun``s (many records each) instead of one ``LogItem`` each; everything
    else, and every total, is as without it.
    """

    def __init__(self, files: LogFiles, *, dledger: bool, policy: str, check_crc: bool = True,
                 window_bytes: int = WINDOW_BYTES, accept_torn_tail: bool = False,
                 scan: WindowScan | None = None):
        if policy not in (STOP, REPORT, RAISE):
            raise ValueError(f"unknown damage policy {policy!r}")
        self.files = files
        self.accept_torn_tail = accept_torn_tail
        self.torn_tail: dict | None = None
        self.dledger = dledger
        self.policy = policy
        self.check_crc = check_crc
        self.window_bytes = window_bytes
        self.end = files.starts[0] if files.starts else 0
        self.records = self.entries = self.blanks = 0
        self._buf = b""
        self._base = 0
        self._cursor = WindowCursor(files, dledger, scan, window_bytes) if scan is not None else None

    def _view(self, offset: int, need: int, seg_end: int) -> tuple[bytes, int, int]:
        """(buffer, position of ``offset`` in it, usable end) holding ``need`` bytes from
        ``offset`` when the segment has them."""
        rel = offset - self._base
        if rel < 0 or rel + need > len(self._buf):
            size = min(max(self.window_bytes, need), seg_end - offset)
            self._buf = self.files.read(offset, size)
            self._base = offset
            rel = 0
        return self._buf, rel, len(self._buf)

    def _fail(self, kind: str, file: str, offset: int, detail: str):
        raise CorruptDataError(f"{detail} ({kind})", where=file, offset=offset)

    def items(self, start: int | None = None, stop: int | None = None,
              expected_index: int | None = None) -> Iterator[LogItem | LogRun | dict]:
        files = self.files
        size = files.segment_size_bytes
        starts = files.starts
        if not starts or size <= 0:
            return
        pos = starts[0] if start is None or start < starts[0] else start
        self.end = pos
        ended: dict | None = None          # where the valid data ended (REPORT/RAISE look further)
        self._expected = expected_index
        known = set(starts)
        while pos < starts[-1] + size and (stop is None or pos < stop):
            seg = pos - pos % size
            if seg not in known:
                break
            seg_end = seg + size
            file = files.file_name(seg)
            cursor = self._cursor
            if cursor is not None and ended is None:
                run = cursor.run(pos, seg_end, file, seg, self._expected, stop)
                if run is not None:
                    count = len(run.rows)
                    self.records += count
                    if self.dledger:
                        self.entries += count
                        self._expected = run.rows[-1][ROW_INDEX] + 1
                    pos = self.end = run.next
                    yield run
                    continue
                self._buf, self._base = cursor.share()      # the item at pos is in that window
            step = self._step(pos, seg, seg_end, file) if ended is None or pos == seg else None
            if step is not None and ended is not None:
                # valid data again after the end: that end was a corrupt record
                if self.policy == RAISE:
                    self._fail("corrupt_record", ended["file"], ended["offset"],
                               "invalid bytes where the log's valid data ends, but the log goes on in later files")
                yield damage_doc("corrupt_record", ended["file"], ended["offset"],
                                 "invalid bytes, but valid data follows in a later file",
                                 nonzero_after_bytes=ended["nonzero_after_bytes"])
                ended = None
            if step is None:
                if ended is None:
                    if self.policy == STOP:
                        return
                    ended = {"file": file, "offset": pos - seg, "address": pos, "nonzero_after_bytes": 0}
                    self._last_end_detail = getattr(self, "_detail", None)
                nonzero = files.nonzero_from(pos, seg_end, first_only=self.policy == RAISE)
                if nonzero and self.policy == RAISE and self.accept_torn_tail and ended["address"] >= seg:
                    self.torn_tail = {"file": ended["file"], "offset": ended["offset"], "address": ended["address"],
                                      "detail": self._last_end_detail}
                elif nonzero and self.policy == RAISE:
                    where = (ended["file"], ended["offset"]) if ended["address"] >= seg else (file, pos - seg)
                    if ended["address"] >= seg:
                        detail = ("invalid bytes after the last valid record (a torn or corrupt record; let the "
                                  "broker recover the store, or repair it, before migrating)")
                        if self._last_end_detail:
                            detail += f": {self._last_end_detail}"
                    else:
                        detail = "invalid bytes where the log's valid data ends, but the log goes on in later files"
                        where = (ended["file"], ended["offset"])
                    self._fail("torn_tail" if ended["address"] >= seg else "corrupt_record", where[0], where[1],
                               detail)
                ended["nonzero_after_bytes"] += nonzero
                pos = seg_end
                continue
            kind, outs, nxt = step
            pos = nxt
            self.end = pos
            if kind == "blank":
                self.blanks += 1
                continue
            yield from outs
        if ended is not None and ended["nonzero_after_bytes"] and self.policy == REPORT:
            why = f" ({self._last_end_detail})" if self._last_end_detail else ""
            yield damage_doc("torn_tail", ended["file"], ended["offset"], f"the valid data ends here{why} and "
                             "non-zero bytes follow", valid_end_offset=ended["address"],
                             nonzero_after_bytes=ended["nonzero_after_bytes"])

    def _damaged(self, kind: str, file: str, offset: int, detail: str, **extra):
        """Apply the policy to damage at a whole item: None ends the walk (STOP), else the dict."""
        if self.policy == STOP:
            return None
        if self.policy == RAISE:
            self._fail(kind, file, offset, detail)
        return damage_doc(kind, file, offset, detail, **extra)

    def _step(self, pos: int, seg: int, seg_end: int, file: str):
        """What is at ``pos``: None where the valid data ends, else (kind, what to yield, next):
        kind "blank" (go to the next file) or "item" (damage dicts and/or one LogItem)."""
        self._detail = None
        buf, at, end = self._view(pos, 8, seg_end)
        if end - at < 8:
            return None
        if self.dledger:
            return self._entry_step(pos, seg, seg_end, file, buf, at, end)
        size = int.from_bytes(buf[at:at + 4], "big", signed=True)
        if size > 8 and end - at < size:
            buf, at, end = self._view(pos, size, seg_end)
        verdict, damage, detail = record_verdict(buf, at, end, check_crc=self.check_crc, address=pos)
        if verdict == RECORD_BLANK:
            if size != seg_end - pos:
                self._detail = f"end-of-file blank says {size} bytes remain, the file has {seg_end - pos}"
                return None
            return "blank", (), seg_end
        if verdict == RECORD_END:
            self._detail = detail
            return None
        item = LogItem(pos, pos + verdict, pos, True, buf, at, verdict, file, pos - seg)
        if damage is None:
            self.records += 1
            return "item", (item,), pos + verdict
        doc = self._damaged(damage, file, pos - seg, detail, physical_offset=pos)
        if doc is None:
            self._detail = detail
            return None
        self.records += 1
        item.damage = damage
        return "item", (doc, item), pos + verdict

    def _entry_step(self, pos, seg, seg_end, file, buf, at, end):
        head = dl.ENTRY_HEADER_BYTES
        size = int.from_bytes(buf[at + 4:at + 8], "big", signed=True)
        if size > 8 and end - at < size:
            buf, at, end = self._view(pos, size, seg_end)
        verdict, detail = dl.entry_verdict(buf, at, end, pos)
        if verdict == dl.ENTRY_BLANK:
            remaining = int.from_bytes(buf[at + 4:at + 8], "big", signed=True)
            if remaining != seg_end - pos:
                self._detail = f"DLedger blank says {remaining} bytes remain, the file has {seg_end - pos}"
                return None
            return "blank", (), seg_end
        if verdict == dl.ENTRY_END:
            self._detail = detail
            return None
        header = dl.decode_entry_header(buf, at)
        offset = pos - seg
        nxt = pos + verdict
        outs: list = []

        def damaged(kind: str, at_offset: int, text: str, **extra) -> bool:
            doc = self._damaged(kind, file, at_offset, text, entry_index=header.index, **extra)
            if doc is None:
                self._detail = text
                return False
            outs.append(doc)
            return True

        expected = self._expected
        if expected is not None and header.index != expected:
            if not damaged("dledger_index_gap", offset, f"entry has index {header.index}, {expected} expected"):
                return None
        body_at, body_end = at + head, at + verdict
        if header.body_crc and header.body_crc != dl.body_crc(buf[body_at:body_end]):
            if not damaged("crc_mismatch", offset, "DLedger entry body does not match its bodyCrc"):
                return None
            self._expected = header.index + 1
            self.entries += 1
            return "item", outs, nxt
        item = LogItem(pos, nxt, pos, False, buf, body_at, verdict - head, file, offset,
                       header.index, header.term, header.magic, verdict)
        if header.magic == dl.DLEDGER_MAGIC and dl.is_record_body(buf, body_at, body_end):
            rsize, damage, rdetail = record_verdict(buf, body_at, body_end, check_crc=self.check_crc,
                                                    address=pos + head)
            if rsize != verdict - head:
                text = rdetail or f"the record of {rsize} bytes does not fill the entry body"
                if not damaged("bad_entry_body", offset,
                               f"DLedger entry {header.index} does not hold a valid message record: {text}"):
                    return None
                self._expected = header.index + 1
                self.entries += 1
                return "item", outs, nxt
            if damage is not None and not damaged(damage, offset + head, rdetail, physical_offset=pos + head):
                return None
            item.is_record, item.address, item.damage = True, pos + head, damage
            self.records += 1
        self._expected = header.index + 1
        self.entries += 1
        outs.append(item)
        return "item", outs, nxt
