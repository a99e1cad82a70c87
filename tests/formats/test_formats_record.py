"""Commitlog record layout: the spec's worked examples byte for byte, round trips, damage."""
import struct
import zlib

import pytest
from hypothesis import given, strategies as st

from mqbench.broker.formats import record as r
from mqbench.broker.formats import record_peek
from mqbench.broker.formats import record_check as rc
from mqbench.broker.formats import record_fields
from mqbench.broker.formats.record import Message, check_record, decode_message, decode_properties, encode_blank, encode_message, encode_properties, message_id, record_size
from mqbench.broker.formats.record_layout import BLANK_MAGIC, MAGIC_V1, MAGIC_V2, RECORD_BLANK, RECORD_END
from mqbench.broker.formats.tags import java_hash, message_tags_code, parse_delay_levels, tags_code
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.errors import CorruptDataError, UserError

from record_strategies import messages

COMMON = dict(born_timestamp_ms=1700000000000, store_timestamp_ms=1700000000001,
              born_host=("127.0.0.1", 12345), store_host=("127.0.0.1", 10911))

EX1 = ("00000061daa320a73610a686000000000000000000000000000000000000000000000000000000000000018bcfe568007f00000100"
       "0030390000018bcfe568017f00000100002a9f0000000000000000000000000000000568656c6c6f01540000")
EX2 = ("0000007ddaa320a73610a686000000030000000000000000000000070000000000000061000000000000018bcfe568007f000001"
       "000030390000018bcfe568017f00000100002a9f0000000000000000000000000000000568656c6c6f09546f7069635465737400"
       "144b455953016b6579310254414753015461674102")
EX4 = ("0000006ddaa320a73610a686000000000000000000000000000000000000000000000000000000100000018bcfe568000000000000"
       "0000000000000000000001000030390000018bcfe568017f00000100002a9f0000000000000000000000000000000568656c6c6f"
       "01540000")


def ex1():
    return Message(topic="T", body=b"hello", **COMMON)


def ex2():
    return Message(topic="TopicTest", body=b"hello", queue_id=3, queue_offset=7, physical_offset=97,
                   properties={"KEYS": "key1", "TAGS": "TagA"}, **COMMON)


def test_constants():
    assert MAGIC_V1 & 0xFFFFFFFF == 0xDAA320A7
    assert MAGIC_V2 & 0xFFFFFFFF == 0xDAA320AB
    assert BLANK_MAGIC & 0xFFFFFFFF == 0xCBD43194


def test_example_1_v1_no_properties():
    data = encode_message(ex1())
    assert data.hex() == EX1
    assert record_size(ex1()) == 97
    msg, size = decode_message(data)
    assert size == 97 and msg.body_crc == 907060870 and msg.version == 1
    assert msg.born_host == ("127.0.0.1", 12345) and msg.store_host == ("127.0.0.1", 10911)
    assert message_id(msg.store_host, 0) == "7F00000100002A9F0000000000000000"
    assert r.decode_message_id("7F00000100002A9F0000000000000000") == (("127.0.0.1", 10911), 0)


def test_example_2_properties_and_tags_code():
    data = encode_message(ex2())
    assert data.hex() == EX2
    msg, size = decode_message(data)
    assert size == 125 and msg.properties == {"KEYS": "key1", "TAGS": "TagA"}
    assert tags_code("TagA") == 2598919 == 0x27A807
    assert message_tags_code(msg) == 2598919
    assert message_id(msg.store_host, 97) == "7F00000100002A9F0000000000000061"


def test_example_3_v2_long_topic():
    msg = Message(topic="X" * 200, body=b"hello", **COMMON)
    data = encode_message(msg)
    assert len(data) == 297 and data[:8].hex() == "00000129daa320ab"
    assert data[93:95].hex() == "00c8"
    back, _ = decode_message(data)
    assert back.topic == "X" * 200 and back.version == 2


def test_v1_forced_with_long_topic_is_refused():
    with pytest.raises(UserError, match="V1"):
        encode_message(Message(topic="X" * 128, body=b"", version=1))
    assert encode_message(Message(topic="X" * 127, body=b""))[4:8].hex() == "daa320a7"
    assert encode_message(Message(topic="X", body=b"", version=2))[4:8].hex() == "daa320ab"


