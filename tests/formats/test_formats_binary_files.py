"""StoreCheckpoint, timer store and IndexFile layouts: spec worked values, round trips, damage."""
import datetime

import pytest
from hypothesis import given, strategies as st

from mqbench.broker.formats import checkpoint as cp, index_file as ix, timer_formats as tf
from mqbench.errors import CorruptDataError, UserError

_i64 = st.integers(-2**63, 2**63 - 1)
_i32 = st.integers(-2**31, 2**31 - 1)


def test_checkpoint_layout():
    value = cp.StoreCheckpoint(1, 2, 3, 4, 5)
    data = cp.encode_checkpoint(value)
    assert len(data) == 4096 and data[:40].hex() == "".join(f"{i:016x}" for i in range(1, 6)) and not any(data[40:])
    assert cp.decode_checkpoint(data) == value
    v4 = cp.encode_checkpoint(value, version="v4")
    assert not any(v4[24:]) and cp.decode_checkpoint(v4) == cp.StoreCheckpoint(1, 2, 3)
    assert cp.decode_checkpoint(v4[:24]) == cp.StoreCheckpoint(1, 2, 3)
    for cut in range(24):
        with pytest.raises(CorruptDataError, match="checkpoint"):
            cp.decode_checkpoint(data[:cut], where="checkpoint")


@given(_i64, _i64, _i64, _i64, _i64)
def test_checkpoint_round_trip(a, b, c, d, e):
    value = cp.StoreCheckpoint(a, b, c, d, e)
    assert cp.decode_checkpoint(cp.encode_checkpoint(value) + b"trailing") == value


TIMER_UNIT = ("00000034 ffffffffffffffff 00000001 0000018bcfe56800 00002710 00000000000003e8 00000096 8e987641 "
              "0000000000000000").replace(" ", "")


def test_timer_log_unit_example():
    unit = tf.TimerLogUnit(-1, tf.MAGIC_DEFAULT, 1700000000000, 10000, 1000, 150, -1902610879)
    data = tf.encode_timer_unit(unit)
    assert data.hex() == TIMER_UNIT and len(data) == tf.TIMER_LOG_UNIT_BYTES
    assert tf.decode_timer_unit(data) == unit and unit.due_time_ms == 1700000010000
    assert tf.check_timer_unit(data, 0, len(data)) == 52


def test_timer_wheel_slot_example():
    assert tf.slot_index(1700000010000) == 512010
    assert tf.slot_file_offset(1700000010000) == 16_384_320
    slot = tf.WheelSlot(1700000010, 0, 0, 1)
    data = tf.encode_wheel_slot(slot)
    assert data.hex() == "000000006553f10a" "0000000000000000" "0000000000000000" "00000001" "00000000"
    assert tf.decode_wheel_slot(data) == slot
    assert tf.TIMER_WHEEL_FILE_BYTES == 38_707_200
    wheel = bytearray(16_384_320 + 64)
    wheel[16_384_320:16_384_352] = data
    assert tf.slot_for_time(bytes(wheel), 1700000010000) == slot
    assert tf.slot_for_time(bytes(wheel), 1700000010000 + 1209600 * 1000) == tf.EMPTY_SLOT


def test_timer_blank_and_checks():
    blank = tf.encode_timer_blank(40)
    assert blank.hex() == "00000028" "0000000000000000" "cbd43194"
    assert tf.check_timer_unit(blank + bytes(24), 0, 40) == tf.UNIT_BLANK
    assert tf.check_timer_unit(bytes(60), 0, 60) == tf.UNIT_END
    with pytest.raises(CorruptDataError, match="blank"):
        tf.decode_timer_unit(blank + bytes(40))
    bad = bytearray.fromhex(TIMER_UNIT)
    bad[15] = 0x10  # magic outside the 4 defined bits
    assert tf.check_timer_unit(bytes(bad), 0, 52) == tf.UNIT_END
    with pytest.raises(CorruptDataError):
        tf.decode_timer_unit(bytes(bad))
    with pytest.raises(UserError):
        tf.encode_timer_blank(15)
    assert tf.align_deliver_ms(5000) == 4000 and tf.align_deliver_ms(5300) == 5000


