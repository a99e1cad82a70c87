"""TOPICLENGTH of a MessageVersion V1 record is ONE SIGNED byte, as the real 4.9.8 broker reads it
(``CommitLog.checkMessageAndReturnSize`` and ``MessageDecoder``: ``byte topicLen = byteBuffer.get()``;
its topics are at most 127 characters, ``TopicValidator.TOPIC_MAX_LENGTH``). A V1 record whose
length byte is 128-255 is damaged for the broker, so every reader of ours refuses it the same way:
the record parser (``decode_message``), the fast one of pull bodies (``decode_fields``), the
recovery check and the in-place topic match of a pull (``is_record_of``).

Built from a real record: the 120-character topic of the real store (the longest it has)."""
from __future__ import annotations

import struct

import pytest

from mqbench.broker.formats.record import check_record, decode_message
from mqbench.broker.formats.record_fields import decode_fields
from mqbench.broker.formats.record_layout import MAGIC_V1, RECORD_END
from mqbench.broker.formats.record_peek import _tail_positions, is_record_of
from mqbench.errors import CorruptDataError
from mqbench.migrate.source import walk_log

from real_store_data import PLAIN, extract, manifest


@pytest.fixture(scope="module")
def long_topic_record(tmp_path_factory) -> bytes:
    root = extract(PLAIN, str(tmp_path_factory.mktemp("real")))
    name = manifest()["longTopicName"]
    for item in walk_log(root):
        if item.record is not None and decode_message(bytes(item.record), 0)[0].topic == name:
            return bytes(item.record)
    raise AssertionError(f"no record of {name} in the real store")


def with_topic(record: bytes, topic: bytes) -> bytes:
    """``record`` with its topic replaced by ``topic``, TOPICLENGTH set to len(topic) (one byte, V1)
    and TOTALSIZE to the new size; body and its CRC untouched."""
    topic_at, topic_len, _, _ = _tail_positions(record, 0)
    out = bytearray(record[:topic_at - 1] + bytes([len(topic)]) + topic + record[topic_at + topic_len:])
    struct.pack_into(">i", out, 0, len(out))
    return bytes(out)


def test_the_real_long_topic_record_is_v1_and_both_decoders_agree_on_it(long_topic_record):
    record = long_topic_record
    assert struct.unpack_from(">i", record, 4)[0] == MAGIC_V1
    msg, size = decode_message(record, 0)
    fields = decode_fields(record, 0, len(record))
    assert size == fields.size == len(record) and len(msg.topic) == 120
    assert (fields.topic, fields.body, fields.queue_id, fields.queue_offset) == \
        (msg.topic, msg.body, msg.queue_id, msg.queue_offset)


@pytest.mark.parametrize("length", [1, 127])
def test_v1_topic_lengths_up_to_127_are_read_alike(long_topic_record, length):
    record = with_topic(long_topic_record, b"T" * length)
    msg, _ = decode_message(record, 0)
    assert decode_fields(record, 0, len(record)).topic == msg.topic == "T" * length
    assert check_record(record, 0, len(record)) == len(record)
    assert is_record_of(record, 0, len(record), b"T" * length, msg.queue_id, msg.queue_offset)


@pytest.mark.parametrize("length", [128, 200, 255])
def test_a_v1_topic_length_byte_over_127_is_damage_for_every_reader(long_topic_record, length):
    record = with_topic(long_topic_record, b"T" * length)
    msg, _ = decode_message(long_topic_record, 0)
    with pytest.raises(CorruptDataError, match=f"topic length {length - 256} "):
        decode_message(record, 0)
    with pytest.raises(CorruptDataError, match=f"topic length {length - 256} "):
        decode_fields(record, 0, len(record))
    assert check_record(record, 0, len(record)) == RECORD_END
    assert not is_record_of(record, 0, len(record), b"T" * length, msg.queue_id, msg.queue_offset)
