"""Judging and reading a record where it lies in a buffer (pure, no I/O): THE definition of a
valid record (``record_verdict``) that the one log reader (``log_reader``) applies for the
broker's recovery, ``inspect`` and ``migrate``; the 4.x property form (``strip_trailing_separator``);
the routing fields of a record read without copying its body (``peek_message``); and the
checked placing fields of a replicated record (``peek_record``, ``peek_tags_code``, and
``place_fields``, their one-pass form for a follower). The layout is documented in ``record``.
"""
from __future__ import annotations

import re
import struct
from typing import NamedTuple

from mqbench import native
from mqbench.errors import CorruptDataError

from .buffers import ByteView
from .record import Message, _parse, body_crc, decode_properties, verify_property_crc
from .record_layout import _FIELD_PHYSICAL_OFFSET, _HEAD, _I16, _I32, _I64, _TAIL, BLANK_MAGIC, MAGIC_V1, MAGIC_V2, RECORD_BLANK, RECORD_END, SYSFLAG_BORNHOST_V6, SYSFLAG_STOREHOST_V6
from .record_peek import _tail_positions
from .tags import _DEFAULT_LEVELS_MS, java_hash, tags_code
from .topics import SCHEDULE_TOPIC
from .properties import PROPERTY_TAGS

# What a broker's TopicValidator lets through: a record whose topic holds anything else was not
# written whole (a zero-filled tail reads as NUL bytes here).
_TOPIC_CHARS = re.compile(rb"[%|a-zA-Z0-9_-]+")

# Verdicts of ``record_verdict`` besides a size: the kinds of damage of a record that is whole
# (its size fields add up) but must not be trusted.
DAMAGE_CRC = "crc_mismatch"
DAMAGE_PHYSICAL_OFFSET = "wrong_physical_offset"


def record_verdict(buf: ByteView, pos: int, end: int, *, check_crc: bool = True,
                   address: int | None = None) -> tuple[int, str | None, str | None]:
    """THE definition of a valid record, shared by recovery, ``inspect`` and ``migrate``.

    Returns ``(size, damage, detail)``:

    * ``(size > 0, None, None)``: a valid record of ``size`` bytes at ``pos``;
    * ``(RECORD_BLANK, None, None)``: an end-of-file blank (the caller checks it closes the file);
    * ``(RECORD_END, None, detail)``: not a record: where the valid data ends (zeros, a torn or
      garbage record). ``detail`` says why;
    * ``(size > 0, kind, detail)``: a record whose fields add up but that is damaged: ``kind`` is
      ``DAMAGE_CRC`` (the body does not match BODYCRC, with ``check_crc``) or
      ``DAMAGE_PHYSICAL_OFFSET`` (PHYSICALOFFSET is not ``address``, when ``address`` is given).

    Valid = the recovery check of spec 3.9 (``check_record``: magic, sizes that add up, CRC),
    plus what BODYCRC does not cover (a crash can zero a record's tail and leave its body whole):
    the topic has only the characters RocketMQ's TopicValidator allows, and a non-empty property
    string does not end with a NUL byte. A property string may end with or without ``\\x02``:
    a real 4.9.8 broker stores it without (spec 3.5, corrected), older clients and mqbench with.
    """
    end = min(end, len(buf))
    if pos < 0 or end - pos < 8:
        return RECORD_END, None, f"{max(0, end - pos)} bytes left, too few for a record header"
    if _I32.unpack_from(buf, pos + 4)[0] == BLANK_MAGIC:
        return RECORD_BLANK, None, None
    try:
        size, _ = _parse(buf, pos, end, False, None, False)
    except CorruptDataError as exc:
        return RECORD_END, None, str(exc).split(": ", 1)[-1]
    topic_at, topic_len, props_at, props_len = _tail_positions(buf, pos)
    if not _TOPIC_CHARS.fullmatch(bytes(buf[topic_at:topic_at + topic_len])):
        return RECORD_END, None, "topic has characters no broker writes (a torn record)"
    if props_len and buf[props_at + props_len - 1] == 0:
        return RECORD_END, None, "properties end with NUL bytes (a torn record)"
    if check_crc:
        stored = _I32.unpack_from(buf, pos + 8)[0]
        body_at, body_len = _body_span(buf, pos)
        actual = body_crc(buf[body_at:body_at + body_len])
        if actual != stored:
            return size, DAMAGE_CRC, f"body CRC mismatch: stored {stored}, computed {actual}"
    if address is not None:
        stored_at = _I64.unpack_from(buf, pos + _FIELD_PHYSICAL_OFFSET)[0]
        if stored_at != address:
            return size, DAMAGE_PHYSICAL_OFFSET, f"PHYSICALOFFSET says {stored_at}, the record is at {address}"
    return size, None, None


