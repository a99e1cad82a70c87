"""Restamping a replicated record: the fields that depend on where it lands in a replica's log.

The leader of a Raft group builds a record without knowing its offsets (``Store.prepare_record``);
every replica (the leader included) fills them in when it appends the entry
(``Store.append_entry``). The fields (``record_layout.py`` has the whole record layout)::

    off   size  type   field            written by
    20    8     int64  QUEUEOFFSET      restamp_record (in place: the queue-offset table's next offset)
    28    8     int64  PHYSICALOFFSET   DLedgerLog.append (in place: entry pos + 48)
    -     -     text   INNER_BASE       restamp_record (property of an inner-batch record; the record
                                        is re-encoded because the text length may change)

BODYCRC covers only the body, so a restamped record stays valid. Pure: bytes in, bytes out.
"""
from __future__ import annotations

import struct

from mqbench import native
from mqbench.errors import CorruptDataError, UserError

from .record import decode_message, decode_properties, encode_message, encode_properties, set_physical_offset
from .record_layout import PROPERTIES_MAX_BYTES, SYSFLAG_INNER_BATCH
from .record_peek import _tail_positions, peek_fields
from .properties import PROPERTY_INNER_BASE, PROPERTY_INNER_NUM

_QUEUE_OFFSET_FIELD = struct.Struct(">q")
_QUEUE_OFFSET_AT = 20
_TOTAL_SIZE = struct.Struct(">i")
_PROPERTIES_LENGTH = struct.Struct(">h")
_INNER_NUM_MAX = 0x7FFF
_PROPS_AT_MIN = 30          # the fields rewritten below lie before the properties
_QUEUE_OFFSET_MAX = (1 << 63) - 1
_native = native.load("mqbench.broker.formats._batch")


def restamp_inner_batch(record: bytes, queue_offset: int) -> tuple[bytes, int] | None:
    """``restamp_record(record, queue_offset)`` for an inner-batch record already checked whole
    (``record_check.place_fields`` took it), and its INNER_NUM, without decoding or re-encoding the
    body: only the property string is rebuilt (INNER_BASE) and TOTALSIZE, QUEUEOFFSET and
    PROPERTIESLENGTH rewritten, so the bytes are the same as ``restamp_record``'s. None when that
    cannot be promised (a property string that does not read back as written, no valid INNER_NUM,
    a result too long): the caller then takes the decoding path, which names the problem."""
    _, _, props_at, props_len = _tail_positions(record, 0)
    if props_at + props_len != len(record):
        return None
    if _native is not None and props_at >= _PROPS_AT_MIN and 0 <= queue_offset <= _QUEUE_OFFSET_MAX:
        restamped: tuple[bytes, int] | None = _native.restamp_inner_batch(     # the same, in C
            record, queue_offset, props_at, props_len)
        return restamped
    wire = record[props_at:]
    try:
        properties = decode_properties(wire)
        if encode_properties(properties) != wire:
            return None
        inner_num = int(properties.get(PROPERTY_INNER_NUM, ""))
        properties[PROPERTY_INNER_BASE] = str(queue_offset)
        rebuilt = encode_properties(properties)
    except (CorruptDataError, UserError, ValueError):
        return None
    if not 0 < inner_num <= _INNER_NUM_MAX or len(rebuilt) > PROPERTIES_MAX_BYTES:
        return None
    head = bytearray(record[:props_at - 2])
    _TOTAL_SIZE.pack_into(head, 0, props_at + len(rebuilt))
    _QUEUE_OFFSET_FIELD.pack_into(head, _QUEUE_OFFSET_AT, queue_offset)
    head += _PROPERTIES_LENGTH.pack(len(rebuilt))
    head += rebuilt
    return bytes(head), inner_num


def restamp_record(record: bytes, queue_offset: int) -> bytes:
    """``record`` (a whole valid record) with QUEUEOFFSET = ``queue_offset`` and, for an inner
    batch, INNER_BASE = ``str(queue_offset)``. Idempotent: a record that already holds these values
    comes back unchanged (the same bytes)."""
    _, _, current, _, sysflag = peek_fields(record, 0)
    if sysflag & SYSFLAG_INNER_BATCH:
        msg, _ = decode_message(record, 0, check_crc=False, where="replicated entry")
        base = str(queue_offset)
        if current == queue_offset and msg.properties.get(PROPERTY_INNER_BASE) == base:
            return bytes(record)
        msg.queue_offset = queue_offset
        msg.properties[PROPERTY_INNER_BASE] = base
        return encode_message(msg)
    if current == queue_offset:
        return bytes(record)
    out = bytearray(record)
    _QUEUE_OFFSET_FIELD.pack_into(out, _QUEUE_OFFSET_AT, queue_offset)
    return bytes(out)


def placement_cleared(record: bytes) -> bytes:
    """``record`` with every field restamping writes set to its placeholder (QUEUEOFFSET 0,
    PHYSICALOFFSET 0, INNER_BASE "0"): two copies of one replicated record compare equal this way
    whichever replica stamped them. CorruptDataError for a damaged record."""
    return set_physical_offset(restamp_record(record, 0), 0)
