"""DLedger framing, consume-queue units and client batch bodies: worked examples, round trips, damage."""
import struct

import pytest
from hypothesis import given, strategies as st

from mqbench.broker.formats import dledger as d
from mqbench.broker.formats.batch import BatchItem, decode_batch, encode_batch
from mqbench.broker.formats.queues import (
    BCQ_UNIT_BYTES,
    CQ_FILLER,
    CQ_UNIT_BYTES,
    BcqUnit,
    decode_bcq_unit,
    decode_cq_unit,
    encode_bcq_unit,
    encode_cq_filler,
    encode_cq_unit,
    find_bcq_unit,
    is_cq_end,
    is_cq_filler,
)
from mqbench.broker.formats.record import Message, decode_message, encode_message
from mqbench.errors import CorruptDataError, UserError

COMMON = dict(born_timestamp_ms=1700000000000, store_timestamp_ms=1700000000001,
              born_host=("127.0.0.1", 12345), store_host=("127.0.0.1", 10911))
EX7_HEADER = "00000001 00000091 0000000000000000 0000000000000001 0000000000000000 00000000 00000000 00000000 00000061"


def test_example_7_dledger_entry_and_index_unit():
    record = encode_message(Message(topic="T", body=b"hello", **COMMON))
    entry = d.encode_record_entry(0, 1, 0, record)
    assert len(entry) == 145
    assert entry[:48].hex() == EX7_HEADER.replace(" ", "")
    assert entry[48 + 28:48 + 36].hex() == "0000000000000030"
    msg, size = decode_message(entry, 48)
    assert size == 97 and msg.physical_offset == 48
    unit = d.encode_index_unit(1, 0, 145, 0, 1)
    assert unit.hex() == "00000001" "0000000000000000" "00000091" "0000000000000000" "0000000000000001"
    assert d.decode_index_unit(unit) == d.IndexUnit(1, 0, 145, 0, 1)
    header = d.decode_entry_header(entry)
    assert (header.magic, header.size, header.index, header.term, header.pos, header.body_length) == (1, 145, 0, 1, 0, 97)
    assert d.check_entry(entry, 0, len(entry), 0) == 145
    assert d.decode_entry(entry, expected_pos=0)[1] == entry[48:]


def test_check_entry_blank_zero_wrong_pos_torn():
    entry = d.encode_entry(5, 2, 4096, b"abc")
    assert d.check_entry(entry, 0, len(entry), 4096) == 51
    assert d.check_entry(entry, 0, len(entry), 0) == d.ENTRY_END  # pos mismatch
    assert d.check_entry(entry, 0, len(entry) - 1, 4096) == d.ENTRY_END
    assert d.check_entry(b"\0" * 100, 0, 100, 0) == d.ENTRY_END
    blank = d.encode_entry_blank(100)
    assert blank.hex() == "ffffffff00000064"
    assert d.check_entry(blank + b"\0" * 92, 0, 100, 0) == d.ENTRY_BLANK
    bad = bytearray(entry)
    bad[47] = 4  # body length disagrees with size
    assert d.check_entry(bytes(bad), 0, len(bad), 4096) == d.ENTRY_END
    with pytest.raises(CorruptDataError, match="body length"):
        d.decode_entry(bytes(bad))
    with pytest.raises(UserError):
        d.encode_entry_blank(4)
    with pytest.raises(UserError):
        d.encode_entry(-1, 0, 0, b"")


def test_entry_truncations():
    entry = d.encode_entry(1, 1, 0, b"xyz")
    for cut in range(len(entry)):
        with pytest.raises(CorruptDataError):
            d.decode_entry(entry[:cut], where="data")
        assert d.check_entry(entry[:cut], 0, cut, 0) == d.ENTRY_END
    unit = d.encode_index_unit(1, 0, 51, 1, 1)
    for cut in range(len(unit)):
        with pytest.raises(CorruptDataError):
            d.decode_index_unit(unit[:cut])


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**62), st.binary(max_size=100),
       st.binary(max_size=10))
