"""The client batch body (spec 4.1): what a producer sends as one batch, and what a 5.x
inner-batch record (BatchCQ topics) stores as its BODY.

Pure code, big-endian. The body is the plain concatenation of these records::

    off   size  type   field
    0     4     int32  TOTALSIZE of this record = 22 + B + P
    4     4     int32  MAGICCODE, written as 0
    8     4     int32  BODYCRC, written as 0
    12    4     int32  FLAG
    16    4     int32  BODYLENGTH B
    20    B     bytes  BODY
    20+B  2     int16  PROPERTIESLENGTH P
    22+B  P     bytes  properties (record.encode_properties)
"""
from __future__ import annotations

import re
import struct
from itertools import repeat
from operator import eq
from dataclasses import dataclass, field

from mqbench import native
from mqbench.errors import CorruptDataError, UserError

from .buffers import ByteView
from .record import decode_properties, encode_properties
from .record_layout import PROPERTIES_MAX_BYTES

BATCH_ITEM_FIXED_BYTES = 22

_HEAD = struct.Struct(">iiiii")  # TOTALSIZE MAGIC BODYCRC FLAG BODYLENGTH
_I16 = struct.Struct(">h")


@dataclass
class BatchItem:
    """One message of a client batch."""

    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    flag: int = 0
    # the property string as sent, set by ``decode_batch`` only when it is exactly
    # ``encode_properties(properties)`` (a record can then take it as is); whoever changes
    # ``properties`` of a decoded item sets it to None
    wire_properties: bytes | None = field(default=None, compare=False, repr=False)


def encode_batch(items: list[BatchItem]) -> bytes:
    """The batch body for ``items`` (in order). Raises UserError for oversized properties or fields.

    An item's ``wire_properties`` (set by ``decode_batch`` only when it is exactly
    ``encode_properties(properties)``) is written as it is, not encoded again."""
    parts = []
    for item in items:
        props = item.wire_properties
        if props is None:
            props = encode_properties(item.properties)
        if len(props) > PROPERTIES_MAX_BYTES:
            raise UserError(f"batch item properties of {len(props)} bytes are too long (max {PROPERTIES_MAX_BYTES})")
        total = BATCH_ITEM_FIXED_BYTES + len(item.body) + len(props)
        try:
            parts.append(_HEAD.pack(total, 0, 0, item.flag, len(item.body)))
        except struct.error as exc:
            raise UserError(f"batch item field out of range: {exc}") from None
        parts += [bytes(item.body), _I16.pack(len(props)), props]
    return b"".join(parts)


#: a property string as ``encode_properties`` writes it when no name or value holds a separator
_PLAIN_PROPERTIES = re.compile(rb"(?:[^\x01\x02]+\x01[^\x01\x02]+\x02)+").fullmatch


def canonical_batch_count(body: bytes, *, items_max: int | None = None,
                          names_refused: frozenset[bytes] = frozenset(),
                          properties_bytes_max: int = 0x7FFF) -> int | None:
    """The number of messages in ``body`` when it is exactly ``encode_batch(decode_batch(body))``:
    every item framed as ``decode_batch`` requires, with MAGICCODE and BODYCRC 0 and a property
    string that is UTF-8 and ``name\x01value\x02`` segments with distinct names and no separator
    inside (what ``encode_properties`` writes), at most ``items_max`` of them, none named in
    ``names_refused`` or longer than ``properties_bytes_max``. None otherwise (also for an empty body): the caller then runs
    ``decode_batch``, which names any damage. No property dict or item is built, so an inner-batch
    record can store ``body`` as sent. The C accelerator (``_batch.c``) gives the same answer."""
    if _native is not None and type(names_refused) in (frozenset, set):
        count: int | None = _native.canonical_batch_count(body, items_max, names_refused, properties_bytes_max)
        return count
    return _canonical_batch_count(body, items_max, names_refused, properties_bytes_max)


