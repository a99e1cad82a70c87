"""The timer index: every message of ``rmq_sys_wheel_timer``/0 as a 52-byte unit in the timer log,
chained per wheel slot (RocketMQ 5's timer store, spec section 10), plus ``config/timercheck``.

Memory: the index holds no per-timer state in memory. A pending timer is one unit on disk; the
process keeps the wheel slots changed since the last checkpoint (at most ``checkpoint_slots``, 32
packed bytes each) and the units of the one slot it is working on (``slot_entries`` cache).

Order: entries are ordered by key = (fire time, timer-queue offset); ``collect`` returns a key
range, so a window can end in the middle of one millisecond's burst.

Placement (``timer_fire``, a pure function of the replicated record, so every replica and every
restart places a timer in the same slot): a timer due at ``due`` and stored at ``store`` fires at
``due`` (never before its store time, aligned down to the precision); a timer more than
``timer_roll_window_ms`` after its store time fires at ``store + window`` instead with MAGIC_ROLL:
the service then writes it to the timer topic again (a roll) and it is indexed anew.

Unit fields as the spec, with two choices documented here: ``currWriteTimeMs`` = the record's store
time aligned down to the precision, ``delay`` = fire time - that (so field@16 + field@24 is the exact
fire millisecond, not a slot boundary), and the reserved int64 at +44 holds the timer-queue offset of
the record (RocketMQ writes 0 there), which the delivery windows (``plan``) filter on.

Crash safety: ``checkpoint`` fdatasyncs the log, then writes and fdatasyncs the changed wheel slots,
then replaces ``config/timercheck`` (log end = lastTimerLogFlushPos, next queue offset =
lastTimerQueueOffset). On open, units after the checkpointed log end are validated and linked into
their slots again (the wheel write may have been lost); a torn tail is zeroed. Without a timercheck
but with files present, or with an index ahead of the store (``reset``), the index is rebuilt from
the timer queue by the service.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mqbench.broker.store.atomic import write_atomic
from mqbench.broker.formats.timer_formats import (
    MAGIC_DEFAULT,
    MAGIC_ROLL,
    TIMER_LOG_FILE_BYTES,
    TimerCheckpoint,
    TimerLogUnit,
    WheelSlot,
    decode_timer_check,
    encode_timer_check,
)
from mqbench.errors import CorruptDataError, InvariantViolation

from .config import DelayConfig
from .files import TIMERLOG_DIR, WHEEL_FILE, TimerLog, TimerWheel
from .plan import TimerEntry, timer_fire

log = logging.getLogger("mqbench.broker.timer")

TIMERCHECK_FILE = "timercheck"
DEFAULT_CHECKPOINT_SLOTS = 65_536


class TimerIndex:
    """The file-backed timer log + wheel of one store root (see module doc). Not thread-safe."""

    def __init__(self, root: str | os.PathLike, config: DelayConfig = DelayConfig(), *,
                 segment_bytes: int = TIMER_LOG_FILE_BYTES, checkpoint_slots: int = DEFAULT_CHECKPOINT_SLOTS,
                 clock_ms=None, auto_checkpoint: bool = True):
        self.root = Path(root)
        self.config = config
        self.precision_ms = config.timer_precision_ms
        self.checkpoint_slots = checkpoint_slots
        self.auto_checkpoint = auto_checkpoint   # False: the owner checkpoints when needs_checkpoint
        self.clock_ms = clock_ms or (lambda: 0)
        self.check_path = self.root / "config" / TIMERCHECK_FILE
        self.log = TimerLog(self.root / TIMERLOG_DIR, segment_bytes=segment_bytes)
        self.wheel = TimerWheel(self.root / WHEEL_FILE)
        self.next_queue_offset = 0
        self.last_read_time_ms = 0
        self.relinked = 0
        self.rebuilt = False
        self._counter = 0
        self._checked: tuple[int, int, int] | None = None    # what timercheck holds, once written here
        self._cache: tuple[int, int, list[TimerEntry]] | None = None
        self._open()

    # -- open / recovery ---------------------------------------------------------------------

    def _read_check(self) -> TimerCheckpoint | None:
        try:
            data = self.check_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return decode_timer_check(data, where=str(self.check_path))
        except CorruptDataError:
            return None

    def _open(self) -> None:
        check = self._read_check()
        sane = (check is not None and 0 <= check.last_timer_log_flush_pos and check.last_timer_queue_offset >= 0
                and self.log.files.min_offset <= check.last_timer_log_flush_pos <= self.log.files.end_offset)
        if not sane:
            had_files = check is not None or self.log.files.end_offset > 0
            self.reset()
            self.rebuilt = had_files
            return
        self._counter = check.data_version_counter
        self.last_read_time_ms = check.last_read_time_ms
        self.log.recover(check.last_timer_log_flush_pos)
        top = check.last_timer_queue_offset
        try:
            for pos, unit in self.log.scan(check.last_timer_log_flush_pos, self.log.end):
                if unit.reserved < top:
                    # units are appended in queue-offset order: this one was torn (zeros read back)
                    log.warning("timer log unit at %d names queue offset %d below %d: cut there",
                                pos, unit.reserved, top)
                    self.log.truncate(pos)
                    break
                self._relink(pos, unit)
                top = unit.reserved + 1
        except (CorruptDataError, InvariantViolation):
            self.reset()
            return
        self.next_queue_offset = top

    def _relink(self, pos: int, unit: TimerLogUnit) -> None:
        slot_time = unit.due_time_ms // self.precision_ms
        slot = self.wheel.get(slot_time)
        if slot.num > 0 and slot.last_pos >= pos:
            return                                       # the wheel write survived
        expected_prev = slot.last_pos if slot.num > 0 else -1
        if unit.prev_pos != expected_prev:
            raise InvariantViolation(f"timer log unit at {pos} follows {unit.prev_pos}, its slot ends at {expected_prev}")
        first = slot.first_pos if slot.num > 0 else pos
        self.wheel.put(slot_time, WheelSlot(slot_time, first, pos, max(slot.num, 0) + 1))
        self.relinked += 1

    def reset(self) -> None:
        """Forget every unit and slot (the service rebuilds the index from the timer queue)."""
        self.log.files.truncate(self.log.files.min_offset)
        self.log.recover(self.log.files.min_offset)
        self.wheel.reset()
        self._cache = None
        self.next_queue_offset = 0
        self.rebuilt = True
        self.checkpoint()

    # -- writing -----------------------------------------------------------------------------

    def add(self, queue_offset: int, due_ms: int, store_ms: int, *, offset_py: int = 0, size_py: int = 0,
            real_topic_hash: int = 0) -> TimerEntry:
        """Index the timer record at ``queue_offset`` (offsets only go up); returns its entry."""
        if queue_offset < self.next_queue_offset:
            raise InvariantViolation(f"timer queue offset {queue_offset} indexed twice "
                                     f"(next expected {self.next_queue_offset})")
        fire_ms, rolled = timer_fire(due_ms, store_ms, self.config)
        write_ms = store_ms - store_ms % self.precision_ms
        slot_time = fire_ms // self.precision_ms
        slot = self.wheel.get(slot_time)
        used = slot.num > 0
        unit = TimerLogUnit(prev_pos=slot.last_pos if used else -1,
                            magic=MAGIC_DEFAULT | (MAGIC_ROLL if rolled else 0), curr_write_time_ms=write_ms,
                            delay_ms=fire_ms - write_ms, offset_py=offset_py, size_py=size_py,
                            real_topic_hash=real_topic_hash, reserved=queue_offset)
        pos = self.log.append(unit)
        self.wheel.put(slot_time, WheelSlot(slot_time, slot.first_pos if used else pos, pos,
                                            (slot.num if used else 0) + 1))
        self.next_queue_offset = queue_offset + 1
        if self.auto_checkpoint and self.needs_checkpoint:
            self.checkpoint()
        return TimerEntry(fire_ms, queue_offset, rolled)

    @property
    def needs_checkpoint(self) -> bool:
        """The changed-slot cache reached ``checkpoint_slots`` (its memory bound)."""
        return len(self.wheel.dirty) >= self.checkpoint_slots

    def checkpoint(self, last_read_time_ms: int | None = None) -> None:
        """Make the index durable: log, then wheel, then ``config/timercheck`` (see module doc)."""
        if last_read_time_ms is not None:
            self.last_read_time_ms = last_read_time_ms
        self.log.flush(fsync=True)
        self.wheel.flush(fsync=True)
        state = (self.last_read_time_ms, self.log.end, self.next_queue_offset)
        if state == self._checked:
            return      # timercheck already says this: no rewrite (it is a periodic checkpoint)
        self._counter += 1
        check = TimerCheckpoint(self.last_read_time_ms, self.log.end, self.next_queue_offset,
                                self.next_queue_offset, 0, self.clock_ms(), self._counter)
        write_atomic(self.check_path, encode_timer_check(check))
        self._checked = state

    # -- reading -----------------------------------------------------------------------------

    def slot_entries(self, slot_time: int) -> list[TimerEntry]:
        """The entries of one slot, sorted by fire time (the last slot read is cached; units linked
        since are read incrementally)."""
        slot = self.wheel.get(slot_time)
        if slot.num <= 0:
            return []
        cached = self._cache
        if cached is not None and cached[0] == slot_time and cached[1] == slot.last_pos:
            return cached[2]
        stop = cached[1] if cached is not None and cached[0] == slot_time else -1
        fresh: list[TimerEntry] = []
        pos = slot.last_pos
        while pos > stop:
            unit = self.log.read_unit(pos)
            fresh.append(TimerEntry(unit.due_time_ms, unit.reserved, bool(unit.magic & MAGIC_ROLL)))
            if unit.prev_pos >= pos:
                raise CorruptDataError(f"timer log unit at {pos} points forward to {unit.prev_pos}",
                                       where=str(self.log.folder), offset=pos)
            pos = unit.prev_pos
        entries = sorted((cached[2] if stop >= 0 else []) + fresh)
        self._cache = (slot_time, slot.last_pos, entries)
        return entries

    def collect(self, start: tuple[int, int], end: tuple[int, int], below_offset: int,
                limit: int) -> tuple[list[TimerEntry], tuple[int, int]]:
        """Entries whose key (fire time, queue offset) is in ``[start, end)`` and whose queue offset
        is below ``below_offset``, in key order, slot by slot. When more than ``limit`` match, the
        range is cut before the first one left out (a burst due at one millisecond is split by queue
        offset). Returns the entries and the end of the range actually covered."""
        out: list[TimerEntry] = []
        p = self.precision_ms
        slot_time = start[0] // p
        while slot_time * p <= end[0]:
            for e in self.slot_entries(slot_time):
                key = (e.fire_ms, e.queue_offset)
                if start <= key < end and e.queue_offset < below_offset:
                    if len(out) == limit:
                        return out, key
                    out.append(e)
            slot_time += 1
        return out, end

    def next_fire_ms(self, start: tuple[int, int], to_ms: int, below_offset: int) -> int | None:
        """The earliest fire time at or after key ``start`` and before ``to_ms`` of an entry below
        ``below_offset``."""
        entries, _ = self.collect(start, (to_ms, 0), below_offset, 1)
        return entries[0].fire_ms if entries else None

    def close(self) -> None:
        self.checkpoint()
        self.log.files.close()
        os.close(self.wheel.fd)
