"""Compressed message bodies: codec <-> sysflag bits, per-message bodies, whole client batches.

Pure code: bytes in, bytes out. Every decompression is bounded (``size_max``), so a small body
that would expand without limit (a decompression bomb) is refused, not expanded.

**Sysflag bits** (spec 3.3/3.4). A compressed body has COMPRESSED (0x1) and its codec in bits
8-10: 1 = LZ4, 2 = ZSTD, 3 = ZLIB, 4 = snappy (mqbench only), and 0 = legacy, read as ZLIB.
``sysflag_bits`` writes zlib with the type bits 0 (sysflag 0x1): exactly what RocketMQ 4.x and the
official C++ client write, and what every RocketMQ client of any version reads as zlib. The other
codecs get their type id (RocketMQ 5 layout).

**Per-message compression** (RocketMQ's rule, ``compress_body``): a body of at least
``over_bytes`` is compressed with the codec and the record's sysflag gets ``sysflag_bits(codec)``;
the broker stores it as sent and the consumer decompresses it (``decompress_body``).

**Whole-batch compression** (mqbench's; RocketMQ never compresses batches). The producer sends
SEND_BATCH_MESSAGE with the request header's sysflag = ``sysflag_bits(codec)`` and this body::

    off  size  type   field
    0    4     int32  MARK         -1. A plain client batch (batch.py) has TOTALSIZE here; a
                                   negative size makes any batch walker refuse the body.
    4    4     int32  MAGIC        0x4D514243 ("MQBC")
    8    4     int32  PLAIN_BYTES  length of the client batch body before compression, 1..size_max
    12   4     int32  COUNT        messages in the batch, 1..32767
    16   4     int32  MARK         -1. A plain client batch has BODYLENGTH here; RocketMQ's batch
                                   encoder fails on a negative body length.
    20   N     bytes  STREAM       encode_batch(items) compressed whole by the sysflag's codec

A broker that does not know the form therefore refuses the request (RocketMQ's
``countInnerMsgNum`` and batch encoder both throw on the negative fields, mqbench's
``decode_batch`` raises CorruptDataError) instead of storing garbage. A broker that knows it calls
``decode_client_batch``: it checks every field, decompresses within the bound, decodes the items
and returns the STREAM alone as the body to store. On a BatchCQ topic that is ONE inner-batch
record: BODY = STREAM, sysflag NEED_UNWRAP | INNER_BATCH | ``sysflag_bits(codec)``. The COMPRESSED
flag then means "the record's body, before unwrapping"; readers decompress first, then unwrap
(``inner_batch_items``). The unwrapped messages carry no compression bits.
"""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

from mqbench.codecs.registry import BODY_SIZE_MAX_BYTES, TYPE_ID_ZLIB, Codec, codec_for_type_id
from mqbench.errors import CodecError, CorruptDataError, UserError

from .batch import BatchItem, decode_batch, encode_batch
from .record_layout import SYSFLAG_COMPRESSED, SYSFLAG_COMPRESSION_MASK, SYSFLAG_COMPRESSION_SHIFT

#: RocketMQ's ``compressMsgBodyOverHowmuch``: bodies of at least this many bytes are compressed.
COMPRESS_OVER_BYTES_DEFAULT = 4096
#: The bound on any decompressed body: RocketMQ's ``maxMessageSize``. A producer never sends a
#: body (or a whole batch body, before compression) over it, so nothing a broker accepts is unreadable.
PLAIN_BYTES_MAX = BODY_SIZE_MAX_BYTES
#: Every sysflag bit that describes compression.
SYSFLAG_COMPRESSION_BITS = SYSFLAG_COMPRESSED | SYSFLAG_COMPRESSION_MASK
BATCH_ITEMS_MAX = 0x7FFF  # INNER_NUM and the BCQ batchSize are int16

ENVELOPE_MAGIC = 0x4D514243  # "MQBC"
ENVELOPE_MARK = -1
_ENVELOPE = struct.Struct(">iiiii")  # MARK MAGIC PLAIN_BYTES COUNT MARK
ENVELOPE_HEAD_BYTES = _ENVELOPE.size  # 20
_PLAIN_BYTES_AT = struct.calcsize(">ii")     # 8: offsets named in error messages
_COUNT_AT = struct.calcsize(">iii")          # 12


def sysflag_bits(codec: Codec | None, *, zlib_type_bits: bool = False) -> int:
    """The sysflag bits that mark a body compressed by ``codec`` (0 for none; zlib is 0x1, or
    0x301 with ``zlib_type_bits``: the form 4.9.4+ Java clients write, which a real 4.9.8 store
    holds and ``migrate`` writes; every reader takes both)."""
    if codec is None or codec.is_none:
        return 0
    if codec.type_id is None:
        raise UserError(f"codec {codec.spec} has no compression type id")
    if codec.type_id == TYPE_ID_ZLIB and not zlib_type_bits:
        return SYSFLAG_COMPRESSED  # legacy type 0 = zlib: what 4.x and the C++ client write
    return SYSFLAG_COMPRESSED | (codec.type_id << SYSFLAG_COMPRESSION_SHIFT)