def test_timer_check_layout():
    value = tf.TimerCheckpoint(1, 2, 3, 4, 5, 6, 7)
    data = tf.encode_timer_check(value)
    assert len(data) == 4096 and data[:56].hex() == "".join(f"{i:016x}" for i in range(1, 8))
    assert tf.decode_timer_check(data) == value
    with pytest.raises(CorruptDataError):
        tf.decode_timer_check(data[:55])


def test_truncations():
    cases = [(bytes.fromhex(TIMER_UNIT), tf.decode_timer_unit), (tf.encode_wheel_slot(tf.WheelSlot(1, 2, 3, 4)), tf.decode_wheel_slot),
             (ix.encode_index_header(ix.IndexHeader(1, 2, 3, 4, 5, 6)), ix.decode_index_header),
             (ix.encode_index_item(ix.IndexItem(1, 2, 3, 4)), ix.decode_index_item)]
    for data, decode in cases:
        for cut in range(len(data)):
            with pytest.raises(CorruptDataError):
                decode(data[:cut], where="f")
        decode(data + b"trailing")


@given(_i64, st.sampled_from([1, 2, 3, 5, 7]), _i64, _i32, _i64, _i32, _i32)
def test_timer_unit_round_trip(prev, magic, curr, delay, off, size, th):
    unit = tf.TimerLogUnit(prev, magic, curr, delay, off, size, th)
    assert tf.decode_timer_unit(tf.encode_timer_unit(unit) + b"x") == unit


def test_index_example_8():
    key = ix.index_key("TopicTest", "key1")
    assert key == "TopicTest#key1" and ix.key_hash(key) == 1655984460 == 0x62B4514C
    assert ix.key_slot(key) == 984460 and ix.slot_position(984460) == 3_937_880
    header, writes = ix.plan_put(ix.IndexHeader(), 0, key, 97, 1700000000001)
    assert writes[0] == (20_000_060, bytes.fromhex("62b4514c" "0000000000000061" "00000000" "00000000"))
    assert writes[1] == (3_937_880, bytes.fromhex("00000001"))
    assert header == ix.IndexHeader(1700000000001, 1700000000001, 97, 97, 1, 2)
    assert writes[2] == (0, ix.encode_index_header(header))
    assert ix.index_file_bytes() == 420_000_040


def test_index_chain_and_time_diff():
    header, _ = ix.plan_put(ix.IndexHeader(), 0, "T#a", 0, 10_000)
    header2, writes = ix.plan_put(header, 1, "T#a", 200, 15_500, hash_slot_num=10, index_num=3)
    item = ix.decode_index_item(writes[0][1])
    assert item.prev_index == 1 and item.time_diff_s == 5 and header2.hash_slot_count == 1
    assert writes[0][0] == ix.item_position(2, 10)
    with pytest.raises(UserError, match="full"):
        ix.plan_put(header2, 2, "T#b", 300, 16_000, hash_slot_num=10, index_num=3)
    # a slot value beyond indexCount is garbage: treated as empty
    _, writes = ix.plan_put(header, 99, "T#c", 1, 9_000)
    assert ix.decode_index_item(writes[0][1]).prev_index == 0 and ix.decode_index_item(writes[0][1]).time_diff_s == 0


def test_index_hash_min_value_and_names():
    assert ix.key_hash("polygenelubricants") == 0  # String.hashCode == Integer.MIN_VALUE
    assert ix.index_file_name(1700000000001, datetime.timezone.utc) == "20231114221320001"
    assert ix.decode_index_header(bytes(40)).index_count == 1


@given(_i64, _i64, _i64, _i64, _i32, st.integers(1, 2**31 - 1))
def test_index_header_round_trip(a, b, c, d, e, f):
    h = ix.IndexHeader(a, b, c, d, e, f)
    assert ix.decode_index_header(ix.encode_index_header(h)) == h