def test_entry_round_trip(index, term, pos, body, trailing):
    entry = d.encode_entry(index, term, pos, body)
    assert d.check_entry(entry + trailing, 0, len(entry) + len(trailing), pos) == len(entry)
    header, back = d.decode_entry(entry + trailing, expected_pos=pos)
    assert (header.index, header.term, header.pos, back) == (index, term, pos, body)


@given(st.binary(max_size=120), st.integers(0, 2**40))
def test_fuzz_check_entry(data, pos):
    assert d.check_entry(data, 0, len(data), pos) in (-1, 0) or d.decode_entry(data, expected_pos=pos)


def test_properties_files():
    data = d.encode_properties_file({"endIndex": 10, "committedIndex": 9})
    assert data == b"endIndex=10\ncommittedIndex=9\n"
    assert d.dledger_checkpoint(data) == (10, 9)
    assert d.dledger_currterm(d.encode_properties_file({"currTerm": 3, "voteLeader": None})) == (3, None)
    assert d.dledger_currterm(b"#Tue Nov 24\ncurrTerm=7\nvoteLeader=n0\n") == (7, "n0")
    assert d.decode_properties_file(b"  a : b\n\n! c\nx=y=z\n") == {"a": "b", "x": "y=z"}
    with pytest.raises(CorruptDataError):
        d.decode_properties_file(b"novalue\n", where="currterm")
    with pytest.raises(CorruptDataError):
        d.decode_properties_file(b"\xff")
    with pytest.raises(CorruptDataError, match="integer"):
        d.dledger_checkpoint(b"endIndex=ten\n")
    with pytest.raises(UserError):
        d.encode_properties_file({"a=b": 1})


@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_.]{0,10}", fullmatch=True),
                       st.from_regex(r"[A-Za-z0-9_.=-]{0,10}", fullmatch=True), max_size=5))
def test_properties_file_round_trip(values):
    assert d.decode_properties_file(d.encode_properties_file(values)) == values


# --- consume queue units ---

def test_example_2_cq_unit():
    unit = encode_cq_unit(97, 125, 2598919)
    assert unit.hex() == "0000000000000061" "0000007d" "000000000027a807"
    assert decode_cq_unit(b"\0" * 140 + unit, 140) == (97, 125, 2598919)
    assert len(unit) == CQ_UNIT_BYTES


def test_cq_filler_and_end():
    assert encode_cq_filler().hex() == "0000000000000000" "7fffffff" "0000000000000000"
    assert is_cq_filler(*CQ_FILLER) and not is_cq_filler(0, 97, 0)
    assert is_cq_end(0, 0) and is_cq_end(-1, 10) and not is_cq_end(0, 97)
    assert decode_cq_unit(encode_cq_unit(-5, 1, -1)) == (-5, 1, -1)


def test_bcq_unit_layout():
    unit = BcqUnit(1000, 300, -7, 1700000000001, 40, 8)
    data = encode_bcq_unit(unit)
    assert len(data) == BCQ_UNIT_BYTES == 46
    assert data.hex() == ("00000000000003e8" "0000012c" "fffffffffffffff9" "0000018bcfe56801" "0000000000000028"
                          "0008" "ffffffff" "00000000")
    assert decode_bcq_unit(data) == unit and unit.is_valid
    assert not decode_bcq_unit(b"\0" * 46).is_valid


def test_unit_truncations():
    for data, decode in [(encode_cq_unit(1, 2, 3), decode_cq_unit), (encode_bcq_unit(BcqUnit(1, 2, 3, 4, 5, 6)), decode_bcq_unit)]:
        for cut in range(len(data)):
            with pytest.raises(CorruptDataError):
                decode(data[:cut], where="cq")
        decode(data + b"trailing")
    with pytest.raises(UserError):
        encode_cq_unit(0, 2**31, 0)


def test_find_bcq_unit():
    units = [BcqUnit(0, 1, 0, 0, 0, 3), BcqUnit(1, 1, 0, 0, 3, 1), BcqUnit(2, 1, 0, 0, 10, 5)]
    assert [find_bcq_unit(units, q) for q in (0, 2, 3, 4, 9, 10, 14, 15)] == [0, 0, 1, None, None, 2, 2, None]
    assert find_bcq_unit([], 0) is None


