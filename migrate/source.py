"""Reading a source store for migration: a read-only, streaming walk of its log.

``walk_log(root, start=None)`` yields every item of the store's log in address order: a
``SourceItem`` per commitlog record (plain or inside a DLedger entry) and per DLedger entry that
holds no record (a Raft no-op, a config change). Files are opened ``O_RDONLY`` and mapped
read-only one at a time (``inspect_files.MappedFile``); pages already walked are dropped from the
mapping, so memory stays flat whatever the store's size. Nothing under the source root is ever
created, written or deleted.

An upgraded RocketMQ store keeps its old ``commitlog/`` below the DLedger data; both are walked,
the old one first (``inspect_files.log_dirs``).

Where the valid data ends, the rest of the files must be zeros. Anything else stops the walk with
a ``CorruptDataError`` naming the file and the byte offset in it:

* a record whose body CRC differs from its BODYCRC, or a DLedger entry holding a bad record
  (a normal entry whose body starts with a record magic; other bodies are Raft metadata and are
  passed on as non-record entries, as ``DLedgerCommitLog.scan`` does);
* invalid bytes followed by non-zero bytes (a corrupt record in the middle, or a torn tail:
  RocketMQ's own recovery would cut it, so the user decides: recover the store with its broker
  first, or repair it);
* DLedger entries whose indexes do not follow each other;
* segment files RocketMQ would refuse to start on (odd size, gap, odd name).

``start`` is a ``Position`` (folder number, address) returned in an earlier item's ``next``: the
walk resumes exactly there (the journal keeps it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from mqbench.broker.store import dledger as dl
from mqbench.broker.store.dledger_log import is_record_body
from mqbench.broker.store.inspect_files import MappedFile, list_segments, log_dirs, release
from mqbench.broker.store.commitlog import record_tail_sound
from mqbench.broker.store.record import BLANK_MAGIC, Message, check_record, decode_message
from mqbench.broker.store.versions import detect
from mqbench.errors import CorruptDataError

_RELEASE_EVERY_BYTES = 4 << 20
_ZERO_CHUNK_BYTES = 1 << 20
_ZEROS = bytes(_ZERO_CHUNK_BYTES)
_BLANK_MAGIC_BYTES = BLANK_MAGIC.to_bytes(4, "big", signed=True)
_TAIL_DAMAGED = "record topic or properties damaged (illegal topic characters or properties not ending with \\x02)"


@dataclass(frozen=True)
class Position:
    """Where the walk stands: the log folder number (0 = the first of ``log_dirs``) and the
    absolute address in that folder's byte space of the next entry or record."""

    folder: int
    address: int


@dataclass
class SourceItem:
    """One record or non-record DLedger entry of the source log.

    ``record`` holds the raw commitlog record (None for a non-record entry, whose bytes are in
    ``entry_body``); ``address`` is the record's own physical offset (DLedger: entry pos + 48)
    or, for a non-record entry, the entry's pos. ``where``/``offset`` name the file and the
    byte position of the record in it, for error messages. ``next`` resumes after this item.
    """

    record: bytes | None
    address: int
    where: str
    offset: int
    next: Position
    entry_index: int | None = None
    entry_term: int | None = None
    entry_magic: int | None = None
    entry_body: bytes | None = None
    message: Message | None = None     # the decoded record (the walk decodes it once)


@dataclass
class DLedgerState:
    """What the source's DLedger folder says besides its entries."""

    folder: str
    committed_index: int | None       # None: no checkpoint file (every entry counts as committed)
    currterm: bytes | None            # the ``currterm`` file as is (vote state)


def decode_item(item: SourceItem) -> Message:
    """The message of a record item, its PHYSICALOFFSET set to where it is; CorruptDataError
    names the file and the byte offset of what does not decode (a damaged topic or properties).
    The walk decoded it already (``item.message``, returned as is: the caller may change it)."""
    if item.message is not None:
        return item.message
    try:
        msg, _ = decode_message(item.record, 0, check_crc=False)
    except CorruptDataError as exc:
        raise CorruptDataError(str(exc).split(": ", 1)[-1], where=item.where,
                               offset=item.offset + (exc.offset or 0)) from None
    msg.physical_offset = item.address
    return msg


