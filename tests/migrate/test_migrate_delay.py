"""Delay state across versions: level delays carried as they are, the timer store translated,
pending timer messages refused or mapped to delay levels for a v4 target."""
from __future__ import annotations

import os

import pytest

from migrate_golden import SEGMENT_BYTES, Clock
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.tags import parse_delay_levels
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.store.store import Store
from mqbench.broker.formats.timer_formats import (
    TIMER_TOPIC,
    TIMER_WHEEL_FILE_BYTES,
    TimerCheckpoint,
    TimerLogUnit,
    decode_timer_unit,
    encode_timer_check,
    encode_timer_unit,
)
from mqbench.errors import CorruptDataError, UserError
from mqbench.migrate.delay import level_for
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
from mqbench.migrate.verify import verify

LEVELS_MS = parse_delay_levels()


def _timer_store(root: str, version: str = "v5") -> list[tuple[int, int, int]]:
    """A v5 store with 6 timer messages (2 already delivered per its timercheck) and a timer log
    pointing at them. Returns (queue offset, physical offset, due ms) per timer message."""
    clock = Clock()
    store = Store.open(root, version, create=True, commitlog_segment_bytes=SEGMENT_BYTES, clock_ms=clock,
                       background_flush=False)
    timers = []
    try:
        store.create_topic("orders", read_queue_nums=2, write_queue_nums=2)
        for i in range(6):
            store.append(Message(topic="orders", body=b"filler" * 50, queue_id=i % 2))
            due = clock.now + [500, 1_000, 65_000, 90_000, 3_000_000, 9_000_000][i]
            res = store.append(Message(topic=TIMER_TOPIC, body=f"timer-{i}".encode(), queue_id=0, properties={
                "REAL_TOPIC": "orders", "REAL_QID": "1", "TIMER_OUT_MS": str(due), "UNIQ_KEY": f"T{i}"}))
            timers.append((res.queue_offset, res.physical_offset, due))
    finally:
        store.close()
    os.makedirs(os.path.join(root, "timerlog"), exist_ok=True)
    units = b"".join(encode_timer_unit(TimerLogUnit(-1, 1, due - 1000, 1000, phys, 0, 0)) for _, phys, due in timers)
    with open(os.path.join(root, "timerlog", f"{0:020d}"), "wb") as f:
        f.write(units)
        f.truncate(1 << 20)
    with open(os.path.join(root, "timerwheel"), "wb") as f:
        f.write(b"\x00" * 64 + b"\x01" * 32)
        f.truncate(TIMER_WHEEL_FILE_BYTES)   # sparse
    # the first two were delivered: read time past their due, queue offsets below 2 in the wheel
    check = TimerCheckpoint(last_read_time_ms=timers[1][2] + 1, last_timer_queue_offset=2)
    with open(os.path.join(root, "config", "timercheck"), "wb") as f:
        f.write(encode_timer_check(check))
    return timers


def test_level_for_rounds_up():
    assert level_for(0, LEVELS_MS) == 1 and level_for(1000, LEVELS_MS) == 1 and level_for(1001, LEVELS_MS) == 2
    assert level_for(7_200_000, LEVELS_MS) == 18 and level_for(7_200_001, LEVELS_MS) is None


def test_timer_store_is_translated_for_a_v5_target(tmp_path):
    src = str(tmp_path / "src")
    timers = _timer_store(src)
    out = str(tmp_path / "out")
    migrate(src, out, Options(target="v5-dledger"))
    assert verify(src, out)["ok"]
    store = Store.open(out, commitlog_segment_bytes=SEGMENT_BYTES, background_flush=False)
    try:
        data = open(os.path.join(out, "timerlog", f"{0:020d}"), "rb").read()
        for i, (qoff, old_phys, due) in enumerate(timers):
            unit = decode_timer_unit(data, i * 52)
            assert unit.offset_py != old_phys           # DLedger framing moved every record
            record = store.read_message(unit.offset_py, unit.size_py)
            assert (record.topic, record.queue_offset, record.properties["TIMER_OUT_MS"]) == (TIMER_TOPIC, qoff, str(due))
    finally:
        store.close()
    assert open(os.path.join(out, "config", "timercheck"), "rb").read() == \
        open(os.path.join(src, "config", "timercheck"), "rb").read()
    assert open(os.path.join(out, "timerwheel"), "rb").read() == open(os.path.join(src, "timerwheel"), "rb").read()


def test_pending_timers_block_a_v4_target(tmp_path):
    src = str(tmp_path / "src")
    _timer_store(src)
    with pytest.raises(UserError) as exc:
        migrate(src, str(tmp_path / "out"), Options(target="v4"))
    assert "timer_message: 4 x" in str(exc.value) and "--map-timers-to-levels" in str(exc.value)
    # with the mapping, the one due beyond 2 h still blocks
    with pytest.raises(UserError) as exc:
        migrate(src, str(tmp_path / "out"), Options(target="v4", map_timers_to_levels=True))
    assert "timer_beyond_levels: 1 x" in str(exc.value) and "timer_message" not in str(exc.value)


def test_pending_timers_map_to_levels_never_early(tmp_path):
    src2 = str(tmp_path / "src2")
    timers = _timer_store(src2)
    last_due = timers[-1][2]
    # a later write brings the source's "now" within 2 h of the farthest timer: every pending one maps
    clock = Clock(last_due - 3_600_000)
    store = Store.open(src2, commitlog_segment_bytes=SEGMENT_BYTES, clock_ms=clock, background_flush=False)
    store.append(Message(topic="orders", body=b"late write", queue_id=0))
    store.close()
    out = str(tmp_path / "out2")
    summary = migrate(src2, out, Options(target="v4", map_timers_to_levels=True))
    assert summary["timers_mapped"] == 4
    result = verify(src2, out)
    assert result["ok"], result["differences"]
    assert result["mapped_timer_records"] == 4
    store = Store.open(out, commitlog_segment_bytes=SEGMENT_BYTES, background_flush=False)
    try:
        mapped = []
        for q in range(18):
            for m in store.read_queue(SCHEDULE_TOPIC, q, 0, 100).messages:
                level = int(m.properties["DELAY"])
                assert level == q + 1
                mapped.append((m.properties["UNIQ_KEY"], m.store_timestamp_ms + LEVELS_MS[level - 1],
                               m.properties["REAL_TOPIC"]))
        dues = {f"T{i}": due for i, (_, _, due) in enumerate(timers)}
        assert sorted(k for k, _, _ in mapped) == ["T2", "T3", "T4", "T5"]
        for key, deliver, real in mapped:
            assert deliver == dues[key] and real == "orders"     # delivered at the due time, not before
        assert store.max_offset(TIMER_TOPIC, 0) == 6              # the timer records are carried too
    finally:
        store.close()


def test_corrupt_timer_log_is_named(tmp_path):
    src = str(tmp_path / "src")
    timers = _timer_store(src)
    path = os.path.join(src, "timerlog", f"{0:020d}")
    data = bytearray(open(path, "rb").read())
    data[52 * len(timers) + 200] = 9          # garbage after the last unit
    open(path, "wb").write(data)
    with pytest.raises(CorruptDataError) as exc:
        migrate(src, str(tmp_path / "out"), Options(target="v5-dledger"))
    assert exc.value.where == f"timerlog/{0:020d}" and exc.value.offset == 52 * len(timers)