def compression_type_id(sysflag: int) -> int | None:
    """The compression type id in ``sysflag`` (0 = legacy zlib), or None when not compressed."""
    if not sysflag & SYSFLAG_COMPRESSED:
        return None
    return (sysflag & SYSFLAG_COMPRESSION_MASK) >> SYSFLAG_COMPRESSION_SHIFT


V4_TYPE_IDS = (0, TYPE_ID_ZLIB)     # what a 4.x broker reads: legacy 0 and 3 both mean zlib


def v4_reads(sysflag: int) -> bool:
    """Whether a 4.x broker can read a body with this ``sysflag``: not compressed, or zlib."""
    kind = compression_type_id(sysflag)
    return kind is None or kind in V4_TYPE_IDS


def codec_of(sysflag: int, *, where: str | None = None, offset: int | None = None,
             codecs: dict[int, Codec] | None = None) -> Codec | None:
    """The codec a body with ``sysflag`` is compressed with, or None when it is not compressed.

    ``codecs`` may map type ids to configured codecs (e.g. a zstd dictionary) ahead of the
    registry's defaults. Raises CorruptDataError naming ``where``/``offset`` for an unknown type id.
    """
    type_id = compression_type_id(sysflag)
    if type_id is None:
        return None
    if codecs and type_id in codecs:
        return codecs[type_id]
    cache = _thread_codecs.__dict__
    codec = cache.get(type_id)
    if codec is None:
        try:
            codec = cache[type_id] = codec_for_type_id(type_id)
        except CodecError:
            raise CorruptDataError(f"unknown compression type {type_id} in sysflag 0x{sysflag:x}",
                                   where=where, offset=offset) from None
    return codec


# Building a codec creates its library contexts (a zstd compressor and decompressor), which cost
# more than decompressing a small body; the contexts are not safe to share between threads, so each
# thread keeps its own codec per type id.
_thread_codecs = threading.local()


def compress_body(body: bytes, codec: Codec | None, over_bytes: int = COMPRESS_OVER_BYTES_DEFAULT, *,
                  zlib_type_bits: bool = False) -> tuple[bytes, int]:
    """RocketMQ's producer rule: ``(body, sysflag bits)``, compressed when ``len(body) >= over_bytes``
    (bits as ``sysflag_bits``).

    As RocketMQ does, the compressed form is kept even when it is not smaller.
    """
    if codec is None or codec.is_none or len(body) < over_bytes:
        return body, 0
    return codec.compress(body), sysflag_bits(codec, zlib_type_bits=zlib_type_bits)


def decompress_body(body: bytes, sysflag: int, *, size_max: int = PLAIN_BYTES_MAX, where: str | None = None,
                    offset: int | None = None, codecs: dict[int, Codec] | None = None) -> bytes:
    """The plain body of a record with ``sysflag``: as is, or decompressed within ``size_max``.

    Raises CorruptDataError naming ``where``/``offset`` for an unknown codec, a corrupt or
    truncated stream, trailing bytes, or output over ``size_max``.
    """
    codec = codec_of(sysflag, where=where, offset=offset, codecs=codecs)
    if codec is None:
        return body
    try:
        return codec.decompress(bytes(body), size_max)
    except CodecError as exc:
        raise CorruptDataError(f"compressed body: {exc}", where=where, offset=offset) from None


def inner_batch_items(body: bytes, sysflag: int, *, size_max: int = PLAIN_BYTES_MAX, where: str | None = None,
                      offset: int | None = None, codecs: dict[int, Codec] | None = None) -> list[BatchItem]:
    """The messages of an inner-batch record's body: decompressed first when the sysflag says so,
    then split (batch.decode_batch). CorruptDataError naming ``where``/``offset`` otherwise."""
    plain = decompress_body(body, sysflag, size_max=size_max, where=where, offset=offset, codecs=codecs)
    try:
        return decode_batch(plain)
    except CorruptDataError as exc:
        inside = f"{'decompressed ' if plain is not body else ''}batch body at byte {exc.offset}"
        raise CorruptDataError(f"{inside}: {_reason(exc)}", where=where, offset=offset) from None


def _reason(exc: CorruptDataError) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if exc.offset is not None and ": " in text else text


# --- the whole-batch wire form ------------------------------------------------------------------


