"""The timer log, wheel and index against the spec's worked example byte for byte; recovery from
torn tails and lost wheel writes; collect() against a brute-force model; the marker codec."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats.tags import java_hash
from mqbench.broker.formats.timer_formats import TIMER_WHEEL_FILE_BYTES, TimerLogUnit
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.files import TimerLog, TimerWheel
from mqbench.broker.timer.index import TimerEntry, TimerIndex, timer_fire
from mqbench.broker.timer.plan import Window, decode_marker, encode_marker
from mqbench.errors import CorruptDataError

T = 1_700_000_000_000
SPEC_UNIT = bytes.fromhex("00000034 ffffffffffffffff 00000001 0000018bcfe56800 00002710 00000000000003e8 "
                          "00000096 8e987641 0000000000000000".replace(" ", ""))
SPEC_SLOT = bytes.fromhex("000000006553f10a 0000000000000000 0000000000000000 00000001 00000000".replace(" ", ""))


def test_spec_worked_example_unit_and_slot(tmp_path):
    """Spec section 15: a unit for the record at commitlog 1000 (150 bytes, REAL_TOPIC TopicTest),
    written at 1700000000000, due 10 s later, first in its slot; its wheel slot at 16 384 320."""
    ix = TimerIndex(tmp_path)
    entry = ix.add(0, T + 10_000, T, offset_py=1000, size_py=150, real_topic_hash=java_hash("TopicTest"))
    assert entry == TimerEntry(T + 10_000, 0, False)
    ix.checkpoint()
    with open(tmp_path / "timerlog" / "00000000000000000000", "rb") as f:
        assert f.read(52) == SPEC_UNIT
    with open(tmp_path / "timerwheel", "rb") as f:
        f.seek(16_384_320)
        assert f.read(32) == SPEC_SLOT
    assert os.path.getsize(tmp_path / "timerwheel") == TIMER_WHEEL_FILE_BYTES == 38_707_200
    assert os.path.getsize(tmp_path / "timerlog" / "00000000000000000000") == 100 * 1024 * 1024
    check = (tmp_path / "config" / "timercheck").read_bytes()
    assert len(check) == 4096 and check[8:24] == (52).to_bytes(8, "big") + (1).to_bytes(8, "big")


def test_second_unit_in_a_slot_links_back(tmp_path):
    ix = TimerIndex(tmp_path)
    ix.add(0, T + 10_000, T)
    ix.add(1, T + 10_400, T + 3)
    ix.checkpoint()
    log = TimerLog(tmp_path / "timerlog")
    log.recover(0)
    second = log.read_unit(52)
    assert (second.prev_pos, second.reserved, second.due_time_ms) == (0, 1, T + 10_400)
    wheel = TimerWheel(tmp_path / "timerwheel")
    slot = wheel.get((T + 10_000) // 1000)
    assert (slot.first_pos, slot.last_pos, slot.num) == (0, 52, 2)
    assert wheel.get((T + 11_000) // 1000).num == -1            # another time: empty


def test_unit_never_crosses_a_file_a_blank_ends_it(tmp_path):
    seg = 52 * 3 + 40                                # room for 3 units, then 40 bytes: blank
    log = TimerLog(tmp_path / "tl", segment_bytes=seg, buffer_bytes=60)
    log.recover(0)
    positions = [log.append(TimerLogUnit(-1, 1, T, i, i, 1, 0, i)) for i in range(5)]
    assert positions == [0, 52, 104, seg, seg + 52]
    log.flush()
    raw = log.files.read(156, 16)
    assert raw == (40).to_bytes(4, "big") + bytes(8) + bytes.fromhex("cbd43194")
    again = TimerLog(tmp_path / "tl", segment_bytes=seg)
    assert again.recover(0) == seg + 104
    assert [u.reserved for _, u in again.scan(0, again.end)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("tail", [b"\x00\x00\x00\x34\xff", bytes(range(52)), SPEC_UNIT[:12] + b"\x00\x00\x00\x10" + SPEC_UNIT[16:]])
def test_torn_tail_is_cut_and_zeroed(tmp_path, tail):
    log = TimerLog(tmp_path / "tl", segment_bytes=52 * 10)
    log.recover(0)
    for i in range(3):
        log.append(TimerLogUnit(-1, 1, T, 0, 0, 1, 0, i))
    log.flush()
    log.files.write(156, tail)
    log.files.write(156 + 52 * 2, SPEC_UNIT)        # a valid-looking unit after the hole must not count
    again = TimerLog(tmp_path / "tl", segment_bytes=52 * 10)
    assert again.recover(0) == 156
    assert again.files.read(156, 52 * 4) == bytes(52 * 4)


@settings(max_examples=60)
@given(st.binary(min_size=1, max_size=300))
def test_fuzz_garbage_after_units_never_raises_and_keeps_the_units(tmp_path_factory, garbage):
    folder = tmp_path_factory.mktemp("fuzz")
    log = TimerLog(folder / "tl", segment_bytes=52 * 20)
    log.recover(0)
    for i in range(4):
        log.append(TimerLogUnit(-1, 1, T, 0, 0, 1, 0, i))
    log.flush()
    log.files.write(208, garbage[: 52 * 20 - 208])
    again = TimerLog(folder / "tl", segment_bytes=52 * 20)
    end = again.recover(0)
    assert end >= 208 and (end - 208) % 52 == 0
    assert [u.reserved for _, u in again.scan(0, 208)] == [0, 1, 2, 3]


def test_wheel_file_of_another_size_is_refused(tmp_path):
    (tmp_path / "timerwheel").write_bytes(b"x" * 100)
    with pytest.raises(CorruptDataError, match="38707200"):
        TimerWheel(tmp_path / "timerwheel")


def test_lost_wheel_writes_are_relinked_on_open(tmp_path):
    ix = TimerIndex(tmp_path)
    for i in range(50):
        ix.add(i, T + 1000 + (i % 7) * 1000 + i, T)
    ix.checkpoint()
    for i in range(50, 120):
        ix.add(i, T + 1000 + (i % 7) * 1000 + i, T)
    ix.log.flush(fsync=True)           # log written, wheel slots and timercheck never written: a crash
    expected = sorted(ix.collect((T, 0), (T + 20_000, 0), 10**9, 10**9)[0])
    again = TimerIndex(tmp_path)
    assert again.next_queue_offset == 120 and again.relinked == 70
    assert sorted(again.collect((T, 0), (T + 20_000, 0), 10**9, 10**9)[0]) == expected


def test_torn_unit_that_still_parses_is_cut_by_its_queue_offset(tmp_path):
    """A unit torn by a machine crash whose missing bytes read as zeros parses (the format has no
    CRC) but its queue offset (reserved field) goes backwards: the index cuts the log there."""
    ix = TimerIndex(tmp_path)
    for i in range(10):
        ix.add(i, T + 5000 + i, T)
    ix.checkpoint()
    for i in range(10, 13):
        ix.add(i, T + 6000 + i, T)
    ix.log.flush(fsync=True)
    torn = bytearray(ix.log.read(52 * 12, 52))
    torn[30:] = bytes(22)                                # offset_py.., reserved -> 0
    ix.log.files.write(52 * 12, bytes(torn))
    again = TimerIndex(tmp_path)
    assert again.log.end == 52 * 12 and again.next_queue_offset == 12
    assert [e.queue_offset for e in again.collect((T, 0), (T + 10_000, 0), 100, 100)[0]] == list(range(12))


def test_index_without_timercheck_is_rebuilt(tmp_path):
    ix = TimerIndex(tmp_path)
    ix.add(0, T + 5000, T)
    ix.checkpoint()
    (tmp_path / "config" / "timercheck").unlink()
    again = TimerIndex(tmp_path)
    assert again.rebuilt and again.next_queue_offset == 0
    assert again.collect((T, 0), (T + 10_000, 0), 10, 10)[0] == []


def test_timer_fire_places_far_timers_at_the_roll_window():
    cfg = DelayConfig(timer_roll_window_ms=10_000)
    assert timer_fire(T + 9_000, T, cfg) == (T + 9_000, False)
    assert timer_fire(T + 10_001, T, cfg) == (T + 10_000, True)
    assert timer_fire(T - 5_000, T + 1500, cfg) == (T + 1000, False)   # never before its store time (aligned)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-2000, 40_000), st.integers(0, 3000)), min_size=1, max_size=80),
       st.integers(0, 30_000), st.integers(0, 30_000), st.integers(0, 90), st.integers(1, 20),
       st.integers(0, 90))
def test_collect_matches_a_brute_force_filter(tmp_path_factory, timers, a, b, below, limit, start_offset):
    """Including bursts: many timers share a fire time (due before their store time fire at it)."""
    cfg = DelayConfig(timer_roll_window_ms=20_000)
    ix = TimerIndex(tmp_path_factory.mktemp("ix"), cfg)
    entries = [ix.add(i, T + due, T + stored) for i, (due, stored) in enumerate(timers)]
    lo, hi = (T + min(a, b), start_offset), (T + max(a, b) + 1, 0)
    got, cut = ix.collect(lo, hi, below, limit)
    assert lo <= cut <= hi
    want = sorted(e for e in entries if lo <= (e.fire_ms, e.queue_offset) < cut and e.queue_offset < below)
    assert got == want
    if cut < hi:
        assert len(got) == limit and any(e.queue_offset < below and (e.fire_ms, e.queue_offset) == cut for e in entries)


def test_a_burst_at_one_millisecond_is_split_by_queue_offset(tmp_path):
    ix = TimerIndex(tmp_path)
    for i in range(10):
        ix.add(i, T + 5000, T)
    got, cut = ix.collect((T, 0), (T + 6000, 0), 10, 4)
    assert [e.queue_offset for e in got] == [0, 1, 2, 3] and cut == (T + 5000, 4)
    got, cut = ix.collect(cut, (T + 6000, 0), 10, 4)
    assert [e.queue_offset for e in got] == [4, 5, 6, 7] and cut == (T + 5000, 8)


def test_marker_round_trip_and_bad_markers():
    w = Window(7, {1: (0, 12), 2: (5, 5)}, (T, 0, T + 20, 4, 3, 9), [("TopicTest", 0, 1234), ("rmq_sys_wheel_timer", 0, 88)])
    body = encode_marker(w)
    assert json.loads(body)["schema"] == "mqbench.delay-progress/1"
    assert decode_marker(body) == w
    assert decode_marker(body).progress_after().levels == {1: 12, 2: 5}
    assert decode_marker(body).progress_after().timer_from == (T + 20, 4)
    bad = [b"", b"{", body + b"x", b"[]", json.dumps({"schema": "other"}).encode(),
           body.replace(b'"step":7', b'"step":"7"'), body.replace(b"[0,12]", b"[12,0]"),
           body.replace(b'"timer":[', b'"timer":[1,'), body.replace(b'"timer":[%d,0,' % T, b'"timer":[%d,0,' % (T + 99)), body.replace(b'["TopicTest",0,1234]', b'["TopicTest",0]'),
           "é".encode("latin-1")]
    for b in bad:
        with pytest.raises(CorruptDataError):
            decode_marker(b)


@given(st.binary(max_size=200))
def test_fuzz_marker_decoder_only_raises_data_errors(data):
    try:
        decode_marker(data)
    except CorruptDataError:
        pass
