"""The DLedger-framed log (spec 11): the Raft log's backing store, and the commitlog of the
``v4-dledger``/``v5-dledger`` stores.

Files under ``{root}/dledger-{self_id}/``:

* ``data/``  entries back to back (header of 48 bytes, then the body), 20-digit segment names. An
  entry that does not fit in the current segment with 8 bytes to spare is preceded by the DLedger
  blank ``(-1, remaining)`` and written at the next segment's start; entries never cross files.
* ``index/`` one 32-byte unit per Raft index at ``index * 32``: magic, pos, size, index, term.
* ``checkpoint`` ``endIndex``/``committedIndex`` (Java properties text), written atomically with a
  ``.bak`` by ``save_checkpoint`` (``flush``/``close`` call it) when they changed.

Torn entries: DLedger writes no CRC (chainCrc and bodyCrc are always 0, and DLedger 0.3.1.2 never
reads them), so a crash that loses the end of an entry's body would go unseen. ``DLedgerLog``
therefore fills bodyCrc (header bytes 40..44) with the masked CRC32 of the body, and recovery
rejects an entry whose non-zero bodyCrc does not match. Entries written by DLedger itself
(bodyCrc 0) are checked by the record check only. This is the one byte difference from DLedger's own
files; RocketMQ and DLedger ignore the field.

``DLedgerLog`` (what the Raft log adapter sits on):

* ``append(term, body, *, magic=1) -> (index, pos)``: the entry for the next index (``last_index+1``;
  the first is 0). ``append_record(term, record)`` does the same for a RocketMQ record, with its
  PHYSICALOFFSET set to ``pos + 48`` (spec 11.3). ``next_entry_pos(body_length)`` tells where the
  next entry will go without writing.
* ``entry(index) -> (EntryHeader, body)``; ``term_at(index)`` (-1 before the first index: the
  "index -1 has term 0" convention is the caller's); ``last_index`` (-1 when empty), ``last_term``,
  ``end_pos``.
* ``truncate_after(index)``: drop every entry after ``index`` (``-1`` empties the log). Dropping a
  committed entry raises InvariantViolation.
* ``committed_index`` is separate from the append point: ``set_committed(index)`` moves it (never
  backwards, never past ``last_index``).
* ``sync()``: fdatasync data then index. ``close()`` syncs and saves the checkpoint.
* On open the tail is recovered: entries are checked from ``recover_from`` (a durable position the
  caller kept, used when the index file confirms an entry ends there) or else from the start of
  the third-last data segment (``check_entry``: magic, size, pos, body length; consecutive
  indexes; the bodyCrc above; for normal (magic 1) entries holding a record, the record checks:
  the one log reader, ``log_reader``, with its STOP policy). The first
  invalid entry and everything after it is zeroed, the index file is rewritten for the checked
  range and cut after the last valid index.
"""
from __future__ import annotations

import os
import struct
import threading
from collections import deque
from pathlib import Path
from typing import Iterator

from mqbench.errors import InvariantViolation, UserError

from mqbench.broker.formats import dledger as fmt
from .atomic import read_with_backup, write_atomic
from .log_reader import STOP, LogReader, QueueFiles
from mqbench.broker.formats.record import Message, check_record, encode_message, set_physical_offset
from mqbench.broker.formats.record_layout import RECORD_END
from .segments import SegmentQueue

DEFAULT_INDEX_SEGMENT_BYTES = 32 * 5 * 1024 * 1024   # 167 772 160, DLedgerConfig
RECOVER_SEGMENTS = 3
RECENT_RUNS = 16   # appended runs whose entries' ends ``entry_end`` knows without reading the index
_PHYSICAL_OFFSET = struct.Struct(">q")
_PHYSICAL_OFFSET_AT = 28       # PHYSICALOFFSET in a record (formats.record_layout's)


def is_record_body(body: bytes) -> bool:
    """True when ``body`` starts like a RocketMQ record (V1/V2 magic at bytes 4..8)."""
    return fmt.is_record_body(body)