def _body_span(buf: ByteView, pos: int) -> tuple[int, int]:
    """(body start, body length) of a record already checked whole."""
    sysflag = _I32.unpack_from(buf, pos + 36)[0]
    at = pos + _HEAD.size + (20 if sysflag & SYSFLAG_BORNHOST_V6 else 8) + 8
    at += (20 if sysflag & SYSFLAG_STOREHOST_V6 else 8) + 12
    return at + 4, _I32.unpack_from(buf, at)[0]


def strip_trailing_separator(record: bytes) -> bytes:
    """``record`` with the property string in the form a 4.x broker stores it: without a final
    ``\\x02`` (spec 3.5, corrected against a real 4.9.8 store). TOTALSIZE and PROPERTIESLENGTH
    shrink by one; BODYCRC does not cover them. A record already in that form, without
    properties, or ending with the 5.2+ ``__CRC32#`` property (which ends with ``\\x02`` by
    definition) is returned as is. ``record`` must be a whole valid record."""
    _, _, props_at, props_len = _tail_positions(record, 0)
    if not props_len or record[-1] != 2 or verify_property_crc(record) is not None:
        return record
    out = bytearray(record[:-1])
    _I32.pack_into(out, 0, len(out))
    _I16.pack_into(out, props_at - 2, props_len - 1)
    return bytes(out)


