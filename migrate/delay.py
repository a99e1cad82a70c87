"""Delay state across versions: level delays (4.x and 5.x) and the 5.x timer store.

Level delays (``SCHEDULE_TOPIC_XXXX``, queue ``level - 1``, and ``config/delayOffset.json``) exist
in every version and travel as they are: the records keep their queue offsets, the CQ tagsCode
(the deliver time) is recomputed from the same store time and DELAY level, and delayOffset.json is
carried unchanged (``configs_carry``). So a pending level-delayed message is neither lost,
delivered twice nor delivered early.

Timer messages (5.x, arbitrary delays): the broker stores them in topic ``rmq_sys_wheel_timer``
(queue 0; properties ``REAL_TOPIC``, ``REAL_QID``, ``TIMER_OUT_MS`` = the due time) and tracks
them in ``timerlog/`` (units pointing at the records by commitlog offset), ``timerwheel`` and
``config/timercheck`` (``lastReadTimeMs``: slots before it were delivered;
``lastTimerQueueOffset``: timer-queue offsets below it are in the wheel).

* ``v5`` -> ``v5`` (plain <-> DLedger): ``timerwheel`` and ``timercheck`` are copied; every
  timer-log unit is copied with ``offsetPy``/``sizePy`` translated to where its record now is
  (records are matched by their timer-queue offset, which the migration keeps), so the wheel
  delivers each pending message once, at its time.
* ``v5`` -> ``v4``: 4.x has no timer store. A pending timer message (timer-queue offset at or
  above ``lastTimerQueueOffset``, or due at or after ``lastReadTimeMs``; every timer message when
  there is no ``timercheck``) blocks the migration, unless ``--map-timers-to-levels``: then each
  is ALSO written as a ``SCHEDULE_TOPIC_XXXX`` record (appended after the copied log) at the
  smallest delay level L whose delay covers the time left, with its store time set to
  ``due - delay(L)``: the 4.x schedule service delivers it at its due time, never earlier. The
  time left is measured from the latest store time seen in the source (a lower bound of "now"),
  so a message due more than the longest level (2 h) after the source's last write still blocks
  (``timer_beyond_levels``). Its timer-queue record is carried as it is (a 4.x broker has no
  timer service to deliver it).
* ``v4`` -> ``v5``: a 4.x store has no timer store; none is written (the 5.x broker starts one).
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mqbench.broker.store.segment_files import MappedFile, list_segments
from mqbench.broker.store.log_reader import zeros_from
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.tags import DEFAULT_MESSAGE_DELAY_LEVEL, parse_delay_levels
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.store.segments import SegmentQueue
from mqbench.broker.formats.timer_formats import (
    TIMER_LOG_FILE_BYTES,
    TIMER_TOPIC,
    UNIT_BLANK,
    check_timer_unit,
    decode_timer_check,
    decode_timer_unit,
    encode_timer_unit,
)
from mqbench.errors import CorruptDataError

from .journal import write_file_atomic
from .reframe import Blocker
from mqbench.broker.formats.properties import (
    PROPERTY_CRC32,
    PROPERTY_DELAY,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TIMER_OUT_MS,
)

TIMER_CHECK_PATH = os.path.join("config", "timercheck")


def read_timer_check(root: str):
    """The source's ``TimerCheckpoint`` or None (read-only)."""
    path = os.path.join(root, TIMER_CHECK_PATH)
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except FileNotFoundError:
        return None
    return decode_timer_check(data, where=TIMER_CHECK_PATH)


def due_ms(msg: Message) -> int | None:
    """The due time of a timer record (``TIMER_OUT_MS``), None when it has none or it is not a number."""
    value = msg.properties.get(PROPERTY_TIMER_OUT_MS)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def level_for(remaining_ms: int, levels_ms: list[int]) -> int | None:
    """The smallest 1-based level whose delay is at least ``remaining_ms``; None beyond the last."""
    for i, delay in enumerate(levels_ms):
        if delay >= remaining_ms:
            return i + 1
    return None