class DLedgerLog:
    """The DLedger data + index files of one replica (see module doc)."""

    def __init__(self, directory: str | os.PathLike, *, data_segment_bytes: int,
                 index_segment_bytes: int = DEFAULT_INDEX_SEGMENT_BYTES,
                 recover_from: int | None = None, tail_cache_bytes: int = 0):
        if index_segment_bytes % fmt.INDEX_UNIT_BYTES:
            raise UserError(f"DLedger index segment size {index_segment_bytes} is not a multiple of 32")
        self.directory = Path(directory)
        self.data = SegmentQueue(self.directory / "data", data_segment_bytes, tail_cache_bytes=tail_cache_bytes)
        self.index = SegmentQueue(self.directory / "index", index_segment_bytes)
        self.data_segment_bytes = data_segment_bytes
        self.checkpoint_path = self.directory / "checkpoint"
        self.first_index = 0
        self.last_index = -1
        self.last_term = 0
        self.end_pos = self.data.min_offset
        self.committed_index = -1
        self._saved_checkpoint: tuple[int, int] | None = None    # (endIndex, committedIndex) last written
        self._captures = self._saved_capture = 0
        self._checkpoint_lock = threading.Lock()                  # one checkpoint writer at a time
        # (first index, [(index, pos, body as written)]) of the latest appends, newest last
        self._runs: deque[tuple[int, list[tuple[int, int, bytes]]]] = deque(maxlen=RECENT_RUNS)
        self._recover(recover_from)

    # -- recovery ----------------------------------------------------------------------------

    def _scan_from(self, pos: int, expected_index: int | None) -> Iterator[tuple[fmt.EntryHeader, bytes]]:
        """Valid entries from ``pos`` on (the one log reader, policy STOP); sets ``self._scan_end``."""
        self._scan_end = pos
        if not self.data.segment_starts() or pos >= self.data.end_offset:
            return
        reader = LogReader(QueueFiles(self.data, "data"), dledger=True, policy=STOP)
        for item in reader.items(pos, None, expected_index):
            self._scan_end = item.next
            yield fmt.decode_entry_header(item.buf, item.at - fmt.ENTRY_HEADER_BYTES), item.body
        self._scan_end = reader.end

    def _recover(self, recover_from: int | None) -> None:
        starts = self.data.segment_starts()
        if not starts:
            self._load_checkpoint()
            return
        head = self.data.read(starts[0], fmt.ENTRY_HEADER_BYTES)
        if len(head) == fmt.ENTRY_HEADER_BYTES and any(head):
            first = fmt.decode_entry_header(head, 0)
            if first.pos == starts[0] and first.index >= 0:
                self.first_index = first.index   # older segments may have been deleted
        scan_from, expected = starts[max(0, len(starts) - RECOVER_SEGMENTS)], None
        if recover_from is not None and starts[0] <= recover_from <= self.data.end_offset:
            prev = self._last_before(recover_from)
            boundary = (prev is None and recover_from == starts[0]) or (prev is not None and (
                prev.pos + prev.size == recover_from or
                (recover_from % self.data_segment_bytes == 0 and prev.pos < recover_from)))
            if boundary:   # the durable point is an entry boundary: only what follows needs checking
                scan_from = recover_from
                expected = prev.index + 1 if prev is not None else self.first_index
        last = None
        for header, _ in self._scan_from(scan_from, expected):
            if last is None and scan_from == starts[0]:
                self.first_index = header.index
            self.index.write(header.index * fmt.INDEX_UNIT_BYTES, fmt.encode_index_unit(
                header.magic, header.pos, header.size, header.index, header.term))
            last = header
        end = self._scan_end
        if last is None:
            # nothing valid from the scan start: the log ends with the entry before it
            prev = self._last_before(scan_from)
            if prev is not None:
                self.last_index, self.last_term = prev.index, prev.term
            else:
                self.last_index = self.first_index - 1
        else:
            self.last_index, self.last_term = last.index, last.term
        if end < self.data.end_offset:
            self.data.truncate(end)
        self.end_pos = max(end, self.data.min_offset)
        self.index.truncate((self.last_index + 1) * fmt.INDEX_UNIT_BYTES)
        self.data.flush_from(scan_from)
        self.index.flush()
        self._load_checkpoint()

    def _last_before(self, pos: int) -> fmt.IndexUnit | None:
        """The index unit of the last entry that starts before ``pos`` (from the index file)."""
        lo, hi = self.first_index, (self.index.end_offset // fmt.INDEX_UNIT_BYTES) - 1
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            raw = self.index.read(mid * fmt.INDEX_UNIT_BYTES, fmt.INDEX_UNIT_BYTES)
            if len(raw) < fmt.INDEX_UNIT_BYTES:
                hi = mid - 1
                continue
            unit = fmt.decode_index_unit(raw)
            if unit.size > 0 and unit.index == mid and unit.pos < pos:
                best = unit
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    def _load_checkpoint(self) -> None:
        where = str(self.checkpoint_path)
        values = read_with_backup(self.checkpoint_path, lambda data: fmt.dledger_checkpoint(data, where=where))
        committed = values[1] if values else -1
        self.committed_index = min(committed, self.last_index)

    def checkpoint_values(self) -> tuple[int, int, int]:
        """(capture number, endIndex, committedIndex) now: take it under the owner's lock, then
        ``save_checkpoint(values)`` outside it, so the file's fsyncs never hold up appends."""
        self._captures += 1
        return self._captures, self.last_index, self.committed_index

    def save_checkpoint(self, values: tuple[int, int, int] | None = None, *, durable: bool = True) -> None:
        """Write ``checkpoint`` (``values`` from ``checkpoint_values``, else now) when its
        ``endIndex``/``committedIndex`` changed since the last write; a capture older than the one
        last written is dropped, so the file never goes back. ``durable=False``: without fsync
        (``write_atomic``): a power cut may leave an older or no checkpoint, which only moves the
        commit point a restart starts from back (recovery clamps it to the log in any case)."""
        captured, end, committed = values if values is not None else self.checkpoint_values()
        with self._checkpoint_lock:
            if captured <= self._saved_capture or (end, committed) == self._saved_checkpoint:
                return
            write_atomic(self.checkpoint_path, fmt.encode_properties_file(
                {"endIndex": end, "committedIndex": committed}), durable=durable)
            self._saved_capture, self._saved_checkpoint = captured, (end, committed)

    # -- appending ---------------------------------------------------------------------------

    def next_entry_pos(self, body_length: int) -> int:
        """Where an entry with a body of ``body_length`` bytes would be written next."""
        size = fmt.ENTRY_HEADER_BYTES + body_length
        if size + fmt.DLEDGER_BLANK_BYTES > self.data_segment_bytes:
            raise UserError(f"a DLedger entry of {size} bytes does not fit in a data segment of "
                            f"{self.data_segment_bytes} bytes")
        pos = self.end_pos
        remaining = self.data.remaining_in_segment(pos)
        return pos if size + fmt.DLEDGER_BLANK_BYTES <= remaining else pos + remaining

    def append(self, term: int, body: bytes, *, magic: int = fmt.DLEDGER_MAGIC) -> tuple[int, int]:
        """Append the entry for index ``last_index + 1``; returns (index, pos). A body that is a
        RocketMQ record (a normal entry whose bytes 4..8 are a record magic) gets PHYSICALOFFSET =
        pos + 48, as ``append_record`` does, whatever it held (a leader's value on a follower)."""
        return self.append_stored(term, body, magic=magic)[:2]

    def append_stored(self, term: int, body: bytes, *, magic: int = fmt.DLEDGER_MAGIC) -> tuple[int, int, bytes]:
        """``append``, also returning the body as written (a record's with its PHYSICALOFFSET;
        ``body`` itself when it already held that value)."""
        return self._append(term, body, magic, magic == fmt.DLEDGER_MAGIC and is_record_body(body))

    def append_record(self, term: int, record: bytes) -> tuple[int, int]:
        """Append a RocketMQ record with PHYSICALOFFSET = pos + 48; returns (index, pos)."""
        return self._append(term, record, fmt.DLEDGER_MAGIC, True)[:2]

    def _append(self, term: int, body: bytes, magic: int, is_record: bool) -> tuple[int, int, bytes]:
        if term < self.last_term:
            raise InvariantViolation(f"term {term} is below the log's last term {self.last_term}")
        pos = self.next_entry_pos(len(body))
        if pos != self.end_pos:
            self.data.write(self.end_pos, fmt.encode_entry_blank(pos - self.end_pos))
        index = self.last_index + 1
        if is_record and _PHYSICAL_OFFSET.unpack_from(body, _PHYSICAL_OFFSET_AT)[0] != pos + fmt.ENTRY_HEADER_BYTES:
            body = set_physical_offset(body, pos + fmt.ENTRY_HEADER_BYTES)   # spec 11.3
        raw = fmt.encode_entry(index, term, pos, body, magic=magic, crc=fmt.body_crc(body))
        self.data.write(pos, raw)
        self.index.write(index * fmt.INDEX_UNIT_BYTES,
                         fmt.encode_index_unit(magic, pos, len(raw), index, term))
        self.last_index, self.last_term = index, term
        self.end_pos = pos + len(raw)
        self._runs.append((index, [(index, pos, body)]))
        return index, pos, body

    def append_records(self, term: int, records: list[bytes], queue_offsets: list[int]) -> list[tuple[int, int, bytes]]:
        """Append ``records`` (whole RocketMQ records, normal entries) for the next indexes, each
        with QUEUEOFFSET ``queue_offsets[i]`` and PHYSICALOFFSET ``pos + 48``: the bytes ``append_stored``
        writes for each record after ``restamp_record``, built in one buffer (offsets patched in
        place, one bodyCrc per entry) and written with one data write and one index write per data
        segment. Returns (index, pos, body as written) per record; a record that already held both
        offsets (a follower given the leader's stored bytes) comes back as the same object.
        An inner-batch record must already carry its INNER_BASE (``restamp_inner_batch``: that
        property changes length, so it is not patched here)."""
        if term < self.last_term:
            raise InvariantViolation(f"term {term} is below the log's last term {self.last_term}")
        segment_bytes = self.data_segment_bytes
        header_bytes = fmt.ENTRY_HEADER_BYTES
        blank_bytes = fmt.DLEDGER_BLANK_BYTES
        for record in records:      # checked before anything is written
            if header_bytes + len(record) + blank_bytes > segment_bytes:
                raise UserError(f"a DLedger entry of {header_bytes + len(record)} bytes does not fit in a data "
                                f"segment of {segment_bytes} bytes")
        first_index = self.last_index + 1
        writes, units, out = fmt.build_record_entries(records, queue_offsets, term, first_index, self.end_pos,
                                                      segment_bytes)
        for at, buf in writes:
            self.data.write(at, buf)
        if out:
            at, view = first_index * fmt.INDEX_UNIT_BYTES, memoryview(units)
            while view:             # one write per index segment the run touches
                n = min(len(view), self.index.remaining_in_segment(at))
                self.index.write(at, view[:n])
                at, view = at + n, view[n:]
            _, pos, stored = out[-1]
            self.last_index, self.last_term = first_index + len(out) - 1, term
            self.end_pos = pos + fmt.ENTRY_HEADER_BYTES + len(stored)
            self._runs.append((first_index, out))
        return out

    # -- reading -----------------------------------------------------------------------------

    def _unit(self, index: int) -> fmt.IndexUnit:
        if index < self.first_index or index > self.last_index:
            raise UserError(f"DLedger index {index} is outside the log [{self.first_index}, {self.last_index}]")
        unit = fmt.decode_index_unit(self.index.read(index * fmt.INDEX_UNIT_BYTES, fmt.INDEX_UNIT_BYTES),
                                     where=str(self.index.directory))
        if unit.index != index:
            raise InvariantViolation(f"DLedger index unit {index} holds index {unit.index}")
        return unit

    def entry(self, index: int) -> tuple[fmt.EntryHeader, bytes]:
        """(header, body) of the entry at ``index``."""
        unit = self._unit(index)
        raw = self.data.read(unit.pos, unit.size)
        return fmt.decode_entry(raw, 0, expected_pos=unit.pos, where=str(self.data.directory))

    def entry_span(self, index: int) -> tuple[int, int]:
        """(pos, size) of the entry at ``index``."""
        unit = self._unit(index)
        return unit.pos, unit.size

    def entry_end(self, index: int) -> int:
        """The position just after the entry at ``index`` (``pos + size`` of ``entry_span``): from
        memory for the entries of the latest appended runs (a commit point is nearly always one of
        them), else from the index file."""
        for first, run in reversed(self._runs):
            if index >= first:
                if index - first < len(run):
                    _, pos, stored = run[index - first]
                    return pos + fmt.ENTRY_HEADER_BYTES + len(stored)
                break
        pos, size = self.entry_span(index)
        return pos + size

    def term_at(self, index: int) -> int:
        """The term of the entry at ``index``; -1 for an index before the first entry."""
        if index < self.first_index:
            return -1
        return self._unit(index).term

    def entries_from(self, pos: int, stop_pos: int) -> Iterator[tuple[fmt.EntryHeader, bytes]]:
        """Valid entries whose start is in ``[pos, stop_pos)``, in log order."""
        for header, body in self._scan_from(pos, None):
            if header.pos >= stop_pos:
                return
            yield header, body

    # -- truncation, commit, durability ------------------------------------------------------

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index`` (Raft's divergent-suffix truncation)."""
        if index >= self.last_index:
            return
        self._runs.clear()
        if index < self.committed_index:
            raise InvariantViolation(f"truncating after {index} would drop committed entries "
                                     f"(committed index {self.committed_index})")
        if index < self.first_index:
            end = self.data.min_offset
            self.last_index, self.last_term = self.first_index - 1, 0
        else:
            unit = self._unit(index)
            end = unit.pos + unit.size
            self.last_index, self.last_term = index, unit.term
        self.data.truncate(end)
        self.index.truncate((self.last_index + 1) * fmt.INDEX_UNIT_BYTES)
        self.end_pos = max(end, self.data.min_offset)

    def set_committed(self, index: int) -> None:
        """Move the commit point (never backwards; capped at ``last_index``)."""
        index = min(index, self.last_index)
        if index > self.committed_index:
            self.committed_index = index

    def sync(self) -> None:
        """fdatasync the data files, then the index files."""
        self.data.flush()
        self.index.flush()

    def close(self) -> None:
        self.sync()
        self.save_checkpoint()
        self.data.close()
        self.index.close()


class DLedgerCommitLog:
    """The commitlog interface of ``commitlog.CommitLog`` over a DLedgerLog: each message (each
    message of an ordinary batch) is one entry; PHYSICALOFFSET = entry pos + 48."""

    kind = "dledger"

    def __init__(self, log: DLedgerLog):
        self.log = log
        self.last_store_timestamp_ms = 0

    @property
    def end_offset(self) -> int:
        return self.log.end_pos

    @property
    def min_offset(self) -> int:
        return self.log.data.min_offset

    @property
    def tail_cache(self):
        """The newest bytes of the data files, held in memory (``segments.SegmentQueue.tail_cache``)."""
        return self.log.data.tail_cache

    def append_messages(self, msgs: list[Message], term: int = 0) -> list[tuple[int, int]]:
        # encode and size-check every message before the first write, so a bad message in a batch
        # leaves nothing of the batch behind
        records = [encode_message(m) for m in msgs]
        for record in records:
            self.log.next_entry_pos(len(record))
        out = []
        for msg, record in zip(msgs, records):
            _, pos = self.log.append_record(term, record)
            msg.physical_offset = pos + fmt.ENTRY_HEADER_BYTES
            out.append((msg.physical_offset, len(record)))
        if msgs:
            self.last_store_timestamp_ms = msgs[-1].store_timestamp_ms
        return out

    def read(self, physical_offset: int, size: int) -> bytes:
        return self.log.data.read(physical_offset, size)

    def scan(self, start: int, stop: int | None = None, *, check_crc: bool = False
             ) -> Iterator[tuple[int, bytes, int]]:
        """Records in entries starting in ``[start, stop)``; entries that are not normal entries
        holding a record (a Raft no-op, a config change, other metadata) are passed over."""
        stop = self.log.end_pos if stop is None else stop
        for header, body in self.log.entries_from(start, stop):
            nxt = header.pos + header.size
            if (header.magic == fmt.DLEDGER_MAGIC and is_record_body(body)
                    and check_record(body, 0, len(body), check_crc=check_crc) != RECORD_END):
                yield header.pos + fmt.ENTRY_HEADER_BYTES, body, nxt

    def committed_end(self) -> int:
        """Position after the last committed entry (the dispatch limit in Raft mode)."""
        if self.log.committed_index < self.log.first_index:
            return self.log.data.min_offset
        return self.log.entry_end(self.log.committed_index)

    def recover(self, start: int, *, check_crc: bool = True) -> int:
        """The DLedgerLog recovered its tail when it was opened; nothing more to do here."""
        return self.log.end_pos

    def flush(self) -> None:
        self.log.sync()

    def truncate(self, position: int) -> None:
        raise InvariantViolation("a DLedger commitlog is truncated by index (DLedgerLog.truncate_after)")

    def close(self) -> None:
        self.log.close()
