"""Reading a source store for migration: a read-only, streaming walk of its log.

``walk_log(root, start=None)`` yields every item of the store's log in address order: a
``SourceItem`` per commitlog record (plain or inside a DLedger entry) and per DLedger entry that
holds no record (a Raft no-op, a config change, mqbench metadata). The walk is the store's one
log reader (``broker.store.log_reader``, policy RAISE: the same definition of a valid record as
the broker's recovery and ``inspect``): files are opened ``O_RDONLY`` and read through a window,
so memory stays flat whatever the store's size. Nothing under the source root is ever created,
written or deleted.

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

A store left by a killed broker (``abort`` present) may end with a torn record: there the walk
ends at the last valid record, as RocketMQ's recovery does (``torn_tail`` says where).

``start`` is a ``Position`` (folder number, address) returned in an earlier item's ``next``: the
walk resumes exactly there (the journal keeps it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from mqbench.broker.formats import dledger as dl
from mqbench.broker.store.segment_files import log_dirs
from mqbench.broker.store.log_reader import RAISE, FolderFiles, LogItem, LogReader, list_segments
from mqbench.broker.store.log_runs import ROW_AT, ROW_INDEX, ROW_NEXT, ROW_POS, ROW_TERM, ROW_TOTAL, LogRun, WindowScan
from mqbench.broker.formats.record import Message, decode_message
from mqbench.broker.formats.record_check import peek_message
from mqbench.broker.store.versions import detect
from mqbench.errors import CorruptDataError


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


def peek_item(item: SourceItem) -> Message:
    """``decode_item`` without the body and hosts (``record.peek_message``): enough to route and
    copy the record's bytes. CorruptDataError names the file and offset."""
    if item.message is not None:
        return item.message
    try:
        msg = peek_message(item.record, 0)
    except CorruptDataError as exc:
        raise CorruptDataError(str(exc).split(": ", 1)[-1], where=item.where, offset=item.offset) from None
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


def killed_broker(root: str) -> bool:
    """The store was left by a broker that did not shut down (``abort`` present): its log may end
    with a torn record, which RocketMQ's recovery would cut."""
    return os.path.exists(os.path.join(root, "abort"))


def torn_tail(root: str) -> dict | None:
    """Where the log of a killed broker's store is cut (file, offset, why), None when it is whole."""
    for _ in walk_log(root, torn=(found := [])):
        pass
    return found[0] if found else None


def walk_log(root: str, start: Position | None = None, *, torn: list | None = None,
             scan: WindowScan | None = None) -> Iterator[SourceItem]:
    """Every record and non-record entry of the log at ``root`` (see the module doc). In a killed
    broker's store (``killed_broker``) a torn tail ends the walk (appended to ``torn``) instead of
    raising, as RocketMQ's recovery cuts it. ``scan`` (``migrate.scan``): the reader reads by
    windows and the records the scan passed are not judged again one by one (the same items)."""
    start = start or Position(0, -1)
    killed = killed_broker(root)
    for number, (rel, is_dl) in enumerate(source_folders(root)):
        if number < start.folder:
            continue
        segdir = list_segments(os.path.join(root, rel), rel)
        for problem in segdir.problems:
            raise CorruptDataError(problem["detail"], where=problem["file"])
        if not segdir.segments:
            continue
        begin = start.address if number == start.folder and start.address >= 0 else None
        files = FolderFiles(segdir, rel)
        try:
            reader = LogReader(files, dledger=is_dl, policy=RAISE, accept_torn_tail=killed, scan=scan)
            for item in reader.items(begin):
                if type(item) is LogRun:
                    yield from run_items(item, number, is_dl)
                else:
                    yield source_item(item, number)
            if reader.torn_tail is not None and torn is not None:
                torn.append(reader.torn_tail)
        finally:
            files.close()


def data_bytes(root: str) -> int:
    """About how many bytes of data the log holds (what a progress bar counts): every file but
    each folder's last one whole, and the last one up to its last non-zero byte (its zero-filled,
    preallocated rest is not data). Reads only the last file's tail, holes skipped."""
    total = 0
    for rel, _ in source_folders(root):
        segdir = list_segments(os.path.join(root, rel), rel)
        if not segdir.segments:
            continue
        total += segdir.file_size_bytes * (len(segdir.segments) - 1)
        total += _data_end(segdir.segments[-1].path)
    return total


def _data_end(path: str) -> int:
    """One past the last non-zero byte of the file (0 when it is all zeros)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        extents, pos = [], 0
        seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
        while seek_data is not None and pos < size:
            try:
                start = os.lseek(fd, pos, seek_data)
            except OSError:
                break
            pos = os.lseek(fd, start, seek_hole)
            extents.append((start, pos))
        if seek_data is None:
            extents = [(0, size)]
        chunk = 1 << 20
        for start, stop in reversed(extents):
            at = stop
            while at > start:
                lo = max(start, at - chunk)
                data = os.pread(fd, at - lo, lo)
                stripped = data.rstrip(b"\0")
                if stripped:
                    return lo + len(stripped)
                at = lo
        return 0
    finally:
        os.close(fd)


def run_items(run: LogRun, folder: int, dledger: bool) -> Iterator[SourceItem]:
    """The ``SourceItem`` of each record of a ``LogRun`` of log folder number ``folder`` (what
    ``source_item`` gives for its ``LogItem``)."""
    buf, seg, file = run.buf, run.seg, run.file
    head = dl.ENTRY_HEADER_BYTES if dledger else 0
    for row in run.rows:
        at = row[ROW_AT]
        address = row[ROW_POS] + head
        yield SourceItem(bytes(buf[at:at + row[ROW_TOTAL]]), address, file, address - seg,
                         Position(folder, row[ROW_NEXT]), *((row[ROW_INDEX], row[ROW_TERM], dl.DLEDGER_MAGIC)
                                                           if dledger else (None, None, None)))


def source_item(item: LogItem, folder: int) -> SourceItem:
    """The ``SourceItem`` of a ``LogItem`` of log folder number ``folder``."""
    nxt = Position(folder, item.next)
    if item.is_record:
        offset = item.file_offset + (item.address - item.pos)
        return SourceItem(item.record, item.address, item.file, offset, nxt, item.index, item.term, item.magic)
    return SourceItem(None, item.address, item.file, item.file_offset, nxt, item.index, item.term, item.magic,
                      item.body)
