"""Consume queue files: ``consumequeue/{topic}/{queueId}/`` (20-byte units, spec 5) and
``batchconsumequeue/{topic}/{queueId}/`` (46-byte units, spec 6), over SegmentQueues.

``ConsumeQueue``: the unit for queue offset ``q`` is at byte ``q * 20``. ``max_offset`` is the
next offset to write (the index of the first end unit, found on open by a binary search of the
last segment, since units are written in order and unwritten space is zeros). ``min_offset`` is
the first unit that is not a filler. A queue whose first unit is not at offset 0 starts with
filler units ``(0, 0x7FFFFFFF, 0)`` from the start of its first file, as RocketMQ writes them.

``BatchConsumeQueue``: units are appended back to back (NOT at ``q * 46``); a unit covers queue
offsets ``[base, base + batch_size)``; lookups binary-search the file on ``base_offset``.

Both: ``put`` is idempotent for an offset already written with the same content position (a
re-dispatch after a crash rewrites what is there), and refuses a gap (InvariantViolation);
``truncate_physical(log_end)`` drops the units that point at or past the commitlog end (a queue
that got ahead of the commitlog in a crash). Segment sizes must be multiples of the unit size.
"""
from __future__ import annotations

import os

from mqbench.errors import CorruptDataError, InvariantViolation, UserError

from mqbench.broker.formats.queues import (
    BCQ_UNIT_BYTES,
    CQ_UNIT_BYTES,
    BcqUnit,
    decode_bcq_unit,
    decode_cq_unit,
    decode_cq_units,
    encode_bcq_unit,
    encode_bcq_units,
    encode_cq_filler,
    encode_cq_unit,
    encode_cq_units,
    is_cq_end,
    is_cq_filler,
)
from .segments import SegmentQueue

DEFAULT_CQ_SEGMENT_BYTES = 300_000 * CQ_UNIT_BYTES      # 6 000 000
DEFAULT_BCQ_SEGMENT_BYTES = 300_000 * BCQ_UNIT_BYTES    # 13 800 000