def read_dledger_state(root: str, ddir: str) -> DLedgerState:
    """The committed index and the raw ``currterm`` of ``root/ddir`` (read-only)."""
    base = os.path.join(root, ddir)
    committed = None
    for name in ("checkpoint", "checkpoint.bak"):
        path = os.path.join(base, name)
        try:
            with open(path, "rb") as f:
                data = f.read(1 << 16)
        except FileNotFoundError:
            continue
        try:
            committed = dl.dledger_checkpoint(data, where=f"{ddir}/{name}")[1]
            break
        except CorruptDataError:
            continue
    currterm = None
    try:
        with open(os.path.join(base, "currterm"), "rb") as f:
            currterm = f.read(1 << 16)
    except FileNotFoundError:
        pass
    return DLedgerState(ddir, committed, currterm)


def source_folders(root: str) -> list[tuple[str, bool]]:
    """(relative log folder, is DLedger) in address order."""
    return log_dirs(root, detect(root).dledger_dirs)


def log_files(root: str) -> list[tuple[str, int]]:
    """(relative path, size) of every log file of the source (its fingerprint for the journal)."""
    out = []
    for rel, _ in source_folders(root):
        segdir = list_segments(os.path.join(root, rel), rel)
        out += [(f"{rel}/{os.path.basename(s.path)}", s.size_bytes) for s in segdir.segments]
    return out