def test_example_4_ipv6_born_host():
    msg = ex1()
    msg.born_host = ("::1", 12345)
    data = encode_message(msg)
    assert data.hex() == EX4
    back, size = decode_message(data)
    assert size == 109 and back.sysflag == 0x10 and back.born_host == ("::1", 12345)
    assert back.store_timestamp_ms == 1700000000001


def test_example_6_property_crc():
    data = encode_message(ex1(), append_prop_crc=True)
    assert len(data) == 117 and data[95:97].hex() == "0014"
    assert data[-20:] == b"__CRC32#\x010705945470\x02"
    assert r.verify_property_crc(data) is True
    assert r.verify_property_crc(encode_message(ex1())) is None
    broken = bytearray(data)
    broken[30] ^= 1  # physical offset is covered by the property CRC but not by BODYCRC
    assert r.verify_property_crc(bytes(broken)) is False
    assert r.crc_digits(1234567) == b"7654321000"


def test_property_crc_inserts_separator_after_unterminated_string():
    msg = ex1()
    msg.properties = {"A": "b"}
    data = encode_message(msg, append_prop_crc=True)
    back, _ = decode_message(data)
    assert back.properties["A"] == "b" and back.properties["__CRC32#"] == data[-11:-1].decode()


def test_blank_record():
    blank = encode_blank(24)
    assert blank.hex() == "00000018cbd43194"
    buf = b"\0" * 16 + blank + b"\0" * 16
    assert check_record(buf, 16, len(buf)) == RECORD_BLANK
    with pytest.raises(UserError):
        encode_blank(7)
    with pytest.raises(CorruptDataError, match="blank"):
        decode_message(blank)


def test_check_record_valid_zero_torn_and_crc():
    data = encode_message(ex2())
    assert check_record(data + b"\0" * 40, 0, len(data) + 40) == 125
    assert check_record(b"\0" * 200, 0, 200) == RECORD_END
    assert check_record(data, 0, len(data) - 1) == RECORD_END
    flipped = bytearray(data)
    flipped[90] ^= 0xFF  # in the body
    assert check_record(bytes(flipped), 0, len(data)) == RECORD_END
    assert check_record(bytes(flipped), 0, len(data), check_crc=False) == 125
    with pytest.raises(CorruptDataError, match="CRC"):
        decode_message(bytes(flipped), where="commitlog/00000000000000000000")
    msg, _ = decode_message(bytes(flipped), check_crc=False)
    assert msg.body != b"hello"


def test_decode_at_position_with_trailing_bytes():
    a, b = encode_message(ex1()), encode_message(ex2())
    buf = a + b + b"trailing garbage"
    m1, n1 = decode_message(buf, 0)
    m2, n2 = decode_message(buf, n1)
    assert (m1.topic, m2.topic, n1 + n2) == ("T", "TopicTest", 222)
    assert check_record(buf, n1 + n2, len(buf)) == RECORD_END


@pytest.mark.parametrize("data", [bytes.fromhex(EX1), bytes.fromhex(EX2), bytes.fromhex(EX4)])
def test_every_truncation_raises_corrupt(data):
    for cut in range(len(data)):
        with pytest.raises(CorruptDataError) as info:
            decode_message(data[:cut], where="f")
        assert info.value.where == "f"
        assert check_record(data[:cut], 0, cut) == RECORD_END


def test_inconsistent_sizes_are_corrupt():
    data = bytearray.fromhex(EX2)
    for field_at, value in [(0, 124), (0, 126), (84, 6), (84, -1), (93, 0), (93, -56), (93, 20), (103, 19), (103, -5)]:
        bad = bytearray(data)
        fmt = ">b" if field_at == 93 else (">h" if field_at == 103 else ">i")
        struct.pack_into(fmt, bad, field_at, value)
        with pytest.raises(CorruptDataError):
            decode_message(bytes(bad) + b"\0" * 10)
        assert check_record(bytes(bad) + b"\0" * 10, 0, len(bad) + 10) == RECORD_END