def _first_true(lo: int, hi: int, pred) -> int:
    """Smallest i in [lo, hi) with pred(i), or hi; pred must be monotone (False... then True...)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class ConsumeQueue:
    """One topic/queue's ConsumeQueue (see module doc)."""

    unit_bytes = CQ_UNIT_BYTES

    def __init__(self, directory: str | os.PathLike, segment_size_bytes: int = DEFAULT_CQ_SEGMENT_BYTES, *,
                 tail_cache_bytes: int = 0):
        if segment_size_bytes % CQ_UNIT_BYTES:
            raise UserError(f"consume queue segment size {segment_size_bytes} is not a multiple of {CQ_UNIT_BYTES}")
        self.segments = SegmentQueue(directory, segment_size_bytes, tail_cache_bytes=tail_cache_bytes)
        self.per_segment = segment_size_bytes // CQ_UNIT_BYTES
        starts = self.segments.segment_starts()
        if not starts:
            self.max_offset = 0
            self.min_offset = 0
            return
        last = starts[-1] // CQ_UNIT_BYTES
        self.max_offset = _first_true(last, last + self.per_segment, lambda q: is_cq_end(*self._unit(q)))
        first = starts[0] // CQ_UNIT_BYTES
        self.min_offset = _first_true(first, min(first + self.per_segment, self.max_offset),
                                      lambda q: not is_cq_filler(*self._unit(q)))

    def _unit(self, q: int) -> tuple[int, int, int]:
        raw = self.segments.read(q * CQ_UNIT_BYTES, CQ_UNIT_BYTES)
        if len(raw) < CQ_UNIT_BYTES:
            return (0, 0, 0)
        return decode_cq_unit(raw, 0)

    def _open_at(self, queue_offset: int) -> None:
        """Before writing from ``queue_offset``: an empty queue starts there; a unit past the next one
        of a queue that has units would leave a gap (InvariantViolation)."""
        if queue_offset > self.max_offset:
            if self.max_offset == 0 and not self.segments.segment_starts():
                self._start_at(queue_offset)
            else:
                raise InvariantViolation(f"{self.segments.directory}: unit {queue_offset} would leave a gap "
                                         f"after {self.max_offset}")

    def put(self, queue_offset: int, physical_offset: int, size: int, tags_code: int) -> None:
        """Write the unit for ``queue_offset`` (the next one, or an existing one again)."""
        self._open_at(queue_offset)
        self.segments.write(queue_offset * CQ_UNIT_BYTES, encode_cq_unit(physical_offset, size, tags_code))
        if queue_offset >= self.max_offset:
            self.max_offset = queue_offset + 1

    def put_run(self, queue_offset: int, units: list[tuple[int, int, int]]) -> None:
        """``put`` for consecutive units from ``queue_offset`` ((physical_offset, size, tags_code)
        each): the same bytes, one write per segment the run touches."""
        if not units:
            return
        self.put_flat(queue_offset, [field for unit in units for field in unit])

    def put_flat(self, queue_offset: int, flat: list[int]) -> None:
        """``put_run`` with the units as one flat list [physical_offset, size, tags_code, ...] (what
        dispatch gathers: no tuple per unit, one ``struct`` call for the run)."""
        if len(flat) < 3:
            return
        self._open_at(queue_offset)
        data = encode_cq_units(flat)
        at = queue_offset * CQ_UNIT_BYTES
        segments = self.segments
        if len(data) <= segments.remaining_in_segment(at):     # the common case: one segment
            segments.write(at, data)
            data = b""
        data = memoryview(data)
        while data:
            n = min(len(data), self.segments.remaining_in_segment(at))
            self.segments.write(at, data[:n])
            at, data = at + n, data[n:]
        end = queue_offset + len(flat) // 3
        if end > self.max_offset:
            self.max_offset = end

    def _start_at(self, queue_offset: int) -> None:
        """A queue whose first message has a non-zero offset: fillers from the file start."""
        first = queue_offset - queue_offset % self.per_segment
        fillers = queue_offset - first
        self.segments.ensure(first * CQ_UNIT_BYTES)
        if fillers:
            self.segments.write(first * CQ_UNIT_BYTES, encode_cq_filler() * fillers)
        self.min_offset = queue_offset
        self.max_offset = queue_offset

    def get(self, queue_offset: int) -> tuple[int, int, int] | None:
        """(physical_offset, size, tags_code) or None (out of range or a filler)."""
        units = self.read_units(queue_offset, 1)
        return units[0][1:] if units and units[0][0] == queue_offset else None

    def read_units(self, queue_offset: int, count: int) -> list[tuple[int, int, int, int]]:
        """Up to ``count`` units from ``queue_offset``: (queue_offset, physical, size, tags); fillers
        are skipped."""
        return self.units_of(*self.raw_units(queue_offset, count))

    def raw_units(self, queue_offset: int, count: int) -> tuple[int, bytes]:
        """(first offset, its units and up to ``count - 1`` after it, undecoded) that ``read_units``
        looks at: the offset raised to the minimum, the units up to the maximum; b"" when none."""
        if queue_offset < self.min_offset:
            queue_offset = self.min_offset
        count = min(count, self.max_offset - queue_offset)
        if count <= 0:
            return queue_offset, b""
        return queue_offset, self.segments.read(queue_offset * CQ_UNIT_BYTES, count * CQ_UNIT_BYTES)

    def units_of(self, queue_offset: int, raw: bytes) -> list[tuple[int, int, int, int]]:
        """``read_units``' answer from ``raw_units``' (CorruptDataError for an end unit inside the queue)."""
        out = []
        for i, (phys, size, tags) in enumerate(decode_cq_units(raw)):
            if phys > 0 and size > 0:   # the common case: neither a filler nor the end
                out.append((queue_offset + i, phys, size, tags))
                continue
            if is_cq_end(phys, size):   # below max_offset every unit was written: damage
                raise CorruptDataError(f"unit {queue_offset + i} (physical offset {phys}, size {size}) is "
                                       f"not valid inside the queue [{self.min_offset}, {self.max_offset})",
                                       where=str(self.segments.directory), offset=(queue_offset + i) * CQ_UNIT_BYTES)
            if not is_cq_filler(phys, size):
                out.append((queue_offset + i, phys, size, tags))
        return out

    def last_unit(self) -> tuple[int, int, int] | None:
        if self.max_offset <= self.min_offset:
            return None
        return self._unit(self.max_offset - 1)

    def truncate_physical(self, log_end: int) -> int | None:
        """Drop trailing units whose record does not end inside the log. Returns None when none
        was dropped, else the log position to dispatch this queue's records again from (the end
        of the last unit kept, 0 when none is left): a damaged unit may have looked "ahead"."""
        q = self.max_offset
        resume = None
        while q > self.min_offset:
            phys, size, _ = self._unit(q - 1)
            if 0 <= phys and 0 < size and phys + size <= log_end:
                resume = phys + size
                break
            q -= 1
        dropped = self.max_offset - q
        self.truncate(q)   # also zeroes stale units past the end that a crash may have left
        return (resume or 0) if dropped else None

    def truncate(self, queue_offset: int) -> None:
        """Zero every unit from ``queue_offset`` on."""
        self.segments.truncate(queue_offset * CQ_UNIT_BYTES)
        self.max_offset = min(self.max_offset, queue_offset)
        if self.max_offset <= self.min_offset:
            self.min_offset = self.max_offset

    def flush(self) -> None:
        self.segments.flush()

    def close(self) -> None:
        self.segments.close()