def encode_client_batch(items: list[BatchItem], codec: Codec | None, *,
                        size_max: int = PLAIN_BYTES_MAX) -> tuple[bytes, int]:
    """The SEND_BATCH_MESSAGE body for ``items`` and the header sysflag bits that go with it.

    Without a codec: the plain client batch body (spec 4.1) and 0. With one: the envelope above.
    Raises UserError for an empty batch, a plain body over ``size_max``, or (compressed: the
    envelope's COUNT) more than 32767 messages.
    """
    if not items:
        raise UserError("an empty batch")
    plain = encode_batch(items)
    if len(plain) > size_max:
        raise UserError(f"batch body of {len(plain)} bytes exceeds {size_max}")
    bits = sysflag_bits(codec)
    if not bits:
        return plain, 0
    if len(items) > BATCH_ITEMS_MAX:
        raise UserError(f"a compressed batch holds at most {BATCH_ITEMS_MAX} messages, got {len(items)}")
    head = _ENVELOPE.pack(ENVELOPE_MARK, ENVELOPE_MAGIC, len(plain), len(items), ENVELOPE_MARK)
    return head + codec.compress(plain), bits


@dataclass(frozen=True)
class ClientBatch:
    """A validated SEND_BATCH_MESSAGE body (``decode_client_batch``)."""

    items: list[BatchItem]     # the messages, plain
    stored_body: bytes         # what an inner-batch record stores: the plain batch body, or the STREAM
    sysflag_bits: int          # compression bits for that record (0 when plain)
    plain_bytes: int           # length of the plain client batch body

    @property
    def count(self) -> int:
        return len(self.items)


def decode_client_batch(body: bytes, sysflag: int, *, size_max: int = PLAIN_BYTES_MAX,
                        where: str = "batch body", codecs: dict[int, Codec] | None = None,
                        items_max: int | None = None) -> ClientBatch:
    """Check and decode a SEND_BATCH_MESSAGE body sent with header ``sysflag``.

    Plain (no COMPRESSED bit): the client batch body of spec 4.1. Compressed: the envelope in the
    module doc, whose STREAM must decompress to exactly PLAIN_BYTES (at most ``size_max``) holding
    exactly COUNT messages (at most 32,767). At most ``items_max`` messages when given (checked while
    walking, before the rest is decoded). Raises CorruptDataError naming ``where`` and the byte offset (a broker answers
    MESSAGE_ILLEGAL with its text); never stores or returns anything unchecked.
    """
    body = bytes(body)
    codec = codec_of(sysflag, where=where)
    if codec is None:
        if len(body) > size_max:
            raise CorruptDataError(f"batch body of {len(body)} bytes exceeds {size_max}", where=where, offset=0)
        items = decode_batch(body, where=where, items_max=items_max)
        if not items:
            raise CorruptDataError("empty batch", where=where, offset=0)
        return ClientBatch(items, body, 0, len(body))   # more than 32767 can only be stored per message
    if len(body) < ENVELOPE_HEAD_BYTES:
        raise CorruptDataError(f"{len(body)} bytes, too few for a compressed batch header "
                               f"({ENVELOPE_HEAD_BYTES})", where=where, offset=0)
    mark1, magic, plain_bytes, count, mark2 = _ENVELOPE.unpack_from(body, 0)
    if magic != ENVELOPE_MAGIC or mark1 != ENVELOPE_MARK or mark2 != ENVELOPE_MARK:
        raise CorruptDataError(f"not a compressed batch header (magic 0x{magic & 0xFFFFFFFF:08x}, marks "
                               f"{mark1}/{mark2}; expected 0x{ENVELOPE_MAGIC:08x}, -1/-1)", where=where, offset=0)
    if not 0 < plain_bytes <= size_max:
        raise CorruptDataError(f"compressed batch declares {plain_bytes} plain bytes, outside 1..{size_max}",
                               where=where, offset=_PLAIN_BYTES_AT)
    count_max = BATCH_ITEMS_MAX if items_max is None else min(BATCH_ITEMS_MAX, items_max)
    if not 0 < count <= count_max:
        raise CorruptDataError(f"compressed batch declares {count} messages, outside 1..{count_max}",
                               where=where, offset=_COUNT_AT)
    stream = body[ENVELOPE_HEAD_BYTES:]
    try:
        plain = codec.decompress(stream, plain_bytes)
    except CodecError as exc:
        raise CorruptDataError(f"compressed batch stream: {exc}", where=where, offset=ENVELOPE_HEAD_BYTES) from None
    if len(plain) != plain_bytes:
        raise CorruptDataError(f"compressed batch stream holds {len(plain)} bytes, the header says {plain_bytes}",
                               where=where, offset=ENVELOPE_HEAD_BYTES)
    try:
        items = decode_batch(plain)
    except CorruptDataError as exc:
        raise CorruptDataError(f"decompressed batch body at byte {exc.offset}: {_reason(exc)}",
                               where=where, offset=ENVELOPE_HEAD_BYTES) from None
    if len(items) != count:
        raise CorruptDataError(f"compressed batch holds {len(items)} messages, the header says {count}",
                               where=where, offset=_COUNT_AT)
    return ClientBatch(items, stream, sysflag & SYSFLAG_COMPRESSION_BITS, plain_bytes)