def zeros_from(path: str, pos: int) -> bool:
    """Whether every byte of the file at ``path`` from ``pos`` on is zero. Holes of a sparse file
    are skipped (``SEEK_DATA``), data is compared a MiB at a time, and the first non-zero byte ends
    the check."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        seek_data = getattr(os, "SEEK_DATA", None)
        while pos < size:
            if seek_data is not None:
                try:
                    pos = os.lseek(fd, pos, seek_data)
                except OSError:      # ENXIO: nothing but a hole from pos to the end
                    break
            chunk = os.pread(fd, _ZERO_CHUNK_BYTES, pos)
            if not chunk:
                break
            if chunk != _ZEROS[:len(chunk)]:
                return False
            pos += len(chunk)
        return True
    finally:
        os.close(fd)


def walk_log(root: str, start: Position | None = None) -> Iterator[SourceItem]:
    """Every record and non-record entry of the log at ``root`` (see the module doc)."""
    start = start or Position(0, -1)
    for number, (rel, is_dl) in enumerate(source_folders(root)):
        if number < start.folder:
            continue
        segdir = list_segments(os.path.join(root, rel), rel)
        for problem in segdir.problems:
            raise CorruptDataError(problem["detail"], where=problem["file"])
        if not segdir.segments:
            continue
        begin = start.address if number == start.folder and start.address >= 0 else segdir.segments[0].start
        yield from _walk_folder(segdir, rel, is_dl, number, begin)


def _walk_folder(segdir, rel: str, is_dl: bool, number: int, begin: int) -> Iterator[SourceItem]:
    size = segdir.file_size_bytes
    expected_index = None
    ended: tuple[str, int] | None = None      # (file, offset) where the valid data ended
    for seg in segdir.segments:
        if seg.start + size <= begin:
            continue
        rel_file = f"{rel}/{os.path.basename(seg.path)}"
        with MappedFile(seg.path) as data:
            pos = max(0, begin - seg.start)
            if ended is not None:
                if not zeros_from(seg.path, 0):
                    raise CorruptDataError("invalid bytes where the log's valid data ends, but the log goes on in "
                                           "later files (a corrupt record)", where=ended[0], offset=ended[1])
                continue
            released = pos
            while pos < size:
                if is_dl:
                    step, item = _dledger_step(data, pos, size, seg.start, rel_file, number, expected_index)
                    if item is not None and item.entry_index is not None:
                        expected_index = item.entry_index + 1
                else:
                    step, item = _plain_step(data, pos, size, seg.start, rel_file, number)
                if step == 0:
                    break
                if step < 0:
                    pos = size
                    break
                pos += step
                if item is not None:
                    yield item
                if pos - released >= _RELEASE_EVERY_BYTES:
                    release(data, released, pos)
                    released = pos
            if pos < size:
                if not zeros_from(seg.path, pos):
                    raise CorruptDataError(
                        "invalid bytes after the last valid record (a torn or corrupt record; let the broker "
                        "recover the store, or repair it, before migrating)", where=rel_file, offset=pos)
                ended = (rel_file, pos)


def _decode_checked(data, pos: int, end: int, rel_file: str) -> tuple[Message | None, int]:
    """(message, size) of a whole valid record at ``pos`` (body CRC checked, topic and properties
    sound), (None, 0) where the valid data ends; CorruptDataError for a record that is there but
    damaged (a CRC mismatch, a damaged topic or properties)."""
    try:
        msg, step = decode_message(data, pos, end=end)
    except CorruptDataError as exc:
        if check_record(data, pos, end, check_crc=False) <= 0:
            return None, 0                  # not a record: the end of the valid data
        if check_record(data, pos, end) <= 0:
            raise CorruptDataError("record body CRC does not match its BODYCRC", where=rel_file, offset=pos) from None
        raise CorruptDataError(str(exc).split(": ", 1)[-1], where=rel_file, offset=pos) from None
    if not record_tail_sound(data, pos, step):
        raise CorruptDataError(_TAIL_DAMAGED, where=rel_file, offset=pos)
    return msg, step


def _plain_step(data, pos: int, size: int, start: int, rel_file: str, number: int):
    """(step, item): step > 0 a record, -1 a blank closing the file, 0 the end of valid data."""
    if size - pos >= 8 and data[pos + 4:pos + 8] == _BLANK_MAGIC_BYTES:
        remaining = int.from_bytes(data[pos:pos + 4], "big", signed=True)
        if remaining != size - pos:
            raise CorruptDataError(f"end-of-file blank says {remaining} bytes remain, the file has {size - pos}",
                                   where=rel_file, offset=pos)
        return -1, None
    msg, step = _decode_checked(data, pos, size, rel_file)
    if msg is None:
        return 0, None
    msg.physical_offset = start + pos
    item = SourceItem(bytes(data[pos:pos + step]), start + pos, rel_file, pos, Position(number, start + pos + step),
                      message=msg)
    return step, item


def _dledger_step(data, pos: int, size: int, start: int, rel_file: str, number: int, expected_index: int | None):
    step = dl.check_entry(data, pos, size, start + pos)
    if step == dl.ENTRY_BLANK:
        return -1, None
    if step == 0:
        return 0, None
    header = dl.decode_entry_header(data, pos)
    if expected_index is not None and header.index != expected_index:
        raise CorruptDataError(f"DLedger entry has index {header.index}, {expected_index} expected",
                               where=rel_file, offset=pos)
    body_at, body_end = pos + dl.ENTRY_HEADER_BYTES, pos + step
    nxt = Position(number, start + body_end)
    if header.magic == dl.DLEDGER_MAGIC and is_record_body(data[body_at:min(body_at + 8, body_end)]):
        msg, record_size = _decode_checked(data, body_at, body_end, rel_file)
        if record_size != header.body_length:
            raise CorruptDataError(f"DLedger entry {header.index} does not hold a valid message record",
                                   where=rel_file, offset=pos)
        msg.physical_offset = start + body_at
        return step, SourceItem(bytes(data[body_at:body_end]), start + body_at, rel_file, body_at, nxt,
                                header.index, header.term, header.magic, message=msg)
    return step, SourceItem(None, start + pos, rel_file, pos, nxt, header.index, header.term, header.magic,
                            bytes(data[body_at:body_end]))