def _canonical_batch_count(body: bytes, items_max: int | None, names_refused: frozenset[bytes],
                           properties_bytes_max: int) -> int | None:
    """``canonical_batch_count`` in Python: the reference for the C accelerator."""
    if not isinstance(body, bytes):
        return None
    unpack_head, unpack_i16, plain = _HEAD.unpack_from, _I16.unpack_from, _PLAIN_PROPERTIES
    end, pos, count = len(body), 0, 0
    limit = end if items_max is None else items_max
    wires = []
    while pos < end:
        if count >= limit or end - pos < BATCH_ITEM_FIXED_BYTES:
            return None
        total, magic, crc, _flag, body_len = unpack_head(body, pos)
        if magic or crc or body_len < 0 or total < BATCH_ITEM_FIXED_BYTES + body_len or total > end - pos:
            return None
        props_at = pos + 20 + body_len
        props_len = unpack_i16(body, props_at)[0]
        if props_len < 0 or BATCH_ITEM_FIXED_BYTES + body_len + props_len != total or props_len > properties_bytes_max:
            return None
        pos += total
        if props_len:
            if body[pos - 1] != 2:          # each string ends a segment, so the joined strings split back
                return None
            wires.append(body[props_at + 2:pos])
        count += 1
    if not count:
        return None
    if not wires:
        return count
    # the checks per string done once for all of them (each ends with \x02): one match, one UTF-8 check
    joined = b"".join(wires)
    if not plain(joined):
        return None
    if not joined.isascii():
        try:
            joined.decode("utf-8")
        except UnicodeDecodeError:
            return None
    # distinct names within each string; when every string has k segments (the usual case),
    # the j-th names of all strings are one stride of the joined names, compared column by column
    segments = set(map(bytes.count, wires, repeat(b"\x02")))
    if len(segments) == 1:
        k = segments.pop()
        names = joined.replace(b"\x01", b"\x02").split(b"\x02")[0:-1:2]
        if not names_refused.isdisjoint(names):
            return None
        columns = [names[j::k] for j in range(k)]
        if any(any(map(eq, columns[a], columns[b])) for a in range(k) for b in range(a + 1, k)):
            return None
        return count
    for wire in wires:
        names = wire.replace(b"\x01", b"\x02").split(b"\x02")[0:-1:2]
        if len(set(names)) != len(names) or not names_refused.isdisjoint(names):
            return None
    return count


_native = native.load("mqbench.broker.formats._batch")


def decode_batch(body: ByteView, *, where: str | None = None, items_max: int | None = None) -> list[BatchItem]:
    """Split a batch body into its items. The whole body must be consumed exactly.

    Raises CorruptDataError (with ``where`` and the item's offset) for a torn or inconsistent item,
    or as soon as the body holds more than ``items_max`` items (None: no bound). The C accelerator
    decodes the usual body (plain property strings) the same way and leaves any other to the code
    below.
    """
    if _native is not None:
        plain: list[BatchItem] | None = _native.decode_batch_plain(body, items_max, BatchItem)
        if plain is not None:
            return plain
    items: list[BatchItem] = []
    append = items.append
    unpack_head, unpack_i16 = _HEAD.unpack_from, _I16.unpack_from
    data = body if isinstance(body, bytes) else bytes(body)     # slices of bytes are the copies kept
    limit = end = len(data)
    if items_max is not None:
        limit = items_max
    pos = 0
    while pos < end:
        if len(items) >= limit:
            raise CorruptDataError(f"batch holds more than {items_max} messages; split it", where=where, offset=pos)
        if end - pos < BATCH_ITEM_FIXED_BYTES:
            raise CorruptDataError(f"{end - pos} bytes left, too few for a batch item", where=where, offset=pos)
        total, _magic, _crc, flag, body_len = unpack_head(data, pos)
        if body_len < 0 or total < BATCH_ITEM_FIXED_BYTES + body_len or total > end - pos:
            raise CorruptDataError(f"batch item of {total} bytes with a body of {body_len} does not fit "
                                   f"({end - pos} bytes left)", where=where, offset=pos)
        props_at = pos + 20 + body_len
        props_len = unpack_i16(data, props_at)[0]
        if props_len < 0 or BATCH_ITEM_FIXED_BYTES + body_len + props_len != total:
            raise CorruptDataError(f"batch item size {total} differs from its fields "
                                   f"(body {body_len}, properties {props_len})", where=where, offset=pos)
        wire = data[props_at + 2:props_at + 2 + props_len]
        try:
            properties = decode_properties(wire) if props_len else {}
        except CorruptDataError as exc:
            raise CorruptDataError(str(exc), where=where, offset=pos) from None
        # every \x02-ended segment gave its own name: encode_properties writes these bytes again
        canonical = not props_len or (wire[-1] == 2 and wire.count(b"\x02") == len(properties))
        append(BatchItem(data[pos + 20:props_at], properties, flag, wire if canonical else None))
        pos += total
    return items