@given(_i64, _i64, _i64, _i32, _i32)
def test_wheel_slot_round_trip(t, first, last, num, magic):
    slot = tf.WheelSlot(t, first, last, num, magic)
    assert tf.decode_wheel_slot(tf.encode_wheel_slot(slot) + b"\1") == slot


@given(st.lists(_i64, min_size=7, max_size=7))
def test_timer_check_round_trip(values):
    check = tf.TimerCheckpoint(*values)
    data = tf.encode_timer_check(check)
    assert tf.decode_timer_check(data + b"x") == check
    for cut in range(56):
        with pytest.raises(CorruptDataError):
            tf.decode_timer_check(data[:cut])


@given(st.integers(0, 2**31 - 1), _i64, _i32, _i32)
def test_index_item_round_trip(h, off, diff, prev):
    item = ix.IndexItem(h, off, diff, prev)
    assert ix.decode_index_item(ix.encode_index_item(item) + b"z") == item


@given(st.binary(max_size=80), st.integers(0, 80))
def test_fuzz_binary_decoders(data, pos):
    for decode in (tf.decode_timer_unit, tf.decode_wheel_slot, ix.decode_index_header, ix.decode_index_item):
        try:
            decode(data, pos)
        except CorruptDataError:
            pass
    assert tf.check_timer_unit(data, pos, len(data)) in (-1, 0, 52)
    for decode in (cp.decode_checkpoint, tf.decode_timer_check):
        try:
            decode(data)
        except CorruptDataError:
            pass


def test_combined_writes_are_one_pwrite_per_run_and_read_back(tmp_path, monkeypatch):
    """Writes inside combined_writes that continue each other in one segment reach the kernel as
    one pwrite when the block ends; a read inside the block sees them; a run stops at a segment end."""
    import os

    from mqbench.broker.store.segments import SegmentQueue

    q = SegmentQueue(tmp_path / "q", 64)
    calls = []
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, pos: calls.append((pos, len(data))) or real(fd, data, pos))
    with q.combined_writes():
        for i in range(4):
            q.write(i * 16, bytes([i + 1]) * 16)      # fills segment 0 exactly
        q.write(64, b"\x09" * 8)                      # segment 1: a new run
        assert calls == [(0, 64)]                     # the first run went when the second began
        assert q.read(60, 8) == b"\x04" * 4 + b"\x09" * 4   # a read writes what is pending first
        q.write(72, b"\x0a" * 8)
    assert calls == [(0, 64), (0, 8), (8, 8)]
    assert q.read(0, 80) == b"".join(bytes([i + 1]) * 16 for i in range(4)) + b"\x09" * 8 + b"\x0a" * 8
    q.close()


def test_a_large_write_inside_combined_writes_goes_at_once_after_the_run_before_it(tmp_path, monkeypatch):
    """A write of COMBINE_MAX_BYTES or more is not gathered (that would only copy it): the run
    before it goes first, then it, as it is (the same object handed to pwrite), in order."""
    import os

    from mqbench.broker.store import segments
    from mqbench.broker.store.segments import SegmentQueue

    big = bytearray(b"\x07" * segments.COMBINE_MAX_BYTES)
    q = SegmentQueue(tmp_path / "q", 4 * segments.COMBINE_MAX_BYTES)
    calls = []
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, pos: calls.append((pos, len(data), data)) or real(fd, data, pos))
    with q.combined_writes():
        q.write(0, b"\x01" * 8)
        q.write(8, b"\x02" * 8)
        q.write(16, big)
        assert [(p, n) for p, n, _ in calls] == [(0, 16), (16, len(big))]
        assert calls[1][2].obj is big                   # no copy of it
        q.write(16 + len(big), b"\x03" * 8)            # a new small run after it
    assert [(p, n) for p, n, _ in calls] == [(0, 16), (16, len(big)), (16 + len(big), 8)]
    assert q.read(0, 24 + len(big)) == b"\x01" * 8 + b"\x02" * 8 + bytes(big) + b"\x03" * 8
    q.close()