def peek_message(buf: ByteView, pos: int) -> Message:
    """The fields of a record already checked valid WITHOUT its body and hosts (``body`` is
    empty, the hosts are left at their defaults): what routing a record needs (topic, queue,
    offsets, sysflag, properties, store time), read without copying the body. CorruptDataError
    when the topic or properties are not UTF-8."""
    (_, magic, crc, queue_id, flag, queue_offset, physical_offset, sysflag, born_ts) = _HEAD.unpack_from(buf, pos)
    at = pos + _HEAD.size + (20 if sysflag & SYSFLAG_BORNHOST_V6 else 8)
    store_ts: int = _I64.unpack_from(buf, at)[0]
    at += 8 + (20 if sysflag & SYSFLAG_STOREHOST_V6 else 8)
    reconsume, prepared, _ = _TAIL.unpack_from(buf, at)
    topic_at, topic_len, props_at, props_len = _tail_positions(buf, pos)
    try:
        topic = bytes(buf[topic_at:topic_at + topic_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptDataError("topic is not UTF-8", offset=pos) from None
    return Message(topic=topic, body=b"", properties=decode_properties(buf[props_at:props_at + props_len]),
                   queue_id=queue_id, flag=flag, queue_offset=queue_offset, physical_offset=physical_offset,
                   sysflag=sysflag, born_timestamp_ms=born_ts, store_timestamp_ms=store_ts,
                   reconsume_times=reconsume, prepared_tx_offset=prepared, body_crc=crc,
                   version=1 if magic == MAGIC_V1 else 2)


def peek_store_timestamp(buf: ByteView, pos: int) -> int:
    """STORETIMESTAMP of a record already checked valid (its place depends on the born host)."""
    sysflag: int = _I32.unpack_from(buf, pos + 36)[0]
    value: int = _I64.unpack_from(buf, pos + _HEAD.size + (20 if sysflag & SYSFLAG_BORNHOST_V6 else 8))[0]
    return value




class RecordPeek(NamedTuple):
    """What placing a replicated record needs (``peek_record``), without its body or hosts."""

    size: int
    topic: str
    queue_id: int
    queue_offset: int
    sysflag: int
    store_timestamp_ms: int
    properties_text: str        # the property string as stored (``decode_properties`` reads it)


def peek_record(buf: ByteView, *, where: str | None = None) -> RecordPeek:
    """The record at the start of ``buf`` checked as ``decode_message`` checks it (sizes, magic,
    BODYCRC, UTF-8 topic and properties; CorruptDataError naming ``where`` otherwise), returning
    only the fields a replica needs to place and index it: no ``Message``, no body copy, no
    property dict (a follower indexes every entry it is sent; decoding each one whole was a
    tenth of its CPU per message)."""
    size, _ = _parse(buf, 0, len(buf), True, where, False)
    _, _, _, queue_id, _, queue_offset, _, sysflag, _ = _HEAD.unpack_from(buf, 0)
    topic_at, topic_len, props_at, props_len = _tail_positions(buf, 0)
    try:
        topic = bytes(buf[topic_at:topic_at + topic_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptDataError("topic is not UTF-8", where=where, offset=0) from None
    try:
        text = bytes(buf[props_at:props_at + props_len]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptDataError(f"message properties are not UTF-8 ({exc.reason} at byte {exc.start})",
                               where=where, offset=0) from None
    return RecordPeek(size, topic, queue_id, queue_offset, sysflag, peek_store_timestamp(buf, 0), text)


def peek_tags_code(peek: RecordPeek, delay_levels_ms: list[int] | None = None) -> int:
    """``message_tags_code`` of a peeked record; the property string is decoded only when it can
    matter (a TAGS property, or the schedule topic's DELAY)."""
    text = peek.properties_text
    if peek.topic != SCHEDULE_TOPIC and "TAGS\x01" not in text:
        return 0
    properties = decode_properties(text)
    return tags_code(properties.get(PROPERTY_TAGS), peek.topic, properties=properties,
                     store_timestamp_ms=peek.store_timestamp_ms, delay_levels_ms=delay_levels_ms)


def _placing_struct(hosts: int) -> struct.Struct:
    """TOTALSIZE MAGIC BODYCRC QUEUEID QUEUEOFFSET SYSFLAG STORETIMESTAMP BODYLENGTH of a record
    whose sysflag host bits are ``hosts`` (FLAG, PHYSICALOFFSET, BORNTIMESTAMP, the hosts,
    RECONSUMETIMES and PREPAREDTRANSACTIONOFFSET skipped); its size is where the body starts."""
    born = 20 if hosts & SYSFLAG_BORNHOST_V6 else 8
    store = 20 if hosts & SYSFLAG_STOREHOST_V6 else 8
    return struct.Struct(f">iiii4xq8xi8x{born}xq{store}x12xi")


_HOST_BITS = SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6
_PLACING = {hosts: _placing_struct(hosts) for hosts in (0, SYSFLAG_BORNHOST_V6, SYSFLAG_STOREHOST_V6, _HOST_BITS)}
_PLACING_V4 = _PLACING[0]
_TAGS_KEY = b"TAGS\x01"
_TAGS_NAME = PROPERTY_TAGS.encode()

# what ``place_fields`` returns: topic, queue id, the queue offset the record carries, sysflag,
# tags code, store time, size
PlaceFields = tuple[str, int, int, int, int, int, int]


def property_value(props: bytes, name: bytes) -> bytes | None:
    """The raw value ``decode_properties(props).get(name)`` gives, found in the stored bytes
    without decoding them: the last ``name\x01value`` segment (segments split on ``\x02``) whose
    value is not empty; None when there is none. ``props`` is a stored property string (UTF-8;
    ``\x01`` and ``\x02`` never occur inside a multi-byte character, so byte positions are
    character positions). THE finder of one property in stored bytes: ``place_fields`` (TAGS) and
    ``migrate.scan`` (TAGS, UNIQ_KEY, KEYS) use it, and ``migrate/_scan.c`` does the same in C
    (tests/formats/test_property_value.py compares all three with ``decode_properties``)."""
    first = name + b"\x01"
    later = b"\x02" + first
    end = len(props)
    while True:
        i = props.rfind(later, 0, end)
        if i < 0:
            break
        start = i + len(later)
        e = props.find(b"\x02", start)
        if e < 0:
            e = len(props)
        if e > start:
            return props[start:e]
        end = i                     # an empty value does not count: an earlier segment may
    if not props.startswith(first):
        return None
    e = props.find(b"\x02", len(first))
    value = props[len(first):e if e >= 0 else len(props)]
    return value or None


def _tags_of(props: bytes) -> str | None:
    """``decode_properties(text).get("TAGS")`` of a UTF-8 property string (``property_value``)."""
    value = property_value(props, _TAGS_NAME)
    return value.decode("utf-8") if value is not None else None


def place_fields(buf: bytes) -> PlaceFields | None:
    """What placing a replicated record needs, in one pass: ``peek_record`` plus ``peek_tags_code``
    for a record that IS exactly ``buf`` (TOTALSIZE == len(buf)), with one ``unpack_from`` for its
    fixed fields and the property string scanned only for TAGS. None when anything is off (sizes,
    magic, BODYCRC, UTF-8, a record shorter or longer than ``buf``): the caller then runs
    ``peek_record``, which names the damage, so a bad record is refused with the same error as
    before. Accepts exactly what ``peek_record`` accepts at that size and returns the same fields
    (tests/formats/test_place_fields.py). ``_record_check.c`` is the same function in C, used where
    it is built (``mqbench.native``; tests/formats/test_place_fields_native.py)."""
    size = len(buf)
    if size < _PLACING_V4.size or not isinstance(buf, bytes):
        return None
    total, magic, crc, queue_id, queue_offset, sysflag, store_ts, body_len = _PLACING_V4.unpack_from(buf, 0)
    body_at = _PLACING_V4.size
    hosts = sysflag & _HOST_BITS
    if hosts:
        layout = _PLACING[hosts]
        if size < layout.size:
            return None
        total, magic, crc, queue_id, queue_offset, sysflag, store_ts, body_len = layout.unpack_from(buf, 0)
        body_at = layout.size
    body_end = body_at + body_len
    if total != size or body_len < 0:
        return None
    if magic == MAGIC_V1:
        if body_end + 1 > size:
            return None
        topic_len = buf[body_end]
        if topic_len > 127:          # TOPICLENGTH is a signed byte: negative
            return None
        topic_at = body_end + 1
    elif magic == MAGIC_V2:
        if body_end + 2 > size:
            return None
        topic_len = _I16.unpack_from(buf, body_end)[0]
        topic_at = body_end + 2
    else:
        return None
    props_at = topic_at + topic_len + 2
    if topic_len <= 0 or props_at > size or props_at + _I16.unpack_from(buf, props_at - 2)[0] != size:
        return None
    if body_crc(buf[body_at:body_end]) != crc:
        return None
    props = buf[props_at:]
    try:
        topic = buf[topic_at:topic_at + topic_len].decode("utf-8")
        if not props.isascii():
            props.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if topic == SCHEDULE_TOPIC:
        properties = decode_properties(props)
        code = tags_code(properties.get(PROPERTY_TAGS), topic, properties=properties, store_timestamp_ms=store_ts)
    elif _TAGS_KEY in props:
        tags = _tags_of(props)
        code = java_hash(tags) if tags else 0
    else:
        code = 0
    return topic, queue_id, queue_offset, sysflag, code, store_ts, size


_RECORD_MAGICS = frozenset((_I32.pack(MAGIC_V1), _I32.pack(MAGIC_V2)))   # bytes 4..8 of a record

#: one entry of a follower's round: (term, body, magic), as ``append_replicated_batch`` takes them
Entry = tuple[int, bytes, int]


def place_fields_run(items: list[Entry], start: int, built: dict[int, tuple[bytes, PlaceFields]] | None = None
                     ) -> tuple[list[tuple[bytes, PlaceFields]], int | None, int]:
    """The longest run of ``items[start:]`` that are records of one term, each with its fields:
    ``built[id(body)][1]`` (popped) when ``built`` holds that very body (a record this replica
    built, as ``ReplicatedCommitLog`` files them), else what ``place_fields`` takes. Returns
    ``([(body, fields)], term, next index)``; ``([], None, start)`` when ``items[start]`` is not one.
    It stops at an entry that is not a record (magic other than 1, a body that is not ``bytes`` or
    has no record magic), of another term, or that ``place_fields`` does not take (the caller
    handles that one: its own checks name the damage). A round in one call (``_record_check.c``)."""
    if type(items) is not list:
        raise TypeError(f"place_fields_run wants a list of entries, not {type(items).__name__}")
    if built is not None and type(built) is not dict:
        raise TypeError(f"built must be a dict or None, not {type(built).__name__}")
    run: list[tuple[bytes, PlaceFields]] = []
    term: int | None = None
    i = max(start, 0)
    while i < len(items):
        item = items[i]
        if type(item) is not tuple or len(item) != 3:
            break
        entry_term, body, magic = item
        if type(magic) is not int or magic != 1 or type(entry_term) is not int or type(body) is not bytes:
            break
        if (term is not None and entry_term != term) or body[4:8] not in _RECORD_MAGICS:
            break
        fields: PlaceFields | None = None
        if built:
            mine = built.pop(id(body), None)
            if mine is not None and type(mine) is tuple and len(mine) == 2 and mine[0] is body:
                fields = mine[1]
        if fields is None:
            fields = place_fields(body)
        if fields is None:
            break
        run.append((body, fields))
        term = entry_term
        i += 1
    return run, term, i


place_fields_py = place_fields
place_fields_run_py = place_fields_run
_native = native.load("mqbench.broker.formats._record_check")
if _native is not None:
    # the rare cases that decode the property string, and the delay levels tags_code uses by default
    # (the schedule topic's due times: one home for them)
    _native.set_fallback(place_fields_py, _DEFAULT_LEVELS_MS)
    place_fields = _native.place_fields  # noqa: F811 - the same function in C
    place_fields_run = _native.place_fields_run  # noqa: F811 - the same function in C