@given(st.integers(-2**63, 2**63 - 1), st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1),
       st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1), st.integers(-2**15, 2**15 - 1))
def test_unit_round_trips(phys, size, tags, ts, base, batch):
    assert decode_cq_unit(encode_cq_unit(phys, size, tags)) == (phys, size, tags)
    unit = BcqUnit(phys, size, tags, ts, base, batch)
    assert decode_bcq_unit(encode_bcq_unit(unit)) == unit


# --- client batch body ---

def test_example_5_batch_body():
    items = [BatchItem(b"a", {"WAIT": "true"}), BatchItem(b"bc", {"KEYS": "k", "WAIT": "true"})]
    data = encode_batch(items)
    assert data.hex() == ("00000021000000000000000000000000000000016100" "0a57414954017472756502"
                          "000000290000000000000000000000000000000262630011" "4b455953016b0257414954017472756502")
    assert len(data) == 74
    assert decode_batch(data) == items


def test_batch_damage():
    data = encode_batch([BatchItem(b"hello", {"K": "v"}, flag=3)])
    for cut in range(1, len(data)):
        with pytest.raises(CorruptDataError):
            decode_batch(data[:cut], where="batch")
    with pytest.raises(CorruptDataError):
        decode_batch(data + b"x")
    assert decode_batch(b"") == []


@given(st.lists(st.builds(BatchItem, st.binary(max_size=50),
                          st.dictionaries(st.text("ABCxyz", min_size=1, max_size=4), st.text("01ab", min_size=1, max_size=4), max_size=3),
                          st.integers(-2**31, 2**31 - 1)), max_size=6))
def test_batch_round_trip(items):
    assert decode_batch(encode_batch(items)) == items


@given(st.binary(max_size=120))
def test_fuzz_batch(data):
    try:
        decode_batch(data)
    except CorruptDataError:
        pass


@given(st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1), st.integers(-2**31, 2**31 - 1),
       st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1))
def test_index_unit_round_trip(magic, pos, size, index, term):
    unit = d.encode_index_unit(magic, pos, size, index, term)
    assert d.decode_index_unit(unit + b"\0") == d.IndexUnit(magic, pos, size, index, term)


@given(st.binary(max_size=60), st.integers(0, 60))
def test_fuzz_unit_decoders(data, pos):
    for decode in (decode_cq_unit, decode_bcq_unit, d.decode_index_unit, d.decode_entry_header):
        try:
            decode(data, pos)
        except CorruptDataError:
            pass


@given(st.integers(8, 2**31 - 1), st.binary(max_size=16))
def test_blank_round_trips(remaining, after):
    from mqbench.broker.formats import record, timer_formats as tf
    from mqbench.broker.formats import record_layout
    blank = record.encode_blank(remaining)
    assert record.check_record(blank + after, 0, 8 + len(after)) == record_layout.RECORD_BLANK
    assert struct.unpack(">ii", blank) == (remaining, record_layout.BLANK_MAGIC)
    dblank = d.encode_entry_blank(remaining)
    assert d.check_entry(dblank + after, 0, 8 + len(after), 0) == d.ENTRY_BLANK
    assert struct.unpack(">ii", dblank) == (-1, remaining)
    if remaining >= 16:
        tblank = tf.encode_timer_blank(remaining)
        assert tf.check_timer_unit(tblank + after, 0, 16 + len(after)) == tf.UNIT_BLANK


@given(st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-2**31, 2**31 - 1),
                          st.integers(-2**63, 2**63 - 1)), max_size=8), st.integers(0, 19))
def test_decode_cq_units_reads_every_whole_unit_as_decode_cq_unit_does(units, tail):
    from mqbench.broker.formats.queues import decode_cq_unit, decode_cq_units

    raw = b"".join(struct.pack(">qiq", *u) for u in units) + b"\x07" * tail
    assert decode_cq_units(raw) == [decode_cq_unit(raw, 20 * i) for i in range(len(units))] == units