def test_bad_magic_and_bad_utf8_topic():
    data = bytearray.fromhex(EX1)
    data[4:8] = b"\x12\x34\x56\x78"
    with pytest.raises(CorruptDataError, match="magic"):
        decode_message(bytes(data))
    data = bytearray.fromhex(EX1)
    data[94] = 0xFF
    with pytest.raises(CorruptDataError, match="UTF-8"):
        decode_message(bytes(data))


def test_encode_rejects_bad_input():
    with pytest.raises(UserError, match="too long"):
        encode_message(Message(topic="T", body=b"", properties={"K": "v" * 40000}))
    with pytest.raises(UserError, match="host"):
        encode_message(Message(topic="T", body=b"", born_host=("not-an-ip", 1)))
    with pytest.raises(UserError, match="empty topic"):
        encode_message(Message(topic="", body=b""))
    with pytest.raises(UserError, match="property name"):
        encode_properties({"a\x01b": "c"})
    with pytest.raises(UserError, match="\\\\x02"):
        encode_properties({"a": "c\x02"})
    with pytest.raises(UserError, match="out of range"):
        encode_message(Message(topic="T", body=b"", queue_id=2**31))


# --- property parsing edge cases (spec 3.5, pitfall 11) ---

@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("KEYS\x01key1\x02TAGS\x01TagA\x02", {"KEYS": "key1", "TAGS": "TagA"}),
    ("A\x01b", {"A": "b"}),                          # trailing segment without \x02 counts
    ("\x01v\x02", {}),                               # empty key dropped
    ("K\x01\x02", {}),                               # empty value dropped
    ("K\x01a\x01b\x02", {"K": "a\x01b"}),            # \x01 kept inside a value
    ("K\x011\x02K\x012\x02", {"K": "2"}),            # last duplicate wins
    ("ab\x02\x02\x02", {}),                          # no separator, short segments
    ("K\x01v\x02junk\x02", {"K": "v"}),
    ("\x02\x02K\x01v", {"K": "v"}),
    ("é\x01ü\x02", {"é": "ü"}),
])
def test_decode_properties_edges(text, expected):
    assert decode_properties(text.encode()) == expected
    assert decode_properties(text) == expected


def test_decode_properties_rejects_bad_utf8():
    with pytest.raises(CorruptDataError, match="UTF-8"):
        decode_properties(b"K\x01\xff\x02")


def test_encode_properties_skips_none_and_keeps_empty_like_java():
    assert encode_properties({"A": None, "B": "1"}) == b"B\x011\x02"
    assert encode_properties({"E": ""}) == b"E\x01\x02"
    assert decode_properties(encode_properties({"E": ""})) == {}


def test_java_hash():
    assert java_hash("") == 0
    assert java_hash("TopicTest#key1") == -1655984460
    assert java_hash("TopicTest") == -1902610879
    assert java_hash("\U0001F600") == 0xD83D * 31 + 0xDE00  # surrogate pair
    assert tags_code(None) == tags_code("") == 0


def test_tags_code_remembered_per_tags_is_the_java_hash(monkeypatch):
    from mqbench.broker.formats import tags as tags_module
    monkeypatch.setattr(tags_module, "_TAGS_CODES", {})
    monkeypatch.setattr(tags_module, "_TAGS_CODES_MAX", 3)       # so that the bound is reached
    tag_list = ["TagA", "TagB", "TagA", "\U0001F600", "x" * 600, "TagA", "é", "TagB", "TagC", ""]
    for tags in tag_list + tag_list:            # the second round answers from the remembered codes
        assert tags_code(tags, "T") == (java_hash(tags) if tags else 0)
        assert len(tags_module._TAGS_CODES) <= 3


def test_schedule_topic_tags_code_is_deliver_time():
    props = {"DELAY": "3"}
    assert tags_code(None, "SCHEDULE_TOPIC_XXXX", properties=props, store_timestamp_ms=1000) == 11000
    assert tags_code(None, "SCHEDULE_TOPIC_XXXX", properties={"DELAY": "99"}, store_timestamp_ms=0) == 7_200_000
    assert tags_code("T", "SCHEDULE_TOPIC_XXXX", properties={"DELAY": "x"}, store_timestamp_ms=5) == 1005
    assert parse_delay_levels("1s 2m 1h 1d") == [1000, 120000, 3600000, 86400000]
    with pytest.raises(UserError):
        parse_delay_levels("1s 5x")


