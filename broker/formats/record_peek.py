"""In-place reads of commitlog records already checked valid (``record.check_record`` or the
recovery check): single fields, the topic and properties positions, a pull's identity check.
Nothing is decoded whole and nothing is copied beyond what is returned (spec section 3).
"""
from __future__ import annotations

from mqbench.errors import CorruptDataError

from .buffers import ByteView
from .record import decode_properties
from .record_layout import (_BODY_LEN_AT_IPV4, _FIELD_PHYSICAL_OFFSET, _HEAD, _HOST_V6_EXTRA_BYTES, _I16, _I32, _I64, _I8,
                            _ID_HEAD, MAGIC_V1, MAGIC_V2, SYSFLAG_BORNHOST_V6, SYSFLAG_STOREHOST_V6,
                            TOPIC_V1_MAX_BYTES)


def physical_offsets(records: list[ByteView]) -> list[int]:
    """PHYSICALOFFSET of each record (each at position 0, already checked valid)."""
    unpack, at = _I64.unpack_from, _FIELD_PHYSICAL_OFFSET
    return [unpack(record, at)[0] for record in records]


def peek_fields(buf: ByteView, pos: int) -> tuple[int, int, int, int, int]:
    """(TOTALSIZE, QUEUEID, QUEUEOFFSET, PHYSICALOFFSET, SYSFLAG) of a record already checked valid."""
    total, _, _, queue_id, _, queue_offset, physical_offset, sysflag, _ = _HEAD.unpack_from(buf, pos)
    return total, queue_id, queue_offset, physical_offset, sysflag


def _tail_positions(buf: ByteView, pos: int) -> tuple[int, int, int, int]:
    """(topic start, topic length, properties start, properties length) of a record already
    checked valid with ``check_record``; reads only the length fields."""
    magic = _I32.unpack_from(buf, pos + 4)[0]
    sysflag = _I32.unpack_from(buf, pos + 36)[0]
    at = pos + _HEAD.size + (20 if sysflag & SYSFLAG_BORNHOST_V6 else 8) + 8
    at += (20 if sysflag & SYSFLAG_STOREHOST_V6 else 8) + 12
    at += 4 + _I32.unpack_from(buf, at)[0]
    if magic == MAGIC_V1:
        topic_len, at = _I8.unpack_from(buf, at)[0], at + 1
    else:
        topic_len, at = _I16.unpack_from(buf, at)[0], at + 2
    props_at = at + topic_len + 2
    return at, topic_len, props_at, _I16.unpack_from(buf, at + topic_len)[0]




def is_record_of(buf: bytes, pos: int, size: int, topic: bytes, queue_id: int, queue_offset: int) -> bool:
    """Whether ``buf[pos:pos + size]`` is a record of ``topic`` (its UTF-8 bytes), ``queue_id`` at
    ``queue_offset``: TOTALSIZE equal to ``size``, a record magic, QUEUEID, QUEUEOFFSET and the
    TOPIC field compared in place (nothing decoded, nothing copied; a pull reads a queue's records
    this way). False for anything else; ``peek_topic`` and friends name what is wrong."""
    if pos < 0 or size < _BODY_LEN_AT_IPV4 + 4 or pos + size > len(buf):
        return False
    total, magic, got_queue, got_offset, sysflag = _ID_HEAD.unpack_from(buf, pos)
    if total != size or got_queue != queue_id or got_offset != queue_offset or magic not in (MAGIC_V1, MAGIC_V2):
        return False
    at = pos + _BODY_LEN_AT_IPV4
    if sysflag & SYSFLAG_BORNHOST_V6:
        at += _HOST_V6_EXTRA_BYTES
    if sysflag & SYSFLAG_STOREHOST_V6:
        at += _HOST_V6_EXTRA_BYTES
    rec_end = pos + size
    if at + 4 > rec_end:
        return False
    body_len = _I32.unpack_from(buf, at)[0]
    if body_len < 0:             # damage (a negative index would read before the record)
        return False
    at += 4 + body_len
    if magic == MAGIC_V1:
        if at + 1 > rec_end or buf[at] != len(topic) or len(topic) > TOPIC_V1_MAX_BYTES:    # a signed byte
            return False
        at += 1
    else:
        if at + 2 > rec_end or _I16.unpack_from(buf, at)[0] != len(topic):
            return False
        at += 2
    return at + len(topic) <= rec_end and buf.startswith(topic, at)


def peek_topic(buf: ByteView, pos: int, *, where: str | None = None) -> str:
    """The topic of a record already checked valid, without decoding the rest. CorruptDataError if not UTF-8."""
    topic_at, topic_len, _, _ = _tail_positions(buf, pos)
    try:
        return bytes(buf[topic_at:topic_at + topic_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptDataError("topic is not UTF-8", where=where, offset=pos) from None


def peek_properties(buf: ByteView, pos: int, *, where: str | None = None) -> dict[str, str]:
    """The properties of a record already checked valid. CorruptDataError if not UTF-8."""
    _, _, props_at, props_len = _tail_positions(buf, pos)
    try:
        return decode_properties(buf[props_at:props_at + props_len])
    except CorruptDataError as exc:
        raise CorruptDataError(str(exc), where=where, offset=pos) from None