class TimerScan:
    """Decides, record by record in log order, which timer messages are pending and what a ``v4``
    target makes of them (see module doc)."""

    def __init__(self, src: str, target_version: str, map_to_levels: bool,
                 delay_levels: str = DEFAULT_MESSAGE_DELAY_LEVEL):
        self.timer_check = read_timer_check(src)
        self.to_v4 = target_version.startswith("v4")
        self.map_to_levels = map_to_levels
        self.levels_ms = parse_delay_levels(delay_levels)
        self.now_ms = self.timer_check.last_read_time_ms if self.timer_check else 0
        self.pending = 0
        self.farthest: tuple[int, str] | None = None

    def observe(self, msg: Message) -> None:
        self.now_ms = max(self.now_ms, msg.store_timestamp_ms)

    def is_pending(self, msg: Message) -> bool:
        if msg.topic != TIMER_TOPIC:
            return False
        check = self.timer_check
        if check is None:
            return True
        due = due_ms(msg)
        return msg.queue_offset >= check.last_timer_queue_offset or due is None or due >= check.last_read_time_ms

    def blockers(self, msg: Message, place: str = "") -> list[Blocker]:
        """Why this record blocks a ``v4`` target (in log order); with the mapping, a timer too far
        out is only known once the whole log was seen (``final_blockers``)."""
        self.observe(msg)
        if not self.to_v4 or not self.is_pending(msg):
            return []
        self.pending += 1
        if not self.map_to_levels:
            return [Blocker("timer_message", "a pending timer message (arbitrary delay) has no 4.x form: pass "
                                             "--map-timers-to-levels to deliver it through the delay levels")]
        due = due_ms(msg) if due_ms(msg) is not None else msg.store_timestamp_ms
        if self.farthest is None or due > self.farthest[0]:
            self.farthest = (due, place)
        return []

    def final_blockers(self) -> list[tuple[Blocker, str]]:
        """After the whole log: the farthest pending timer, when no delay level reaches it."""
        if self.farthest is None or level_for(self.farthest[0] - self.now_ms, self.levels_ms) is not None:
            return []
        return [(Blocker("timer_beyond_levels", f"a pending timer message due more than the longest delay level "
                                                f"({self.levels_ms[-1] // 1000} s) after the source's last write"),
                 self.farthest[1])]

    def schedule_record(self, msg: Message) -> Message | None:
        """The ``SCHEDULE_TOPIC_XXXX`` record delivering a pending timer message at its due time
        (queue offset left to the caller), or None when no level covers it."""
        due = due_ms(msg)
        if due is None:
            due = msg.store_timestamp_ms
        level = level_for(max(0, due - self.now_ms), self.levels_ms)
        if level is None:
            return None
        props = {k: v for k, v in msg.properties.items() if k not in (PROPERTY_CRC32,)}
        props.setdefault(PROPERTY_REAL_TOPIC, msg.topic)
        props.setdefault(PROPERTY_REAL_QID, str(msg.queue_id))
        props[PROPERTY_DELAY] = str(level)
        return replace(msg, topic=SCHEDULE_TOPIC, queue_id=level - 1, properties=props,
                       store_timestamp_ms=due - self.levels_ms[level - 1], version=1, body_crc=0)

    def notes(self) -> list[str]:
        if self.to_v4 and self.pending:
            return [f"{self.pending} pending timer messages" + (" are mapped to delay levels" if self.map_to_levels
                                                                  else " have no 4.x form")]
        return []


def has_timer_store(root: str) -> bool:
    return os.path.isdir(os.path.join(root, "timerlog")) or os.path.exists(os.path.join(root, "timerwheel"))


def carry_timer_store(src: str, dst: str, address_of) -> int:
    """``v5`` -> ``v5``: copy ``timerwheel`` and ``timercheck``, rewrite ``timerlog/`` with every
    unit's record offset translated by ``address_of(old_offset) -> (new_offset, size) | None``.
    Returns the units written. A unit whose record is not in the target (it was deleted from the
    source log) is kept as it is: the broker skips units it cannot read, as it would have. Where the
    units of a file end, the rest of it must be zeros (CorruptDataError names the file and offset)."""
    src_p, dst_p = Path(src), Path(dst)
    if (src_p / "timerwheel").is_file():
        _copy_file(src_p / "timerwheel", dst_p / "timerwheel")
    if (src_p / TIMER_CHECK_PATH).is_file():
        (dst_p / "config").mkdir(parents=True, exist_ok=True)
        write_file_atomic(dst_p / TIMER_CHECK_PATH, (src_p / TIMER_CHECK_PATH).read_bytes())
    segdir = list_segments(str(src_p / "timerlog"), "timerlog")
    for problem in segdir.problems:
        raise CorruptDataError(problem["detail"], where=problem["file"])
    if not segdir.segments:
        return 0
    out = SegmentQueue(dst_p / "timerlog", segdir.file_size_bytes or TIMER_LOG_FILE_BYTES)
    units = 0
    try:
        for seg in segdir.segments:
            rel = f"timerlog/{os.path.basename(seg.path)}"
            with MappedFile(seg.path) as data:
                pos = 0
                while pos < len(data):
                    step = check_timer_unit(data, pos, len(data))
                    if step == UNIT_BLANK:
                        out.write(seg.start + pos, bytes(data[pos:pos + 16]))
                        break
                    if step == 0:
                        if not zeros_from(seg.path, pos):
                            raise CorruptDataError("invalid bytes in the timer log where its units end (a torn or "
                                                   "corrupt unit)", where=rel, offset=pos)
                        break
                    unit = decode_timer_unit(data, pos, where=rel)
                    moved = address_of(unit.offset_py)
                    if moved is not None:
                        unit.offset_py, unit.size_py = moved
                    out.write(seg.start + pos, encode_timer_unit(unit))
                    units += 1
                    pos += step
        out.flush()
    finally:
        out.close()
    return units


def _copy_file(src: Path, dst: Path, chunk_bytes: int = 8 << 20) -> None:
    """Copy a (possibly sparse) file: zero chunks are skipped, the size is kept."""
    size = src.stat().st_size
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        while True:
            chunk = fin.read(chunk_bytes)
            if not chunk:
                break
            if chunk.count(0) == len(chunk):
                fout.seek(len(chunk), os.SEEK_CUR)
            else:
                fout.write(chunk)
        fout.truncate(size)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