def test_set_physical_offset_and_peek():
    data = r.set_physical_offset(bytes.fromhex(EX1), 48)
    assert data[28:36].hex() == "0000000000000030"
    assert record_peek.peek_fields(data, 0) == (97, 0, 0, 48, 0)


# --- Hypothesis round trips and fuzzing ---

@given(messages(), st.binary(max_size=20))
def test_round_trip(msg, trailing):
    data = encode_message(msg)
    assert len(data) == record_size(msg)
    back, size = decode_message(data + trailing)
    assert size == len(data)
    assert check_record(data + trailing, 0, len(data) + len(trailing)) == size
    assert back.body_crc == zlib.crc32(msg.body) & 0x7FFFFFFF
    msg.body_crc, msg.version = back.body_crc, back.version
    msg.sysflag = back.sysflag  # IPv6 bits are the encoder's to set
    norm = lambda h: (str(__import__("ipaddress").ip_address(h[0])), h[1])  # noqa: E731
    msg.born_host, msg.store_host = norm(msg.born_host), norm(msg.store_host)
    assert back == msg
    assert encode_message(back) == data


@given(st.binary(max_size=200), st.integers(0, 10))
def test_fuzz_decode_never_crashes(data, pos):
    try:
        decode_message(data, pos)
    except CorruptDataError:
        pass
    assert check_record(data, pos, len(data)) >= -1


@given(messages(), st.data())
def test_fuzz_mutated_records(msg, data):
    raw = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_message(bytes(raw), check_crc=data.draw(st.booleans()))
    except CorruptDataError:
        pass
    check_record(bytes(raw), 0, len(raw))


@given(messages())
def test_peek_matches_decode(msg):
    data = b"\0" * 3 + encode_message(msg) + b"tail"
    back, _ = decode_message(data, 3)
    assert record_peek.peek_topic(data, 3) == back.topic
    assert record_peek.peek_properties(data, 3) == back.properties


def test_peek_rejects_bad_utf8():
    data = bytearray.fromhex(EX2)
    data[94] = 0xFF
    with pytest.raises(CorruptDataError, match="topic"):
        record_peek.peek_topic(bytes(data), 0, where="f")
    data = bytearray.fromhex(EX2)
    data[110] = 0xFF
    with pytest.raises(CorruptDataError, match="UTF-8"):
        record_peek.peek_properties(bytes(data), 0, where="f")


@given(messages(), st.binary(max_size=20))
def test_peek_record_matches_decode_and_the_tags_code(msg, trailing):
    data = encode_message(msg)
    back, size = decode_message(data)
    peek = rc.peek_record(data + trailing)
    assert (peek.size, peek.topic, peek.queue_id, peek.queue_offset, peek.sysflag, peek.store_timestamp_ms) == \
        (size, back.topic, back.queue_id, back.queue_offset, back.sysflag, back.store_timestamp_ms)
    assert decode_properties(peek.properties_text) == back.properties
    assert rc.peek_tags_code(peek) == message_tags_code(back)


@pytest.mark.parametrize("properties", [{"TAGS": "TagA"}, {"DELAY": "3"}, {"TAGS": "x", "DELAY": "2"}, {}])
def test_peek_tags_code_on_the_schedule_topic_and_with_tags(properties):
    msg = Message(topic=SCHEDULE_TOPIC, body=b"b", properties=dict(properties), **COMMON)
    assert rc.peek_tags_code(rc.peek_record(encode_message(msg))) == message_tags_code(msg)
    msg.topic = "Plain"
    assert rc.peek_tags_code(rc.peek_record(encode_message(msg))) == message_tags_code(msg)


@given(messages(), st.data())
def test_peek_record_refuses_what_decode_refuses(msg, data):
    raw = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_message(bytes(raw))
        decoded = True
    except CorruptDataError:
        decoded = False
    try:
        rc.peek_record(bytes(raw))
        peeked = True
    except CorruptDataError:
        peeked = False
    assert peeked == decoded