class BatchConsumeQueue:
    """One topic/queue's BatchConsumeQueue (see module doc)."""

    unit_bytes = BCQ_UNIT_BYTES

    def __init__(self, directory: str | os.PathLike, segment_size_bytes: int = DEFAULT_BCQ_SEGMENT_BYTES, *,
                 tail_cache_bytes: int = 0):
        if segment_size_bytes % BCQ_UNIT_BYTES:
            raise UserError(f"batch consume queue segment size {segment_size_bytes} is not a multiple of "
                            f"{BCQ_UNIT_BYTES}")
        self.segments = SegmentQueue(directory, segment_size_bytes, tail_cache_bytes=tail_cache_bytes)
        self.per_segment = segment_size_bytes // BCQ_UNIT_BYTES
        starts = self.segments.segment_starts()
        self.first_unit = starts[0] // BCQ_UNIT_BYTES if starts else 0
        if starts:
            last = starts[-1] // BCQ_UNIT_BYTES
            self.count = _first_true(last, last + self.per_segment, lambda i: not self._unit(i).is_valid)
        else:
            self.count = self.first_unit

    def _unit(self, i: int) -> BcqUnit:
        raw = self.segments.read(i * BCQ_UNIT_BYTES, BCQ_UNIT_BYTES)
        if len(raw) < BCQ_UNIT_BYTES:
            return BcqUnit(0, 0, 0, 0, -1, 0)
        return decode_bcq_unit(raw, 0)

    @property
    def min_offset(self) -> int:
        return self._unit(self.first_unit).base_offset if self.count > self.first_unit else 0

    @property
    def max_offset(self) -> int:
        if self.count <= self.first_unit:
            return 0
        last = self._unit(self.count - 1)
        return last.base_offset + last.batch_size

    def put(self, unit: BcqUnit) -> None:
        """Append ``unit``; a unit whose base is already covered is skipped (re-dispatch)."""
        top = self.max_offset
        if self.count > self.first_unit:
            if unit.base_offset < top:
                return
            if unit.base_offset > top:
                raise InvariantViolation(f"{self.segments.directory}: batch unit at {unit.base_offset} would "
                                         f"leave a gap after {top}")
        self.segments.write(self.count * BCQ_UNIT_BYTES, encode_bcq_unit(unit))
        self.count += 1

    def put_flat(self, flat: list[int]) -> None:
        """``put`` of consecutive units given as one flat list [physical_offset, size, tags_code,
        store_timestamp_ms, base_offset, batch_size, ...] (six ints a unit, each base the previous
        one's base + batch_size): the same bytes, the queue's end read once and one write per
        segment the units touch. Units whose base is already covered are skipped (re-dispatch)."""
        n = len(flat) // 6
        if not n:
            return
        skip = 0
        if self.count > self.first_unit:
            top = self.max_offset
            while skip < n and flat[skip * 6 + 4] < top:
                skip += 1
            if skip == n:
                return
            if flat[skip * 6 + 4] > top:
                raise InvariantViolation(f"{self.segments.directory}: batch unit at {flat[skip * 6 + 4]} would "
                                         f"leave a gap after {top}")
        data = memoryview(encode_bcq_units(flat[skip * 6:]))
        at = self.count * BCQ_UNIT_BYTES
        segments = self.segments
        while data:
            k = min(len(data), segments.remaining_in_segment(at))
            segments.write(at, data[:k])
            at, data = at + k, data[k:]
        self.count += n - skip

    def find(self, queue_offset: int) -> int | None:
        """Unit number covering ``queue_offset``, or None."""
        i = _first_true(self.first_unit, self.count, lambda j: self._unit(j).base_offset > queue_offset) - 1
        if i < self.first_unit:
            return None
        u = self._unit(i)
        return i if queue_offset < u.base_offset + u.batch_size else None

    def read_units(self, queue_offset: int, count: int) -> list[BcqUnit]:
        """Up to ``count`` units starting with the one covering ``queue_offset`` (or the first one
        when ``queue_offset`` is below the queue's minimum)."""
        if self.count <= self.first_unit:
            return []
        i = self.first_unit if queue_offset < self.min_offset else self.find(queue_offset)
        if i is None:
            return []
        n = min(count, self.count - i)
        raw = self.segments.read(i * BCQ_UNIT_BYTES, n * BCQ_UNIT_BYTES)
        units = [decode_bcq_unit(raw, k * BCQ_UNIT_BYTES) for k in range(len(raw) // BCQ_UNIT_BYTES)]
        for k, unit in enumerate(units):
            if not unit.is_valid:
                raise CorruptDataError(f"batch unit {i + k} is not valid inside the queue",
                                       where=str(self.segments.directory), offset=(i + k) * BCQ_UNIT_BYTES)
        return units

    def truncate_physical(self, log_end: int) -> int | None:
        """As ``ConsumeQueue.truncate_physical``."""
        i = self.count
        resume = None
        while i > self.first_unit:
            u = self._unit(i - 1)
            if u.is_valid and u.physical_offset + u.size <= log_end:
                resume = u.physical_offset + u.size
                break
            i -= 1
        dropped = self.count - i
        self.truncate_units(i)
        return (resume or 0) if dropped else None

    def truncate_units(self, unit_number: int) -> None:
        self.segments.truncate(unit_number * BCQ_UNIT_BYTES)
        self.count = max(self.first_unit, min(self.count, unit_number))

    def truncate(self, queue_offset: int) -> None:
        """Drop every unit whose base is at or after ``queue_offset``."""
        i = _first_true(self.first_unit, self.count, lambda j: self._unit(j).base_offset >= queue_offset)
        self.truncate_units(i)

    def flush(self) -> None:
        self.segments.flush()

    def close(self) -> None:
        self.segments.close()
