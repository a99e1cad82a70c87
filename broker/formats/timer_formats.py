"""The 5.x timer store's binary layouts (spec section 10). Pure code, big-endian.

TimerLog unit (``{root}/timerlog/``, 100 MiB files with 20-digit names), 52 bytes::

    off  size  type   field
    0    4     int32  size = 52
    4    8     int64  prevPos: timerlog offset of the previous unit in the same slot, -1 if none
    12   4     int32  magic: bit set of MAGIC_DEFAULT 1 / MAGIC_ROLL 2 / MAGIC_DELETE 4
    16   8     int64  currWriteTimeMs (the timer's write clock, aligned to the precision)
    24   4     int32  delay = due time - currWriteTimeMs (due = field@16 + field@24)
    28   8     int64  offsetPy: commitlog offset of the rmq_sys_wheel_timer record
    36   4     int32  sizePy: that record's TOTALSIZE
    40   4     int32  Java hashCode of REAL_TOPIC (0 if absent)
    44   8     int64  reserved, 0

TimerLog end-of-file blank, 16 bytes: int32 remaining, int64 0, int32 BLANK_MAGIC (at +12, where a
unit has its magic).

TimerWheel slot (``{root}/timerwheel``, one file of 2 x 604800 slots), 32 bytes; slot index for
time t = (t // precision) % (2 * 604800), at file offset index * 32::

    0    8     int64  slot time divided by the precision (seconds when the precision is 1000 ms)
    8    8     int64  firstPos: timerlog offset of the first unit in the slot
    16   8     int64  lastPos: timerlog offset of the last unit (walk back with prevPos)
    24   4     int32  num: number of messages
    28   4     int32  magic, unused (0)

``config/timercheck`` (4096 bytes, the rest zero)::

    0    8     int64  lastReadTimeMs
    8    8     int64  lastTimerLogFlushPos
    16   8     int64  lastTimerQueueOffset (CQ offset reached in rmq_sys_wheel_timer/0)
    24   8     int64  masterTimerQueueOffset
    32   8     int64  dataVersion.stateVersion
    40   8     int64  dataVersion.timestamp
    48   8     int64  dataVersion.counter
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from mqbench.errors import CorruptDataError, UserError

from .buffers import ByteView
from .record_layout import BLANK_MAGIC

TIMER_TOPIC = "rmq_sys_wheel_timer"
TIMER_LOG_UNIT_BYTES = 52
TIMER_LOG_BLANK_BYTES = 16
TIMER_LOG_FILE_BYTES = 100 * 1024 * 1024
MAGIC_DEFAULT = 1
MAGIC_ROLL = 2
MAGIC_DELETE = 4
TIMER_WHEEL_TTL_DAYS = 7
SLOTS_TOTAL = 604_800
WHEEL_SLOT_BYTES = 32
TIMER_WHEEL_FILE_BYTES = SLOTS_TOTAL * 2 * WHEEL_SLOT_BYTES  # 38 707 200
DEFAULT_PRECISION_MS = 1000
DEFAULT_ROLL_WINDOW_SLOTS = 172_800
TIMER_CHECK_FILE_BYTES = 4096
UNIT_END = 0
UNIT_BLANK = -1

_UNIT = struct.Struct(">iqiqiqiiq")
_BLANK = struct.Struct(">iqi")
_SLOT = struct.Struct(">qqqii")
_CHECK = struct.Struct(">qqqqqqq")


@dataclass
class TimerLogUnit:
    prev_pos: int
    magic: int
    curr_write_time_ms: int
    delay_ms: int
    offset_py: int
    size_py: int
    real_topic_hash: int
    reserved: int = 0

    @property
    def due_time_ms(self) -> int:
        return self.curr_write_time_ms + self.delay_ms


def is_valid_magic(magic: int) -> bool:
    return (magic | 0xF) == 0xF


def encode_timer_unit(unit: TimerLogUnit) -> bytes:
    try:
        return _UNIT.pack(TIMER_LOG_UNIT_BYTES, unit.prev_pos, unit.magic, unit.curr_write_time_ms, unit.delay_ms,
                          unit.offset_py, unit.size_py, unit.real_topic_hash, unit.reserved)
    except struct.error as exc:
        raise UserError(f"timer log unit field out of range: {exc}") from None


def decode_timer_unit(buf: ByteView, pos: int = 0, *, where: str | None = None) -> TimerLogUnit:
    """The unit at ``buf[pos:pos+52]``. CorruptDataError if short, a blank, or not a unit."""
    if pos < 0 or len(buf) - pos < TIMER_LOG_UNIT_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, a timer log unit needs {TIMER_LOG_UNIT_BYTES}",
                               where=where, offset=pos)
    size, prev, magic, curr, delay, offset_py, size_py, topic_hash, reserved = _UNIT.unpack_from(buf, pos)
    if magic == BLANK_MAGIC:
        raise CorruptDataError("timer log end-of-file blank, not a unit", where=where, offset=pos)
    if size != TIMER_LOG_UNIT_BYTES or not is_valid_magic(magic):
        raise CorruptDataError(f"not a timer log unit (size {size}, magic {magic})", where=where, offset=pos)
    return TimerLogUnit(prev, magic, curr, delay, offset_py, size_py, topic_hash, reserved)


def check_timer_unit(buf: ByteView, pos: int, end: int) -> int:
    """52 for a unit, UNIT_BLANK (-1) for an end-of-file blank, UNIT_END (0) otherwise. Never raises."""
    end = min(end, len(buf))
    if pos < 0 or end - pos < TIMER_LOG_BLANK_BYTES:
        return UNIT_END
    size, _, magic = _BLANK.unpack_from(buf, pos)
    if magic == BLANK_MAGIC:
        return UNIT_BLANK
    if end - pos < TIMER_LOG_UNIT_BYTES:
        return UNIT_END
    magic = _UNIT.unpack_from(buf, pos)[2]
    if size != TIMER_LOG_UNIT_BYTES or not is_valid_magic(magic) or magic == 0:
        return UNIT_END
    return TIMER_LOG_UNIT_BYTES


def encode_timer_blank(remaining: int) -> bytes:
    if remaining < TIMER_LOG_BLANK_BYTES:
        raise UserError(f"a timer log blank needs {TIMER_LOG_BLANK_BYTES} bytes, {remaining} left")
    return _BLANK.pack(remaining, 0, BLANK_MAGIC)


@dataclass
class WheelSlot:
    time_div_precision: int
    first_pos: int
    last_pos: int
    num: int
    magic: int = 0


EMPTY_SLOT = WheelSlot(-1, -1, -1, -1, 0)


def slot_index(time_ms: int, precision_ms: int = DEFAULT_PRECISION_MS, slots_total: int = SLOTS_TOTAL) -> int:
    return (time_ms // precision_ms) % (2 * slots_total)


def slot_file_offset(time_ms: int, precision_ms: int = DEFAULT_PRECISION_MS, slots_total: int = SLOTS_TOTAL) -> int:
    return slot_index(time_ms, precision_ms, slots_total) * WHEEL_SLOT_BYTES


def encode_wheel_slot(slot: WheelSlot) -> bytes:
    try:
        return _SLOT.pack(slot.time_div_precision, slot.first_pos, slot.last_pos, slot.num, slot.magic)
    except struct.error as exc:
        raise UserError(f"timer wheel slot field out of range: {exc}") from None


def decode_wheel_slot(buf: ByteView, pos: int = 0, *, where: str | None = None) -> WheelSlot:
    if pos < 0 or len(buf) - pos < WHEEL_SLOT_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, a timer wheel slot needs {WHEEL_SLOT_BYTES}",
                               where=where, offset=pos)
    return WheelSlot(*_SLOT.unpack_from(buf, pos))


def slot_for_time(buf: ByteView, time_ms: int, precision_ms: int = DEFAULT_PRECISION_MS) -> WheelSlot:
    """The slot of ``time_ms`` in a whole wheel file; EMPTY_SLOT when the slot holds another time."""
    slot = decode_wheel_slot(buf, slot_file_offset(time_ms, precision_ms))
    return slot if slot.time_div_precision == time_ms // precision_ms else EMPTY_SLOT


def align_deliver_ms(deliver_ms: int, precision_ms: int = DEFAULT_PRECISION_MS) -> int:
    """The broker's alignment of a timer message's deliver time to the precision (spec 10)."""
    if deliver_ms % precision_ms == 0:
        return deliver_ms - precision_ms
    return deliver_ms // precision_ms * precision_ms


@dataclass
class TimerCheckpoint:
    last_read_time_ms: int = 0
    last_timer_log_flush_pos: int = 0
    last_timer_queue_offset: int = 0
    master_timer_queue_offset: int = 0
    state_version: int = 0
    data_version_timestamp_ms: int = 0
    data_version_counter: int = 0


def encode_timer_check(check: TimerCheckpoint) -> bytes:
    head = _CHECK.pack(check.last_read_time_ms, check.last_timer_log_flush_pos, check.last_timer_queue_offset,
                       check.master_timer_queue_offset, check.state_version, check.data_version_timestamp_ms,
                       check.data_version_counter)
    return head + bytes(TIMER_CHECK_FILE_BYTES - len(head))


def decode_timer_check(data: ByteView, *, where: str | None = None) -> TimerCheckpoint:
    if len(data) < _CHECK.size:
        raise CorruptDataError(f"timercheck of {len(data)} bytes, at least {_CHECK.size} expected", where=where, offset=0)
    return TimerCheckpoint(*_CHECK.unpack_from(data, 0))