def _fields_of(msg: Message, size: int) -> tuple:
    return (size, msg.topic, msg.body, msg.properties, msg.queue_id, msg.flag, msg.queue_offset,
            msg.physical_offset, msg.sysflag, msg.born_timestamp_ms, msg.born_host, msg.store_timestamp_ms,
            msg.store_host, msg.reconsume_times)


@given(messages(), st.binary(max_size=20), st.booleans())
def test_decode_fields_matches_decode_message(msg, trailing, check_crc):
    data = b"\0" * 3 + encode_message(msg) + trailing
    back, size = decode_message(data, 3, check_crc=check_crc)
    f = record_fields.decode_fields(data, 3, len(data), check_crc=check_crc)
    assert (f.size, f.topic, f.body, decode_properties(f.properties_text), *f[4:]) == _fields_of(back, size)


@given(messages(), st.data())
def test_decode_fields_refuses_what_decode_message_refuses(msg, data):
    raw = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    check_crc = data.draw(st.booleans())
    try:
        back, size = decode_message(bytes(raw), check_crc=check_crc)
    except CorruptDataError as exc:
        with pytest.raises(CorruptDataError) as info:
            record_fields.decode_fields(bytes(raw), 0, len(raw), check_crc=check_crc)
        assert str(info.value) == str(exc)
        return
    f = record_fields.decode_fields(bytes(raw), 0, len(raw), check_crc=check_crc)
    assert (f.size, f.topic, f.body, decode_properties(f.properties_text), *f[4:]) == _fields_of(back, size)


@given(messages(), st.binary(max_size=8))
def test_is_record_of_knows_a_record_by_size_queue_offset_and_topic(msg, lead):
    raw = encode_message(msg)
    data = lead + raw + b"\0" * 5
    topic = msg.topic.encode()
    at = len(lead)
    assert record_peek.is_record_of(data, at, len(raw), topic, msg.queue_id, msg.queue_offset)
    assert not record_peek.is_record_of(data, at, len(raw) - 1, topic, msg.queue_id, msg.queue_offset)
    assert not record_peek.is_record_of(data, at, len(raw) + 1, topic, msg.queue_id, msg.queue_offset)
    assert not record_peek.is_record_of(data, at, len(raw), topic + b"x", msg.queue_id, msg.queue_offset)
    assert not record_peek.is_record_of(data, at, len(raw), topic[:-1], msg.queue_id, msg.queue_offset)
    assert not record_peek.is_record_of(data, at, len(raw), topic, msg.queue_id ^ 1, msg.queue_offset)
    assert not record_peek.is_record_of(data, at, len(raw), topic, msg.queue_id, msg.queue_offset ^ 1)
    assert not record_peek.is_record_of(data[:at + len(raw) - 1], at, len(raw), topic, msg.queue_id, msg.queue_offset)


@given(messages(), st.data())
def test_is_record_of_never_vouches_for_a_damaged_record_the_full_check_refuses(msg, data):
    """Whatever bytes change, is_record_of does not raise, and when it says yes the reader's full
    check (TOTALSIZE, magic, QUEUEID, QUEUEOFFSET, the topic read by peek_topic) agrees."""
    from mqbench.broker.store.reader import _stored_record

    raw = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = bytes(raw)
    size = data.draw(st.sampled_from([len(raw), len(raw) - 1, 0, 90]))
    if record_peek.is_record_of(raw, 0, size, msg.topic.encode(), msg.queue_id, msg.queue_offset):
        _stored_record(raw, 0, size, msg.topic.encode(), msg.queue_id, msg.queue_offset, 0)   # does not raise


def test_decode_fields_shares_one_host_tuple_per_ipv4_host():
    one = encode_message(Message("T", b"a", born_host=("10.1.2.3", 5), store_host=("10.1.2.3", 6)))
    two = encode_message(Message("T", b"b", born_host=("10.1.2.3", 5), store_host=("255.255.255.255", 65535)))
    a, b = record_fields.decode_fields(one, 0, len(one)), record_fields.decode_fields(two, 0, len(two))
    assert (a.born_host, a.store_host, b.store_host) == (("10.1.2.3", 5), ("10.1.2.3", 6), ("255.255.255.255", 65535))
    assert a.born_host is b.born_host
